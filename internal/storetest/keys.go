package storetest

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

func testKeys(t *testing.T, h Harness) {
	t.Run("MigrateTwice", func(t *testing.T) {
		t.Parallel()
		s := h.New(t)
		require.NoError(t, s.Migrate(context.Background()))
		require.NoError(t, s.Migrate(context.Background()))
	})

	t.Run("CreateReturnsSecretOnceAndStoresState", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{
			AccountID:   "acct_1",
			UserID:      "user_9",
			DelegatedBy: "alice@example.com",
			Name:        "research agent",
			Scopes:      []string{"proxy.chat", "usage.read"},
			Budgets:     []agentkey.BudgetSpec{{Limit: 10 * agentkey.Dollar, Period: agentkey.PeriodMonth}},
			ExpiresIn:   7 * agentkey.Day,
		})
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(ck.Secret, "ak_"))
		require.Len(t, ck.Secret, 3+48)
		require.True(t, strings.HasPrefix(ck.Secret, ck.Key.Prefix))
		require.Less(t, len(ck.Key.Prefix), len(ck.Secret)/2)

		v, err := e.svc.Validate(e.ctx, ck.Secret)
		require.NoError(t, err)
		require.True(t, v.OK(), v.Reason)
		k := v.Key
		require.Equal(t, ck.Key.ID, k.ID)
		require.Equal(t, "acct_1", k.AccountID)
		require.Equal(t, "user_9", k.UserID)
		require.Equal(t, "alice@example.com", k.DelegatedBy)
		require.Equal(t, "research agent", k.Name)
		require.Equal(t, []string{"proxy.chat", "usage.read"}, k.Scopes)
		require.Equal(t, e.clock.Now().Add(7*agentkey.Day), k.ExpiresAt)
		require.Equal(t, e.clock.Now(), k.CreatedAt)
		require.True(t, k.RevokedAt.IsZero())
		require.Len(t, k.Budgets, 1)

		b := k.Budgets[0]
		require.Equal(t, 10*agentkey.Dollar, b.Limit)
		require.False(t, b.Unlimited)
		require.Equal(t, agentkey.PeriodMonth, b.Period)
		require.Equal(t, time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC), b.PeriodStart)
		require.Equal(t, time.Date(2026, 2, 15, 0, 0, 0, 0, time.UTC), b.ResetAt)
		require.Equal(t, ck.Key.Budgets[0], b, "stored budget differs from the created one")

		rem, limited := k.Remaining()
		require.True(t, limited)
		require.Equal(t, 10*agentkey.Dollar, rem)
	})

	t.Run("OnlyHashIsStored", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, -1, "")
		k, err := e.store.Key(e.ctx, agentkey.KeyQuery{Hash: agentkey.HashSecret(ck.Secret)})
		require.NoError(t, err)
		require.Equal(t, ck.Key.ID, k.ID)
		_, err = e.store.Key(e.ctx, agentkey.KeyQuery{Hash: []byte(ck.Secret)})
		require.ErrorIs(t, err, agentkey.ErrNotFound)
	})

	t.Run("ScopesNilIsUnlimitedEmptyIsNothing", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		unlimited := e.mustCreate(t, -1, "")
		none, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "a", Scopes: []string{}})
		require.NoError(t, err)

		v, err := e.svc.Validate(e.ctx, unlimited.Secret)
		require.NoError(t, err)
		require.Nil(t, v.Key.Scopes)
		require.True(t, v.Key.HasScope("anything"))

		v, err = e.svc.Validate(e.ctx, none.Secret)
		require.NoError(t, err)
		require.NotNil(t, v.Key.Scopes)
		require.Empty(t, v.Key.Scopes)
		require.False(t, v.Key.HasScope("anything"))
	})

	t.Run("AdminPassesEveryScope", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		v, err := e.svc.Validate(e.ctx, e.mustCreate(t, -1, "", "admin").Secret)
		require.NoError(t, err)
		require.True(t, v.Key.HasScope("proxy.chat"))
	})

	t.Run("ValidScopesEnforcedAtCreation", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{ValidScopes: []string{"proxy.chat"}})
		_, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "a", Scopes: []string{"proxy.chat"}})
		require.NoError(t, err)
		_, err = e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "a", Scopes: []string{"usage.write"}})
		require.ErrorIs(t, err, agentkey.ErrUnknownScope)
		_, err = e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "a", Scopes: []string{"bad scope"}})
		require.ErrorIs(t, err, agentkey.ErrInvalidArgument)
	})

	t.Run("BadCreateParamsChangeNothing", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		for name, p := range map[string]agentkey.CreateKeyParams{
			"NoAccount":      {},
			"NegativeLimit":  {AccountID: "a", Budgets: []agentkey.BudgetSpec{{Limit: -1}}},
			"UnknownPeriod":  {AccountID: "a", Budgets: []agentkey.BudgetSpec{{Limit: 1, Period: "year"}}},
			"NegativeExpiry": {AccountID: "a", ExpiresIn: -time.Hour},
			"DuplicatePeriod": {AccountID: "a", Budgets: []agentkey.BudgetSpec{
				{Limit: 1, Period: agentkey.PeriodDay}, {Limit: 2, Period: agentkey.PeriodDay}}},
		} {
			_, err := e.svc.CreateKey(e.ctx, p)
			require.ErrorIs(t, err, agentkey.ErrInvalidArgument, name)
		}
		entries, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds})
		require.NoError(t, err)
		require.Empty(t, entries)
		report, err := e.svc.Audit(e.ctx)
		require.NoError(t, err)
		require.Zero(t, report.Budgets)
	})

	t.Run("ValidateReasons", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		for name, secret := range map[string]string{
			"Empty":      "",
			"Malformed":  "not-a-key",
			"WrongCase":  "ak_" + strings.Repeat("A", 48),
			"TooLong":    "ak_" + strings.Repeat("a", 49),
			"Unknown":    "ak_" + strings.Repeat("0", 48),
			"OtherStyle": "sk_" + strings.Repeat("0", 48),
		} {
			v, err := e.svc.Validate(e.ctx, secret)
			require.NoError(t, err, name)
			require.Equal(t, agentkey.ReasonInvalidKey, v.Reason, name)
		}

		expiring, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "a", ExpiresIn: time.Hour})
		require.NoError(t, err)
		e.clock.Advance(time.Hour)
		v, err := e.svc.Validate(e.ctx, expiring.Secret)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonExpired, v.Reason)

		revoked := e.mustCreate(t, -1, "")
		_, err = e.svc.Revoke(e.ctx, revoked.Key.ID, "")
		require.NoError(t, err)
		v, err = e.svc.Validate(e.ctx, revoked.Secret)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonRevoked, v.Reason)

		spent := e.mustCreate(t, 0, agentkey.PeriodDay)
		v, err = e.svc.Validate(e.ctx, spent.Secret)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, v.Reason)
	})

	t.Run("RevokeIsOwnerChecked", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, -1, "") // account acct_test

		_, err := e.svc.Revoke(e.ctx, ck.Key.ID, "acct_other")
		require.ErrorIs(t, err, agentkey.ErrNotFound)
		v, err := e.svc.Validate(e.ctx, ck.Secret)
		require.NoError(t, err)
		require.True(t, v.OK())

		k, err := e.svc.Revoke(e.ctx, ck.Key.ID, "acct_test")
		require.NoError(t, err)
		require.Equal(t, e.clock.Now(), k.RevokedAt)

		e.clock.Advance(time.Minute)
		again, err := e.svc.Revoke(e.ctx, ck.Key.ID, "")
		require.NoError(t, err)
		require.Equal(t, k.RevokedAt, again.RevokedAt, "a second revoke must keep the first time")

		_, err = e.svc.Revoke(e.ctx, "key_unknown", "")
		require.ErrorIs(t, err, agentkey.ErrNotFound)
	})

	t.Run("LastUsedIsCoalesced", func(t *testing.T) {
		t.Parallel()
		counting := &touchCounter{Store: h.New(t)}
		e := startOn(t, counting, agentkey.Config{TouchInterval: time.Hour})
		ck := e.mustCreate(t, -1, "")

		for range 50 {
			_, err := e.svc.Validate(e.ctx, ck.Secret)
			require.NoError(t, err)
		}
		require.Zero(t, counting.calls.Load(), "a validation must not write last use")

		require.NoError(t, e.svc.Close(e.ctx))
		require.EqualValues(t, 1, counting.calls.Load(), "close writes pending last use once")
		k, err := e.store.Key(e.ctx, agentkey.KeyQuery{ID: ck.Key.ID})
		require.NoError(t, err)
		require.Equal(t, e.clock.Now(), k.LastUsedAt)

		// A touch never moves last use backwards.
		require.NoError(t, e.store.TouchKeys(e.ctx, map[string]time.Time{ck.Key.ID: e.clock.Now().Add(-time.Hour)}))
		k, err = e.store.Key(e.ctx, agentkey.KeyQuery{ID: ck.Key.ID})
		require.NoError(t, err)
		require.Equal(t, e.clock.Now(), k.LastUsedAt)
	})
}

