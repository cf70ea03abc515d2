package akclerk_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
	"github.com/agentkey-go/agentkey/internal/clerkemu"
	"github.com/agentkey-go/agentkey/internal/testdb"
)

// debugEnv names the environment variable that, set to 1, shows the logs of
// every test.
const debugEnv = "AKCLERK_TEST_LOG"

// storeFactory opens fresh, migrated stores of one implementation.
type storeFactory = testdb.Factory

var (
	storeFactories = testdb.Factories
	forEachStore   = testdb.ForEach
)

// env is one test's Clerk emulator, verifier, service and clocks.
type env struct {
	emu        *clerkemu.Server
	verifier   *akclerk.Verifier
	svc        *agentkey.Service
	breakStore func()
	// clock is the verifier's clock, svcClock the service's: apart, so that
	// a test can age the budget rows without ageing Clerk's answers.
	clock, svcClock *clock
	logger          *slog.Logger
	logs            *logBuffer
}

// newEnv starts an emulator and a verifier pointed at it, configured by cfg
// with the clock and logger filled in, and a service on a store of sf. With a
// nil sf, the env has no service.
func newEnv(t testing.TB, sf *storeFactory, cfg akclerk.VerifierConfig) *env {
	t.Helper()
	return newEnvWrapped(t, sf, cfg, nil)
}

// newEnvWrapped is newEnv with the service's store passed through wrap, when
// it is not nil, so that a test can inject faults into a real store.
func newEnvWrapped(t testing.TB, sf *storeFactory, cfg akclerk.VerifierConfig,
	wrap func(agentkey.Store) agentkey.Store,
) *env {
	t.Helper()
	logger, logs := newTestLogger(t)
	e := &env{
		emu:      clerkemu.New("sk_test_" + randomHex(12)),
		clock:    newClock(),
		svcClock: newClock(),
		logger:   logger,
		logs:     logs,
	}
	t.Cleanup(e.emu.Close)

	cfg.APIURL, cfg.SecretKey = e.emu.URL(), e.emu.SecretKey()
	cfg.Now, cfg.Logger = e.clock.Now, logger
	v, err := akclerk.NewVerifier(cfg)
	require.NoError(t, err)
	t.Cleanup(v.Close)
	e.verifier = v

	if sf != nil {
		var store agentkey.Store
		store, e.breakStore = sf.Open(t)
		if wrap != nil {
			store = wrap(store)
		}
		svc, err := agentkey.New(store, agentkey.Config{Now: e.svcClock.Now, Logger: logger})
		require.NoError(t, err)
		t.Cleanup(func() { _ = svc.Close(context.Background()) })
		e.svc = svc
	}
	return e
}

// clock is a settable clock, still unless advanced.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// logBuffer keeps every log line of a test, so that tests can check that no
// secret is ever logged, and shows them through t when debugEnv is set.
type logBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	t    testing.TB
	show bool
	done bool
}

func newTestLogger(t testing.TB) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{t: t, show: os.Getenv(debugEnv) == "1"}
	t.Cleanup(func() {
		lb.mu.Lock()
		lb.done = true // t.Log must not be called after the test
		lb.mu.Unlock()
	})
	h := slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})
	return slog.New(h), lb
}

