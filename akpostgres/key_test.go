package akpostgres_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

func TestKeyRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	k := keyRecord(5*agentkey.Dollar, agentkey.Dollar)
	k.UserID, k.DelegatedBy = "user_1", "user_2"
	k.Scopes = []string{"chat", "embed"}
	k.ExpiresAt = now.Add(time.Hour)
	k.LastUsedAt = now.Add(-time.Minute)
	k.Budgets = append(k.Budgets, dailyBudget(k.ID, 3*agentkey.Dollar))
	require.NoError(t, s.CreateKey(ctx, k, testOp()))

	for name, q := range map[string]agentkey.KeyQuery{
		"ByID":   {ID: k.ID},
		"ByHash": {Hash: k.Hash},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := s.Key(ctx, q)
			require.NoError(t, err)
			require.Equal(t, k.Key, got)
		})
	}

	t.Run("NotFound", func(t *testing.T) {
		for _, q := range []agentkey.KeyQuery{
			{ID: "key_missing"}, {Hash: agentkey.HashSecret("missing")}, {Subject: "user_missing"},
		} {
			_, err := s.Key(ctx, q)
			require.ErrorIs(t, err, agentkey.ErrNotFound)
		}
	})

	t.Run("QueryNeedsExactlyOneField", func(t *testing.T) {
		_, err := s.Key(ctx, agentkey.KeyQuery{})
		require.ErrorIs(t, err, agentkey.ErrInvalidArgument)
		_, err = s.Key(ctx, agentkey.KeyQuery{ID: k.ID, Subject: "user_1"})
		require.ErrorIs(t, err, agentkey.ErrInvalidArgument)
	})

	t.Run("DuplicateIsConflict", func(t *testing.T) {
		require.ErrorIs(t, s.CreateKey(ctx, k, testOp()), agentkey.ErrConflict)
	})

	t.Run("TwoBudgetsOfOnePeriodAreInvalid", func(t *testing.T) {
		twice := keyRecord(agentkey.Dollar)
		twice.Budgets = append(twice.Budgets, budget(twice.ID, 2*agentkey.Dollar))
		require.ErrorIs(t, s.CreateKey(ctx, twice, testOp()), agentkey.ErrInvalidArgument)
		_, err := s.Key(ctx, agentkey.KeyQuery{ID: twice.ID})
		require.ErrorIs(t, err, agentkey.ErrNotFound, "nothing is written")
	})
}

func TestKeyBudgetsInIDOrder(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	k := keyRecord(1, 2, 3)
	k.Budgets[0].ID, k.Budgets[1].ID, k.Budgets[2].ID = "bud_c", "bud_B", "bud_a"
	got := createKey(ctx, t, s, k)

	var ids []string
	for _, b := range got.Budgets {
		ids = append(ids, b.ID)
	}
	require.Equal(t, []string{"bud_B", "bud_a", "bud_c"}, ids, "byte order, whatever the collation")
}

func TestKeyScopesNilAndEmpty(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	unlimited := keyRecord()
	require.Nil(t, createKey(ctx, t, s, unlimited).Scopes)

	none := keyRecord()
	none.Scopes = []string{}
	got := createKey(ctx, t, s, none).Scopes
	require.NotNil(t, got)
	require.Empty(t, got)
}

func TestKeyZeroTimesAndUnlimited(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	got := createKey(ctx, t, s, keyRecord())
	require.True(t, got.ExpiresAt.IsZero())
	require.True(t, got.RevokedAt.IsZero())
	require.True(t, got.LastUsedAt.IsZero())
	require.Len(t, got.Budgets, 1)
	require.True(t, got.Budgets[0].Unlimited)
	require.True(t, got.Budgets[0].ResetAt.IsZero())
	require.Equal(t, time.UTC, got.CreatedAt.Location())
}

func TestEnsureSubject(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	subject := func() agentkey.KeyRecord {
		k := keyRecord(agentkey.Dollar)
		k.Subject, k.Hash, k.Prefix = "user_42", nil, ""
		return k
	}

	first := subject()
	got, created, err := s.EnsureSubject(ctx, first, testOp())
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, first.Key, got)

	again, created, err := s.EnsureSubject(ctx, subject(), testOp())
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, first.Key, again, "the stored row, not the new record")

	bySubject, err := s.Key(ctx, agentkey.KeyQuery{Subject: "user_42"})
	require.NoError(t, err)
	require.Equal(t, first.Key, bySubject)
}