// touchCounter counts TouchKeys calls.
type touchCounter struct {
	agentkey.Store
	calls atomic.Int64
}

func (c *touchCounter) TouchKeys(ctx context.Context, m map[string]time.Time) error {
	c.calls.Add(1)
	return c.Store.TouchKeys(ctx, m)
}

func testSubjects(t *testing.T, h Harness) {
	t.Run("EnsureSubjectDefaultsAccountToSubject", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		k, created, err := e.svc.EnsureSubject(e.ctx, "user_2abc", agentkey.SubjectParams{
			Scopes:  []string{"proxy.chat"},
			Budgets: []agentkey.BudgetSpec{{Limit: 50 * agentkey.Dollar, Period: agentkey.PeriodMonth}},
		})
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, "user_2abc", k.Subject)
		require.Equal(t, "user_2abc", k.AccountID)
		require.Empty(t, k.Prefix)

		again, created, err := e.svc.EnsureSubject(e.ctx, "user_2abc", agentkey.SubjectParams{
			Budgets: []agentkey.BudgetSpec{{Limit: 1}},
		})
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, k.ID, again.ID)
		require.Equal(t, 50*agentkey.Dollar, again.Budgets[0].Limit, "a second call must not change the row")

		v, err := e.svc.ValidateBySubject(e.ctx, "user_2abc")
		require.NoError(t, err)
		require.True(t, v.OK())
		v, err = e.svc.ValidateBySubject(e.ctx, "user_unknown")
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonInvalidKey, v.Reason)
	})

	t.Run("EnsureSubjectConcurrentFirstCallsMakeOneRow", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		const n = 100
		var (
			wg      sync.WaitGroup
			created atomic.Int64
			ids     sync.Map
		)
		for range n {
			wg.Go(func() {
				k, c, err := e.svc.EnsureSubject(e.ctx, "org_race", agentkey.SubjectParams{
					Budgets: []agentkey.BudgetSpec{{Limit: agentkey.Dollar}},
				})
				if err != nil {
					t.Error(err)
					return
				}
				if c {
					created.Add(1)
				}
				ids.Store(k.ID, true)
			})
		}
		wg.Wait()
		require.EqualValues(t, 1, created.Load())
		count := 0
		ids.Range(func(any, any) bool { count++; return true })
		require.Equal(t, 1, count, "every call must see the same row")

		report, err := e.svc.Audit(e.ctx)
		require.NoError(t, err)
		require.Equal(t, 1, report.Budgets, "exactly one budget row for the subject")
	})

	t.Run("TrackUsageBySubject", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		_, _, err := e.svc.EnsureSubject(e.ctx, "user_t", agentkey.SubjectParams{
			Budgets: []agentkey.BudgetSpec{{Limit: agentkey.Dollar}},
		})
		require.NoError(t, err)

		res, err := e.svc.TrackUsageBySubject(e.ctx, "user_t", 60*agentkey.Cent)
		require.NoError(t, err)
		require.True(t, res.OK())
		res, err = e.svc.TrackUsageBySubject(e.ctx, "user_t", 60*agentkey.Cent)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)
		res, err = e.svc.TrackUsageBySubject(e.ctx, "user_nobody", agentkey.Cent)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonInvalidKey, res.Reason)

		v, err := e.svc.ValidateBySubject(e.ctx, "user_t")
		require.NoError(t, err)
		require.Equal(t, 60*agentkey.Cent, v.Key.Budgets[0].Used)
	})

	t.Run("BadSubjectRefused", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		_, _, err := e.svc.EnsureSubject(e.ctx, "", agentkey.SubjectParams{})
		require.ErrorIs(t, err, agentkey.ErrInvalidArgument)
		_, _, err = e.svc.EnsureSubject(e.ctx, strings.Repeat("x", 300), agentkey.SubjectParams{})
		require.ErrorIs(t, err, agentkey.ErrInvalidArgument)
	})
}
