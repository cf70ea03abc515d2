package akpostgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentkey-go/agentkey"
)

// Charge applies req to the budgets of the key's whole path in one READ
// COMMITTED transaction, as agentkey.Store documents. It replays the stored
// result of an earlier charge with the same idempotency key, even of a key
// revoked since.
//
// A charge that goes through costs three round trips: the begin, the key and
// idempotency lookup and the path budgets' lock in one batch; the writes in a
// second batch; the commit. A replay or a refusal costs two: the first batch
// and the rollback. A charge of zero writes nothing, rollovers included, and
// is not recorded under its idempotency key.
func (s *Store) Charge(ctx context.Context, req agentkey.ChargeRequest,
) (agentkey.ChargeResult, error) {
	load, lock, arg := s.sql.loadByID, s.sql.lockPathByID, any(req.KeyID)
	if req.KeyID == "" {
		load, lock, arg = s.sql.loadByHash, s.sql.lockPathByHash, req.KeyHash
	}
	b := &pgx.Batch{}
	b.BeginTx(readCommitted)
	b.Queue(load, arg, nullString(req.IdempotencyKey), idemCharge)
	// Budgets are locked even when the lookup will find a replay or no key:
	// sending both statements at once saves a round trip on every charge,
	// and a lock taken for nothing is released by the rollback.
	b.Queue(lock, arg)
	br := s.pool.SendBatch(ctx, b)
	tx := br.Tx()
	defer tx.Rollback(ctx) // a no-op after Commit

	key, found, stored, budgets, err := readChargeState(br)
	if err != nil {
		return agentkey.ChargeResult{}, fmt.Errorf("load key: %w", err)
	}
	if stored != nil {
		return replayCharge(stored)
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

	op := operation{keyID: key.ID, kind: idemCharge, idemKey: req.IdempotencyKey,
		opID: req.OpID, now: req.Now, result: res}
	if stored, err := s.write(ctx, tx, op, budgets, plan, nil); err != nil {
		return agentkey.ChargeResult{}, fmt.Errorf("write charge: %w", err)
	} else if stored != nil {
		return replayCharge(stored)
	}
	if err := tx.Commit(ctx); err != nil {
		return agentkey.ChargeResult{}, fmt.Errorf("commit charge: %w", err)
	}
	return res, nil
}

// operation is a charge or a hold that write records: its key, and the
// result to store under its idempotency key, if it has one.
type operation struct {
	keyID, kind, idemKey, opID string
	now                        time.Time
	result                     any
}

// write sends, in one batch, what a charge or a reservation writes: the
// idempotency record (first, so that a concurrent duplicate is found before
// anything else is written), the new hold if any, then each changed budget
// and each entry of the plan.
//
// It returns the stored result when a concurrent operation with the same
// idempotency key committed first (the unique index makes this insert wait
// for one still in flight): that operation is the one that counts, and the
// caller rolls back what the rest of the batch wrote. Otherwise the caller
// commits.
func (s *Store) write(ctx context.Context, tx pgx.Tx, op operation, before []agentkey.Budget,
	plan agentkey.ChargePlan, hold *agentkey.Hold,
) (stored []byte, err error) {
	w := &pgx.Batch{}
	if op.idemKey != "" {
		js, err := json.Marshal(op.result)
		if err != nil {
			return nil, fmt.Errorf("encode result: %w", err)
		}
		w.Queue(s.sql.insertIdempotency, op.keyID, op.kind, op.idemKey, op.opID, js, op.now)
	}
	if hold != nil {
		args, err := holdArgs(*hold)
		if err != nil {
			return nil, fmt.Errorf("hold %s: %w", hold.ID, err)
		}
		w.Queue(s.sql.insertHold, args...)
	}
	if err := s.queueWrites(w, before, plan.Budgets, plan.Changed, plan.Entries); err != nil {
		return nil, err
	}

	wr := tx.SendBatch(ctx, w)
	defer wr.Close()
	if op.idemKey != "" {
		tag, err := wr.Exec()
		if err != nil {
			return nil, fmt.Errorf("record idempotency key: %w", err)
		}
		if tag.RowsAffected() == 0 {
			if err := wr.Close(); err != nil {
				return nil, err
			}
			err := tx.QueryRow(ctx, s.sql.idempotencyResult, op.keyID, op.kind, op.idemKey).
				Scan(&stored)
			if err != nil {
				return nil, fmt.Errorf("load idempotent result: %w", err)
			}
			return stored, nil
		}
	}
	if hold != nil {
		if _, err := wr.Exec(); err != nil {
			return nil, fmt.Errorf("insert hold: %w", s.uniqueError(err))
		}
	}
	return nil, readWrites(wr, plan.Budgets, plan.Changed, len(plan.Entries))
}

// readChargeState reads the results of the first batch of Charge and
// Reserve: the begin, the key with the stored result of its idempotency key,
// and the locked path budgets.
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

// replayCharge decodes a stored charge result.
func replayCharge(stored []byte) (agentkey.ChargeResult, error) {
	var res agentkey.ChargeResult
	if err := json.Unmarshal(stored, &res); err != nil {
		return agentkey.ChargeResult{}, fmt.Errorf("decode idempotent result: %w", err)
	}
	res.Replayed = true
	return res, nil
}

// Adjust applies a manual adjustment to one budget under its row lock, and
// returns the budget after it. req.AccountID is filled from the budget's
// owner in the same statement that locks the budget. A budget that does not
// exist is agentkey.ErrNotFound; agentkey.PlanAdjust's errors are returned
// wrapped.
func (s *Store) Adjust(ctx context.Context, req agentkey.AdjustRequest) (agentkey.Budget, error) {
	b := &pgx.Batch{}
	b.BeginTx(readCommitted)
	b.Queue(s.sql.lockBudget, req.BudgetID)
	br := s.pool.SendBatch(ctx, b)
	tx := br.Tx()
	defer tx.Rollback(ctx) // a no-op after Commit

	before, accountID, err := readLockedBudget(br)
	if err != nil {
		return agentkey.Budget{}, err
	}
	req.AccountID = accountID
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

// readLockedBudget reads the results of Adjust's first batch: the begin, and
// the locked budget with the account of its owner.
func readLockedBudget(br pgx.BatchResults) (b agentkey.Budget, accountID string, err error) {
	defer br.Close()

	if _, err := br.Exec(); err != nil {
		return agentkey.Budget{}, "", fmt.Errorf("begin: %w", err)
	}
	var r budgetRow
	err = br.QueryRow().Scan(append(r.dest(), &accountID)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return agentkey.Budget{}, "", fmt.Errorf("lock budget: %w", agentkey.ErrNotFound)
	} else if err != nil {
		return agentkey.Budget{}, "", fmt.Errorf("lock budget: %w", err)
	}
	if err := br.Close(); err != nil {
		return agentkey.Budget{}, "", fmt.Errorf("lock budget: %w", err)
	}
	return r.budget(), accountID, nil
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
		b.Queue(s.sql.updateBudget, nu.ID, int64(nu.Used), int64(nu.Held), nu.PeriodStart,
			nullTime(nu.ResetAt), int64(old.Used), int64(old.Held), old.PeriodStart)
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

// readWrites reads the results of what queueWrites queued, and closes br:
// whatever was queued before them must have been read already.
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
