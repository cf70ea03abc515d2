package agentkey_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/internal/testdb"
)

// selfServeEnv is a service on a fresh store, its self-serve routes on a
// test server, and a clock the test moves.
type selfServeEnv struct {
	svc *agentkey.Service
	ts  *httptest.Server

	mu  sync.Mutex
	now time.Time
}

func newSelfServeEnv(t *testing.T, f testdb.Factory, opts agentkey.SelfServeOptions) *selfServeEnv {
	t.Helper()
	store, _ := f.Open(t)

	e := &selfServeEnv{now: time.Date(2030, 5, 6, 12, 0, 0, 0, time.UTC)}
	var err error
	e.svc, err = agentkey.New(store, agentkey.Config{Now: e.clock})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.svc.Close(context.Background()) })

	if opts.ClientAddr == nil {
		// Tests name their client address in a header.
		opts.ClientAddr = func(r *http.Request) string { return r.Header.Get("X-Test-Client") }
	}
	e.ts = httptest.NewServer(e.svc.SelfServe(opts))
	t.Cleanup(e.ts.Close)
	return e
}

func (e *selfServeEnv) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *selfServeEnv) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

// selfServeReply is an HTTP answer.
type selfServeReply struct {
	status int
	header http.Header
	body   []byte
}

func (r selfServeReply) into(t *testing.T, status int, v any) {
	t.Helper()
	require.Equal(t, status, r.status, "body: %s", r.body)
	reflect.ValueOf(v).Elem().SetZero()
	require.NoError(t, json.Unmarshal(r.body, v), "body: %s", r.body)
}

func (r selfServeReply) object(t *testing.T, status int) map[string]any {
	t.Helper()
	var m map[string]any
	r.into(t, status, &m)
	return m
}

// call makes a request with the given bearer key (none when empty) and body.
func (e *selfServeEnv) call(t *testing.T, method, path, key, body string) selfServeReply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("X-Test-Client", "198.51.100.7")
	res, err := e.ts.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return selfServeReply{status: res.StatusCode, header: res.Header, body: raw}
}

// minted is a key as the self-serve routes answer it.
type minted struct {
	Secret string `json:"key"`
	agentkey.Key
}

func (e *selfServeEnv) signup(t *testing.T, body string) minted {
	t.Helper()
	var m minted
	e.call(t, http.MethodPost, "/signup", "", body).into(t, http.StatusCreated, &m)
	return m
}

func TestSelfServeSignup(t *testing.T) {
	t.Parallel()
	testdb.ForEach(t, func(t *testing.T, f testdb.Factory) {
		e := newSelfServeEnv(t, f, agentkey.SelfServeOptions{})

		a := e.signup(t, `{"email": "agent@example.com", "name": "my agent"}`)
		require.Regexp(t, `^ak_[0-9a-f]{48}$`, a.Secret)
		require.Equal(t, "agent@example.com", a.UserID)
		require.Equal(t, "my agent", a.Name)
		require.Equal(t, []string{}, a.Scopes, "no scopes by default, never nil (every scope)")
		require.Equal(t, e.clock().Add(24*time.Hour), a.ExpiresAt)

		// The default limit, $1 a day, is on the signup's account.
		var limits []agentkey.Budget
		for _, b := range a.Budgets {
			if !b.Unlimited {
				limits = append(limits, b)
			}
		}
		require.Len(t, limits, 1)
		require.Equal(t, agentkey.Dollar, limits[0].Limit)
		require.Equal(t, agentkey.PeriodDay, limits[0].Period)
		require.Equal(t, agentkey.OwnerAccount, limits[0].OwnerKind)
		require.Equal(t, a.AccountID, limits[0].OwnerID)

		// The key works, within its account's limit.
		ctx := context.Background()
		v, err := e.svc.Validate(ctx, a.Secret)
		require.NoError(t, err)
		require.True(t, v.OK())
		res, err := e.svc.TrackUsage(ctx, a.Secret, 2*agentkey.Dollar)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)

		t.Run("FreshAccountEvenForTheSameEmail", func(t *testing.T) {
			b := e.signup(t, `{"email": "agent@example.com"}`)
			require.NotEqual(t, a.AccountID, b.AccountID)
			c := e.signup(t, ``)
			require.NotEqual(t, b.AccountID, c.AccountID)
			require.Empty(t, c.UserID)
		})

		t.Run("CallerCannotChooseScopes", func(t *testing.T) {
			rep := e.call(t, http.MethodPost, "/signup", "", `{"scopes": ["admin"]}`).
				object(t, http.StatusBadRequest)
			require.Equal(t, "invalid_request", rep["error"])
			require.Contains(t, rep["message"], `unknown field "scopes"`)
		})
	})
}

