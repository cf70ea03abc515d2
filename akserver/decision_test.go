package akserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
	"github.com/agentkey-go/agentkey/internal/clerkemu"
)

func TestAuthorize(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		e := newEnv(t, sf, envOptions{})
		ck := e.createKey(t, obj{
			"account_id": "acct_1", "scopes": []string{"proxy.chat"},
			"budgets": []obj{{"limit": "1", "period": "day"}},
		})

		t.Run("Allowed", func(t *testing.T) {
			d := e.authorize(t, obj{"credential": ck.Secret, "scope": "proxy.chat"})
			require.True(t, d.Allow)
			require.Equal(t, http.StatusOK, d.Status)
			require.Equal(t, ck.ID, d.Key.ID)
			require.Nil(t, d.Hold)
		})

		t.Run("MissingCredential", func(t *testing.T) {
			d := e.authorize(t, obj{"scope": "proxy.chat"})
			require.False(t, d.Allow)
			require.Equal(t, http.StatusUnauthorized, d.Status)
			require.Equal(t, "Missing API key", d.Error)
		})

		t.Run("UnknownKey", func(t *testing.T) {
			d := e.authorize(t, obj{"credential": "ak_" + randomHex(24)})
			require.False(t, d.Allow)
			require.Equal(t, http.StatusUnauthorized, d.Status)
			require.Equal(t, "invalid_key", d.Error)
			require.Nil(t, d.Key)
		})

		t.Run("InsufficientScope", func(t *testing.T) {
			d := e.authorize(t, obj{"credential": ck.Secret, "scope": "billing.read"})
			require.False(t, d.Allow)
			require.Equal(t, http.StatusForbidden, d.Status)
			require.Equal(t, "insufficient_scope", d.Error)
			require.Equal(t, "billing.read", d.Required)
			require.Equal(t, []string{"proxy.chat"}, d.Available)
		})

		t.Run("EstimateHeld", func(t *testing.T) {
			d := e.authorize(t, obj{"credential": ck.Secret, "estimate": "0.25",
				"hold_ttl": "10m", "metadata": map[string]string{"model": "small"}})
			require.True(t, d.Allow)
			require.NotNil(t, d.Hold)
			require.Equal(t, 25*agentkey.Cent, d.Hold.Amount)
			require.Equal(t, agentkey.HoldOpen, d.Hold.State)
			require.WithinDuration(t, time.Now().Add(10*time.Minute), d.Hold.ExpiresAt, time.Minute)
			require.Equal(t, 25*agentkey.Cent, d.Key.Budgets[0].Held)

			var res agentkey.CloseResult
			e.decide(t, "/settle", obj{"hold_id": d.Hold.ID, "amount": "0.1"}).
				into(t, http.StatusOK, &res)
			require.Equal(t, 10*agentkey.Cent, res.Charged)
			require.Equal(t, 15*agentkey.Cent, res.Released)
			require.Equal(t, agentkey.HoldSettled, res.Hold.State)

			// Settling again answers the first result.
			var again agentkey.CloseResult
			e.decide(t, "/settle", obj{"hold_id": d.Hold.ID, "amount": "0.2"}).
				into(t, http.StatusOK, &again)
			require.True(t, again.Replayed)
			require.Equal(t, 10*agentkey.Cent, again.Charged)

			// Releasing a settled hold is a conflict.
			rep := e.decide(t, "/release", obj{"hold_id": d.Hold.ID}).
				object(t, http.StatusConflict)
			require.Equal(t, "hold_closed", rep["error"])
		})

		t.Run("Released", func(t *testing.T) {
			d := e.authorize(t, obj{"credential": ck.Secret, "estimate": "0.5"})
			require.True(t, d.Allow)
			var res agentkey.CloseResult
			e.decide(t, "/release", obj{"hold_id": d.Hold.ID}).into(t, http.StatusOK, &res)
			require.Equal(t, agentkey.HoldReleased, res.Hold.State)
			require.Equal(t, 50*agentkey.Cent, res.Released)
		})

		t.Run("UnknownHold", func(t *testing.T) {
			rep := e.decide(t, "/settle", obj{"hold_id": "hold_nope", "amount": "1"}).
				object(t, http.StatusNotFound)
			require.Equal(t, "not_found", rep["error"])
		})

		t.Run("OverBudgetRefused", func(t *testing.T) {
			// 0.1 of 1 is used; 0.95 does not fit.
			d := e.authorize(t, obj{"credential": ck.Secret, "estimate": "0.95"})
			require.False(t, d.Allow)
			require.Equal(t, http.StatusTooManyRequests, d.Status)
			require.Equal(t, "budget_exceeded", d.Error)
			require.NotNil(t, d.Budget)
			require.Equal(t, agentkey.Dollar, d.Budget.Limit)
			require.Positive(t, d.RetryAfter)
			require.LessOrEqual(t, d.RetryAfter, int64(24*3600))
		})

		t.Run("IdempotentHold", func(t *testing.T) {
			body := obj{"credential": ck.Secret, "estimate": "0.01", "idempotency_key": "req-1"}
			first := e.authorize(t, body)
			second := e.authorize(t, body)
			require.True(t, first.Allow)
			require.True(t, second.Replayed)
			require.Equal(t, first.Hold.ID, second.Hold.ID)
		})

		t.Run("RevokedKey", func(t *testing.T) {
			other := e.createKey(t, obj{"account_id": "acct_1"})
			e.adminCall(t, "POST", "/keys/"+other.ID+"/revoke", nil).object(t, http.StatusOK)
			d := e.authorize(t, obj{"credential": other.Secret})
			require.False(t, d.Allow)
			require.Equal(t, http.StatusUnauthorized, d.Status)
			require.Equal(t, "invalid_key", d.Error)
			require.Equal(t, agentkey.ReasonRevoked, d.Reason)
		})

		report, err := e.svc.Audit(context.Background())
		require.NoError(t, err)
		require.True(t, report.Clean(), "%+v", report.Drifts)
	})
}

