package agentkey

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxBearerLen bounds the credential a request may carry. Our keys are 51
// characters and Clerk's secrets and machine tokens are far below this; a
// longer header is refused before any work.
const maxBearerLen = 4096

// ParseBearer returns the credential of an Authorization header of the form
// "Bearer <credential>". The scheme is case-insensitive (RFC 9110, section
// 11.1). It reports false for a missing header, another scheme, an empty or
// oversized credential, or one with spaces or control characters.
func ParseBearer(header string) (string, bool) {
	scheme, cred, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimLeft(cred, " ")
	if cred == "" || len(cred) > maxBearerLen {
		return "", false
	}
	for i := 0; i < len(cred); i++ {
		if c := cred[i]; c <= ' ' || c >= 0x7f {
			return "", false
		}
	}
	return cred, true
}

// MiddlewareOptions configure Service.Middleware.
type MiddlewareOptions struct {
	// Scope, when set, is required of every key: a key without it is refused
	// with 403 insufficient_scope.
	Scope string

	// Estimate, when set, makes the middleware hold the estimated cost of
	// each request before the handler runs (see Service.Reserve), and refuse
	// the request with 429 when it does not fit every budget on the key's
	// path. The handler then settles the real cost with Charge. An error or a
	// negative estimate answers 400 invalid_estimate; an estimate of zero
	// holds nothing, as without Estimate. FixedEstimate holds one amount for
	// every request. Without Estimate, the middleware only checks that the key
	// has budget left, and Charge charges after the work.
	Estimate func(*http.Request) (Money, error)

	// HoldTTL is how long a hold lives if the handler hangs. Defaults to
	// Config.HoldTTL.
	HoldTTL time.Duration
}

// Middleware returns net/http middleware that admits a request only with a
// valid own key (Authorization: Bearer ak_...) that has budget left and the
// required scope. It answers as the table in the package documentation says,
// and attaches the key to the request's context for KeyFromContext and
// Charge.
func (s *Service) Middleware(opts MiddlewareOptions) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			secret, ok := ParseBearer(r.Header.Get("Authorization"))
			if !ok {
				WriteMissingKey(w)
				return
			}
			v, err := s.Validate(r.Context(), secret)
			if err != nil {
				s.log.ErrorContext(r.Context(), "validate key", logErr, err)
				WriteUnavailable(w)
				return
			}
			s.Serve(w, r, next, v, opts)
		})
	}
}

// Check returns why the validated key may not do scope, or the empty Reason.
// An empty scope requires nothing.
func (v Validation) Check(scope string) Reason {
	if v.Reason != "" {
		return v.Reason
	}
	if scope != "" && !v.Key.HasScope(scope) {
		return ReasonInsufficientScope
	}
	return ""
}

type contextKey struct{}

// caller is what the middleware attaches to a request.
type caller struct {
	svc  *Service
	key  Key
	hold *requestHold // nil unless the middleware holds estimates
}

// ContextWithKey returns ctx carrying key, so that KeyFromContext and Charge
// work in the handlers below. The middlewares call it; other integrations may.
func ContextWithKey(ctx context.Context, svc *Service, key Key) context.Context {
	return context.WithValue(ctx, contextKey{}, &caller{svc: svc, key: key})
}

// KeyFromContext returns the key that the middleware admitted, with its
// budgets as they were when the request arrived.
func KeyFromContext(ctx context.Context) (Key, bool) {
	c, ok := ctx.Value(contextKey{}).(*caller)
	if !ok {
		return Key{}, false
	}
	return c.key, true
}