func TestSelfServeSignupOptions(t *testing.T) {
	t.Parallel()
	testdb.ForEach(t, func(t *testing.T, f testdb.Factory) {
		e := newSelfServeEnv(t, f, agentkey.SelfServeOptions{
			SignupScopes: []string{"proxy.chat"},
			SignupBudgets: []agentkey.BudgetSpec{
				{Limit: 5 * agentkey.Dollar, Period: agentkey.PeriodMonth},
			},
			SignupExpiry: time.Hour,
		})
		a := e.signup(t, `{}`)
		require.Equal(t, []string{"proxy.chat"}, a.Scopes)
		require.Equal(t, e.clock().Add(time.Hour), a.ExpiresAt)
		require.Equal(t, 5*agentkey.Dollar, a.Budgets[len(a.Budgets)-1].Limit)

		unlimited := newSelfServeEnv(t, f,
			agentkey.SelfServeOptions{SignupBudgets: []agentkey.BudgetSpec{}})
		b := unlimited.signup(t, `{}`)
		_, limited := b.Remaining()
		require.False(t, limited)

		require.PanicsWithValue(t, `agentkey: SelfServe: SignupScopes: invalid argument: `+
			`scope "a b" must be 1 to 128 printable characters without spaces or commas`, func() {
			e.svc.SelfServe(agentkey.SelfServeOptions{SignupScopes: []string{"a b"}})
		})
	})
}

func TestSelfServeSignupRateLimit(t *testing.T) {
	t.Parallel()
	testdb.ForEach(t, func(t *testing.T, f testdb.Factory) {
		e := newSelfServeEnv(t, f, agentkey.SelfServeOptions{SignupRate: 3})
		for range 3 {
			e.signup(t, `{}`)
		}
		rep := e.call(t, http.MethodPost, "/signup", "", `{}`)
		body := rep.object(t, http.StatusTooManyRequests)
		require.Equal(t, "rate_limited", body["error"])
		require.Equal(t, "1200", rep.header.Get("Retry-After"), "one signup per 20 minutes")

		// Another address is not affected.
		req, err := http.NewRequest(http.MethodPost, e.ts.URL+"/signup", nil)
		require.NoError(t, err)
		req.Header.Set("X-Test-Client", "203.0.113.9")
		res, err := e.ts.Client().Do(req)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusCreated, res.StatusCode)

		// The allowance comes back one signup at a time.
		e.advance(20 * time.Minute)
		e.signup(t, `{}`)
		e.call(t, http.MethodPost, "/signup", "", `{}`).object(t, http.StatusTooManyRequests)

		// A refused request does not count.
		e.advance(20 * time.Minute)
		e.call(t, http.MethodPost, "/signup", "", `{"email": "no-at-sign"}`).
			object(t, http.StatusBadRequest)
		e.signup(t, `{}`)
	})
}

func TestSelfServeDefaultClientAddr(t *testing.T) {
	t.Parallel()
	testdb.ForEach(t, func(t *testing.T, f testdb.Factory) {
		// newSelfServeEnv's server counts clients by a header; this handler
		// uses the default, the request's remote address.
		e := newSelfServeEnv(t, f, agentkey.SelfServeOptions{})
		h := e.svc.SelfServe(agentkey.SelfServeOptions{SignupRate: 1})
		signup := func(remote string) int {
			req := httptest.NewRequest(http.MethodPost, "/signup", nil)
			req.RemoteAddr = remote
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			return rec.Code
		}
		require.Equal(t, http.StatusCreated, signup("192.0.2.1:1234"))
		require.Equal(t, http.StatusTooManyRequests, signup("192.0.2.1:5678"), "ports do not matter")
		require.Equal(t, http.StatusCreated, signup("192.0.2.2:1234"))
		require.Equal(t, http.StatusCreated, signup("[2001:db8:1:2::1]:1234"))
		require.Equal(t, http.StatusTooManyRequests, signup("[2001:db8:1:2::ffff]:1234"), "one /64")
		require.Equal(t, http.StatusCreated, signup("[2001:db8:1:3::1]:1234"))
	})
}