func TestCharge(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		e := newEnv(t, sf, envOptions{})
		ck := e.createKey(t, obj{
			"account_id": "acct_1", "budgets": []obj{{"limit": "1", "period": "month"}},
		})

		t.Run("ByKeyID", func(t *testing.T) {
			d := e.charge(t, obj{"key_id": ck.ID, "amount": "0.0004",
				"metadata": map[string]string{"request": "r1"}})
			require.True(t, d.Allow)
			require.Equal(t, agentkey.Money(400), *d.Charged)
			require.NotEmpty(t, d.OpID)
			require.Equal(t, agentkey.Money(400), d.Key.Budgets[0].Used)
		})

		t.Run("ByCredential", func(t *testing.T) {
			d := e.charge(t, obj{"credential": ck.Secret, "amount": "0.5"})
			require.True(t, d.Allow)
			require.Equal(t, 50*agentkey.Cent, *d.Charged)
		})

		t.Run("Idempotent", func(t *testing.T) {
			body := obj{"key_id": ck.ID, "amount": "0.1", "idempotency_key": "charge-1"}
			first := e.charge(t, body)
			second := e.charge(t, body)
			require.False(t, first.Replayed)
			require.True(t, second.Replayed)
			require.Equal(t, first.OpID, second.OpID)

			// The same idempotency key with another amount is refused, and
			// the first charge stands.
			rep := e.decide(t, "/charge", obj{"key_id": ck.ID, "amount": "0.2",
				"idempotency_key": "charge-1"}).object(t, http.StatusConflict)
			require.Equal(t, "idempotency_key_reused", rep["error"])
			held := e.authorize(t, obj{"credential": ck.Secret, "estimate": "0.01",
				"idempotency_key": "hold-1"})
			require.True(t, held.Allow)
			rep = e.decide(t, "/authorize", obj{"credential": ck.Secret, "estimate": "0.02",
				"idempotency_key": "hold-1"}).object(t, http.StatusConflict)
			require.Equal(t, "idempotency_key_reused", rep["error"])
			_, err := e.svc.Release(context.Background(), held.Hold.ID)
			require.NoError(t, err)
		})

		t.Run("OverBudgetRefused", func(t *testing.T) {
			d := e.charge(t, obj{"key_id": ck.ID, "amount": "0.5"})
			require.False(t, d.Allow)
			require.Equal(t, http.StatusTooManyRequests, d.Status)
			require.Equal(t, "budget_exceeded", d.Error)
			require.Equal(t, ck.Budgets[0].ID, d.Budget.ID)
		})

		t.Run("UnknownKey", func(t *testing.T) {
			d := e.charge(t, obj{"key_id": "key_nope", "amount": "0.5"})
			require.False(t, d.Allow)
			require.Equal(t, http.StatusUnauthorized, d.Status)
		})

		entries, err := e.svc.Ledger(context.Background(), agentkey.LedgerFilter{KeyID: ck.ID})
		require.NoError(t, err)
		var sum agentkey.Money
		for _, en := range entries {
			if en.Kind.CountsAsUsed() {
				sum += en.Amount
			}
		}
		require.Equal(t, 400+50*agentkey.Cent+10*agentkey.Cent, sum)
		require.Equal(t, agentkey.EntryBudgetSet, entries[0].Kind)
		require.Equal(t, map[string]string{"request": "r1"}, entries[1].Metadata)
	})
}

