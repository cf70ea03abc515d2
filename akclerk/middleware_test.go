package akclerk_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
)

// rowEnv is what a row's prepare function works with.
type rowEnv struct {
	t      *testing.T
	e      *env
	ct     credentialType
	h      http.Handler
	secret string
}

// statusRow is one row of the status table: a situation and the answer the
// middleware must give.
type statusRow struct {
	name string
	// cost is charged by the handler on every admitted request.
	cost agentkey.Money
	// timeout is the verifier's per-call timeout; zero keeps the default.
	timeout time.Duration
	// options change the default middleware options.
	options func(o *gateOptions)
	// prepare sets the situation up and returns the credential to send.
	prepare func(r *rowEnv) string

	status int
	error  string
	reason agentkey.Reason
	// logged, for a fault, is what the error log must say of its cause.
	logged string
}

var statusRows = []statusRow{
	{
		name:   "Admitted",
		status: http.StatusOK,
	},
	{
		name: "MissingKey",
		prepare: func(*rowEnv) string {
			return ""
		},
		status: http.StatusUnauthorized, error: "Missing API key",
	},
	{
		name: "UnknownToClerk404",
		prepare: func(*rowEnv) string {
			return newSecret()
		},
		status: http.StatusUnauthorized, error: "invalid_key", reason: agentkey.ReasonInvalidKey,
	},
	{
		name: "RefusedByClerk400",
		prepare: func(r *rowEnv) string {
			r.e.emu.FailWith(http.StatusBadRequest)
			return r.secret
		},
		status: http.StatusUnauthorized, error: "invalid_key", reason: agentkey.ReasonInvalidKey,
	},
	{
		name: "RevokedInClerk",
		prepare: func(r *rowEnv) string {
			r.ct.revoke(r.e.emu, r.secret)
			return r.secret
		},
		status: http.StatusUnauthorized, error: "invalid_key", reason: agentkey.ReasonRevoked,
	},
	{
		name: "ExpiredInClerk",
		prepare: func(r *rowEnv) string {
			r.ct.expire(r.e.emu, r.secret)
			return r.secret
		},
		status: http.StatusUnauthorized, error: "invalid_key", reason: agentkey.ReasonExpired,
	},
	{
		name: "RowRevokedInAgentkey",
		prepare: func(r *rowEnv) string {
			rec := serve(r.h, r.secret)
			require.Equal(r.t, http.StatusOK, rec.Code, rec.Body.String())
			_, err := r.e.svc.Revoke(r.t.Context(), decode[admitted](r.t, rec).Key.ID, "")
			require.NoError(r.t, err)
			return r.secret
		},
		status: http.StatusUnauthorized, error: "invalid_key", reason: agentkey.ReasonRevoked,
	},
	{
		name: "OverBudget",
		cost: agentkey.Cent,
		options: func(o *gateOptions) {
			o.defaults.Budgets = monthly(agentkey.Cent)
		},
		prepare: func(r *rowEnv) string {
			rec := serve(r.h, r.secret)
			require.Equal(r.t, http.StatusOK, rec.Code, "the first cent fits: %s",
				rec.Body.String())
			return r.secret
		},
		status: http.StatusTooManyRequests, error: "budget_exceeded",
	},
	{
		name: "EstimateOverBudget",
		options: func(o *gateOptions) {
			o.defaults.Budgets = monthly(agentkey.Cent)
			o.estimate = agentkey.FixedEstimate(2 * agentkey.Cent)
		},
		status: http.StatusTooManyRequests, error: "budget_exceeded",
	},
	{
		name: "MissingScope",
		options: func(o *gateOptions) {
			o.defaults.Scopes = []string{"usage.read"}
		},
		status: http.StatusForbidden, error: "insufficient_scope",
	},
	{
		name:    "Clerk500",
		prepare: failWith(http.StatusInternalServerError),
		status:  http.StatusInternalServerError, error: "auth_unavailable",
		logged: "internal_clerk_error",
	},
	{
		name:    "Clerk503",
		prepare: failWith(http.StatusServiceUnavailable),
		status:  http.StatusInternalServerError, error: "auth_unavailable",
		logged: "service_unavailable",
	},
	{
		name: "Clerk429",
		prepare: func(r *rowEnv) string {
			r.e.emu.RateLimit(3 * time.Second)
			return r.secret
		},
		status: http.StatusInternalServerError, error: "auth_unavailable",
		logged: "too_many_requests",
	},
	{
		// Clerk never answers, and the request's context never ends: only the
		// verifier's Timeout can end the call, so the request returning at
		// all proves it. No elapsed time is measured: the machines are shared.
		name:    "ClerkHangs",
		timeout: 200 * time.Millisecond,
		prepare: func(r *rowEnv) string {
			r.e.emu.Hang(true)
			return r.secret
		},
		status: http.StatusInternalServerError, error: "auth_unavailable",
		logged: "context deadline exceeded",
	},
	{
		// A proxy's HTML page that echoes the secret: the fault is logged
		// without it, and the response says nothing of it.
		name: "ProxyPage502",
		prepare: func(r *rowEnv) string {
			r.e.emu.FailWithBody(http.StatusBadGateway, "text/html",
				proxyPage(r.secret, r.e.emu.SecretKey()))
			return r.secret
		},
		status: http.StatusInternalServerError, error: "auth_unavailable",
		logged: "unexpected answer: <html>",
	},
	{
		name: "ClerkDown",
		prepare: func(r *rowEnv) string {
			r.e.emu.Close() // connections to it are refused from now on
			return r.secret
		},
		status: http.StatusInternalServerError, error: "auth_unavailable",
		logged: "connection refused",
	},
	{
		name: "StorageFault",
		prepare: func(r *rowEnv) string {
			rec := serve(r.h, r.secret)
			require.Equal(r.t, http.StatusOK, rec.Code, rec.Body.String())
			r.e.breakStore() // Clerk's answer is cached now; the store read fails
			return r.secret
		},
		status: http.StatusInternalServerError, error: "auth_unavailable",
		logged: "validate subject",
	},
}