func TestSelfServeBadInput(t *testing.T) {
	t.Parallel()
	testdb.ForEach(t, func(t *testing.T, f testdb.Factory) {
		e := newSelfServeEnv(t, f, agentkey.SelfServeOptions{})
		caller := e.signup(t, `{}`)
		for _, tc := range []struct {
			name, method, path, key, body string
			status                        int
			message                       string
		}{
			{"Malformed", "POST", "/signup", "", `{"email": `, 400, "malformed JSON"},
			{"Trailing", "POST", "/signup", "", `{} {}`, 400, "after the JSON object"},
			{"WrongType", "POST", "/signup", "", `{"email": 5}`, 400, "email: want a string"},
			{"BadEmail", "POST", "/signup", "", `{"email": "a b@c"}`, 400, "email"},
			{"ControlInName", "POST", "/signup", "", `{"name": "a\u0000b"}`, 400, "name"},
			{"TooLarge", "POST", "/signup", "", `{"name": "` + strings.Repeat("x", 70<<10) + `"}`,
				413, "bytes"},
			{"MintUnknownField", "POST", "/sdk-keys", caller.Secret, `{"account_id": "other"}`, 400,
				`unknown field "account_id"`},
			{"MintBadLimit", "POST", "/sdk-keys", caller.Secret, `{"budgets": [{"limit": "x"}]}`, 400,
				"budgets[0].limit"},
			{"MintNoLimit", "POST", "/sdk-keys", caller.Secret, `{"budgets": [{"period": "day"}]}`, 400,
				"budgets[0].limit is required"},
			{"MintBadPeriod", "POST", "/sdk-keys", caller.Secret,
				`{"budgets": [{"limit": "1", "period": "hour"}]}`, 400, "budgets[0].period"},
			{"MintBadDuration", "POST", "/sdk-keys", caller.Secret, `{"expires_in": "soon"}`, 400,
				"expires_in"},
			{"MintBadTime", "POST", "/sdk-keys", caller.Secret, `{"expires_at": "tomorrow"}`, 400,
				"expires_at"},
			{"MintBothExpiries", "POST", "/sdk-keys", caller.Secret,
				`{"expires_in": "1h", "expires_at": "2030-05-06T13:00:00Z"}`, 400, "not both"},
			{"MintBadScope", "POST", "/sdk-keys", caller.Secret, `{"scopes": [""]}`, 400, "scopes[0]"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				rep := e.call(t, tc.method, tc.path, tc.key, tc.body).object(t, tc.status)
				require.Contains(t, rep["message"], tc.message)
			})
		}

		// Nothing was written: the caller's account still has only the caller.
		keys, err := e.svc.Keys(context.Background(), agentkey.KeyFilter{IncludeRevoked: true})
		require.NoError(t, err)
		require.Len(t, keys, 1)
	})
}

func TestSelfServeMe(t *testing.T) {
	t.Parallel()
	testdb.ForEach(t, func(t *testing.T, f testdb.Factory) {
		e := newSelfServeEnv(t, f, agentkey.SelfServeOptions{})
		a := e.signup(t, `{"email": "me@example.com"}`)

		var me struct {
			agentkey.Key
			Remaining *agentkey.Money `json:"remaining"`
		}
		e.call(t, http.MethodGet, "/sdk-keys/me", a.Secret, "").into(t, http.StatusOK, &me)
		require.Equal(t, a.ID, me.ID)
		require.Equal(t, agentkey.Dollar, *me.Remaining)

		// A key over budget can still see itself.
		_, err := e.svc.TrackUsage(context.Background(), a.Secret, agentkey.Dollar)
		require.NoError(t, err)
		e.call(t, http.MethodGet, "/sdk-keys/me", a.Secret, "").into(t, http.StatusOK, &me)
		require.Zero(t, *me.Remaining)

		rep := e.call(t, http.MethodGet, "/sdk-keys/me", "", "").object(t, http.StatusUnauthorized)
		require.Equal(t, "Missing API key", rep["error"])
		rep = e.call(t, http.MethodGet, "/sdk-keys/me", "ak_"+strings.Repeat("0", 48), "").
			object(t, http.StatusUnauthorized)
		require.Equal(t, "invalid_key", rep["error"])

		e.advance(25 * time.Hour)
		rep = e.call(t, http.MethodGet, "/sdk-keys/me", a.Secret, "").object(t, http.StatusUnauthorized)
		require.Equal(t, "expired", rep["reason"])
	})
}

