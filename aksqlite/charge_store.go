package aksqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentkey-go/agentkey"
)

// Idempotency record kinds: a charge and a hold with the same idempotency key
// are different operations.
const (
	idemCharge = "charge"
	idemHold   = "hold"
)

// Charge applies req to the budgets of the key's path in one write
// transaction: it loads the key, by id or by the hash of its secret, with the
// budgets of its path in id order; returns the stored result of an earlier
// charge with the same idempotency key (even if the key has been revoked
// since); or lets agentkey.PlanCharge decide and writes the plan: the changed
// budgets, the ledger entries and the idempotency record. A refused plan
// writes nothing.
func (s *Store) Charge(ctx context.Context, req agentkey.ChargeRequest,
) (agentkey.ChargeResult, error) {
	var res agentkey.ChargeResult
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		res, err = s.charge(ctx, tx, req)
		return err
	})
	if err != nil {
		who := req.KeyID
		if who == "" {
			who = "by hash"
		}
		return agentkey.ChargeResult{}, fmt.Errorf("charge %s: %w", who, err)
	}
	return res, nil
}

func (s *Store) charge(ctx context.Context, tx *sql.Tx, req agentkey.ChargeRequest,
) (agentkey.ChargeResult, error) {
	column, arg := "id", any(req.KeyID)
	if req.KeyID == "" {
		column, arg = "hash", req.KeyHash
	}
	key, err := s.loadKey(ctx, tx, column, arg)
	if errors.Is(err, agentkey.ErrNotFound) {
		return agentkey.ChargePlan{Reason: agentkey.ReasonInvalidKey}.Result(req, key), nil
	}
	if err != nil {
		return agentkey.ChargeResult{}, err
	}
	if req.IdempotencyKey != "" {
		var res agentkey.ChargeResult
		ok, err := s.storedResult(ctx, tx, key.ID, idemCharge, req.IdempotencyKey, &res)
		if err != nil {
			return agentkey.ChargeResult{}, err
		}
		if ok {
			res.Replayed = true
			return res, nil
		}
	}

	plan, err := agentkey.PlanCharge(req, key, key.Budgets)
	if err != nil {
		return agentkey.ChargeResult{}, err
	}
	res := plan.Result(req, key)
	if res.ExpiredHoldsOn, err = s.expiredHoldsOn(ctx, tx, key.Budgets, req.Now); err != nil {
		return agentkey.ChargeResult{}, err
	}
	if plan.Reason != "" || req.Amount == 0 {
		return res, nil
	}

	if err := s.updateBudgets(ctx, tx, key.Budgets, plan.Budgets, plan.Changed); err != nil {
		return agentkey.ChargeResult{}, err
	}
	if err := s.insertEntries(ctx, tx, plan.Entries); err != nil {
		return agentkey.ChargeResult{}, err
	}
	if req.IdempotencyKey != "" {
		err := s.storeResult(ctx, tx, key.ID, idemCharge, req.IdempotencyKey, req.OpID, req.Now, res)
		if err != nil {
			return agentkey.ChargeResult{}, err
		}
	}
	return res, nil
}

// expiredHoldsOn returns the ids of those of budgets that carry an open hold
// expired at now. The expiry index finds the expired holds, which are few
// while a sweeper runs.
func (s *Store) expiredHoldsOn(ctx context.Context, tx *sql.Tx, budgets []agentkey.Budget,
	now time.Time,
) ([]string, error) {
	ids := make([]string, len(budgets))
	for i, b := range budgets {
		ids[i] = b.ID
	}
	js, err := json.Marshal(ids)
	if err != nil {
		return nil, fmt.Errorf("find expired holds: %w", err)
	}
	// CROSS JOIN makes SQLite read the holds first, through the partial
	// index of open holds by expiry (SQLite manual, The SQLite Query
	// Optimizer Overview, Manual Control Of Query Plans Using CROSS JOIN):
	// starting from hold_budgets would read every hold a budget ever had.
	rows, err := s.query(ctx, tx, `SELECT DISTINCT hb.budget_id
		FROM {p}holds h CROSS JOIN {p}hold_budgets hb ON hb.hold_id = h.id
		WHERE h.state = 'open' AND h.expires_at <= ?
			AND hb.budget_id IN (SELECT value FROM json_each(?))`, micros(now), string(js))
	if err != nil {
		return nil, fmt.Errorf("find expired holds: %w", err)
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("find expired holds: %w", err)
		}
		found = append(found, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find expired holds: %w", err)
	}
	return found, nil
}

