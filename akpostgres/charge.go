package akpostgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/agentkey-go/agentkey"
)

// Charge applies req to the key's budgets in one READ COMMITTED transaction,
// as agentkey.Store documents. It replays the stored result of an earlier
// charge with the same idempotency key, even of a key revoked since.
//
// A charge that goes through costs three round trips: the begin, the key and
// idempotency lookup and the budgets' lock in one batch; the writes in a
// second batch; the commit. A replay or a refusal costs two: the first batch
// and the rollback. A charge of zero writes nothing, rollovers included, and
// is not recorded under its idempotency key.
func (s *Store) Charge(ctx context.Context, req agentkey.ChargeRequest,
) (agentkey.ChargeResult, error) {
	b := &pgx.Batch{}
	b.BeginTx(readCommitted)
	b.Queue(s.sql.chargeLoad, req.KeyID, nullString(req.IdempotencyKey))
	// Budgets are locked even when the lookup will find a replay or no key:
	// sending both statements at once saves a round trip on every charge,
	// and a lock taken for nothing is released by the rollback.
	b.Queue(s.sql.lockKeyBudgets, req.KeyID)
	br := s.pool.SendBatch(ctx, b)
	tx := br.Tx()
	defer tx.Rollback(ctx) // a no-op after Commit

	key, found, stored, budgets, err := readChargeState(br)
	if err != nil {
		return agentkey.ChargeResult{}, fmt.Errorf("load key: %w", err)
	}
	if stored != nil {
		return replay(stored)
	}
	if !found {
		return agentkey.ChargeResult{Reason: agentkey.ReasonInvalidKey}, nil
	}

	plan, err := agentkey.PlanCharge(req, key, budgets)
	if err != nil {
		return agentkey.ChargeResult{}, fmt.Errorf("plan charge: %w", err)
	}
	res := plan.Result(req, key)
	if plan.Reason != "" || req.Amount == 0 {
		return res, nil
	}

	w := &pgx.Batch{}
	if req.IdempotencyKey != "" {
		js, err := json.Marshal(res)
		if err != nil {
			return agentkey.ChargeResult{}, fmt.Errorf("encode result: %w", err)
		}
		w.Queue(s.sql.insertIdempotency, req.KeyID, req.IdempotencyKey, req.OpID, js, req.Now)
	}
	if err := s.queueWrites(w, budgets, plan.Budgets, plan.Changed, plan.Entries); err != nil {
		return agentkey.ChargeResult{}, err
	}

	wr := tx.SendBatch(ctx, w)
	defer wr.Close()
	if req.IdempotencyKey != "" {
		tag, err := wr.Exec()
		if err != nil {
			return agentkey.ChargeResult{}, fmt.Errorf("record idempotency key: %w", err)
		}
		// Zero rows: a concurrent charge with the same idempotency key
		// committed first (the unique index makes this insert wait for one
		// still in flight). That charge is the one that counts.
		if tag.RowsAffected() == 0 {
			if err := wr.Close(); err != nil {
				return agentkey.ChargeResult{}, fmt.Errorf("write charge: %w", err)
			}
			return s.storedResult(ctx, tx, req)
		}
	}
	if err := readWrites(wr, plan.Budgets, plan.Changed, len(plan.Entries)); err != nil {
		return agentkey.ChargeResult{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return agentkey.ChargeResult{}, fmt.Errorf("commit charge: %w", err)
	}
	return res, nil
}

// readChargeState reads the results of Charge's first batch: the begin, the
// key with the stored result of its idempotency key, and the locked budgets.
func readChargeState(br pgx.BatchResults) (key agentkey.Key, found bool, stored []byte,
	budgets []agentkey.Budget, err error,
) {
	defer br.Close()

	if _, err := br.Exec(); err != nil {
		return agentkey.Key{}, false, nil, nil, fmt.Errorf("begin: %w", err)
	}
	var r keyRow
	if err := br.QueryRow().Scan(append(r.dest(), &stored)...); err != nil {
		return agentkey.Key{}, false, nil, nil, err
	}
	rows, err := br.Query()
	if err != nil {
		return agentkey.Key{}, false, nil, nil, fmt.Errorf("lock budgets: %w", err)
	}
	if budgets, err = collectBudgets(rows); err != nil {
		return agentkey.Key{}, false, nil, nil, fmt.Errorf("lock budgets: %w", err)
	}
	if err := br.Close(); err != nil {
		return agentkey.Key{}, false, nil, nil, err
	}

	key = r.record().Key
	key.Budgets = budgets
	return key, r.id.Valid, stored, budgets, nil
}

// storedResult returns the result stored under req's idempotency key.
func (s *Store) storedResult(ctx context.Context, tx pgx.Tx, req agentkey.ChargeRequest,
) (agentkey.ChargeResult, error) {
	var stored []byte
	err := tx.QueryRow(ctx, s.sql.idempotencyResult, req.KeyID, req.IdempotencyKey).Scan(&stored)
	if err != nil {
		return agentkey.ChargeResult{}, fmt.Errorf("load idempotent result: %w", err)
	}
	return replay(stored)
}

// replay decodes a stored result.
func replay(stored []byte) (agentkey.ChargeResult, error) {
	var res agentkey.ChargeResult
	if err := json.Unmarshal(stored, &res); err != nil {
		return agentkey.ChargeResult{}, fmt.Errorf("decode idempotent result: %w", err)
	}
	res.Replayed = true
	return res, nil
}

// Adjust applies a manual adjustment to one budget under its row lock, and
// returns the budget after it. A budget that does not exist is
// agentkey.ErrNotFound; agentkey.PlanAdjust's errors are returned wrapped.
func (s *Store) Adjust(ctx context.Context, req agentkey.AdjustRequest) (agentkey.Budget, error) {
	b := &pgx.Batch{}
	b.BeginTx(readCommitted)
	b.Queue(s.sql.lockBudget, req.BudgetID)
	br := s.pool.SendBatch(ctx, b)
	tx := br.Tx()
	defer tx.Rollback(ctx) // a no-op after Commit

	before, err := readLockedBudget(br)
	if err != nil {
		return agentkey.Budget{}, err
	}
	after, entries, err := agentkey.PlanAdjust(req, before)
	if err != nil {
		return agentkey.Budget{}, fmt.Errorf("plan adjustment: %w", err)
	}

	w := &pgx.Batch{}
	olds, news, changed := []agentkey.Budget{before}, []agentkey.Budget{after}, []bool{true}
	if err := s.queueWrites(w, olds, news, changed, entries); err != nil {
		return agentkey.Budget{}, err
	}
	if err := readWrites(tx.SendBatch(ctx, w), news, changed, len(entries)); err != nil {
		return agentkey.Budget{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return agentkey.Budget{}, fmt.Errorf("commit adjustment: %w", err)
	}
	return after, nil
}

// readLockedBudget reads the results of Adjust's first batch: the begin and
// the locked budget.
func readLockedBudget(br pgx.BatchResults) (agentkey.Budget, error) {
	defer br.Close()

	if _, err := br.Exec(); err != nil {
		return agentkey.Budget{}, fmt.Errorf("begin: %w", err)
	}
	var r budgetRow
	if err := br.QueryRow().Scan(r.dest()...); errors.Is(err, pgx.ErrNoRows) {
		return agentkey.Budget{}, fmt.Errorf("lock budget: %w", agentkey.ErrNotFound)
	} else if err != nil {
		return agentkey.Budget{}, fmt.Errorf("lock budget: %w", err)
	}
	if err := br.Close(); err != nil {
		return agentkey.Budget{}, fmt.Errorf("lock budget: %w", err)
	}
	return r.budget(), nil
}

// queueWrites queues a guarded update of each changed budget, from its state
// in before to its state in after, and an insert of each entry, in order, so
// that the database numbers them in order.
func (s *Store) queueWrites(b *pgx.Batch, before, after []agentkey.Budget, changed []bool,
	entries []agentkey.Entry,
) error {
	for i, c := range changed {
		if !c {
			continue
		}
		old, nu := before[i], after[i]
		b.Queue(s.sql.updateBudget, nu.ID, int64(nu.Used), nu.PeriodStart, nullTime(nu.ResetAt),
			int64(old.Used), int64(old.Held), old.PeriodStart)
	}
	for _, e := range entries {
		args, err := entryArgs(e)
		if err != nil {
			return fmt.Errorf("ledger entry for budget %s: %w", e.BudgetID, err)
		}
		b.Queue(s.sql.insertEntry, args...)
	}
	return nil
}

// readWrites reads the results of what queueWrites queued, and closes br.
//
// Each guarded update must find its row: it is locked, so nothing else can
// have changed it. This is a safety net against a store bug, not a retry
// path.
func readWrites(br pgx.BatchResults, after []agentkey.Budget, changed []bool, entries int) error {
	defer br.Close()

	for i, c := range changed {
		if !c {
			continue
		}
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("update budget %s: %w", after[i].ID, err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("update budget %s: the locked row changed under its lock", after[i].ID)
		}
	}
	for range entries {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("insert ledger entry: %w", err)
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