func (lb *logBuffer) Write(p []byte) (int, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	lb.buf.Write(p)
	if lb.show && !lb.done {
		lb.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func (lb *logBuffer) String() string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.buf.String()
}

// credentialType is what the tests need to know of API keys or M2M tokens.
type credentialType struct {
	name string
	// path is the emulator's verification endpoint.
	path string
	// subject returns a new subject id of the right shape.
	subject func() string
	// add registers a credential of subject with the given claims (JSON, or
	// empty for none) and an expiration an hour away.
	add            func(emu *clerkemu.Server, secret, subject, claims string)
	revoke, expire func(emu *clerkemu.Server, secret string)

	// middleware builds the middleware for this type from o.
	middleware func(e *env, o gateOptions) func(http.Handler) http.Handler
	// verifiedSubject returns the subject of the Clerk object in ctx.
	verifiedSubject func(ctx context.Context) (string, bool)
	// verify verifies a credential with the Verifier directly.
	verify func(ctx context.Context, v *akclerk.Verifier, credential string,
	) (agentkey.Reason, error)
	// track is TrackByAPIKey or TrackByM2M.
	track func(ctx context.Context, svc *agentkey.Service, subject string, cost agentkey.Money,
		opts ...agentkey.ChargeOption) (agentkey.ChargeResult, error)
}

// gateOptions are the options both middlewares share, with OnFirstSeen
// reduced to the verified subject and claims.
type gateOptions struct {
	scope            string
	defaults         agentkey.SubjectParams
	onFirstSeen      func(subject string, claims json.RawMessage) agentkey.SubjectParams
	estimate         func(*http.Request) (agentkey.Money, error)
	provisionTimeout time.Duration
}

var apiKeys = credentialType{
	name:    "APIKey",
	path:    "/v1/api_keys/verify",
	subject: func() string { return "user_" + randomHex(8) },
	add: func(emu *clerkemu.Server, secret, subject, claims string) {
		exp := time.Now().Add(time.Hour)
		emu.AddAPIKey(secret, clerkemu.APIKey{
			Name: "test", Subject: subject, Claims: rawClaims(claims), Expiration: &exp,
			Scopes: []string{"clerk.scope"},
		})
	},
	revoke: func(emu *clerkemu.Server, secret string) { emu.RevokeAPIKey(secret, "leaked") },
	expire: (*clerkemu.Server).ExpireAPIKey,
	middleware: func(e *env, o gateOptions) func(http.Handler) http.Handler {
		opts := akclerk.APIKeyOptions{
			Service: e.svc, Verifier: e.verifier, Scope: o.scope, Defaults: o.defaults,
			Estimate: o.estimate, ProvisionTimeout: o.provisionTimeout, Logger: e.logger,
		}
		if o.onFirstSeen != nil {
			opts.OnFirstSeen = func(k *clerk.APIKey) agentkey.SubjectParams {
				return o.onFirstSeen(k.Subject, k.Claims)
			}
		}
		return akclerk.APIKeyMiddleware(opts)
	},
	verifiedSubject: func(ctx context.Context) (string, bool) {
		k, ok := akclerk.APIKeyFromContext(ctx)
		if !ok {
			return "", false
		}
		return k.Subject, true
	},
	verify: func(ctx context.Context, v *akclerk.Verifier, credential string,
	) (agentkey.Reason, error) {
		res, err := v.VerifyAPIKey(ctx, credential)
		return res.Reason, err
	},
	track: akclerk.TrackByAPIKey,
}

var m2mTokens = credentialType{
	name:    "M2M",
	path:    "/v1/m2m_tokens/verify",
	subject: func() string { return "mch_" + randomHex(8) },
	add: func(emu *clerkemu.Server, secret, subject, claims string) {
		exp := time.Now().Add(time.Hour)
		emu.AddM2MToken(secret, clerkemu.M2MToken{
			Subject: subject, Claims: rawClaims(claims), Expiration: &exp,
			Scopes: []string{"mch_other"},
		})
	},
	revoke: func(emu *clerkemu.Server, secret string) { emu.RevokeM2MToken(secret, "leaked") },
	expire: (*clerkemu.Server).ExpireM2MToken,
	middleware: func(e *env, o gateOptions) func(http.Handler) http.Handler {
		opts := akclerk.M2MOptions{
			Service: e.svc, Verifier: e.verifier, Scope: o.scope, Defaults: o.defaults,
			Estimate: o.estimate, ProvisionTimeout: o.provisionTimeout, Logger: e.logger,
		}
		if o.onFirstSeen != nil {
			opts.OnFirstSeen = func(tok *clerk.M2MToken) agentkey.SubjectParams {
				return o.onFirstSeen(tok.Subject, tok.Claims)
			}
		}
		return akclerk.M2MMiddleware(opts)
	},
	verifiedSubject: func(ctx context.Context) (string, bool) {
		tok, ok := akclerk.M2MTokenFromContext(ctx)
		if !ok {
			return "", false
		}
		return tok.Subject, true
	},
	verify: func(ctx context.Context, v *akclerk.Verifier, credential string,
	) (agentkey.Reason, error) {
		res, err := v.VerifyM2MToken(ctx, credential)
		return res.Reason, err
	},
	track: akclerk.TrackByM2M,
}

var credentialTypes = []credentialType{apiKeys, m2mTokens}

func rawClaims(claims string) json.RawMessage {
	if claims == "" {
		return nil
	}
	return json.RawMessage(claims)
}

// admitted is what the handler behind the middlewares reports.
type admitted struct {
	// Subject is the subject of the verified Clerk object.
	Subject string `json:"subject"`
	// Key is the subject's row as the middleware attached it.
	Key agentkey.Key `json:"key"`
}

// handler reports what the middleware attached to the request and, when
// cost is positive, charges it after the "work", as a paid API does.
func handler(ct credentialType, cost agentkey.Money) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		subject, ok := ct.verifiedSubject(r.Context())
		key, ok2 := agentkey.KeyFromContext(r.Context())
		if !ok || !ok2 {
			http.Error(w, "nothing in context", http.StatusTeapot)
			return
		}
		if cost > 0 {
			res, err := agentkey.Charge(r.Context(), cost)
			switch {
			case err != nil:
				http.Error(w, "charge failed", http.StatusInternalServerError)
				return
			case !res.OK():
				w.WriteHeader(http.StatusTooManyRequests)
				_ = json.NewEncoder(w).Encode(map[string]any{"error": res.Reason, "charged": false})
				return
			}
			key = res.Key
		}
		_ = json.NewEncoder(w).Encode(admitted{Subject: subject, Key: key})
	})
}

// serve sends one request with credential as its Bearer token, or no
// Authorization header when credential is empty.
func serve(h http.Handler, credential string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/api/chat", nil)
	if credential != "" {
		req.Header.Set("Authorization", "Bearer "+credential)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// errorBody is the JSON body of a refusal.
type errorBody struct {
	Error     string          `json:"error"`
	Reason    agentkey.Reason `json:"reason"`
	Required  string          `json:"required"`
	Available []string        `json:"available"`
}

func decode[T any](t testing.TB, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v), "body %q", rec.Body.String())
	return v
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newSecret returns a fresh credential, shaped like neither an agentkey key
// nor anything a log line would hold by accident.
func newSecret() string { return "sec_" + randomHex(16) }

// monthly returns budget specs of limit per month.
func monthly(limit agentkey.Money) []agentkey.BudgetSpec {
	return []agentkey.BudgetSpec{{Limit: limit, Period: agentkey.PeriodMonth}}
}