func TestEnsureSubjectConcurrent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	const callers = 100
	keys := make([]agentkey.Key, callers)
	created := make([]bool, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		k := keyRecord(agentkey.Dollar)
		k.Subject, k.Hash = "org_7", nil
		wg.Go(func() { keys[i], created[i], errs[i] = s.EnsureSubject(ctx, k, testOp()) })
	}
	wg.Wait()

	creators := 0
	for i := range callers {
		require.NoError(t, errs[i])
		require.Equal(t, keys[0], keys[i])
		if created[i] {
			creators++
		}
	}
	require.Equal(t, 1, creators)
	require.Len(t, keys[0].Budgets, 1)

	require.Equal(t, 1, s.count(t, "keys"))
	require.Equal(t, 1, s.count(t, "budgets"))
}

func TestRevokeKey(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	k := createKey(ctx, t, s, keyRecord(agentkey.Dollar))

	_, err := s.RevokeKey(ctx, k.ID, "acct_other", now)
	require.ErrorIs(t, err, agentkey.ErrNotFound)
	_, err = s.RevokeKey(ctx, "key_missing", "", now)
	require.ErrorIs(t, err, agentkey.ErrNotFound)

	got, err := s.RevokeKey(ctx, k.ID, k.AccountID, now)
	require.NoError(t, err)
	require.Equal(t, now, got.RevokedAt)
	require.Equal(t, k.Budgets, got.Budgets)

	again, err := s.RevokeKey(ctx, k.ID, "", now.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, now, again.RevokedAt, "a second revoke keeps the first time")

	stored, err := s.Key(ctx, agentkey.KeyQuery{ID: k.ID})
	require.NoError(t, err)
	require.Equal(t, now, stored.RevokedAt)
}

func TestTouchKeys(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	used := keyRecord()
	used.LastUsedAt = now
	a, b := createKey(ctx, t, s, used), createKey(ctx, t, s, keyRecord())

	require.NoError(t, s.TouchKeys(ctx, nil))
	require.NoError(t, s.TouchKeys(ctx, map[string]time.Time{
		a.ID:          now.Add(-time.Hour), // earlier than stored: kept
		b.ID:          now.Add(time.Minute),
		"key_missing": now,
	}))

	for id, want := range map[string]time.Time{a.ID: now, b.ID: now.Add(time.Minute)} {
		got, err := s.Key(ctx, agentkey.KeyQuery{ID: id})
		require.NoError(t, err)
		require.Equal(t, want, got.LastUsedAt)
	}

	require.NoError(t, s.TouchKeys(ctx, map[string]time.Time{a.ID: now.Add(time.Hour)}))
	got, err := s.Key(ctx, agentkey.KeyQuery{ID: a.ID})
	require.NoError(t, err)
	require.Equal(t, now.Add(time.Hour), got.LastUsedAt)
}

func TestKeys(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	createAccount(ctx, t, s, account("org", "", agentkey.Dollar))

	own := keyRecord(agentkey.Dollar, 2*agentkey.Dollar)
	own.AccountID = "org"
	subject := keyRecord()
	subject.Subject, subject.Hash, subject.Prefix = "user_1", nil, ""
	revoked := keyRecord()
	revoked.AccountID = "org"
	revoked.RevokedAt = now
	other := keyRecord()
	other.AccountID = "acct_2"
	for _, k := range []agentkey.KeyRecord{own, subject, revoked, other} {
		require.NoError(t, s.CreateKey(ctx, k, testOp()))
	}

	list := func(f agentkey.KeyFilter) []string {
		t.Helper()
		keys, err := s.Keys(ctx, f)
		require.NoError(t, err)
		var ids []string
		for _, k := range keys {
			ids = append(ids, k.ID)
		}
		return ids
	}
	require.Equal(t, []string{own.ID, subject.ID, other.ID}, list(agentkey.KeyFilter{}))
	require.Equal(t, []string{own.ID, subject.ID, revoked.ID, other.ID},
		list(agentkey.KeyFilter{IncludeRevoked: true}))
	require.Equal(t, []string{own.ID, revoked.ID},
		list(agentkey.KeyFilter{AccountID: "org", IncludeRevoked: true}))
	require.Equal(t, []string{subject.ID}, list(agentkey.KeyFilter{Kind: "subject"}))
	require.Equal(t, []string{own.ID, other.ID}, list(agentkey.KeyFilter{Kind: "key"}))
	require.Equal(t, []string{subject.ID}, list(agentkey.KeyFilter{After: own.ID, Limit: 1}))
	require.Nil(t, list(agentkey.KeyFilter{AccountID: "acct_none"}))

	keys, err := s.Keys(ctx, agentkey.KeyFilter{AccountID: "org"})
	require.NoError(t, err)
	require.Equal(t, []agentkey.Key{own.Key}, keys, "own budgets only, not the account's")

	_, err = s.Keys(ctx, agentkey.KeyFilter{Kind: "robot"})
	require.ErrorIs(t, err, agentkey.ErrInvalidArgument)
}
