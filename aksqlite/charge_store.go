package aksqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/agentkey-go/agentkey"
)

// Charge applies req to the key's budgets in one write transaction: it
// returns the stored result of an earlier charge with the same idempotency
// key (even if the key has been revoked since), or loads the key and its
// budgets in id order, lets agentkey.PlanCharge decide, and writes the plan:
// the changed budgets, the ledger entries and the idempotency record. A
// refused plan writes nothing.
func (s *Store) Charge(ctx context.Context, req agentkey.ChargeRequest,
) (agentkey.ChargeResult, error) {
	var res agentkey.ChargeResult
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		res, err = s.charge(ctx, tx, req)
		return err
	})
	if err != nil {
		return agentkey.ChargeResult{}, fmt.Errorf("charge %s: %w", req.KeyID, err)
	}
	return res, nil
}

func (s *Store) charge(ctx context.Context, tx *sql.Tx, req agentkey.ChargeRequest,
) (agentkey.ChargeResult, error) {
	if req.IdempotencyKey != "" {
		res, ok, err := s.storedResult(ctx, tx, req.KeyID, req.IdempotencyKey)
		if err != nil || ok {
			return res, err
		}
	}

	key, err := s.loadKey(ctx, tx, "id", req.KeyID)
	if errors.Is(err, agentkey.ErrNotFound) {
		return agentkey.ChargePlan{Reason: agentkey.ReasonInvalidKey}.Result(req, key), nil
	}
	if err != nil {
		return agentkey.ChargeResult{}, err
	}
	plan, err := agentkey.PlanCharge(req, key, key.Budgets)
	if err != nil {
		return agentkey.ChargeResult{}, err
	}
	res := plan.Result(req, key)
	if plan.Reason != "" {
		return res, nil
	}

	for i, changed := range plan.Changed {
		if changed {
			if err := s.updateBudget(ctx, tx, key.Budgets[i], plan.Budgets[i]); err != nil {
				return agentkey.ChargeResult{}, err
			}
		}
	}
	if err := s.insertEntries(ctx, tx, plan.Entries); err != nil {
		return agentkey.ChargeResult{}, err
	}
	// A zero charge writes nothing but rollovers, so it leaves no record: a
	// later charge with the same idempotency key is a charge of its own.
	if req.IdempotencyKey != "" && req.Amount > 0 {
		if err := s.storeResult(ctx, tx, req, res); err != nil {
			return agentkey.ChargeResult{}, err
		}
	}
	return res, nil
}

// storedResult returns the result recorded for a charge of keyID with idemKey,
// marked as replayed, and whether there is one.
func (s *Store) storedResult(ctx context.Context, tx *sql.Tx, keyID, idemKey string,
) (agentkey.ChargeResult, bool, error) {
	var data string
	err := tx.QueryRowContext(ctx, s.q(`SELECT result FROM {p}idempotency
		WHERE key_id = ? AND idem_key = ?`), keyID, idemKey).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return agentkey.ChargeResult{}, false, nil
	}
	if err != nil {
		return agentkey.ChargeResult{}, false, fmt.Errorf("load idempotency record: %w", err)
	}

	var res agentkey.ChargeResult
	if err := json.Unmarshal([]byte(data), &res); err != nil {
		return agentkey.ChargeResult{}, false, fmt.Errorf("decode idempotency record: %w", err)
	}
	res.Replayed = true
	return res, true, nil
}

func (s *Store) storeResult(ctx context.Context, tx *sql.Tx, req agentkey.ChargeRequest,
	res agentkey.ChargeResult,
) error {
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode idempotency record: %w", err)
	}
	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO {p}idempotency
		(key_id, idem_key, op_id, result, created_at) VALUES (?, ?, ?, ?, ?)`),
		req.KeyID, req.IdempotencyKey, req.OpID, string(data), micros(req.Now))
	if err != nil {
		return fmt.Errorf("insert idempotency record: %w", err)
	}
	return nil
}

// Adjust applies a manual adjustment to one budget, decided by
// agentkey.PlanAdjust under the write lock, and returns the budget after it.
// It returns ErrNotFound when the budget does not exist, and PlanAdjust's
// errors (ErrOverLimit, ErrCreditTooLarge) wrapped.
func (s *Store) Adjust(ctx context.Context, req agentkey.AdjustRequest) (agentkey.Budget, error) {
	var after agentkey.Budget
	err := s.write(ctx, func(tx *sql.Tx) error {
		b, err := scanBudget(tx.QueryRowContext(ctx, s.q(`SELECT `+budgetColumns+`
			FROM {p}budgets WHERE id = ?`), req.BudgetID))
		if errors.Is(err, sql.ErrNoRows) {
			return agentkey.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("load budget: %w", err)
		}

		var entries []agentkey.Entry
		after, entries, err = agentkey.PlanAdjust(req, b)
		if err != nil {
			return err
		}
		if err := s.updateBudget(ctx, tx, b, after); err != nil {
			return err
		}
		return s.insertEntries(ctx, tx, entries)
	})
	if err != nil {
		return agentkey.Budget{}, fmt.Errorf("adjust budget %s: %w", req.BudgetID, err)
	}
	return after, nil
}

// updateBudget writes a budget's new state, guarded by its state as loaded.
// Under the write lock the guard always holds; if it ever does not, the
// transaction fails rather than overwrite a change it did not see.
func (s *Store) updateBudget(ctx context.Context, tx *sql.Tx, before, after agentkey.Budget) error {
	res, err := tx.ExecContext(ctx, s.q(`UPDATE {p}budgets
		SET used = ?, held = ?, period_start = ?, reset_at = ?
		WHERE id = ? AND used = ? AND held = ? AND period_start = ?`),
		int64(after.Used), int64(after.Held), micros(after.PeriodStart), nullMicros(after.ResetAt),
		before.ID, int64(before.Used), int64(before.Held), micros(before.PeriodStart))
	if err != nil {
		return fmt.Errorf("update budget %s: %w", before.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("update budget %s: %w", before.ID, err)
	}
	if n != 1 {
		return fmt.Errorf("update budget %s: changed by another writer under the lock", before.ID)
	}
	return nil
}

// insertEntries appends entries to the ledger in order; the database assigns
// their ascending ids.
func (s *Store) insertEntries(ctx context.Context, tx *sql.Tx, entries []agentkey.Entry) error {
	for _, e := range entries {
		md, err := encodeMetadata(e.Metadata)
		if err != nil {
			return fmt.Errorf("encode entry metadata: %w", err)
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO {p}ledger (op_id, kind, budget_id, key_id,
			account_id, amount, period_start, idempotency_key, metadata, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			e.OpID, string(e.Kind), e.BudgetID, nullString(e.KeyID), nullString(e.AccountID),
			int64(e.Amount), micros(e.PeriodStart), nullString(e.IdempotencyKey), md,
			micros(e.CreatedAt))
		if err != nil {
			return fmt.Errorf("insert %s entry of budget %s: %w", e.Kind, e.BudgetID, err)
		}
	}
	return nil
}
