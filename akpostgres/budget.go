package akpostgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/agentkey-go/agentkey"
)

// PutBudget inserts b, or replaces the budget of b's owner with b's period,
// in one statement (INSERT ... ON CONFLICT DO UPDATE), which writes under the
// row lock of the budget it replaces. A replaced budget takes b's limit and,
// with replaceAnchor, b's anchor; it keeps its id, window, location, used,
// held and created_at, so that the new anchor takes effect at the next reset.
// An owner that does not exist is agentkey.ErrNotFound.
func (s *Store) PutBudget(ctx context.Context, b agentkey.Budget, replaceAnchor bool,
) (agentkey.Budget, error) {
	rows, err := s.pool.Query(ctx, s.sql.putBudget, append(budgetArgs(b), replaceAnchor)...)
	if err != nil {
		return agentkey.Budget{}, fmt.Errorf("put budget: %w", err)
	}
	budgets, err := collectBudgets(rows)
	if err != nil {
		return agentkey.Budget{}, fmt.Errorf("put budget: %w", s.uniqueError(err))
	}
	if len(budgets) == 0 {
		return agentkey.Budget{}, fmt.Errorf("put budget: %s %s: %w", b.OwnerKind, b.OwnerID,
			agentkey.ErrNotFound)
	}
	return budgets[0], nil
}

// DeleteBudget removes the owner's budget with period p and, if meter is not
// nil and the owner has no budget left, inserts meter, in one transaction.
//
// The owner's budgets are locked first, in id order as everywhere, so that
// two deletes of one owner's last two budgets run one after the other and
// the second one inserts the meter.
func (s *Store) DeleteBudget(ctx context.Context, o agentkey.Owner, p agentkey.Period,
	meter *agentkey.Budget,
) error {
	b := &pgx.Batch{}
	b.BeginTx(readCommitted)
	b.Queue(s.sql.lockOwnerBudgets, string(o.Kind), o.ID)
	b.Queue(s.sql.deleteBudget, string(o.Kind), o.ID, string(p))
	if meter != nil {
		b.Queue(s.sql.insertMeter, budgetArgs(*meter)...)
	}
	br := s.pool.SendBatch(ctx, b)
	tx := br.Tx()
	defer tx.Rollback(ctx) // a no-op after Commit

	deleted, err := readDelete(br, meter != nil)
	if err != nil {
		return fmt.Errorf("delete budget: %w", err)
	}
	if !deleted {
		return fmt.Errorf("delete budget: %s %s %s: %w", o.Kind, o.ID, p, agentkey.ErrNotFound)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("delete budget: commit: %w", err)
	}
	return nil
}

// readDelete reads the results of DeleteBudget's batch and reports whether a
// budget was deleted.
func readDelete(br pgx.BatchResults, meter bool) (bool, error) {
	defer br.Close()

	if _, err := br.Exec(); err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return false, fmt.Errorf("lock budgets: %w", err)
	}
	tag, err := br.Exec()
	if err != nil {
		return false, err
	}
	if meter {
		if _, err := br.Exec(); err != nil {
			return false, fmt.Errorf("insert meter: %w", err)
		}
	}
	return tag.RowsAffected() > 0, br.Close()
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
