package aksqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentkey-go/agentkey"
)

// defaultHoldLimit is the number of holds Holds and ExpiredHolds return when
// no limit is given.
const defaultHoldLimit = 100

const holdColumns = `id, key_id, account_id, amount, state, expires_at, created_at, closed_at,
	charged, overrun, idempotency_key, metadata`

// holdSelect selects holds h with their budget ids, in the order NewHold
// gave them (id order), as a JSON array.
var holdSelect = `SELECT ` + qualify("h", holdColumns) + `,
	(SELECT json_group_array(hb.budget_id ORDER BY hb.budget_id)
		FROM {p}hold_budgets hb WHERE hb.hold_id = h.id)
	FROM {p}holds h`

var holdByID = holdSelect + ` WHERE h.id = ?`

// Reserve makes a hold in one write transaction: it loads the key with the
// budgets of its path in id order; returns the stored result of an earlier
// hold with the same idempotency key; or lets agentkey.PlanReserve decide and
// writes the plan: the changed budgets, the ledger entries, the hold with its
// budgets and the idempotency record. A refused plan writes nothing.
func (s *Store) Reserve(ctx context.Context, req agentkey.ReserveRequest,
) (agentkey.ReserveResult, error) {
	var res agentkey.ReserveResult
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		res, err = s.reserve(ctx, tx, req)
		return err
	})
	if err != nil {
		return agentkey.ReserveResult{}, fmt.Errorf("reserve for %s: %w", req.KeyID, err)
	}
	return res, nil
}

func (s *Store) reserve(ctx context.Context, tx *sql.Tx, req agentkey.ReserveRequest,
) (agentkey.ReserveResult, error) {
	key, err := s.loadKey(ctx, tx, "id", req.KeyID)
	if errors.Is(err, agentkey.ErrNotFound) {
		return agentkey.ReserveResult{Reason: agentkey.ReasonInvalidKey}, nil
	}
	if err != nil {
		return agentkey.ReserveResult{}, err
	}
	if req.IdempotencyKey != "" {
		var res agentkey.ReserveResult
		ok, err := s.storedResult(ctx, tx, key.ID, idemHold, req.IdempotencyKey, &res)
		if err != nil {
			return agentkey.ReserveResult{}, err
		}
		if ok {
			res.Replayed = true
			return res, nil
		}
	}

	plan, err := agentkey.PlanReserve(req, key, key.Budgets)
	if err != nil {
		return agentkey.ReserveResult{}, err
	}
	if plan.Reason == agentkey.ReasonInvalidKey {
		return agentkey.ReserveResult{Reason: plan.Reason}, nil
	}
	expiredOn, err := s.expiredHoldsOn(ctx, tx, key.Budgets, req.Now)
	if err != nil {
		return agentkey.ReserveResult{}, err
	}
	if plan.Reason != "" {
		if plan.Budgets != nil {
			key.Budgets = plan.Budgets
		}
		return agentkey.ReserveResult{Reason: plan.Reason, Key: key, RefusedBy: plan.RefusedBy,
			ExpiredHoldsOn: expiredOn}, nil
	}

	if err := s.updateBudgets(ctx, tx, key.Budgets, plan.Budgets, plan.Changed); err != nil {
		return agentkey.ReserveResult{}, err
	}
	if err := s.insertEntries(ctx, tx, plan.Entries); err != nil {
		return agentkey.ReserveResult{}, err
	}
	hold := agentkey.NewHold(req, key, key.Budgets)
	if err := s.insertHold(ctx, tx, hold); err != nil {
		return agentkey.ReserveResult{}, err
	}

	key.Budgets = plan.Budgets
	res := agentkey.ReserveResult{Hold: hold, Key: key, ExpiredHoldsOn: expiredOn}
	if req.IdempotencyKey != "" {
		err := s.storeResult(ctx, tx, key.ID, idemHold, req.IdempotencyKey, req.OpID, req.Now, res)
		if err != nil {
			return agentkey.ReserveResult{}, err
		}
	}
	return res, nil
}

