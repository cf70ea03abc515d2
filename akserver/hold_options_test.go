package akserver_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

// TestHoldTTL takes hold_ttl in the units the CLI takes, seconds included,
// up to the server's MaxHoldTTL.
func TestHoldTTL(t *testing.T) {
	e := newEnv(t, storeFactories[0], envOptions{maxHoldTTL: time.Hour})
	ck := e.createKey(t, obj{"account_id": "acct_1"})

	for ttl, want := range map[string]time.Duration{
		"90s": 90 * time.Second, "1h": time.Hour, "2m30s": 150 * time.Second,
	} {
		d := e.authorize(t, obj{"credential": ck.Secret, "estimate": "0.01", "hold_ttl": ttl})
		require.True(t, d.Allow, "%+v", d)
		require.Equal(t, want, d.Hold.ExpiresAt.Sub(d.Hold.CreatedAt), ttl)
	}
	for _, ttl := range []string{"61m", "1d", "0s", "-90s"} {
		rep := e.decide(t, "/authorize", obj{"credential": ck.Secret, "estimate": "0.01",
			"hold_ttl": ttl}).object(t, http.StatusBadRequest)
		require.Contains(t, rep["message"], "hold_ttl", ttl)
	}
}

// TestCloseIdempotencyKey accepts an idempotency key on settle and release,
// which are idempotent by hold id: a retry answers the first result.
func TestCloseIdempotencyKey(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		e := newEnv(t, sf, envOptions{})
		ck := e.createKey(t, obj{"account_id": "acct_1"})

		d := e.authorize(t, obj{"credential": ck.Secret, "estimate": "0.5"})
		var first, retry agentkey.CloseResult
		body := obj{"hold_id": d.Hold.ID, "amount": "0.2", "idempotency_key": "settle-1"}
		e.decide(t, "/settle", body).into(t, http.StatusOK, &first)
		require.False(t, first.Replayed)
		require.Equal(t, 20*agentkey.Cent, first.Charged)
		e.decide(t, "/settle", body).into(t, http.StatusOK, &retry)
		require.True(t, retry.Replayed)
		require.Equal(t, first.Charged, retry.Charged)

		d = e.authorize(t, obj{"credential": ck.Secret, "estimate": "0.5"})
		body = obj{"hold_id": d.Hold.ID, "idempotency_key": "release-1"}
		e.decide(t, "/release", body).into(t, http.StatusOK, &first)
		require.Equal(t, agentkey.HoldReleased, first.Hold.State)
		e.decide(t, "/release", body).into(t, http.StatusOK, &retry)
		require.True(t, retry.Replayed)

		var k agentkey.Key
		e.adminCall(t, "GET", "/keys/"+ck.ID, nil).into(t, http.StatusOK, &k)
		require.Equal(t, 20*agentkey.Cent, k.Budgets[0].Used, "charged once")
		require.Zero(t, k.Budgets[0].Held)
	})
}
