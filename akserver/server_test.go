package akserver_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akserver"
	"github.com/agentkey-go/agentkey/internal/testdb"
)

func TestNewValidates(t *testing.T) {
	_, err := akserver.New(akserver.Config{})
	require.ErrorContains(t, err, "Service")

	store, _ := testdb.SQLite(t)
	svc, err := agentkey.New(store, agentkey.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Close(context.Background()) })

	_, err = akserver.New(akserver.Config{Service: svc, MaxBodyBytes: -1})
	require.ErrorContains(t, err, "MaxBodyBytes")
	_, err = akserver.New(akserver.Config{Service: svc,
		SelfServe: agentkey.SelfServeOptions{SignupScopes: []string{"bad scope"}}})
	require.ErrorContains(t, err, "SignupScopes")

	reg := prometheus.NewRegistry()
	_, err = akserver.New(akserver.Config{Service: svc, Registry: reg})
	require.NoError(t, err)
	_, err = akserver.New(akserver.Config{Service: svc, Registry: reg})
	require.ErrorContains(t, err, "metrics", "two servers on one registry")
}

func TestAdminTokens(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		ctx := context.Background()
		store, _ := sf.Open(t)

		// Many processes starting at once make one token between them.
		var (
			mu     sync.Mutex
			tokens []string
			errs   []error
			wg     sync.WaitGroup
		)
		for range 8 {
			wg.Go(func() {
				tok, created, err := akserver.EnsureAdminToken(ctx, store)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					errs = append(errs, err)
				case created:
					tokens = append(tokens, tok)
				case tok != "":
					errs = append(errs, errors.New("a token not created was returned"))
				}
			})
		}
		wg.Wait()
		require.Empty(t, errs)
		require.Len(t, tokens, 1)
		require.Regexp(t, `^akadm_[0-9a-f]{48}$`, tokens[0])

		tok, created, err := akserver.EnsureAdminToken(ctx, store)
		require.NoError(t, err)
		require.False(t, created)
		require.Empty(t, tok)

		// Only hashes are stored.
		stored, err := store.Setting(ctx, "akserver.admin_token.sha256")
		require.NoError(t, err)
		require.NotContains(t, stored, strings.TrimPrefix(tokens[0], "akadm_"))
		require.Len(t, stored, 64)
	})
}

