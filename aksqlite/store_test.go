package aksqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/aksqlite"
)

// t0 is the clock of most tests: a Thursday, mid-month.
var t0 = time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)

// newStore returns a migrated store on a fresh file.
func newStore(t *testing.T) *aksqlite.Store {
	t.Helper()
	return openStores(t, filepath.Join(t.TempDir(), "agentkey.db"), 1)[0]
}

// openStores opens n stores on the file at path, each with its own *sql.DB
// as if in its own process, and migrates them.
func openStores(t *testing.T, path string, n int) []*aksqlite.Store {
	t.Helper()
	stores := make([]*aksqlite.Store, n)
	for i := range stores {
		s, err := aksqlite.Open(path, aksqlite.Config{})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, s.Close()) })
		require.NoError(t, s.Migrate(context.Background()))
		stores[i] = s
	}
	return stores
}

// budget returns a budget of owner, in the period in force at now.
func budget(id, owner string, limit agentkey.Money, period agentkey.Period, now time.Time,
) agentkey.Budget {
	start, end := period.Window(now, time.UTC, now)
	return agentkey.Budget{
		ID: id, OwnerKind: agentkey.OwnerKey, OwnerID: owner,
		Limit: limit, Unlimited: limit < 0, Period: period, Location: "UTC", Anchor: now,
		PeriodStart: start.UTC(), ResetAt: end.UTC(), CreatedAt: now,
	}
}

// record returns an own key with one budget of limit per period (unlimited
// when limit is negative).
func record(id string, limit agentkey.Money, period agentkey.Period) agentkey.KeyRecord {
	b := budget("bud_"+id, id, limit, period, t0)
	if b.Unlimited {
		b.Limit = 0
	}
	return agentkey.KeyRecord{
		Key: agentkey.Key{
			ID: id, Prefix: "ak_" + id, AccountID: "acct_1", CreatedAt: t0,
			Budgets: []agentkey.Budget{b},
		},
		Hash: agentkey.HashSecret("secret-" + id),
	}
}

func mustCreate(t *testing.T, s *aksqlite.Store, rec agentkey.KeyRecord) agentkey.KeyRecord {
	t.Helper()
	require.NoError(t, s.CreateKey(context.Background(), rec, testOp()))
	return rec
}

func charge(keyID string, amount agentkey.Money, now time.Time) agentkey.ChargeRequest {
	return agentkey.ChargeRequest{
		OpID:  "op_" + keyID + "_" + now.Format("150405.000000") + "_" + amount.String(),
		KeyID: keyID, Amount: amount, Now: now,
	}
}

// auditClean checks that every budget's used and held amounts equal its
// ledger.
func auditClean(t *testing.T, s *aksqlite.Store) []agentkey.BudgetTotal {
	t.Helper()
	totals, err := s.BudgetTotals(context.Background())
	require.NoError(t, err)
	for _, bt := range totals {
		require.Equal(t, bt.Budget.Used, bt.LedgerUsed, "used of budget %s", bt.Budget.ID)
		require.Equal(t, bt.Budget.Held, bt.LedgerHeld, "held of budget %s", bt.Budget.ID)
	}
	return totals
}

func count(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow(query, args...).Scan(&n))
	return n
}

