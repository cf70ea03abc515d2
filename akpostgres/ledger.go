package akpostgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/agentkey-go/agentkey"
)

// defaultLedgerLimit is the page size of a LedgerFilter without a Limit.
const defaultLedgerLimit = 100

// Ledger returns the entries that f selects, in ascending id order.
func (s *Store) Ledger(ctx context.Context, f agentkey.LedgerFilter) ([]agentkey.Entry, error) {
	// The WHERE clause names only the filters that are set, so that each
	// combination gets a plan that uses its index. There are at most 32
	// combinations, and pgx caches one prepared statement for each.
	var (
		b    strings.Builder
		args []any
	)
	b.WriteString(s.sql.selectEntries)
	b.WriteString("\nWHERE id > $1")
	args = append(args, f.AfterID)
	where := func(cond string, arg any) {
		args = append(args, arg)
		b.WriteString(" AND ")
		b.WriteString(cond)
		b.WriteString(strconv.Itoa(len(args)))
	}
	if f.KeyID != "" {
		where("key_id = $", f.KeyID)
	}
	if f.AccountID != "" {
		where("account_id = $", f.AccountID)
	}
	if f.BudgetID != "" {
		where("budget_id = $", f.BudgetID)
	}
	if len(f.Kinds) > 0 {
		kinds := make([]string, len(f.Kinds))
		for i, k := range f.Kinds {
			kinds[i] = string(k)
		}
		where("kind = ANY($", kinds)
		b.WriteString(")")
	}
	if !f.Since.IsZero() {
		where("created_at >= $", f.Since)
	}
	if !f.Until.IsZero() {
		where("created_at < $", f.Until)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLedgerLimit
	}
	args = append(args, limit)
	b.WriteString("\nORDER BY id LIMIT $" + strconv.Itoa(len(args)))

	rows, err := s.pool.Query(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("read ledger: %w", err)
	}
	defer rows.Close()

	entries := []agentkey.Entry{}
	var r entryRow
	for rows.Next() {
		if err := rows.Scan(r.dest()...); err != nil {
			return nil, fmt.Errorf("read ledger: %w", err)
		}
		e, err := r.entry()
		if err != nil {
			return nil, fmt.Errorf("read ledger: %w", err)
		}
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read ledger: %w", err)
	}
	return entries, nil
}

// usedKinds are the entry kinds that agentkey.EntryKind.CountsAsUsed counts;
// heldKinds and heldSigns pair each kind that changes held with the sign of
// its change (agentkey.EntryKind.HeldDelta). The root package decides both.
var usedKinds, heldKinds, heldSigns = func() (used, held []string, signs []int64) {
	for _, k := range agentkey.MoneyKinds {
		if k.CountsAsUsed() {
			used = append(used, string(k))
		}
		if sign := int64(k.HeldDelta(1)); sign != 0 {
			held, signs = append(held, string(k)), append(signs, sign)
		}
	}
	return used, held, signs
}()

// BudgetTotals returns every budget, in id order, with the sum of the
// entries of its current period that count as used, what its entries of all
// time leave held, and the sum of its open holds, in one statement and so
// from one snapshot.
func (s *Store) BudgetTotals(ctx context.Context) ([]agentkey.BudgetTotal, error) {
	rows, err := s.pool.Query(ctx, s.sql.budgetTotals, usedKinds, heldKinds, heldSigns)
	if err != nil {
		return nil, fmt.Errorf("read budget totals: %w", err)
	}
	defer rows.Close()

	var totals []agentkey.BudgetTotal
	var (
		r                budgetRow
		used, held, open int64
	)
	for rows.Next() {
		if err := rows.Scan(append(r.dest(), &used, &held, &open)...); err != nil {
			return nil, fmt.Errorf("read budget totals: %w", err)
		}
		totals = append(totals, agentkey.BudgetTotal{Budget: r.budget(),
			LedgerUsed: agentkey.Money(used), LedgerHeld: agentkey.Money(held),
			OpenHolds: agentkey.Money(open)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read budget totals: %w", err)
	}
	return totals, nil
}