func TestSelfServeMint(t *testing.T) {
	t.Parallel()
	testdb.ForEach(t, func(t *testing.T, f testdb.Factory) {
		e := newSelfServeEnv(t, f, agentkey.SelfServeOptions{})
		ctx := context.Background()

		// A caller with scopes, a monthly limit of its own, and an expiry.
		callerKey, err := e.svc.CreateKey(ctx, agentkey.CreateKeyParams{
			AccountID: "acct_team", UserID: "owner@example.com",
			Scopes: []string{"proxy.chat", "usage.read"},
			Budgets: []agentkey.BudgetSpec{
				{Limit: 10 * agentkey.Dollar, Period: agentkey.PeriodMonth},
			},
			ExpiresIn: 48 * time.Hour,
		})
		require.NoError(t, err)
		caller := callerKey.Secret
		callerExpiry := callerKey.Key.ExpiresAt

		mint := func(t *testing.T, body string) minted {
			t.Helper()
			var m minted
			e.call(t, http.MethodPost, "/sdk-keys", caller, body).into(t, http.StatusCreated, &m)
			return m
		}
		limits := func(k agentkey.Key) map[agentkey.Period]agentkey.Money {
			out := map[agentkey.Period]agentkey.Money{}
			for _, b := range k.Budgets {
				if !b.Unlimited {
					out[b.Period] = b.Limit
				}
			}
			return out
		}

		t.Run("InheritsEverything", func(t *testing.T) {
			m := mint(t, `{"name": "child"}`)
			require.Equal(t, "acct_team", m.AccountID)
			require.Equal(t, callerKey.Key.ID, m.DelegatedBy)
			require.Equal(t, "owner@example.com", m.UserID)
			require.Equal(t, []string{"proxy.chat", "usage.read"}, m.Scopes)
			monthly := map[agentkey.Period]agentkey.Money{agentkey.PeriodMonth: 10 * agentkey.Dollar}
			require.Equal(t, monthly, limits(m.Key))
			require.Equal(t, callerExpiry, m.ExpiresAt)
		})

		t.Run("Narrower", func(t *testing.T) {
			m := mint(t, `{"scopes": ["usage.read"], "budgets": [{"limit": "2", "period": "day"}],
				"expires_in": "1h"}`)
			require.Equal(t, []string{"usage.read"}, m.Scopes)
			require.Equal(t, map[agentkey.Period]agentkey.Money{
				agentkey.PeriodDay: 2 * agentkey.Dollar, agentkey.PeriodMonth: 10 * agentkey.Dollar,
			}, limits(m.Key), "the caller's monthly limit comes along")
			require.Equal(t, e.clock().Add(time.Hour), m.ExpiresAt)

			none := mint(t, `{"scopes": []}`)
			require.Equal(t, []string{}, none.Scopes)
		})

		for _, tc := range []struct{ name, body, message string }{
			{"ScopeNotHeld", `{"scopes": ["proxy.chat", "admin"]}`, `scopes[1]: "admin"`},
			{"BudgetAboveCaller", `{"budgets": [{"limit": "10.000001", "period": "month"}]}`,
				"budgets[0].limit"},
			{"ExpiryAfterCaller", `{"expires_in": "3d"}`, "after the calling key's"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				rep := e.call(t, http.MethodPost, "/sdk-keys", caller, tc.body).
					object(t, http.StatusForbidden)
				require.Equal(t, "forbidden", rep["error"])
				require.Contains(t, rep["message"], tc.message)
			})
		}

		t.Run("UnlimitedCallerMayGrantAnything", func(t *testing.T) {
			root, err := e.svc.CreateKey(ctx, agentkey.CreateKeyParams{AccountID: "acct_root"})
			require.NoError(t, err)
			var m minted
			e.call(t, http.MethodPost, "/sdk-keys", root.Secret,
				`{"scopes": ["admin"], "budgets": [{"limit": "1000"}], "expires_in": "1mo"}`).
				into(t, http.StatusCreated, &m)
			require.Equal(t, []string{"admin"}, m.Scopes)
			require.Equal(t, "acct_root", m.AccountID)
		})

		t.Run("SignupKeysShareTheirAccountLimit", func(t *testing.T) {
			s := e.signup(t, `{}`)
			var child minted
			e.call(t, http.MethodPost, "/sdk-keys", s.Secret, `{}`).into(t, http.StatusCreated, &child)
			require.Equal(t, s.AccountID, child.AccountID)

			res, err := e.svc.TrackUsage(ctx, child.Secret, 80*agentkey.Cent)
			require.NoError(t, err)
			require.True(t, res.OK())
			res, err = e.svc.TrackUsage(ctx, s.Secret, 30*agentkey.Cent)
			require.NoError(t, err)
			require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason,
				"minting must not multiply the limit")

			// A signup key holds no scope, so it can grant none.
			rep := e.call(t, http.MethodPost, "/sdk-keys", s.Secret, `{"scopes": ["proxy.chat"]}`).
				object(t, http.StatusForbidden)
			require.Contains(t, rep["message"], "scopes[0]")
		})

		t.Run("RevokedCallerRefused", func(t *testing.T) {
			k, err := e.svc.CreateKey(ctx, agentkey.CreateKeyParams{AccountID: "acct_team"})
			require.NoError(t, err)
			_, err = e.svc.Revoke(ctx, k.Key.ID, "")
			require.NoError(t, err)
			rep := e.call(t, http.MethodPost, "/sdk-keys", k.Secret, `{}`).
				object(t, http.StatusUnauthorized)
			require.Equal(t, "revoked", rep["reason"])
		})
	})
}