func TestOpen(t *testing.T) {
	t.Parallel()

	t.Run("RejectsMemoryAndURIs", func(t *testing.T) {
		t.Parallel()
		for _, path := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
			_, err := aksqlite.Open(path, aksqlite.Config{})
			require.ErrorIs(t, err, agentkey.ErrInvalidArgument, path)
		}
	})

	t.Run("SettingsOnEveryConnection", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := context.Background()
		for range 3 { // several connections of the pool at once
			conn, err := s.DB().Conn(ctx)
			require.NoError(t, err)
			defer conn.Close()

			var mode, sync string
			var timeout, fk int
			require.NoError(t, conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode))
			require.NoError(t, conn.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&timeout))
			require.NoError(t, conn.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk))
			require.NoError(t, conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync))
			require.Equal(t, "wal", mode)
			require.Equal(t, 10_000, timeout)
			require.Equal(t, 1, fk)
			require.Equal(t, "2", sync) // FULL
		}
	})

	t.Run("BadPrefix", func(t *testing.T) {
		t.Parallel()
		for _, p := range []string{"1x", "a-b", "x; DROP TABLE y", "a b"} {
			_, err := aksqlite.Open(filepath.Join(t.TempDir(), "x.db"), aksqlite.Config{TablePrefix: p})
			require.ErrorIs(t, err, agentkey.ErrInvalidArgument, p)
		}
	})

	t.Run("NewKeepsCallersDB", func(t *testing.T) {
		t.Parallel()
		db, err := sql.Open("sqlite", aksqlite.DSN(filepath.Join(t.TempDir(), "x.db")))
		require.NoError(t, err)
		defer db.Close()

		s, err := aksqlite.New(db, aksqlite.Config{})
		require.NoError(t, err)
		require.NoError(t, s.Migrate(context.Background()))
		require.NoError(t, s.Close())
		require.NoError(t, db.Ping(), "Close must not close a db the caller owns")
	})
}

func TestMigrate(t *testing.T) {
	t.Parallel()

	t.Run("Twice", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.Migrate(context.Background()))
		require.Equal(t, 1, count(t, s.DB(), "SELECT COUNT(*) FROM agentkey_migrations"))
	})

	t.Run("ConcurrentFromFourHandles", func(t *testing.T) {
		t.Parallel()
		// Four processes start at once on a file that does not exist yet:
		// each opens it (switching it to WAL) and migrates.
		path := filepath.Join(t.TempDir(), "agentkey.db")
		stores := make([]*aksqlite.Store, 4)
		errs := make([]error, len(stores))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range stores {
			wg.Go(func() {
				<-start
				s, err := aksqlite.Open(path, aksqlite.Config{})
				if err != nil {
					errs[i] = err
					return
				}
				stores[i], errs[i] = s, s.Migrate(context.Background())
			})
		}
		close(start)
		wg.Wait()
		for i, s := range stores {
			if s != nil {
				t.Cleanup(func() { require.NoError(t, s.Close()) })
			}
			require.NoError(t, errs[i])
		}
		require.Equal(t, 1, count(t, stores[0].DB(), "SELECT COUNT(*) FROM agentkey_migrations"))
		mustCreate(t, stores[3], record("key_a", 10, agentkey.PeriodNone))
	})

	t.Run("TablePrefix", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "agentkey.db")
		s, err := aksqlite.Open(path, aksqlite.Config{TablePrefix: "billing_"})
		require.NoError(t, err)
		defer s.Close()
		require.NoError(t, s.Migrate(context.Background()))

		mustCreate(t, s, record("key_a", 10, agentkey.PeriodNone))
		require.Equal(t, 1, count(t, s.DB(), "SELECT COUNT(*) FROM billing_keys"))
		require.Equal(t, 0, count(t, s.DB(),
			"SELECT COUNT(*) FROM sqlite_schema WHERE name LIKE 'agentkey_%'"))
	})
}

func TestKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		rec := record("key_a", 5*agentkey.Dollar, agentkey.PeriodMonth)
		rec.UserID, rec.DelegatedBy, rec.Name = "user_1", "user_boss", "agent"
		rec.Scopes = []string{"chat", "embed"}
		rec.ExpiresAt = t0.Add(48*time.Hour + time.Microsecond)
		rec.Budgets = append(rec.Budgets, budget("bud_key_a2", "key_a", -1, agentkey.PeriodNone, t0))
		rec.Budgets[1].Limit = 0
		mustCreate(t, s, rec)

		for _, q := range []agentkey.KeyQuery{{ID: "key_a"}, {Hash: rec.Hash}} {
			got, err := s.Key(ctx, q)
			require.NoError(t, err)
			require.Equal(t, rec.Key, got)
		}
		got, err := s.Key(ctx, agentkey.KeyQuery{ID: "key_a"})
		require.NoError(t, err)
		require.True(t, got.Budgets[1].Unlimited)
		require.True(t, got.Budgets[1].ResetAt.IsZero())
		require.Equal(t, time.UTC, got.ExpiresAt.Location())
	})

	t.Run("ScopesNilAndEmpty", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustCreate(t, s, record("key_nil", -1, agentkey.PeriodNone))
		empty := record("key_empty", -1, agentkey.PeriodNone)
		empty.Scopes = []string{}
		mustCreate(t, s, empty)

		got, err := s.Key(ctx, agentkey.KeyQuery{ID: "key_nil"})
		require.NoError(t, err)
		require.Nil(t, got.Scopes)
		got, err = s.Key(ctx, agentkey.KeyQuery{ID: "key_empty"})
		require.NoError(t, err)
		require.NotNil(t, got.Scopes)
		require.Empty(t, got.Scopes)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for _, q := range []agentkey.KeyQuery{
			{ID: "key_x"}, {Hash: agentkey.HashSecret("x")}, {Subject: "user_x"},
		} {
			_, err := s.Key(ctx, q)
			require.ErrorIs(t, err, agentkey.ErrNotFound)
		}
		_, err := s.Key(ctx, agentkey.KeyQuery{})
		require.ErrorIs(t, err, agentkey.ErrInvalidArgument)
		_, err = s.Key(ctx, agentkey.KeyQuery{ID: "a", Subject: "b"})
		require.ErrorIs(t, err, agentkey.ErrInvalidArgument)
	})

	t.Run("DuplicateHashRefused", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustCreate(t, s, record("key_a", 1, agentkey.PeriodNone))
		dup := record("key_b", 1, agentkey.PeriodNone)
		dup.Hash = agentkey.HashSecret("secret-key_a")
		require.Error(t, s.CreateKey(ctx, dup, testOp()))

		_, err := s.Key(ctx, agentkey.KeyQuery{ID: "key_b"})
		require.ErrorIs(t, err, agentkey.ErrNotFound, "a failed create leaves no row")
		require.Equal(t, 1, count(t, s.DB(), "SELECT COUNT(*) FROM agentkey_budgets"))
	})

	t.Run("Revoke", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustCreate(t, s, record("key_a", 1, agentkey.PeriodNone))

		_, err := s.RevokeKey(ctx, "key_a", "acct_other", t0)
		require.ErrorIs(t, err, agentkey.ErrNotFound)
		_, err = s.RevokeKey(ctx, "key_x", "", t0)
		require.ErrorIs(t, err, agentkey.ErrNotFound)

		k, err := s.RevokeKey(ctx, "key_a", "acct_1", t0.Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, t0.Add(time.Hour), k.RevokedAt)
		require.Len(t, k.Budgets, 1)

		k, err = s.RevokeKey(ctx, "key_a", "", t0.Add(2*time.Hour))
		require.NoError(t, err)
		require.Equal(t, t0.Add(time.Hour), k.RevokedAt, "a second revoke keeps the first time")
	})

	t.Run("Touch", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustCreate(t, s, record("key_a", 1, agentkey.PeriodNone))
		mustCreate(t, s, record("key_b", 1, agentkey.PeriodNone))

		require.NoError(t, s.TouchKeys(ctx, nil))
		require.NoError(t, s.TouchKeys(ctx, map[string]time.Time{
			"key_a": t0.Add(time.Hour), "key_b": t0.Add(time.Minute), "key_x": t0,
		}))
		require.NoError(t, s.TouchKeys(ctx, map[string]time.Time{
			"key_a": t0.Add(time.Minute), "key_b": t0.Add(time.Hour),
		}))

		a, err := s.Key(ctx, agentkey.KeyQuery{ID: "key_a"})
		require.NoError(t, err)
		require.Equal(t, t0.Add(time.Hour), a.LastUsedAt, "an earlier time does not win")
		b, err := s.Key(ctx, agentkey.KeyQuery{ID: "key_b"})
		require.NoError(t, err)
		require.Equal(t, t0.Add(time.Hour), b.LastUsedAt)
	})
}