// insertHold inserts a hold's row and its budget rows.
func (s *Store) insertHold(ctx context.Context, tx *sql.Tx, h agentkey.Hold) error {
	md, err := encodeMetadata(h.Metadata)
	if err != nil {
		return fmt.Errorf("encode hold metadata: %w", err)
	}
	ids, err := json.Marshal(h.BudgetIDs)
	if err != nil {
		return fmt.Errorf("encode hold budget ids: %w", err)
	}

	_, err = s.exec(ctx, tx, `INSERT INTO {p}holds (`+holdColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		h.ID, h.KeyID, h.AccountID, int64(h.Amount), string(h.State), micros(h.ExpiresAt),
		micros(h.CreatedAt), nullMicros(h.ClosedAt), int64(h.Charged), int64(h.Overrun),
		nullString(h.IdempotencyKey), md)
	if err != nil {
		return fmt.Errorf("insert hold: %w", err)
	}
	_, err = s.exec(ctx, tx, `INSERT INTO {p}hold_budgets (hold_id, budget_id)
		SELECT ?, value FROM json_each(?)`, h.ID, string(ids))
	if err != nil {
		return fmt.Errorf("insert hold budgets: %w", err)
	}
	return nil
}

// CloseHold settles or releases a hold in one write transaction: it loads the
// hold (ErrNotFound if absent), lets agentkey.CheckClose say whether there is
// anything to do, then loads the hold's budgets that still exist, in id
// order, lets agentkey.PlanClose decide, and writes the changed budgets, the
// entries and the closed hold.
func (s *Store) CloseHold(ctx context.Context, req agentkey.CloseRequest,
) (agentkey.CloseResult, error) {
	var res agentkey.CloseResult
	err := s.write(ctx, func(tx *sql.Tx) error {
		h, err := s.loadHold(ctx, tx, req.HoldID)
		if err != nil {
			return err
		}
		var done bool
		if res, done, err = agentkey.CheckClose(req, h); err != nil || done {
			return err
		}

		rows, err := s.query(ctx, tx, `SELECT `+budgetColumns+` FROM {p}budgets
			WHERE id IN (SELECT budget_id FROM {p}hold_budgets WHERE hold_id = ?)
			ORDER BY id`, h.ID)
		if err != nil {
			return fmt.Errorf("load hold budgets: %w", err)
		}
		budgets, err := scanBudgets(rows)
		if err != nil {
			return err
		}
		plan, err := agentkey.PlanClose(req, h, budgets)
		if err != nil {
			return err
		}

		if err := s.updateBudgets(ctx, tx, budgets, plan.Budgets, plan.Changed); err != nil {
			return err
		}
		if err := s.insertEntries(ctx, tx, plan.Entries); err != nil {
			return err
		}
		if err := s.closeHold(ctx, tx, h.State, plan.Hold); err != nil {
			return err
		}
		res = plan.Result
		return nil
	})
	if err != nil {
		return agentkey.CloseResult{}, fmt.Errorf("close hold %s: %w", req.HoldID, err)
	}
	return res, nil
}

// closeHold writes the closed state of h, guarded by its state as loaded.
func (s *Store) closeHold(ctx context.Context, tx *sql.Tx, was agentkey.HoldState,
	h agentkey.Hold,
) error {
	res, err := s.exec(ctx, tx, `UPDATE {p}holds
		SET state = ?, closed_at = ?, charged = ?, overrun = ? WHERE id = ? AND state = ?`,
		string(h.State), nullMicros(h.ClosedAt), int64(h.Charged), int64(h.Overrun), h.ID,
		string(was))
	if err != nil {
		return fmt.Errorf("update hold: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update hold: %w", err)
	} else if n != 1 {
		return errors.New("update hold: changed by another writer under the lock")
	}
	return nil
}

// Hold returns a hold with its budget ids, or ErrNotFound.
func (s *Store) Hold(ctx context.Context, id string) (agentkey.Hold, error) {
	h, err := s.loadHold(ctx, s.db, id)
	if err != nil {
		return agentkey.Hold{}, fmt.Errorf("get hold %s: %w", id, err)
	}
	return h, nil
}

