package aksqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/agentkey-go/agentkey"
)

// defaultLedgerLimit is the number of entries Ledger returns when the filter
// sets no limit.
const defaultLedgerLimit = 100

// Ledger returns the entries that f selects, in ascending id order.
func (s *Store) Ledger(ctx context.Context, f agentkey.LedgerFilter) ([]agentkey.Entry, error) {
	var (
		conds []string
		args  []any
	)
	where := func(cond string, arg any) {
		conds, args = append(conds, cond), append(args, arg)
	}
	if f.KeyID != "" {
		where("key_id = ?", f.KeyID)
	}
	if f.AccountID != "" {
		where("account_id = ?", f.AccountID)
	}
	if f.BudgetID != "" {
		where("budget_id = ?", f.BudgetID)
	}
	if len(f.Kinds) > 0 {
		kinds, err := json.Marshal(f.Kinds)
		if err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		where("kind IN (SELECT value FROM json_each(?))", string(kinds))
	}
	if !f.Since.IsZero() {
		where("created_at >= ?", ceilMicros(f.Since))
	}
	if !f.Until.IsZero() {
		where("created_at < ?", ceilMicros(f.Until))
	}
	if f.AfterID > 0 {
		where("id > ?", f.AfterID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLedgerLimit
	}

	query := `SELECT id, op_id, kind, budget_id, key_id, account_id, hold_id, amount,
		period_start, idempotency_key, metadata, created_at FROM {p}ledger`
	if len(conds) > 0 {
		query += " WHERE " + strings.Join(conds, " AND ")
	}
	rows, err := s.db.QueryContext(ctx, s.q(query+" ORDER BY id LIMIT ?"), append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	defer rows.Close()

	entries := []agentkey.Entry{}
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return entries, nil
}

func scanEntry(rows *sql.Rows) (agentkey.Entry, error) {
	var (
		e                        agentkey.Entry
		kind                     string
		keyID, accountID, holdID sql.NullString
		idem, md                 sql.NullString
		amount                   int64
		periodStart, createdAt   int64
	)
	err := rows.Scan(&e.ID, &e.OpID, &kind, &e.BudgetID, &keyID, &accountID, &holdID, &amount,
		&periodStart, &idem, &md, &createdAt)
	if err != nil {
		return agentkey.Entry{}, err
	}

	e.Kind, e.Amount = agentkey.EntryKind(kind), agentkey.Money(amount)
	e.KeyID, e.AccountID, e.HoldID = keyID.String, accountID.String, holdID.String
	e.IdempotencyKey = idem.String
	e.PeriodStart, e.CreatedAt = fromMicros(periodStart), fromMicros(createdAt)
	if e.Metadata, err = decodeMetadata(md); err != nil {
		return agentkey.Entry{}, fmt.Errorf("entry %d: decode metadata: %w", e.ID, err)
	}
	return e, nil
}

// BudgetTotals returns every budget, in id order, with the sum of its ledger
// entries that count as used in its stored current period, what its hold and
// release entries leave held over all time, and the sum of its open holds.
// One statement reads them all, so they come from one snapshot.
func (s *Store) BudgetTotals(ctx context.Context) ([]agentkey.BudgetTotal, error) {
	// The kinds are those for which agentkey.EntryKind.CountsAsUsed is true,
	// and those for which EntryKind.HeldDelta is not zero.
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+budgetColumns+`,
		COALESCE((SELECT SUM(l.amount) FROM {p}ledger l
			WHERE l.budget_id = b.id AND l.period_start = b.period_start
			AND l.kind IN ('charge', 'adjust', 'settle')), 0),
		COALESCE((SELECT SUM(CASE l.kind WHEN 'hold' THEN l.amount ELSE -l.amount END)
			FROM {p}ledger l WHERE l.budget_id = b.id AND l.kind IN ('hold', 'release')), 0),
		COALESCE((SELECT SUM(h.amount) FROM {p}hold_budgets hb JOIN {p}holds h ON h.id = hb.hold_id
			WHERE hb.budget_id = b.id AND h.state = 'open'), 0)
		FROM {p}budgets b ORDER BY b.id`))
	if err != nil {
		return nil, fmt.Errorf("budget totals: %w", err)
	}
	defer rows.Close()

	totals := []agentkey.BudgetTotal{}
	for rows.Next() {
		var used, held, open int64
		b, err := scanBudget(rows, &used, &held, &open)
		if err != nil {
			return nil, fmt.Errorf("budget totals: %w", err)
		}
		totals = append(totals, agentkey.BudgetTotal{Budget: b, LedgerUsed: agentkey.Money(used),
			LedgerHeld: agentkey.Money(held), OpenHolds: agentkey.Money(open)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("budget totals: %w", err)
	}
	return totals, nil
}
