package akpostgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/agentkey-go/agentkey"
)

// PutBudget inserts b, or replaces the budget of b's owner with b's period,
// in one statement (INSERT ... ON CONFLICT DO UPDATE), which writes under the
// row lock of the budget it replaces, and records the budget in the ledger in
// the same transaction. A replaced budget takes b's limit and, with
// replaceAnchor, b's anchor; it keeps its id, window, location, used, held
// and created_at, so that the new anchor takes effect at the next reset. An
// owner that does not exist is agentkey.ErrNotFound.
func (s *Store) PutBudget(ctx context.Context, b agentkey.Budget, replaceAnchor bool,
	op agentkey.Op,
) (agentkey.Budget, error) {
	var stored agentkey.Budget
	err := pgx.BeginTxFunc(ctx, s.pool, readCommitted, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, s.sql.putBudget, append(budgetArgs(b), replaceAnchor)...)
		if err != nil {
			return err
		}
		budgets, err := collectBudgets(rows)
		if err != nil {
			return s.uniqueError(err)
		}
		if len(budgets) == 0 {
			return fmt.Errorf("%s %s: %w", b.OwnerKind, b.OwnerID, agentkey.ErrNotFound)
		}
		stored = budgets[0]
		return s.recordBudget(ctx, tx, op, agentkey.EntryBudgetSet, stored, stored.ID != b.ID)
	})
	if err != nil {
		return agentkey.Budget{}, fmt.Errorf("put budget: %w", err)
	}
	return stored, nil
}

// DeleteBudget removes the owner's budget with period p and, if meter is not
// nil and the owner has no budget left, inserts meter, in one transaction
// that also records both in the ledger.
//
// The owner's budgets are locked first, in id order as everywhere, so that
// two deletes of one owner's last two budgets run one after the other and
// the second one inserts the meter.
func (s *Store) DeleteBudget(ctx context.Context, o agentkey.Owner, p agentkey.Period,
	meter *agentkey.Budget, op agentkey.Op,
) error {
	err := pgx.BeginTxFunc(ctx, s.pool, readCommitted, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, s.sql.lockOwnerBudgets, string(o.Kind), o.ID); err != nil {
			return fmt.Errorf("lock budgets: %w", err)
		}
		rows, err := tx.Query(ctx, s.sql.deleteBudget, string(o.Kind), o.ID, string(p))
		if err != nil {
			return err
		}
		deleted, err := collectBudgets(rows)
		if err != nil {
			return err
		}
		if len(deleted) == 0 {
			return fmt.Errorf("%s %s %s: %w", o.Kind, o.ID, p, agentkey.ErrNotFound)
		}
		err = s.recordBudget(ctx, tx, op, agentkey.EntryBudgetRemoved, deleted[0], false)
		if err != nil || meter == nil {
			return err
		}

		rows, err = tx.Query(ctx, s.sql.insertMeter, budgetArgs(*meter)...)
		if err != nil {
			return fmt.Errorf("insert meter: %w", err)
		}
		inserted, err := collectBudgets(rows)
		if err != nil {
			return fmt.Errorf("insert meter: %w", err)
		}
		if len(inserted) == 0 {
			return nil
		}
		return s.recordBudget(ctx, tx, op, agentkey.EntryBudgetSet, inserted[0], false)
	})
	if err != nil {
		return fmt.Errorf("delete budget: %w", err)
	}
	return nil
}

// recordBudget writes the ledger entry of kind for budget b, with the
// account of its owner.
func (s *Store) recordBudget(ctx context.Context, tx pgx.Tx, op agentkey.Op,
	kind agentkey.EntryKind, b agentkey.Budget, replaced bool,
) error {
	var account string
	err := tx.QueryRow(ctx, s.sql.ownerAccount, string(b.OwnerKind), b.OwnerID).Scan(&account)
	if err != nil {
		return fmt.Errorf("load owner's account: %w", err)
	}
	args, err := entryArgs(agentkey.BudgetEntry(op, kind, b, account, replaced))
	if err != nil {
		return fmt.Errorf("%s entry: %w", kind, err)
	}
	if _, err := tx.Exec(ctx, s.sql.insertEntry, args...); err != nil {
		return fmt.Errorf("insert %s entry: %w", kind, err)
	}
	return nil
}

// Budgets returns the owner's own budgets in id order.
func (s *Store) Budgets(ctx context.Context, o agentkey.Owner) ([]agentkey.Budget, error) {
	rows, err := s.pool.Query(ctx, s.sql.budgetsByOwner, string(o.Kind), o.ID)
	if err != nil {
		return nil, fmt.Errorf("load budgets: %w", err)
	}
	budgets, err := collectBudgets(rows)
	if err != nil {
		return nil, fmt.Errorf("load budgets: %w", err)
	}
	return budgets, nil
}