func TestEnsureSubject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)

	rec := record("sub_1", 2*agentkey.Dollar, agentkey.PeriodDay)
	rec.Hash, rec.Prefix, rec.Subject = nil, "", "user_1"
	k, created, err := s.EnsureSubject(ctx, rec, testOp())
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, rec.Key, k)

	other := record("sub_2", agentkey.Dollar, agentkey.PeriodNone)
	other.Hash, other.Prefix, other.Subject = nil, "", "user_1"
	k, created, err = s.EnsureSubject(ctx, other, testOp())
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, rec.Key, k, "the first row stays")
	require.Equal(t, 1, count(t, s.DB(), "SELECT COUNT(*) FROM agentkey_budgets"))

	got, err := s.Key(ctx, agentkey.KeyQuery{Subject: "user_1"})
	require.NoError(t, err)
	require.Equal(t, rec.Key, got)
}

func TestCharge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustCreate(t, s, record("key_a", 10, agentkey.PeriodNone))

		req := charge("key_a", 4, t0)
		req.Metadata = map[string]string{"model": "m1"}
		res, err := s.Charge(ctx, req)
		require.NoError(t, err)
		require.True(t, res.OK())
		require.Equal(t, agentkey.Money(4), res.Charged)
		require.Equal(t, req.OpID, res.OpID)
		require.Equal(t, agentkey.Money(4), res.Key.Budgets[0].Used)

		entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds})
		require.NoError(t, err)
		require.Len(t, entries, 1)
		require.Equal(t, agentkey.Entry{
			ID: entries[0].ID, OpID: req.OpID, Kind: agentkey.EntryCharge, BudgetID: "bud_key_a",
			KeyID: "key_a", AccountID: "acct_1", Amount: 4, PeriodStart: t0,
			Metadata: map[string]string{"model": "m1"}, CreatedAt: t0,
		}, entries[0])
		auditClean(t, s)
	})

	t.Run("RefusedWritesNothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustCreate(t, s, record("key_a", 10, agentkey.PeriodNone))
		_, err := s.Charge(ctx, charge("key_a", 8, t0))
		require.NoError(t, err)

		req := charge("key_a", 3, t0.Add(time.Second))
		req.IdempotencyKey = "idem"
		res, err := s.Charge(ctx, req)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)
		require.Equal(t, "bud_key_a", res.RefusedBy.ID)
		require.Zero(t, res.Charged)

		entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds})
		require.NoError(t, err)
		require.Len(t, entries, 1)

		// A refused charge is not remembered: a retry with the same
		// idempotency key is decided afresh.
		req.Amount, req.OpID = 2, "op_retry"
		res, err = s.Charge(ctx, req)
		require.NoError(t, err)
		require.True(t, res.OK())
		require.False(t, res.Replayed)
		require.Equal(t, agentkey.Money(10), res.Key.Budgets[0].Used)
		auditClean(t, s)
	})

	t.Run("IdempotentReplay", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustCreate(t, s, record("key_a", 10, agentkey.PeriodNone))
		mustCreate(t, s, record("key_b", 10, agentkey.PeriodNone))

		req := charge("key_a", 3, t0)
		req.IdempotencyKey = "idem"
		first, err := s.Charge(ctx, req)
		require.NoError(t, err)
		require.True(t, first.OK())

		// The key is revoked; the replay still returns the stored result.
		_, err = s.RevokeKey(ctx, "key_a", "", t0.Add(time.Second))
		require.NoError(t, err)
		retry := req
		retry.OpID, retry.Now = "op_other", t0.Add(time.Minute)
		again, err := s.Charge(ctx, retry)
		require.NoError(t, err)
		require.True(t, again.Replayed)
		again.Replayed = false
		require.Equal(t, first, again)

		// The scope of an idempotency key is one key.
		other := req
		other.KeyID, other.OpID = "key_b", "op_b"
		res, err := s.Charge(ctx, other)
		require.NoError(t, err)
		require.False(t, res.Replayed)
		require.Equal(t, agentkey.Money(3), res.Charged)

		entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, KeyID: "key_a"})
		require.NoError(t, err)
		require.Len(t, entries, 1)
		require.Equal(t, "idem", entries[0].IdempotencyKey)
		auditClean(t, s)
	})

	t.Run("InvalidKey", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		rec := record("key_exp", 10, agentkey.PeriodNone)
		rec.ExpiresAt = t0.Add(time.Hour)
		mustCreate(t, s, rec)

		res, err := s.Charge(ctx, charge("key_x", 1, t0))
		require.NoError(t, err)
		require.Equal(t, agentkey.ChargeResult{Reason: agentkey.ReasonInvalidKey}, res)

		res, err = s.Charge(ctx, charge("key_exp", 1, t0.Add(time.Hour)))
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonInvalidKey, res.Reason)

		res, err = s.Charge(ctx, charge("key_exp", -1, t0))
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonInvalidCost, res.Reason)
	})

	t.Run("ZeroWritesNoCharge", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustCreate(t, s, record("key_a", 10, agentkey.PeriodNone))

		req := charge("key_a", 0, t0)
		req.IdempotencyKey = "idem"
		res, err := s.Charge(ctx, req)
		require.NoError(t, err)
		require.True(t, res.OK())
		require.Zero(t, res.Charged)
		entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds})
		require.NoError(t, err)
		require.Empty(t, entries)
		require.Equal(t, 0, count(t, s.DB(), "SELECT COUNT(*) FROM agentkey_idempotency"))
	})

	t.Run("Rollover", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustCreate(t, s, record("key_a", 10, agentkey.PeriodDay))
		_, err := s.Charge(ctx, charge("key_a", 9, t0))
		require.NoError(t, err)

		// The next day the budget starts again; the closed day gets a reset.
		next := t0.Add(24 * time.Hour)
		res, err := s.Charge(ctx, charge("key_a", 5, next))
		require.NoError(t, err)
		require.True(t, res.OK())
		b := res.Key.Budgets[0]
		require.Equal(t, agentkey.Money(5), b.Used)
		require.Equal(t, time.Date(2026, 1, 16, 0, 0, 0, 0, time.UTC), b.PeriodStart)
		require.Equal(t, time.Date(2026, 1, 17, 0, 0, 0, 0, time.UTC), b.ResetAt)

		entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds})
		require.NoError(t, err)
		require.Len(t, entries, 3)
		require.Equal(t, agentkey.EntryReset, entries[1].Kind)
		require.Equal(t, agentkey.Money(9), entries[1].Amount)
		require.Equal(t, time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC), entries[1].PeriodStart)

		got, err := s.Key(ctx, agentkey.KeyQuery{ID: "key_a"})
		require.NoError(t, err)
		require.Equal(t, b, got.Budgets[0])
		auditClean(t, s)
	})
}

