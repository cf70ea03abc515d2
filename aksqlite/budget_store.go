package aksqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/agentkey-go/agentkey"
)

const budgetColumns = `id, owner_kind, owner_id, limit_micros, period, location, anchor,
	period_start, reset_at, used, held, created_at`

// qualify returns the comma-separated columns each prefixed with alias and a
// dot, for queries that join tables with columns of the same name.
func qualify(alias, columns string) string {
	parts := strings.Split(columns, ",")
	for i, c := range parts {
		parts[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

// PutBudget inserts b, or replaces the limit of the owner's budget with b's
// period (and, with replaceAnchor, its anchor, which takes effect at the next
// reset) while keeping its id, window, used, held and creation time. One
// upsert under the write lock does both, and returns the stored row; the
// budget is recorded in the ledger in the same transaction.
func (s *Store) PutBudget(ctx context.Context, b agentkey.Budget, replaceAnchor bool,
	op agentkey.Op,
) (agentkey.Budget, error) {
	set := `limit_micros = excluded.limit_micros`
	if replaceAnchor {
		set += `, anchor = excluded.anchor`
	}

	var stored agentkey.Budget
	err := s.write(ctx, func(tx *sql.Tx) error {
		owner := agentkey.Owner{Kind: b.OwnerKind, ID: b.OwnerID}
		if err := s.ownerExists(ctx, tx, owner); err != nil {
			return err
		}
		var err error
		stored, err = scanBudget(tx.QueryRowContext(ctx, s.q(`INSERT INTO {p}budgets
			(`+budgetColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (owner_kind, owner_id, period) DO UPDATE SET `+set+`
			RETURNING `+budgetColumns), budgetArgs(b)...))
		if err != nil {
			return err
		}
		return s.recordBudget(ctx, tx, op, agentkey.EntryBudgetSet, stored, stored.ID != b.ID)
	})
	if err != nil {
		return agentkey.Budget{}, fmt.Errorf("put budget of %s %s: %w", b.OwnerKind, b.OwnerID, err)
	}
	return stored, nil
}

// DeleteBudget removes the owner's budget with period p, and inserts meter in
// the same transaction if it is not nil and the owner has no budget left,
// recording both in the ledger. It returns ErrNotFound when the owner has no
// budget with period p. The ledger keeps the removed budget's entries; open
// holds on it skip it when they close.
func (s *Store) DeleteBudget(ctx context.Context, o agentkey.Owner, p agentkey.Period,
	meter *agentkey.Budget, op agentkey.Op,
) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		deleted, err := scanBudget(tx.QueryRowContext(ctx, s.q(`DELETE FROM {p}budgets
			WHERE owner_kind = ? AND owner_id = ? AND period = ?
			RETURNING `+budgetColumns), string(o.Kind), o.ID, string(p)))
		if errors.Is(err, sql.ErrNoRows) {
			return agentkey.ErrNotFound
		}
		if err != nil {
			return err
		}
		err = s.recordBudget(ctx, tx, op, agentkey.EntryBudgetRemoved, deleted, false)
		if err != nil || meter == nil {
			return err
		}

		var left bool
		if err := tx.QueryRowContext(ctx, s.q(`SELECT EXISTS (SELECT 1 FROM {p}budgets
			WHERE owner_kind = ? AND owner_id = ?)`), string(o.Kind), o.ID).Scan(&left); err != nil {
			return err
		}
		if left {
			return nil
		}
		if err := s.insertBudgets(ctx, tx, []agentkey.Budget{*meter}); err != nil {
			return err
		}
		return s.recordBudget(ctx, tx, op, agentkey.EntryBudgetSet, *meter, false)
	})
	if err != nil {
		return fmt.Errorf("delete %s budget of %s %s: %w", p, o.Kind, o.ID, err)
	}
	return nil
}

// ownerAccount returns an expression for the account of the budget owner
// that kind and id name: the key's account for a key (empty if the key is gone),
// the account itself for an account.
func ownerAccount(kind, id string) string {
	return `CASE ` + kind + ` WHEN 'key' THEN coalesce((SELECT k.account_id FROM {p}keys k
		WHERE k.id = ` + id + `), '') ELSE ` + id + ` END`
}

// recordBudget writes the ledger entry of kind for budget b, with the
// account of its owner.
func (s *Store) recordBudget(ctx context.Context, tx *sql.Tx, op agentkey.Op,
	kind agentkey.EntryKind, b agentkey.Budget, replaced bool,
) error {
	var account string
	err := tx.QueryRowContext(ctx, s.q(`SELECT `+ownerAccount("?1", "?2")),
		string(b.OwnerKind), b.OwnerID).Scan(&account)
	if err != nil {
		return fmt.Errorf("load owner's account: %w", err)
	}
	entry := agentkey.BudgetEntry(op, kind, b, account, replaced)
	return s.insertEntries(ctx, tx, []agentkey.Entry{entry})
}

// Budgets returns the owner's own budgets in id order; none (an empty
// slice) for an owner without budgets or that does not exist.
func (s *Store) Budgets(ctx context.Context, o agentkey.Owner) ([]agentkey.Budget, error) {
	bs, err := s.loadBudgets(ctx, s.db, o.Kind, o.ID)
	if err != nil {
		return nil, fmt.Errorf("budgets of %s %s: %w", o.Kind, o.ID, err)
	}
	if bs == nil {
		bs = []agentkey.Budget{}
	}
	return bs, nil
}

// ownerExists returns nil if o's key or account row exists, and ErrNotFound
// otherwise.
func (s *Store) ownerExists(ctx context.Context, q querier, o agentkey.Owner) error {
	var table string
	switch o.Kind {
	case agentkey.OwnerKey:
		table = "{p}keys"
	case agentkey.OwnerAccount:
		table = "{p}accounts"
	default:
		return fmt.Errorf("%w: owner kind %q", agentkey.ErrInvalidArgument, o.Kind)
	}

	var one int
	err := q.QueryRowContext(ctx, s.q(`SELECT 1 FROM `+table+` WHERE id = ?`), o.ID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s %s: %w", o.Kind, o.ID, agentkey.ErrNotFound)
	}
	return err
}

func (s *Store) insertBudgets(ctx context.Context, tx *sql.Tx, budgets []agentkey.Budget) error {
	for _, b := range budgets {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO {p}budgets (`+budgetColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`), budgetArgs(b)...)
		if err != nil {
			return fmt.Errorf("insert budget %s: %w", b.ID, err)
		}
	}
	return nil
}

// budgetArgs returns b's values in the order of budgetColumns.
func budgetArgs(b agentkey.Budget) []any {
	var limit sql.NullInt64
	if !b.Unlimited {
		limit = sql.NullInt64{Int64: int64(b.Limit), Valid: true}
	}
	return []any{b.ID, string(b.OwnerKind), b.OwnerID, limit, string(b.Period), b.Location,
		micros(b.Anchor), micros(b.PeriodStart), nullMicros(b.ResetAt),
		int64(b.Used), int64(b.Held), micros(b.CreatedAt)}
}

// loadBudgets returns an owner's budgets in ascending id order, the order in
// which every operation locks and processes them.
func (s *Store) loadBudgets(ctx context.Context, q querier, kind agentkey.OwnerKind, owner string,
) ([]agentkey.Budget, error) {
	rows, err := s.query(ctx, q, `SELECT `+budgetColumns+` FROM {p}budgets
		WHERE owner_kind = ? AND owner_id = ? ORDER BY id`, string(kind), owner)
	if err != nil {
		return nil, fmt.Errorf("load budgets: %w", err)
	}
	return scanBudgets(rows)
}

// scanBudgets reads and closes rows of budgetColumns.
func scanBudgets(rows *sql.Rows) ([]agentkey.Budget, error) {
	defer rows.Close()

	var budgets []agentkey.Budget
	for rows.Next() {
		b, err := scanBudget(rows)
		if err != nil {
			return nil, fmt.Errorf("load budgets: %w", err)
		}
		budgets = append(budgets, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load budgets: %w", err)
	}
	return budgets, nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// scanBudget scans the columns of budgetColumns, then extra.
func scanBudget(row scanner, extra ...any) (agentkey.Budget, error) {
	var r budgetRow
	if err := row.Scan(append(r.dest(), extra...)...); err != nil {
		return agentkey.Budget{}, err
	}
	b, _ := r.budget()
	return b, nil
}

// budgetRow receives the columns of budgetColumns, which a LEFT JOIN may
// leave NULL.
type budgetRow struct {
	id, kind, owner, period, location                        sql.NullString
	limit, anchor, periodStart, resetAt, used, held, created sql.NullInt64
}

func (r *budgetRow) dest() []any {
	return []any{&r.id, &r.kind, &r.owner, &r.limit, &r.period, &r.location, &r.anchor,
		&r.periodStart, &r.resetAt, &r.used, &r.held, &r.created}
}

// budget returns the budget scanned, and false if the columns were NULL.
func (r *budgetRow) budget() (agentkey.Budget, bool) {
	if !r.id.Valid {
		return agentkey.Budget{}, false
	}
	return agentkey.Budget{
		ID:          r.id.String,
		OwnerKind:   agentkey.OwnerKind(r.kind.String),
		OwnerID:     r.owner.String,
		Limit:       agentkey.Money(r.limit.Int64),
		Unlimited:   !r.limit.Valid,
		Period:      agentkey.Period(r.period.String),
		Location:    r.location.String,
		Anchor:      fromMicros(r.anchor.Int64),
		PeriodStart: fromMicros(r.periodStart.Int64),
		ResetAt:     fromNullMicros(r.resetAt),
		Used:        agentkey.Money(r.used.Int64),
		Held:        agentkey.Money(r.held.Int64),
		CreatedAt:   fromMicros(r.created.Int64),
	}, true
}

// updateBudgets writes the new state of the budgets marked changed, each
// guarded by its state as loaded. Under the write lock the guards always
// hold; if one ever does not, the transaction fails rather than overwrite a
// change it did not see.
func (s *Store) updateBudgets(ctx context.Context, tx *sql.Tx, before, after []agentkey.Budget,
	changed []bool,
) error {
	for i, b := range before {
		if !changed[i] {
			continue
		}
		a := after[i]
		res, err := s.exec(ctx, tx, `UPDATE {p}budgets
			SET used = ?, held = ?, period_start = ?, reset_at = ?
			WHERE id = ? AND used = ? AND held = ? AND period_start = ?`,
			int64(a.Used), int64(a.Held), micros(a.PeriodStart), nullMicros(a.ResetAt),
			b.ID, int64(b.Used), int64(b.Held), micros(b.PeriodStart))
		if err != nil {
			return fmt.Errorf("update budget %s: %w", b.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("update budget %s: %w", b.ID, err)
		} else if n != 1 {
			return fmt.Errorf("update budget %s: changed by another writer under the lock", b.ID)
		}
	}
	return nil
}