func failWith(status int) func(*rowEnv) string {
	return func(r *rowEnv) string {
		r.e.emu.FailWith(status)
		return r.secret
	}
}

// TestStatusTable checks every row of the status table, for both middlewares
// on both stores.
func TestStatusTable(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		for _, ct := range credentialTypes {
			for _, row := range statusRows {
				t.Run(ct.name+"/"+row.name, func(t *testing.T) {
					t.Parallel()
					testStatusRow(t, sf, ct, row)
				})
			}
		}
	})
}

func testStatusRow(t *testing.T, sf storeFactory, ct credentialType, row statusRow) {
	e := newEnv(t, &sf, akclerk.VerifierConfig{Timeout: row.timeout})
	subject, secret := ct.subject(), newSecret()
	ct.add(e.emu, secret, subject, "")

	o := gateOptions{
		scope: "proxy.chat",
		defaults: agentkey.SubjectParams{
			Scopes: []string{"proxy.chat"}, Budgets: monthly(agentkey.Dollar),
		},
	}
	if row.options != nil {
		row.options(&o)
	}
	h := ct.middleware(e, o)(handler(ct, row.cost))
	credential := secret
	if row.prepare != nil {
		credential = row.prepare(&rowEnv{t: t, e: e, ct: ct, h: h, secret: secret})
	}

	rec := serve(h, credential)
	require.Equal(t, row.status, rec.Code, rec.Body.String())
	require.NotContains(t, rec.Body.String(), secret, "the secret is never answered")
	require.NotContains(t, e.logs.String(), secret, "the secret is never logged")
	if row.logged != "" {
		require.Contains(t, e.logs.String(), row.logged, "the fault's cause is logged")
	}

	if row.status == http.StatusOK {
		got := decode[admitted](t, rec)
		require.Equal(t, subject, got.Subject, "verified Clerk object in context")
		require.Equal(t, subject, got.Key.Subject, "budget row in context")
		require.Equal(t, subject, got.Key.AccountID, "AccountID defaults to the subject")
		require.Equal(t, []string{"proxy.chat"}, got.Key.Scopes, "agentkey's scopes, not Clerk's")
		return
	}

	body := decode[errorBody](t, rec)
	require.Equal(t, row.error, body.Error)
	require.Equal(t, row.reason, body.Reason)
	switch row.status {
	case http.StatusInternalServerError:
		require.JSONEq(t, `{"error":"auth_unavailable"}`, rec.Body.String(),
			"no detail of the fault")
	case http.StatusTooManyRequests:
		secs, err := strconv.Atoi(rec.Header().Get("Retry-After"))
		require.NoError(t, err, "Retry-After is set")
		require.Positive(t, secs)
	case http.StatusForbidden:
		require.Equal(t, "proxy.chat", body.Required)
		require.Equal(t, []string{"usage.read"}, body.Available)
	case http.StatusUnauthorized:
		require.NotEmpty(t, rec.Header().Get("WWW-Authenticate"))
	}
	if row.error == "Missing API key" {
		require.Zero(t, e.emu.Calls(ct.path), "no Clerk call without a credential")
	}
}