func TestAdjust(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, record("key_a", 10, agentkey.PeriodNone))

	adjust := func(budgetID string, amount agentkey.Money, note string) (agentkey.Budget, error) {
		return s.Adjust(ctx, agentkey.AdjustRequest{
			OpID: "op_" + amount.String(), BudgetID: budgetID, Amount: amount, Note: note, Now: t0,
		})
	}
	b, err := adjust("bud_key_a", 7, "refund reversal")
	require.NoError(t, err)
	require.Equal(t, agentkey.Money(7), b.Used)

	_, err = adjust("bud_key_a", 4, "")
	require.ErrorIs(t, err, agentkey.ErrOverLimit)
	_, err = adjust("bud_key_a", -8, "")
	require.ErrorIs(t, err, agentkey.ErrCreditTooLarge)
	_, err = adjust("bud_x", 1, "")
	require.ErrorIs(t, err, agentkey.ErrNotFound)

	b, err = adjust("bud_key_a", -2, "")
	require.NoError(t, err)
	require.Equal(t, agentkey.Money(5), b.Used)

	entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, BudgetID: "bud_key_a"})
	require.NoError(t, err)
	require.Len(t, entries, 2)
	require.Equal(t, agentkey.EntryAdjust, entries[0].Kind)
	require.Equal(t, map[string]string{"reason": "refund reversal"}, entries[0].Metadata)
	require.Nil(t, entries[1].Metadata)
	require.Equal(t, agentkey.Money(-2), entries[1].Amount)
	auditClean(t, s)
}