// TestConcurrentHoldsNeverOverspend authorizes and settles from many
// clients at once on one key: no more holds are granted than the budget
// covers, and the ledger agrees with the budget afterwards. The workers
// report what went wrong rather than failing the test themselves, which only
// the test's goroutine may do.
func TestConcurrentHoldsNeverOverspend(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		e := newEnv(t, sf, envOptions{})
		ck := e.createKey(t, obj{
			"account_id": "acct_1", "budgets": []obj{{"limit": "1", "period": "none"}},
		})

		var (
			allowed atomic.Int64
			wg      sync.WaitGroup
			errs    = make(chan error, 16*5)
		)
		for range 16 {
			wg.Go(func() {
				for range 5 {
					if err := e.holdAndSettle(ck.Secret, &allowed); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}

		require.Equal(t, int64(10), allowed.Load())
		var k agentkey.Key
		e.adminCall(t, "GET", "/keys/"+ck.ID, nil).into(t, http.StatusOK, &k)
		require.Equal(t, agentkey.Dollar, k.Budgets[0].Used)
		require.Zero(t, k.Budgets[0].Held)
		audit := e.adminCall(t, "GET", "/audit", nil).object(t, http.StatusOK)
		require.Equal(t, true, audit["clean"])
	})
}

// holdAndSettle holds 0.1 on a key and settles it, counting it in allowed,
// or checks that the hold was refused for the budget.
func (e *env) holdAndSettle(secret string, allowed *atomic.Int64) error {
	rep, err := e.do(http.MethodPost, "/v1/authorize", e.service,
		obj{"credential": secret, "estimate": "0.1"})
	if err != nil {
		return err
	}
	var d decision
	if rep.status != http.StatusOK {
		return fmt.Errorf("authorize: status %d: %s", rep.status, rep.body)
	}
	if err := json.Unmarshal(rep.body, &d); err != nil {
		return fmt.Errorf("authorize: %w: %s", err, rep.body)
	}
	if !d.Allow {
		if d.Status != http.StatusTooManyRequests {
			return fmt.Errorf("authorize refused with %d, want 429: %s", d.Status, rep.body)
		}
		return nil
	}
	allowed.Add(1)

	rep, err = e.do(http.MethodPost, "/v1/settle", e.service,
		obj{"hold_id": d.Hold.ID, "amount": "0.1"})
	if err != nil {
		return err
	}
	if rep.status != http.StatusOK {
		return fmt.Errorf("settle: status %d: %s", rep.status, rep.body)
	}
	return nil
}

func TestServiceToken(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		e := newEnv(t, sf, envOptions{})
		body := obj{"credential": "ak_" + randomHex(24)}

		t.Run("Missing", func(t *testing.T) {
			rep := e.call(t, "POST", "/v1/authorize", "", body).object(t, http.StatusUnauthorized)
			require.Equal(t, "unauthorized", rep["error"])
		})
		t.Run("Wrong", func(t *testing.T) {
			e.call(t, "POST", "/v1/authorize", "aksvc_"+randomHex(24), body).
				object(t, http.StatusUnauthorized)
		})
		t.Run("AdminTokenIsNotAServiceToken", func(t *testing.T) {
			e.call(t, "POST", "/v1/authorize", e.admin, body).object(t, http.StatusUnauthorized)
		})

		t.Run("RevokedThroughThisServerStopsAtOnce", func(t *testing.T) {
			var tok struct{ Name, Token string }
			e.adminCall(t, "POST", "/service-tokens", obj{"name": "billing"}).
				into(t, http.StatusCreated, &tok)
			require.Regexp(t, `^aksvc_[0-9a-f]{48}$`, tok.Token)
			e.call(t, "POST", "/v1/authorize", tok.Token, body).object(t, http.StatusOK)

			rep := e.adminCall(t, "DELETE", "/service-tokens/billing", nil)
			require.Equal(t, http.StatusNoContent, rep.status)
			e.call(t, "POST", "/v1/authorize", tok.Token, body).object(t, http.StatusUnauthorized)

			// The name can be given a new token.
			e.adminCall(t, "POST", "/service-tokens", obj{"name": "billing"}).
				into(t, http.StatusCreated, &tok)
			e.call(t, "POST", "/v1/authorize", tok.Token, body).object(t, http.StatusOK)
		})

		t.Run("DuplicateNameConflicts", func(t *testing.T) {
			e.adminCall(t, "POST", "/service-tokens", obj{"name": "test-service"}).
				object(t, http.StatusConflict)
		})
		t.Run("UnknownNameNotFound", func(t *testing.T) {
			e.adminCall(t, "DELETE", "/service-tokens/nope", nil).object(t, http.StatusNotFound)
		})
		t.Run("BadName", func(t *testing.T) {
			rep := e.adminCall(t, "POST", "/service-tokens", obj{"name": "a b"}).
				object(t, http.StatusBadRequest)
			require.Contains(t, rep["message"], "name")
		})
	})
}