// TestFirstSeen checks the provisioning of a subject's row the first time
// it is seen.
func TestFirstSeen(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		for _, ct := range credentialTypes {
			t.Run(ct.name, func(t *testing.T) {
				t.Parallel()
				testFirstSeen(t, sf, ct)
			})
		}
	})
}

func testFirstSeen(t *testing.T, sf storeFactory, ct credentialType) {
	t.Run("FromDefaults", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, &sf, akclerk.VerifierConfig{})
		subject, secret := ct.subject(), newSecret()
		ct.add(e.emu, secret, subject, "")
		h := ct.middleware(e, gateOptions{defaults: agentkey.SubjectParams{
			Name: "default", Scopes: []string{"proxy.chat"}, Budgets: monthly(50 * agentkey.Dollar),
		}})(handler(ct, 0))

		rec := serve(h, secret)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())

		v, err := e.svc.ValidateBySubject(t.Context(), subject)
		require.NoError(t, err)
		require.True(t, v.OK())
		require.Equal(t, subject, v.Key.AccountID)
		require.Equal(t, "default", v.Key.Name)
		require.Equal(t, []string{"proxy.chat"}, v.Key.Scopes)
		require.Len(t, v.Key.Budgets, 1)
		require.Equal(t, 50*agentkey.Dollar, v.Key.Budgets[0].Limit)
		require.Equal(t, agentkey.PeriodMonth, v.Key.Budgets[0].Period)
	})

	t.Run("FromOnFirstSeenReadingTier", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, &sf, akclerk.VerifierConfig{})
		var calls atomic.Int32
		h := ct.middleware(e, gateOptions{
			defaults: agentkey.SubjectParams{Budgets: monthly(agentkey.Cent)}, // not used
			onFirstSeen: func(subject string, claims json.RawMessage) agentkey.SubjectParams {
				calls.Add(1)
				var c struct{ Tier string }
				_ = json.Unmarshal(claims, &c)
				limit := 20 * agentkey.Dollar
				if c.Tier == "pro" {
					limit = 200 * agentkey.Dollar
				}
				return agentkey.SubjectParams{
					AccountID: "acct_" + subject, Scopes: []string{"proxy.chat"},
					Budgets: monthly(limit), ExpiresIn: 30 * agentkey.Day,
				}
			},
		})(handler(ct, 0))

		for _, tc := range []struct {
			claims string
			limit  agentkey.Money
		}{
			{`{"tier":"pro"}`, 200 * agentkey.Dollar},
			{`{"tier":"free"}`, 20 * agentkey.Dollar},
			{"", 20 * agentkey.Dollar},
		} {
			subject, secret := ct.subject(), newSecret()
			ct.add(e.emu, secret, subject, tc.claims)
			before := calls.Load()
			for range 3 {
				rec := serve(h, secret)
				require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
				got := decode[admitted](t, rec).Key
				require.Equal(t, tc.limit, got.Budgets[0].Limit, "claims %s", tc.claims)
				require.Equal(t, "acct_"+subject, got.AccountID)
				require.False(t, got.ExpiresAt.IsZero())
			}
			require.Equal(t, before+1, calls.Load(), "OnFirstSeen is called on first sight only")
		}
	})

	t.Run("ExistingRowKept", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, &sf, akclerk.VerifierConfig{})
		subject, secret := ct.subject(), newSecret()
		ct.add(e.emu, secret, subject, "")
		_, created, err := e.svc.EnsureSubject(t.Context(), subject, agentkey.SubjectParams{
			Scopes: []string{"proxy.chat"}, Budgets: monthly(7 * agentkey.Dollar),
		})
		require.NoError(t, err)
		require.True(t, created)

		h := ct.middleware(e, gateOptions{defaults: agentkey.SubjectParams{
			Budgets: monthly(agentkey.Dollar),
		}})(handler(ct, 0))
		rec := serve(h, secret)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.Equal(t, 7*agentkey.Dollar, decode[admitted](t, rec).Key.Budgets[0].Limit)
	})
}

