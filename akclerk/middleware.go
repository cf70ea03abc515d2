package akclerk

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"golang.org/x/sync/singleflight"

	"github.com/agentkey-go/agentkey"
)

// Log attribute keys.
const (
	logClerkID = "clerk_id"
	logSubject = "subject"
	logReason  = "reason"
	logErr     = "err"
)

// DefaultProvisionTimeout is the default of the middlewares'
// ProvisionTimeout.
const DefaultProvisionTimeout = 30 * time.Second

// APIKeyOptions configure APIKeyMiddleware.
type APIKeyOptions struct {
	// Service keeps the budgets. Required.
	Service *agentkey.Service

	// Verifier verifies keys with Clerk. Required.
	Verifier *Verifier

	// Scope, when set, is required of every subject: one whose row lacks it
	// is refused with 403 insufficient_scope. These are agentkey's scopes,
	// from the subject's row, not the scopes of the Clerk API key.
	Scope string

	// Defaults describe the row created for a subject seen for the first
	// time, when OnFirstSeen is nil. AccountID defaults to the subject. The
	// zero value creates a row with no limit and every scope.
	Defaults agentkey.SubjectParams

	// OnFirstSeen, when set, describes the row of a subject seen for the
	// first time from its verified key instead of Defaults, for example a
	// plan tier read from the key's claims. It is not called once the row
	// exists. When a new subject's first requests arrive together it may be
	// called for several of them; the row is created from one result.
	OnFirstSeen func(*clerk.APIKey) agentkey.SubjectParams

	// Estimate, when set, makes the middleware hold the estimated cost of
	// each request against the subject's budgets before the handler runs, and
	// refuse the request with 429 budget_exceeded when it does not fit, so
	// that concurrent requests cannot together do work past the budget. The
	// handler then settles the real cost with agentkey.Charge. It works as
	// agentkey.MiddlewareOptions.Estimate does; agentkey.FixedEstimate holds
	// one amount for every request. Without it, the middleware only checks
	// that the subject has budget left, and the cost is charged after the
	// work.
	Estimate func(*http.Request) (agentkey.Money, error)

	// HoldTTL is how long a hold lives if the handler never settles it.
	// Defaults to the Service's Config.HoldTTL.
	HoldTTL time.Duration

	// ProvisionTimeout bounds the creation of a new subject's row, after
	// which the requests waiting for it are refused with 500
	// auth_unavailable. The creation serves every request of the subject that
	// arrives meanwhile, so it does not end with the request that started it;
	// this bound keeps a stuck database from holding it forever. Each request
	// also stops waiting when its own context ends. Defaults to
	// DefaultProvisionTimeout, 30s.
	ProvisionTimeout time.Duration

	// Logger receives the middleware's logs: faults at error level, Clerk's
	// refusals at debug level, with Clerk ids and subjects, never secrets.
	// Defaults to discarding them.
	Logger *slog.Logger
}

// M2MOptions configure M2MMiddleware. They are APIKeyOptions for machine
// tokens.
type M2MOptions struct {
	// Service keeps the budgets. Required.
	Service *agentkey.Service

	// Verifier verifies tokens with Clerk. Required.
	Verifier *Verifier

	// Scope, when set, is required of every machine: one whose row lacks it
	// is refused with 403 insufficient_scope. These are agentkey's scopes,
	// not the token's Clerk scopes (the machines it may reach).
	Scope string

	// Defaults describe the row created for a machine seen for the first
	// time, when OnFirstSeen is nil. AccountID defaults to the machine's
	// subject.
	Defaults agentkey.SubjectParams

	// OnFirstSeen, when set, describes the row of a machine seen for the
	// first time from its verified token instead of Defaults.
	OnFirstSeen func(*clerk.M2MToken) agentkey.SubjectParams

	// Estimate, when set, holds the estimated cost of each request before
	// the handler runs, as APIKeyOptions.Estimate does.
	Estimate func(*http.Request) (agentkey.Money, error)

	// HoldTTL is how long a hold lives if the handler never settles it.
	// Defaults to the Service's Config.HoldTTL.
	HoldTTL time.Duration

	// ProvisionTimeout bounds the creation of a new machine's row, as
	// APIKeyOptions.ProvisionTimeout does. Defaults to
	// DefaultProvisionTimeout, 30s.
	ProvisionTimeout time.Duration

	// Logger receives the middleware's logs. Defaults to discarding them.
	Logger *slog.Logger
}