func (s *Store) loadHold(ctx context.Context, q querier, id string) (agentkey.Hold, error) {
	h, err := scanHold(s.queryRow(ctx, q, holdByID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return agentkey.Hold{}, agentkey.ErrNotFound
	}
	if err != nil {
		return agentkey.Hold{}, fmt.Errorf("load hold: %w", err)
	}
	return h, nil
}

// Holds lists the holds that f selects, in id order.
func (s *Store) Holds(ctx context.Context, f agentkey.HoldFilter) ([]agentkey.Hold, error) {
	var (
		conds []string
		args  []any
	)
	where := func(cond string, arg any) {
		conds, args = append(conds, cond), append(args, arg)
	}
	if f.KeyID != "" {
		where("h.key_id = ?", f.KeyID)
	}
	if f.AccountID != "" {
		where("h.account_id = ?", f.AccountID)
	}
	if f.State != "" {
		where("h.state = ?", string(f.State))
	}
	if f.After != "" {
		where("h.id > ?", f.After)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultHoldLimit
	}

	query := holdSelect
	if len(conds) > 0 {
		query += " WHERE " + strings.Join(conds, " AND ")
	}
	rows, err := s.db.QueryContext(ctx, s.q(query+" ORDER BY h.id LIMIT ?"), append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("holds: %w", err)
	}
	defer rows.Close()

	holds := []agentkey.Hold{}
	for rows.Next() {
		h, err := scanHold(rows)
		if err != nil {
			return nil, fmt.Errorf("holds: %w", err)
		}
		holds = append(holds, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("holds: %w", err)
	}
	return holds, nil
}

// ExpiredHolds returns the ids of up to limit open holds whose expiry is at
// or before now, oldest expiry first; with budgetIDs, only holds on one of
// those budgets. The partial index of open holds drives the query, so closed
// holds, however many, cost nothing.
func (s *Store) ExpiredHolds(ctx context.Context, now time.Time, budgetIDs []string, limit int,
) ([]string, error) {
	if limit <= 0 {
		limit = defaultHoldLimit
	}
	query := `SELECT h.id FROM {p}holds h WHERE h.state = 'open' AND h.expires_at <= ?`
	args := []any{micros(now)}
	if len(budgetIDs) > 0 {
		query += ` AND EXISTS (SELECT 1 FROM {p}hold_budgets hb
			WHERE hb.hold_id = h.id AND hb.budget_id IN (SELECT value FROM json_each(?)))`
		ids, err := json.Marshal(budgetIDs)
		if err != nil {
			return nil, fmt.Errorf("expired holds: %w", err)
		}
		args = append(args, string(ids))
	}

	rows, err := s.db.QueryContext(ctx, s.q(query+` ORDER BY h.expires_at, h.id LIMIT ?`),
		append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("expired holds: %w", err)
	}
	defer rows.Close()

	ids := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("expired holds: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("expired holds: %w", err)
	}
	return ids, nil
}

// scanHold scans the columns of holdSelect.
func scanHold(row scanner) (agentkey.Hold, error) {
	var (
		h                        agentkey.Hold
		state, budgetIDs         string
		idem, md                 sql.NullString
		amount, charged, overrun int64
		expiresAt, createdAt     int64
		closedAt                 sql.NullInt64
	)
	err := row.Scan(&h.ID, &h.KeyID, &h.AccountID, &amount, &state, &expiresAt, &createdAt,
		&closedAt, &charged, &overrun, &idem, &md, &budgetIDs)
	if err != nil {
		return agentkey.Hold{}, err
	}

	h.State, h.IdempotencyKey = agentkey.HoldState(state), idem.String
	h.Amount, h.Charged, h.Overrun = agentkey.Money(amount), agentkey.Money(charged),
		agentkey.Money(overrun)
	h.ExpiresAt, h.CreatedAt, h.ClosedAt = fromMicros(expiresAt), fromMicros(createdAt),
		fromNullMicros(closedAt)
	if h.Metadata, err = decodeMetadata(md); err != nil {
		return agentkey.Hold{}, fmt.Errorf("hold %s: decode metadata: %w", h.ID, err)
	}
	h.BudgetIDs = []string{}
	if err := json.Unmarshal([]byte(budgetIDs), &h.BudgetIDs); err != nil {
		return agentkey.Hold{}, fmt.Errorf("hold %s: decode budget ids: %w", h.ID, err)
	}
	return h, nil
}

// OpenHolds counts the open holds and adds up their amounts, through the
// partial index of open holds.
func (s *Store) OpenHolds(ctx context.Context) (agentkey.HoldStats, error) {
	var count, amount int64
	err := s.queryRow(ctx, s.db, `SELECT count(*), coalesce(sum(amount), 0) FROM {p}holds
		WHERE state = 'open'`).Scan(&count, &amount)
	if err != nil {
		return agentkey.HoldStats{}, fmt.Errorf("count open holds: %w", err)
	}
	return agentkey.HoldStats{Count: count, Amount: agentkey.Money(amount)}, nil
}