// TestRevocationInClerk checks that a revocation made in Clerk is honoured
// once the cache's TTL has passed and not before, and at once after Purge.
func TestRevocationInClerk(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		for _, ct := range credentialTypes {
			t.Run(ct.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, &sf, akclerk.VerifierConfig{})
				h := ct.middleware(e, gateOptions{})(handler(ct, 0))
				subject := ct.subject()
				afterTTL, purged := newSecret(), newSecret()
				ct.add(e.emu, afterTTL, subject, "")
				ct.add(e.emu, purged, subject, "")

				for _, s := range []string{afterTTL, purged} {
					require.Equal(t, http.StatusOK, serve(h, s).Code)
					ct.revoke(e.emu, s)
				}

				e.clock.Advance(akclerk.DefaultCacheTTL - time.Millisecond)
				require.Equal(t, http.StatusOK, serve(h, afterTTL).Code, "cached until the TTL")
				e.verifier.Purge(purged)
				requireRefused(t, serve(h, purged), agentkey.ReasonRevoked)

				e.clock.Advance(time.Millisecond)
				requireRefused(t, serve(h, afterTTL), agentkey.ReasonRevoked)
				require.Equal(t, 4, e.emu.Calls(ct.path))
			})
		}
	})
}

func requireRefused(t *testing.T, rec *httptest.ResponseRecorder, reason agentkey.Reason) {
	t.Helper()
	require.Equal(t, http.StatusUnauthorized, rec.Code, rec.Body.String())
	body := decode[errorBody](t, rec)
	require.Equal(t, "invalid_key", body.Error)
	require.Equal(t, reason, body.Reason)
}

// TestMiddlewarePanicsOnBadOptions checks that a missing Service or Verifier,
// or a negative ProvisionTimeout, is caught when the middleware is built, not
// on the first request.
func TestMiddlewarePanicsOnBadOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &storeFactories[0], akclerk.VerifierConfig{})
	require.PanicsWithValue(t, "akclerk: APIKeyMiddleware: nil Service", func() {
		akclerk.APIKeyMiddleware(akclerk.APIKeyOptions{Verifier: e.verifier})
	})
	require.PanicsWithValue(t, "akclerk: M2MMiddleware: nil Verifier", func() {
		akclerk.M2MMiddleware(akclerk.M2MOptions{Service: e.svc})
	})
	require.PanicsWithValue(t, "akclerk: APIKeyMiddleware: negative ProvisionTimeout", func() {
		akclerk.APIKeyMiddleware(akclerk.APIKeyOptions{
			Service: e.svc, Verifier: e.verifier, ProvisionTimeout: -time.Second,
		})
	})
}

// TestContextAccessorsOutsideMiddleware checks the accessors on a context
// the middleware did not handle.
func TestContextAccessorsOutsideMiddleware(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, ok := akclerk.APIKeyFromContext(ctx)
	require.False(t, ok)
	_, ok = akclerk.M2MTokenFromContext(ctx)
	require.False(t, ok)
}

// TestSecretsNeverLogged drives faults and refusals with debug logging on
// and checks that no log line holds a secret.
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &storeFactories[0], akclerk.VerifierConfig{Timeout: 100 * time.Millisecond})
	for _, ct := range credentialTypes {
		secret := newSecret()
		ct.add(e.emu, secret, ct.subject(), "")
		h := ct.middleware(e, gateOptions{})(handler(ct, 0))

		serve(h, newSecret()) // unknown
		serve(h, secret)      // admitted
		e.verifier.Purge(secret)
		e.emu.FailWith(http.StatusBadGateway)
		serve(h, secret)
		e.emu.FailWith(0)
		e.emu.Hang(true)
		serve(h, secret)
		e.emu.Hang(false)
		ct.revoke(e.emu, secret)
		serve(h, secret)

		require.NotEmpty(t, e.logs.String())
		require.False(t, strings.Contains(e.logs.String(), secret), "logs: %s", e.logs.String())
	}
}