// APIKeyMiddleware returns net/http middleware that admits a request carrying
// a Clerk API key (Authorization: Bearer <secret>) whose subject, a user_ or
// org_ id, has budget left and the required scope. For each request it:
//
//  1. verifies the secret with Clerk (POST /api_keys/verify), or finds the
//     answer in the Verifier's cache;
//  2. creates the subject's row on first sight, from OnFirstSeen or Defaults;
//  3. checks the row: expiry, revocation, budget, and Scope;
//  4. holds the Estimate, when set, against the row's budgets;
//  5. attaches the row (and the hold) to the request's context, for
//     agentkey.KeyFromContext and agentkey.Charge, and the verified key, for
//     APIKeyFromContext.
//
// Steps 3 to 5 are agentkey's own (Service.Serve), so that both middlewares
// answer alike. It answers as the table in the package documentation says; a
// fault of Clerk or of the store refuses the request with 500
// auth_unavailable.
//
// It panics if opts.Service or opts.Verifier is nil, or opts.ProvisionTimeout
// negative.
func APIKeyMiddleware(opts APIKeyOptions) func(http.Handler) http.Handler {
	g := newGate("APIKeyMiddleware", opts.Service, opts.Verifier, opts.Logger,
		opts.ProvisionTimeout,
		agentkey.MiddlewareOptions{Scope: opts.Scope, Estimate: opts.Estimate, HoldTTL: opts.HoldTTL})
	g.kind, g.ctxKey = kindAPIKey, apiKeyContextKey{}
	g.params = func(object any) agentkey.SubjectParams {
		if opts.OnFirstSeen == nil {
			return opts.Defaults
		}
		return opts.OnFirstSeen(object.(*clerk.APIKey))
	}
	return g.middleware
}

// M2MMiddleware returns net/http middleware that admits a request carrying a
// Clerk machine-to-machine token (Authorization: Bearer <token>) whose
// machine has budget left and the required scope. It works as
// APIKeyMiddleware does, verifying with POST /m2m_tokens/verify, keyed on the
// machine's subject (an mch_ id), and attaching the verified token for
// M2MTokenFromContext. It is for capping the cost of your own services,
// where APIKeyMiddleware caps customers.
//
// It panics if opts.Service or opts.Verifier is nil, or opts.ProvisionTimeout
// negative.
func M2MMiddleware(opts M2MOptions) func(http.Handler) http.Handler {
	g := newGate("M2MMiddleware", opts.Service, opts.Verifier, opts.Logger,
		opts.ProvisionTimeout,
		agentkey.MiddlewareOptions{Scope: opts.Scope, Estimate: opts.Estimate, HoldTTL: opts.HoldTTL})
	g.kind, g.ctxKey = kindM2MToken, m2mTokenContextKey{}
	g.params = func(object any) agentkey.SubjectParams {
		if opts.OnFirstSeen == nil {
			return opts.Defaults
		}
		return opts.OnFirstSeen(object.(*clerk.M2MToken))
	}
	return g.middleware
}

// gate is the flow both middlewares share.
type gate struct {
	svc              *agentkey.Service
	verifier         *Verifier
	opts             agentkey.MiddlewareOptions
	log              *slog.Logger
	provisionTimeout time.Duration

	kind   credentialKind
	ctxKey any
	params func(object any) agentkey.SubjectParams

	// provisions collapses the concurrent creations of one subject's row.
	provisions singleflight.Group
}