func TestServiceTokenFunctions(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		ctx := context.Background()
		e := newEnv(t, sf, envOptions{})
		body := obj{"credential": "ak_" + randomHex(24)}

		tok, err := akserver.CreateServiceToken(ctx, e.store, "worker")
		require.NoError(t, err)
		_, err = akserver.CreateServiceToken(ctx, e.store, "worker")
		require.ErrorIs(t, err, agentkey.ErrConflict)
		_, err = akserver.CreateServiceToken(ctx, e.store, "")
		require.ErrorIs(t, err, agentkey.ErrInvalidArgument)
		e.call(t, "POST", "/v1/authorize", tok, body).object(t, http.StatusOK)

		// Revoked by another process (the CLI): this server has the token
		// cached and keeps accepting it for up to 30 seconds, as documented;
		// a server without the cache entry refuses it at once.
		require.NoError(t, akserver.RevokeServiceToken(ctx, e.store, "worker"))
		err = akserver.RevokeServiceToken(ctx, e.store, "worker")
		require.ErrorIs(t, err, agentkey.ErrNotFound)
		e.call(t, "POST", "/v1/authorize", tok, body).object(t, http.StatusOK)

		fresh, err := akserver.New(akserver.Config{Service: e.svc,
			Registry: prometheus.NewRegistry()})
		require.NoError(t, err)
		req, err := http.NewRequest("POST", "/v1/authorize", strings.NewReader(`{}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		fresh.Handler().ServeHTTP(rec, req)
		require.Equal(t, http.StatusUnauthorized, rec.Code)

		// An old token of a name given a new one stays refused.
		tok2, err := akserver.CreateServiceToken(ctx, e.store, "worker")
		require.NoError(t, err)
		require.NotEqual(t, tok, tok2)
		rec = httptest.NewRecorder()
		fresh.Handler().ServeHTTP(rec, req)
		require.Equal(t, http.StatusUnauthorized, rec.Code)
	})
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t, storeFactories[0], envOptions{})
	rep := e.call(t, "GET", "/healthz", "", nil).object(t, http.StatusOK)
	require.Equal(t, "test", rep["version"])
	e.call(t, "GET", "/readyz", "", nil).object(t, http.StatusOK)

	ck := e.createKey(t, obj{"account_id": "acct_1",
		"budgets": []obj{{"limit": "1"}}})
	d := e.authorize(t, obj{"credential": ck.Secret, "estimate": "0.5"})
	e.decide(t, "/settle", obj{"hold_id": d.Hold.ID, "amount": "0.25"}).object(t, http.StatusOK)
	e.charge(t, obj{"key_id": ck.ID, "amount": "0.5"})
	e.charge(t, obj{"key_id": ck.ID, "amount": "0.5"}) // refused
	e.authorize(t, obj{"credential": "ak_" + randomHex(24)})

	// Open holds are those of the database: one made through this server,
	// one made elsewhere, as another server sharing the database would.
	other := e.createKey(t, obj{"account_id": "acct_1"})
	e.authorize(t, obj{"credential": other.Secret, "estimate": "0.2"})
	_, err := e.svc.Reserve(context.Background(), other.ID, 10*agentkey.Cent)
	require.NoError(t, err)

	metrics := string(e.call(t, "GET", "/metrics", "", nil).body)
	for _, want := range []string{
		`agentkey_decisions_total{endpoint="authorize",outcome="allow",reason=""} 2`,
		`agentkey_decisions_total{endpoint="authorize",outcome="deny",reason="invalid_key"} 1`,
		`agentkey_decisions_total{endpoint="charge",outcome="deny",reason="budget_exceeded"} 1`,
		`agentkey_charged_microunits_total 750000`,
		`agentkey_holds_opened_total 2`,
		`agentkey_holds_closed_total{outcome="settled"} 1`,
		`agentkey_holds_open 2`,
		`agentkey_holds_open_microunits 300000`,
		`agentkey_http_request_duration_seconds_count{route="POST /v1/authorize"} 3`,
		`agentkey_http_requests_total{code="200",route="POST /v1/charge"} 2`,
		`agentkey_build_info{version="test"} 1`,
	} {
		require.True(t, strings.Contains(metrics, want), "metrics lack %s", want)
	}
	require.False(t, strings.Contains(metrics, ck.Secret))

	// The default registry has the Go runtime and process collectors.
	srv, err := akserver.New(akserver.Config{Service: e.svc})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.True(t, strings.Contains(rec.Body.String(), "go_goroutines"))
	require.True(t, strings.Contains(rec.Body.String(), "process_cpu_seconds_total"))
}

// TestChunkedBodyTooLarge refuses a body without a declared length once it
// passes the limit.
func TestChunkedBodyTooLarge(t *testing.T) {
	e := newEnv(t, storeFactories[0], envOptions{maxBodyBytes: 1024})
	body := io.MultiReader(strings.NewReader(`{"name": "`),
		strings.NewReader(strings.Repeat("x", 4096)), strings.NewReader(`"}`))
	req, err := http.NewRequest("POST", e.ts.URL+"/admin/v1/accounts", io.NopCloser(body))
	require.NoError(t, err)
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+e.admin)
	res, err := e.client.Do(req)
	if err == nil {
		defer res.Body.Close()
		require.Equal(t, http.StatusRequestEntityTooLarge, res.StatusCode)
	} else {
		// The server may close the connection before the client has sent
		// everything; that is a refusal too.
		msg := err.Error()
		require.True(t, errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(msg, "reset") ||
			strings.Contains(msg, "broken pipe"), msg)
	}
	accounts, err := e.svc.Accounts(context.Background(), "", "", 10)
	require.NoError(t, err)
	require.Empty(t, accounts)
}