func TestClerkCredentials(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		emu := clerkemu.New("sk_test_" + randomHex(12))
		t.Cleanup(emu.Close)
		v, err := akclerk.NewVerifier(akclerk.VerifierConfig{
			SecretKey: emu.SecretKey(), APIURL: emu.URL(),
		})
		require.NoError(t, err)
		t.Cleanup(v.Close)

		e := newEnv(t, sf, envOptions{clerk: v, clerkDefaults: agentkey.SubjectParams{
			Scopes:  []string{"proxy.chat"},
			Budgets: []agentkey.BudgetSpec{{Limit: agentkey.Dollar, Period: agentkey.PeriodMonth}},
		}})
		exp := time.Now().Add(time.Hour)
		apiKey, m2m := "ak_clerk_"+randomHex(8), "mt_"+randomHex(8)
		emu.AddAPIKey(apiKey, clerkemu.APIKey{Name: "k", Subject: "user_1", Expiration: &exp})
		emu.AddM2MToken(m2m, clerkemu.M2MToken{Subject: "mch_1", Expiration: &exp})

		t.Run("APIKeyProvisionsSubject", func(t *testing.T) {
			d := e.authorize(t, obj{"credential": apiKey, "credential_type": "clerk_api_key",
				"scope": "proxy.chat", "estimate": "0.5"})
			require.True(t, d.Allow, "%+v", d)
			require.Equal(t, "user_1", d.Key.Subject)
			require.Equal(t, agentkey.Dollar, d.Key.Budgets[0].Limit)

			c := e.charge(t, obj{"credential": apiKey, "credential_type": "clerk_api_key",
				"amount": "0.6"})
			require.False(t, c.Allow) // 0.5 is held
			require.Equal(t, http.StatusTooManyRequests, c.Status)
		})

		// Regression: /v1/charge answered invalid_key for a Clerk subject it
		// had not seen, since only /v1/authorize created its row.
		t.Run("ChargeOnlyFirstUseProvisionsSubject", func(t *testing.T) {
			key, token := "ak_clerk_"+randomHex(8), "mt_"+randomHex(8)
			emu.AddAPIKey(key, clerkemu.APIKey{Subject: "user_charge_only", Expiration: &exp})
			emu.AddM2MToken(token, clerkemu.M2MToken{Subject: "mch_charge_only", Expiration: &exp})

			c := e.charge(t, obj{"credential": key, "credential_type": "clerk_api_key",
				"amount": "0.25"})
			require.True(t, c.Allow, "%+v", c)
			require.Equal(t, "user_charge_only", c.Key.Subject)
			require.Equal(t, []string{"proxy.chat"}, c.Key.Scopes, "ClerkDefaults' scopes")
			require.Len(t, c.Key.Budgets, 1)
			require.Equal(t, agentkey.Dollar, c.Key.Budgets[0].Limit, "ClerkDefaults' budget")
			require.Equal(t, 25*agentkey.Cent, c.Key.Budgets[0].Used)

			c = e.charge(t, obj{"credential": token, "credential_type": "clerk_m2m",
				"amount": "0.5"})
			require.True(t, c.Allow, "%+v", c)
			require.Equal(t, "mch_charge_only", c.Key.Subject)
			require.Equal(t, 50*agentkey.Cent, c.Key.Budgets[0].Used)

			// The row is the one authorize then finds: one row per subject.
			d := e.authorize(t, obj{"credential": key, "credential_type": "clerk_api_key"})
			require.True(t, d.Allow)
			var k agentkey.Key
			e.adminCall(t, "GET", "/subjects/user_charge_only", nil).into(t, http.StatusOK, &k)
			require.Equal(t, k.ID, d.Key.ID)
			require.Equal(t, 25*agentkey.Cent, k.Budgets[0].Used)
		})

		t.Run("M2M", func(t *testing.T) {
			d := e.authorize(t, obj{"credential": m2m, "credential_type": "clerk_m2m"})
			require.True(t, d.Allow)
			require.Equal(t, "mch_1", d.Key.Subject)
		})

		t.Run("UnknownToClerk", func(t *testing.T) {
			d := e.authorize(t, obj{"credential": "ak_clerk_nope",
				"credential_type": "clerk_api_key"})
			require.False(t, d.Allow)
			require.Equal(t, http.StatusUnauthorized, d.Status)
			c := e.charge(t, obj{"credential": "ak_clerk_nope", "credential_type": "clerk_api_key",
				"amount": "1"})
			require.Equal(t, http.StatusUnauthorized, c.Status)
		})

		t.Run("CacheMetrics", func(t *testing.T) {
			// The API key was verified once and then answered from the cache.
			metrics := string(e.call(t, "GET", "/metrics", "", nil).body)
			require.Contains(t, metrics, "agentkey_clerk_cache_hits_total ")
			require.Equal(t, uint64(emu.Calls("/v1/api_keys/verify")+emu.Calls("/v1/m2m_tokens/verify")),
				v.Stats().ClerkCalls)
			require.Positive(t, v.Stats().Hits)
		})

		t.Run("ClerkDownFailsClosed", func(t *testing.T) {
			emu.FailWith(http.StatusInternalServerError)
			t.Cleanup(func() { emu.FailWith(0) })
			rep := e.decide(t, "/authorize", obj{"credential": "ak_clerk_other",
				"credential_type": "clerk_api_key"}).object(t, http.StatusInternalServerError)
			require.Equal(t, "auth_unavailable", rep["error"])
		})
	})
}

func TestClerkNotConfigured(t *testing.T) {
	e := newEnv(t, storeFactories[0], envOptions{})
	rep := e.decide(t, "/authorize", obj{"credential": "x", "credential_type": "clerk_m2m"}).
		object(t, http.StatusBadRequest)
	require.Contains(t, rep["message"], "Clerk")
}

func TestStoreFaultFailsClosed(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		e := newEnv(t, sf, envOptions{})
		ck := e.createKey(t, obj{"account_id": "acct_1"})
		e.authorize(t, obj{"credential": ck.Secret}) // caches the service token
		e.breakStore()

		for _, path := range []string{"/authorize", "/charge"} {
			body := obj{"credential": ck.Secret}
			if path == "/charge" {
				body["amount"] = "1"
			}
			rep := e.decide(t, path, body).object(t, http.StatusInternalServerError)
			require.Equal(t, obj{"error": "auth_unavailable"}, rep)
		}
		rep := e.call(t, "GET", "/readyz", "", nil)
		require.Equal(t, http.StatusServiceUnavailable, rep.status)
		rep = e.call(t, "GET", "/healthz", "", nil)
		require.Equal(t, http.StatusOK, rep.status)
		require.NotContains(t, e.logs.String(), ck.Secret)
	})
}