func TestLedgerFilters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	a := record("key_a", -1, agentkey.PeriodNone)
	b := record("key_b", -1, agentkey.PeriodNone)
	b.AccountID = "acct_2"
	mustCreate(t, s, a)
	mustCreate(t, s, b)
	for i := range 6 {
		id := "key_a"
		if i%2 == 1 {
			id = "key_b"
		}
		res, err := s.Charge(ctx, charge(id, agentkey.Money(i+1), t0.Add(time.Duration(i)*time.Minute)))
		require.NoError(t, err)
		require.True(t, res.OK())
	}

	amounts := func(f agentkey.LedgerFilter) []agentkey.Money {
		t.Helper()
		f.Kinds = agentkey.MoneyKinds
		entries, err := s.Ledger(ctx, f)
		require.NoError(t, err)
		out := []agentkey.Money{}
		for i, e := range entries {
			if i > 0 {
				require.Greater(t, e.ID, entries[i-1].ID)
			}
			out = append(out, e.Amount)
		}
		return out
	}
	require.Equal(t, []agentkey.Money{1, 2, 3, 4, 5, 6}, amounts(agentkey.LedgerFilter{}))
	require.Equal(t, []agentkey.Money{1, 3, 5}, amounts(agentkey.LedgerFilter{KeyID: "key_a"}))
	require.Equal(t, []agentkey.Money{2, 4, 6}, amounts(agentkey.LedgerFilter{AccountID: "acct_2"}))
	require.Equal(t, []agentkey.Money{2, 4, 6}, amounts(agentkey.LedgerFilter{BudgetID: "bud_key_b"}))
	require.Equal(t, []agentkey.Money{3, 4}, amounts(agentkey.LedgerFilter{
		Since: t0.Add(2 * time.Minute), Until: t0.Add(4 * time.Minute),
	}))
	require.Equal(t, []agentkey.Money{3, 4}, amounts(agentkey.LedgerFilter{
		Since: t0.Add(2*time.Minute - time.Nanosecond), Until: t0.Add(4*time.Minute - time.Nanosecond),
	}), "bounds finer than a microsecond are exact")
	require.Equal(t, []agentkey.Money{1, 2}, amounts(agentkey.LedgerFilter{Limit: 2}))
	require.Equal(t, []agentkey.Money{}, amounts(agentkey.LedgerFilter{KeyID: "key_x"}))

	all, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds})
	require.NoError(t, err)
	require.Equal(t, []agentkey.Money{3, 5}, amounts(agentkey.LedgerFilter{
		KeyID: "key_a", AfterID: all[0].ID,
	}))
}

func TestBudgetTotals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, record("key_a", 100, agentkey.PeriodDay))
	mustCreate(t, s, record("key_b", 100, agentkey.PeriodNone))

	_, err := s.Charge(ctx, charge("key_a", 30, t0))
	require.NoError(t, err)
	_, err = s.Charge(ctx, charge("key_a", 20, t0.Add(24*time.Hour)))
	require.NoError(t, err)
	_, err = s.Adjust(ctx, agentkey.AdjustRequest{OpID: "op_adj", BudgetID: "bud_key_a", Amount: -5,
		Now: t0.Add(24 * time.Hour)})
	require.NoError(t, err)

	totals := auditClean(t, s)
	require.Len(t, totals, 2)
	require.Equal(t, "bud_key_a", totals[0].Budget.ID)
	require.Equal(t, agentkey.Money(15), totals[0].LedgerUsed, "the closed day does not count")
	require.Equal(t, agentkey.Money(0), totals[1].LedgerUsed)

	// A used amount changed behind the store's back shows up as drift.
	_, err = s.DB().Exec("UPDATE agentkey_budgets SET used = 99 WHERE id = 'bud_key_b'")
	require.NoError(t, err)
	totals, err = s.BudgetTotals(ctx)
	require.NoError(t, err)
	require.Equal(t, agentkey.Money(99), totals[1].Budget.Used)
	require.Equal(t, agentkey.Money(0), totals[1].LedgerUsed)
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Charge(ctx, charge("key_a", 1, t0))
	require.True(t, errors.Is(err, context.Canceled), "got %v", err)
}

// testOp returns the Op of a change made at t0, as the Service makes one.
func testOp() agentkey.Op {
	return agentkey.Op{ID: "op_test", At: t0}
}