func TestSelfServeRevoke(t *testing.T) {
	t.Parallel()
	testdb.ForEach(t, func(t *testing.T, f testdb.Factory) {
		e := newSelfServeEnv(t, f, agentkey.SelfServeOptions{})
		a := e.signup(t, `{}`)
		b := e.signup(t, `{}`)
		var child minted
		e.call(t, http.MethodPost, "/sdk-keys", a.Secret, `{}`).into(t, http.StatusCreated, &child)

		// Another account's key is not found, and stays valid.
		rep := e.call(t, http.MethodDelete, "/sdk-keys/"+b.ID, a.Secret, "").
			object(t, http.StatusNotFound)
		require.Equal(t, "not_found", rep["error"])
		v, err := e.svc.Validate(context.Background(), b.Secret)
		require.NoError(t, err)
		require.True(t, v.OK())
		e.call(t, http.MethodDelete, "/sdk-keys/key_nope", a.Secret, "").object(t, http.StatusNotFound)

		var k agentkey.Key
		e.call(t, http.MethodDelete, "/sdk-keys/"+child.ID, a.Secret, "").into(t, http.StatusOK, &k)
		require.False(t, k.RevokedAt.IsZero())
		v, err = e.svc.Validate(context.Background(), child.Secret)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonRevoked, v.Reason)

		// A key may revoke itself, and then can do nothing more.
		e.call(t, http.MethodDelete, "/sdk-keys/"+a.ID, a.Secret, "").object(t, http.StatusOK)
		e.call(t, http.MethodGet, "/sdk-keys/me", a.Secret, "").object(t, http.StatusUnauthorized)
		e.call(t, http.MethodDelete, "/sdk-keys/"+a.ID, "", "").object(t, http.StatusUnauthorized)
	})
}

func TestSelfServeDisabled(t *testing.T) {
	t.Parallel()
	testdb.ForEach(t, func(t *testing.T, f testdb.Factory) {
		e := newSelfServeEnv(t, f, agentkey.SelfServeOptions{Disabled: true})
		e.call(t, http.MethodPost, "/signup", "", `{}`).object(t, http.StatusNotFound)
		e.call(t, http.MethodGet, "/sdk-keys/me", "", "").object(t, http.StatusNotFound)
	})
}
