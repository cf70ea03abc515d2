package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/aksqlite"
)

func TestQuickstart(t *testing.T) {
	ctx := context.Background()
	dbPath := filepath.Join(t.TempDir(), "quickstart.db")
	env := func(string) string { return "" }

	// -new-key prints a key with a 10-cent monthly budget and exits.
	var out bytes.Buffer
	require.NoError(t, run(ctx, []string{"-db", dbPath, "-new-key", "0.10"}, &out, env))
	secret := strings.TrimSpace(out.String())
	require.True(t, strings.HasPrefix(secret, "ak_"), out.String())

	store, err := aksqlite.Open(dbPath, aksqlite.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	svc, err := agentkey.New(store, agentkey.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { svc.Close(ctx) })
	srv := httptest.NewServer(newHandler(svc, false))
	t.Cleanup(srv.Close)

	call := func(query, key string) (int, map[string]any) {
		return post(t, srv.URL, query, key)
	}

	t.Run("ChargesTheCostInCents", func(t *testing.T) {
		code, body := call("?cost=2.5&work_ms=5", secret)
		require.Equal(t, http.StatusOK, code, body)
		require.Equal(t, "0.025", body["charged"])
		require.Equal(t, "0.075", body["remaining"])

		code, body = call("", secret)
		require.Equal(t, http.StatusOK, code, body)
		require.Equal(t, "0.01", body["charged"], "the default cost is one cent")
	})

	t.Run("BadParametersAreRefused", func(t *testing.T) {
		for _, q := range []string{"?cost=-1", "?cost=abc", "?cost=NaN", "?cost=0.00001", "?work_ms=-5",
			"?work_ms=99999999"} {
			code, body := call(q, secret)
			require.Equal(t, http.StatusBadRequest, code, q)
			require.NotEmpty(t, body["error"])
		}
	})

	t.Run("MiddlewareStatuses", func(t *testing.T) {
		code, body := call("", "")
		require.Equal(t, http.StatusUnauthorized, code)
		require.Equal(t, "Missing API key", body["error"])

		code, body = call("", "ak_"+strings.Repeat("0", 48))
		require.Equal(t, http.StatusUnauthorized, code)
		require.Equal(t, "invalid_key", body["error"])

		other, err := svc.CreateKey(ctx, agentkey.CreateKeyParams{AccountID: "a", Scopes: []string{"usage.read"}})
		require.NoError(t, err)
		code, body = call("", other.Secret)
		require.Equal(t, http.StatusForbidden, code)
		require.Equal(t, "insufficient_scope", body["error"])
	})

	t.Run("OverBudget", func(t *testing.T) {
		// 3.5 cents of 10 are used; a 7-cent call does not fit.
		code, body := call("?cost=7", secret)
		require.Equal(t, http.StatusTooManyRequests, code, body)
		require.Equal(t, "budget_exceeded", body["error"])

		code, _ = call("?cost=6.5", secret)
		require.Equal(t, http.StatusOK, code)
		code, body = call("?cost=0.0001", secret)
		require.Equal(t, http.StatusTooManyRequests, code, "the budget is spent: the middleware refuses")
		require.Equal(t, "budget_exceeded", body["error"])
	})
}

func TestQuickstartModes(t *testing.T) {
	ctx := context.Background()
	store, err := aksqlite.Open(filepath.Join(t.TempDir(), "modes.db"), aksqlite.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	require.NoError(t, store.Migrate(ctx))
	svc, err := agentkey.New(store, agentkey.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { svc.Close(ctx) })

	newKey := func(limit agentkey.Money) string {
		ck, err := svc.CreateKey(ctx, agentkey.CreateKeyParams{AccountID: "a", Scopes: []string{"proxy.chat"},
			Budgets: []agentkey.BudgetSpec{{Limit: limit, Period: agentkey.PeriodMonth}}})
		require.NoError(t, err)
		return ck.Secret
	}

	t.Run("HoldsMaxCost", func(t *testing.T) {
		srv := httptest.NewServer(newHandler(svc, false))
		t.Cleanup(srv.Close)
		key := newKey(10 * agentkey.Cent)

		code, body := post(t, srv.URL, "?max_cost=abc", key)
		require.Equal(t, http.StatusBadRequest, code)
		require.Equal(t, "invalid_estimate", body["error"])

		// max_cost is what must fit before the work; cost is what is charged.
		code, body = post(t, srv.URL, "?cost=2&max_cost=12", key)
		require.Equal(t, http.StatusTooManyRequests, code, body)
		code, body = post(t, srv.URL, "?cost=2&max_cost=8", key)
		require.Equal(t, http.StatusOK, code, body)
		require.Equal(t, "0.02", body["charged"])

		// A cost above max_cost is charged as far as the budget has room.
		code, body = post(t, srv.URL, "?cost=9&max_cost=1", key)
		require.Equal(t, http.StatusOK, code, body)
		require.Equal(t, "0.08", body["charged"])
		require.Equal(t, "0.01", body["overrun"])
	})

	t.Run("ChargeAfterGivesWorkAway", func(t *testing.T) {
		srv := httptest.NewServer(newHandler(svc, true))
		t.Cleanup(srv.Close)
		key := newKey(10 * agentkey.Cent)

		code, body := post(t, srv.URL, "?cost=8", key)
		require.Equal(t, http.StatusOK, code, body)
		// Budget is left, so the request is admitted; the work runs, and its
		// charge does not fit: this is the gap holds close.
		code, body = post(t, srv.URL, "?cost=3", key)
		require.Equal(t, http.StatusTooManyRequests, code, body)
		require.Equal(t, "budget_exceeded", body["error"])
	})
}

func post(t *testing.T, url, query, key string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/api/chat"+query, nil)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return resp.StatusCode, body
}

// TestClientLeavingReleasesHold cancels a request during its work: the hold
// the middleware made is given back and nothing is charged. The handler used
// to return without a word, so the middleware saw no error status and
// settled the hold at the whole estimate.
func TestClientLeavingReleasesHold(t *testing.T) {
	ctx := context.Background()
	store, err := aksqlite.Open(filepath.Join(t.TempDir(), "leave.db"), aksqlite.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	require.NoError(t, store.Migrate(ctx))
	svc, err := agentkey.New(store, agentkey.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { svc.Close(ctx) })
	srv := httptest.NewServer(newHandler(svc, false))
	t.Cleanup(srv.Close)

	ck, err := svc.CreateKey(ctx, agentkey.CreateKeyParams{
		AccountID: "a", Scopes: []string{"proxy.chat"},
		Budgets: []agentkey.BudgetSpec{{Limit: 10 * agentkey.Cent, Period: agentkey.PeriodMonth}},
	})
	require.NoError(t, err)
	budget := func() (agentkey.Budget, error) {
		v, err := svc.ValidateByID(ctx, ck.Key.ID)
		if err != nil {
			return agentkey.Budget{}, err
		}
		return v.Key.Budgets[0], nil
	}

	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		// The work would take a minute; the client leaves long before.
		req, err := http.NewRequestWithContext(reqCtx, http.MethodPost,
			srv.URL+"/api/chat?cost=2&work_ms=60000", nil)
		if err == nil {
			req.Header.Set("Authorization", "Bearer "+ck.Secret)
			var res *http.Response
			if res, err = http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
		}
		done <- err
	}()

	require.Eventually(t, func() bool {
		b, err := budget()
		return err == nil && b.Held == 2*agentkey.Cent
	}, 30*time.Second, 5*time.Millisecond, "the estimate is held during the work")
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	holds := func() ([]agentkey.Hold, error) {
		return svc.Holds(ctx, agentkey.HoldFilter{KeyID: ck.Key.ID})
	}
	require.Eventually(t, func() bool {
		hs, err := holds()
		return err == nil && len(hs) == 1 && hs[0].State != agentkey.HoldOpen
	}, 30*time.Second, 5*time.Millisecond, "the hold is closed once the handler returns")
	hs, err := holds()
	require.NoError(t, err)
	require.Equal(t, agentkey.HoldReleased, hs[0].State)
	b, err := budget()
	require.NoError(t, err)
	require.Zero(t, b.Used, "nothing billed")
	require.Zero(t, b.Held, "the hold is given back")
}
