package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

func testMiddleware(t *testing.T, h Harness) {
	// serve runs one request through the middleware with scope proxy.chat and
	// a handler that charges the cost in its "cost" header.
	serve := func(e *env, auth string) (*httptest.ResponseRecorder, map[string]any) {
		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			k, ok := agentkey.KeyFromContext(r.Context())
			if !ok {
				http.Error(w, "no key", http.StatusInternalServerError)
				return
			}
			cost, err := agentkey.ParseMoney(r.Header.Get("cost"))
			if err != nil {
				cost = 0
			}
			res, err := agentkey.Charge(r.Context(), cost)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"key_id": k.ID, "charged": res.Charged, "reason": res.Reason})
		})
		mw := e.svc.Middleware(agentkey.MiddlewareOptions{Scope: "proxy.chat"})(handler)

		req := httptest.NewRequest(http.MethodPost, "/api/chat", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		req.Header.Set("cost", "0.25")
		rec := httptest.NewRecorder()
		mw.ServeHTTP(rec, req)
		var body map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		return rec, body
	}

	t.Run("AdmitsAndChargesInOneLine", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth, "proxy.chat")
		rec, body := serve(e, "Bearer "+ck.Secret)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.Equal(t, ck.Key.ID, body["key_id"])
		require.Equal(t, "0.25", body["charged"])
		require.Equal(t, 25*agentkey.Cent, e.used(t, ck.Secret))

		rec, _ = serve(e, "bearer   "+ck.Secret)
		require.Equal(t, http.StatusOK, rec.Code, "the scheme is case-insensitive")
	})

	t.Run("MissingKey", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		for _, auth := range []string{"", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token ak_x",
			"Bearer " + strings.Repeat("a", 5000), "Bearer a\x00b"} {
			rec, body := serve(e, auth)
			require.Equal(t, http.StatusUnauthorized, rec.Code, auth)
			require.Equal(t, "Missing API key", body["error"])
			require.Equal(t, "Bearer", rec.Header().Get("WWW-Authenticate"))
		}
	})

	t.Run("InvalidRevokedExpired", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		rec, body := serve(e, "Bearer ak_nope")
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		require.Equal(t, "invalid_key", body["error"])
		require.Contains(t, rec.Header().Get("WWW-Authenticate"), "invalid_token")

		revoked := e.mustCreate(t, -1, "", "proxy.chat")
		_, err := e.svc.Revoke(e.ctx, revoked.Key.ID, "")
		require.NoError(t, err)
		rec, body = serve(e, "Bearer "+revoked.Secret)
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		require.Equal(t, "invalid_key", body["error"])
		require.Equal(t, "revoked", body["reason"])

		expiring, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "a", ExpiresIn: time.Minute})
		require.NoError(t, err)
		e.clock.Advance(time.Hour)
		rec, body = serve(e, "Bearer "+expiring.Secret)
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		require.Equal(t, "expired", body["reason"])
	})

	t.Run("OverBudgetWithRetryAfter", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, 25*agentkey.Cent, agentkey.PeriodDay, "proxy.chat")
		rec, _ := serve(e, "Bearer "+ck.Secret)
		require.Equal(t, http.StatusOK, rec.Code)

		rec, body := serve(e, "Bearer "+ck.Secret)
		require.Equal(t, http.StatusTooManyRequests, rec.Code)
		require.Equal(t, "budget_exceeded", body["error"])
		require.Equal(t, "50400", rec.Header().Get("Retry-After"), "14 hours to midnight UTC")
		budget := body["budget"].(map[string]any)
		require.Equal(t, ck.Key.Budgets[0].ID, budget["id"])
		require.Equal(t, "0.25", budget["used"])
	})

	t.Run("LifetimeBudgetHasNoRetryAfter", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, 0, agentkey.PeriodNone, "proxy.chat")
		rec, _ := serve(e, "Bearer "+ck.Secret)
		require.Equal(t, http.StatusTooManyRequests, rec.Code)
		require.Empty(t, rec.Header().Get("Retry-After"))
	})

	t.Run("InsufficientScope", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth, "usage.read")
		rec, body := serve(e, "Bearer "+ck.Secret)
		require.Equal(t, http.StatusForbidden, rec.Code)
		require.Equal(t, "insufficient_scope", body["error"])
		require.Equal(t, "proxy.chat", body["required"])
		require.Equal(t, []any{"usage.read"}, body["available"])
		require.Zero(t, e.used(t, ck.Secret))
	})

	t.Run("StoreFaultFailsClosed", func(t *testing.T) {
		t.Parallel()
		e := startOn(t, &faultyStore{Store: h.New(t)}, agentkey.Config{})
		rec, body := serve(e, "Bearer ak_"+strings.Repeat("1", 48))
		require.Equal(t, http.StatusInternalServerError, rec.Code)
		require.Equal(t, "auth_unavailable", body["error"])
		require.NotContains(t, rec.Body.String(), "connection refused", "faults are not shown to clients")
	})

	t.Run("ChargeWithoutMiddlewareIsAnError", func(t *testing.T) {
		t.Parallel()
		_, err := agentkey.Charge(context.Background(), agentkey.Cent)
		require.ErrorIs(t, err, agentkey.ErrNoKey)
	})
}

// faultyStore fails every key lookup as a store that lost its database would.
type faultyStore struct{ agentkey.Store }

func (faultyStore) Key(context.Context, agentkey.KeyQuery) (agentkey.Key, error) {
	return agentkey.Key{}, errors.New("dial tcp 127.0.0.1:5432: connection refused")
}