// Charge charges cost to the key that the middleware admitted for this
// request. It is the one line a handler needs after the billable work:
//
//	res, err := agentkey.Charge(r.Context(), cost)
//
// When the middleware held an estimate, Charge settles that hold at cost
// instead: the rest of the hold goes back, and a cost above the hold is
// charged as far as it fits, the remainder reported as Overrun. A second
// Charge in one request is a charge of its own.
func Charge(ctx context.Context, cost Money, opts ...ChargeOption) (ChargeResult, error) {
	c, ok := ctx.Value(contextKey{}).(*caller)
	if !ok {
		return ChargeResult{}, ErrNoKey
	}
	// The work is done: a client that leaves now must not keep it from being
	// billed, so the charge does not inherit the request's cancellation.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), chargeTimeout)
	defer cancel()
	if c.hold != nil {
		if cost < 0 {
			return ChargeResult{Reason: ReasonInvalidCost}, nil
		}
		res, err := c.hold.close(ctx, true, cost, opts)
		if !errors.Is(err, ErrHoldClosed) {
			if err != nil {
				return ChargeResult{}, err
			}
			key := c.key
			key.Budgets = mergeBudgets(key.Budgets, res.Budgets)
			return ChargeResult{Charged: res.Charged, Overrun: res.Overrun, Key: key,
				OpID: res.Hold.ID, Replayed: res.Replayed}, nil
		}
	}
	return c.svc.ChargeKey(ctx, c.key.ID, cost, opts...)
}

// chargeTimeout bounds a charge or settlement made for a request after its
// work, once it no longer follows the request's cancellation.
const chargeTimeout = 10 * time.Second

// mergeBudgets returns bs with each budget replaced by its newer state in
// updates, when updates has it.
func mergeBudgets(bs, updates []Budget) []Budget {
	out := make([]Budget, len(bs))
	for i, b := range bs {
		out[i] = b
		for _, u := range updates {
			if u.ID == b.ID {
				out[i] = u
			}
		}
	}
	return out
}

// Denial describes a refused request, for WriteDenial.
type Denial struct {
	Reason Reason
	// Key is the key that was refused, if it is known.
	Key *Key
	// Scope is the scope that was required.
	Scope string
	// Budget is the budget that refused; on ReasonBudgetExceeded it defaults
	// to the key's exhausted budget that frees up last.
	Budget *Budget
	// Now is used to compute Retry-After.
	Now time.Time
}

// errorBody is the JSON body of every refusal.
type errorBody struct {
	Error      string   `json:"error"`
	Reason     Reason   `json:"reason,omitempty"`
	Required   string   `json:"required,omitempty"`
	Available  []string `json:"available,omitzero"`
	Budget     *Budget  `json:"budget,omitempty"`
	RetryAfter int64    `json:"retry_after,omitempty"`
}

// WriteMissingKey answers 401 {"error": "Missing API key"}.
func WriteMissingKey(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", "Bearer")
	writeJSON(w, http.StatusUnauthorized, errorBody{Error: "Missing API key"})
}

// WriteUnavailable answers 500 {"error": "auth_unavailable"}: a fault kept the
// request from being checked, so it is refused (fail closed).
func WriteUnavailable(w http.ResponseWriter) {
	writeJSON(w, http.StatusInternalServerError, errorBody{Error: "auth_unavailable"})
}

// WriteDenial answers a refused request:
//
//	invalid, expired or revoked key  401 invalid_key (reason says which)
//	over budget                      429 budget_exceeded, Retry-After when the budget resets
//	missing required scope           403 insufficient_scope (required and available scopes)
func WriteDenial(w http.ResponseWriter, d Denial) {
	switch {
	case d.Reason.KeyInvalid():
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, errorBody{Error: string(ReasonInvalidKey), Reason: d.Reason})

	case d.Reason == ReasonInsufficientScope:
		body := errorBody{Error: string(d.Reason), Required: d.Scope, Available: []string{}}
		if d.Key != nil && d.Key.Scopes != nil {
			body.Available = d.Key.Scopes
		}
		writeJSON(w, http.StatusForbidden, body)

	case d.Reason == ReasonBudgetExceeded:
		b := d.Budget
		if b == nil && d.Key != nil {
			b = d.Key.blocking()
		}
		body := errorBody{Error: string(d.Reason), Budget: b}
		if b != nil && !b.ResetAt.IsZero() && !d.Now.IsZero() {
			secs := int64(max(1, (b.ResetAt.Sub(d.Now)+time.Second-1)/time.Second))
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			body.RetryAfter = secs
		}
		writeJSON(w, http.StatusTooManyRequests, body)

	default:
		writeJSON(w, http.StatusBadRequest, errorBody{Error: string(d.Reason)})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