func newGate(name string, svc *agentkey.Service, v *Verifier, log *slog.Logger,
	provisionTimeout time.Duration, opts agentkey.MiddlewareOptions,
) *gate {
	switch {
	case svc == nil:
		panic("akclerk: " + name + ": nil Service")
	case v == nil:
		panic("akclerk: " + name + ": nil Verifier")
	case provisionTimeout < 0:
		panic("akclerk: " + name + ": negative ProvisionTimeout")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if provisionTimeout == 0 {
		provisionTimeout = DefaultProvisionTimeout
	}
	return &gate{svc: svc, verifier: v, opts: opts, log: log, provisionTimeout: provisionTimeout}
}

func (g *gate) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		credential, ok := agentkey.ParseBearer(r.Header.Get("Authorization"))
		if !ok {
			agentkey.WriteMissingKey(w)
			return
		}

		d, err := g.verifier.verify(ctx, g.kind, credential)
		switch {
		case err != nil && ctx.Err() != nil:
			// The client left while Clerk was asked: not Clerk's fault.
			g.log.DebugContext(ctx, "request ended during clerk verification", logErr, err)
			agentkey.WriteUnavailable(w)
			return
		case err != nil:
			g.log.ErrorContext(ctx, "verify credential with clerk", logErr, err)
			agentkey.WriteUnavailable(w)
			return
		}
		if d.reason != "" {
			g.log.DebugContext(ctx, "clerk refused credential",
				logClerkID, clerkID(d.object), logReason, d.reason)
			agentkey.WriteDenial(w, agentkey.Denial{Reason: d.reason})
			return
		}

		v, err := g.validate(ctx, d)
		if err != nil {
			g.log.ErrorContext(ctx, "validate subject", logSubject, d.subject, logErr, err)
			agentkey.WriteUnavailable(w)
			return
		}
		ctx = context.WithValue(ctx, g.ctxKey, d.object)
		g.svc.Serve(w, r.WithContext(ctx), next, v, g.opts)
	})
}

// validate returns the state of the verified subject's row, creating the row
// on first sight.
//
// A known subject costs one store read. ValidateBySubject answers
// invalid_key without a key only for a subject that has no row: revoked and
// expired rows come back with their key. Only then is the row created, and
// read again.
func (g *gate) validate(ctx context.Context, d verdict) (agentkey.Validation, error) {
	v, err := g.svc.ValidateBySubject(ctx, d.subject)
	if err != nil || v.Reason != agentkey.ReasonInvalidKey || v.Key.ID != "" {
		return v, err
	}

	if err := g.provision(ctx, d); err != nil {
		return agentkey.Validation{}, err
	}
	return g.svc.ValidateBySubject(ctx, d.subject)
}

// provision creates the row of a subject seen for the first time. The store
// makes concurrent creations of one subject create one row; collapsing them
// here as well spares the store a burst of writes when a new customer's
// first requests arrive together.
func (g *gate) provision(ctx context.Context, d verdict) error {
	// The parameters are computed on the request's goroutine so that a panic
	// in OnFirstSeen is recovered by net/http like any handler's.
	p := g.params(d.object)
	ch := g.provisions.DoChan(d.subject, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.provisionTimeout)
		defer cancel()
		_, _, err := g.svc.EnsureSubject(ctx, d.subject, p)
		return nil, err
	})

	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

type (
	apiKeyContextKey   struct{}
	m2mTokenContextKey struct{}
)

// APIKeyFromContext returns the Clerk API key that APIKeyMiddleware verified
// for this request. It is shared with other requests and must not be
// modified.
func APIKeyFromContext(ctx context.Context) (*clerk.APIKey, bool) {
	k, ok := ctx.Value(apiKeyContextKey{}).(*clerk.APIKey)
	return k, ok
}

// M2MTokenFromContext returns the Clerk M2M token that M2MMiddleware verified
// for this request. It is shared with other requests and must not be
// modified.
func M2MTokenFromContext(ctx context.Context) (*clerk.M2MToken, bool) {
	t, ok := ctx.Value(m2mTokenContextKey{}).(*clerk.M2MToken)
	return t, ok
}