// storedResult decodes into res the result recorded for an operation of kind
// by keyID with idemKey, and reports whether there is one.
func (s *Store) storedResult(ctx context.Context, tx *sql.Tx, keyID, kind, idemKey string,
	res any,
) (bool, error) {
	var data string
	err := s.queryRow(ctx, tx, `SELECT result FROM {p}idempotency
		WHERE key_id = ? AND kind = ? AND idem_key = ?`, keyID, kind, idemKey).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load idempotency record: %w", err)
	}
	if err := json.Unmarshal([]byte(data), res); err != nil {
		return false, fmt.Errorf("decode idempotency record: %w", err)
	}
	return true, nil
}

func (s *Store) storeResult(ctx context.Context, tx *sql.Tx, keyID, kind, idemKey, opID string,
	now time.Time, res any,
) error {
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode idempotency record: %w", err)
	}
	_, err = s.exec(ctx, tx, `INSERT INTO {p}idempotency
		(key_id, kind, idem_key, op_id, result, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		keyID, kind, idemKey, opID, string(data), micros(now))
	if err != nil {
		return fmt.Errorf("insert idempotency record: %w", err)
	}
	return nil
}

// Adjust applies a manual adjustment to one budget, decided by
// agentkey.PlanAdjust under the write lock, and returns the budget after it.
// The entries carry the account of the budget's owner. It returns
// ErrNotFound when the budget does not exist, and PlanAdjust's errors
// (ErrOverLimit, ErrCreditTooLarge) wrapped.
func (s *Store) Adjust(ctx context.Context, req agentkey.AdjustRequest) (agentkey.Budget, error) {
	var after agentkey.Budget
	err := s.write(ctx, func(tx *sql.Tx) error {
		var account sql.NullString
		b, err := scanBudget(s.queryRow(ctx, tx, `SELECT `+budgetColumns+`,
			`+ownerAccount("owner_kind", "owner_id")+`
			FROM {p}budgets WHERE id = ?`, req.BudgetID), &account)
		if errors.Is(err, sql.ErrNoRows) {
			return agentkey.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("load budget: %w", err)
		}

		var entries []agentkey.Entry
		req.AccountID = account.String
		after, entries, err = agentkey.PlanAdjust(req, b)
		if err != nil {
			return err
		}
		err = s.updateBudgets(ctx, tx, []agentkey.Budget{b}, []agentkey.Budget{after}, []bool{true})
		if err != nil {
			return err
		}
		return s.insertEntries(ctx, tx, entries)
	})
	if err != nil {
		return agentkey.Budget{}, fmt.Errorf("adjust budget %s: %w", req.BudgetID, err)
	}
	return after, nil
}

// insertEntries appends entries to the ledger in order; the database assigns
// their ascending ids.
func (s *Store) insertEntries(ctx context.Context, tx *sql.Tx, entries []agentkey.Entry) error {
	for _, e := range entries {
		md, err := encodeMetadata(e.Metadata)
		if err != nil {
			return fmt.Errorf("encode entry metadata: %w", err)
		}
		_, err = s.exec(ctx, tx, `INSERT INTO {p}ledger (op_id, kind, budget_id, key_id,
			account_id, hold_id, amount, period_start, idempotency_key, metadata, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.OpID, string(e.Kind), e.BudgetID, nullString(e.KeyID), nullString(e.AccountID),
			nullString(e.HoldID), int64(e.Amount), micros(e.PeriodStart),
			nullString(e.IdempotencyKey), md, micros(e.CreatedAt))
		if err != nil {
			return fmt.Errorf("insert %s entry of budget %s: %w", e.Kind, e.BudgetID, err)
		}
	}
	return nil
}
