package akpostgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/agentkey-go/agentkey"
)

// defaultAccountsLimit is the page size of an AccountFilter without a Limit.
const defaultAccountsLimit = 100

// CreateAccount inserts an account and its budgets, under the tree lock (see
// SetParent). An id that is taken is agentkey.ErrConflict, a parent that does
// not exist agentkey.ErrNotFound, and an account that would sit deeper than
// maxDepth levels (at most 16) agentkey.ErrTooDeep.
func (s *Store) CreateAccount(ctx context.Context, a agentkey.Account, maxDepth int,
	op agentkey.Op,
) error {
	tx, st, err := s.lockTree(ctx, a.ID, a.ParentID)
	defer tx.Rollback(ctx) // a no-op after Commit
	if err != nil {
		return fmt.Errorf("create account: %w", err)
	}
	switch {
	case st.exists:
		return fmt.Errorf("create account: %w", agentkey.ErrConflict)
	case a.ParentID != "" && st.parentDepth == 0:
		return fmt.Errorf("create account: parent %s: %w", a.ParentID, agentkey.ErrNotFound)
	case st.parentDepth+1 > depthLimit(maxDepth):
		return fmt.Errorf("create account: %w", agentkey.ErrTooDeep)
	}

	b := &pgx.Batch{}
	b.Queue(s.sql.insertAccount, a.ID, nullString(a.ParentID), a.Name, a.CreatedAt)
	queueBudgets(b, s.sql.insertBudget, a.Budgets)
	if err := s.queueEntries(b, agentkey.AccountCreatedEntries(op, a)); err != nil {
		return fmt.Errorf("create account: %w", err)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("create account: %w", s.uniqueError(err))
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("create account: commit: %w", err)
	}
	return nil
}

// SetParent moves an account under parentID, or makes it a root when
// parentID is empty, records the move in the ledger, and returns the account
// with its budgets.
//
// Every change of the tree runs under one transaction-level advisory lock of
// the store's tables, so that the check for cycles and depth and the move are
// one step: two concurrent moves that would together make a cycle run one
// after the other, and the second sees the first. Charges take no part in it.
func (s *Store) SetParent(ctx context.Context, id, parentID string, maxDepth int, op agentkey.Op,
) (agentkey.Account, error) {
	tx, st, err := s.lockTree(ctx, id, parentID)
	defer tx.Rollback(ctx) // a no-op after Commit
	if err != nil {
		return agentkey.Account{}, fmt.Errorf("set parent: %w", err)
	}
	switch {
	case !st.exists:
		return agentkey.Account{}, fmt.Errorf("set parent: %w", agentkey.ErrNotFound)
	case parentID != "" && st.parentDepth == 0:
		return agentkey.Account{}, fmt.Errorf("set parent: parent %s: %w", parentID,
			agentkey.ErrNotFound)
	case st.cycle:
		return agentkey.Account{}, fmt.Errorf("set parent: %w", agentkey.ErrCycle)
	case st.parentDepth+st.height > depthLimit(maxDepth):
		return agentkey.Account{}, fmt.Errorf("set parent: %w", agentkey.ErrTooDeep)
	}

	b := &pgx.Batch{}
	b.Queue(s.sql.setParent, id, nullString(parentID))
	b.Queue(s.sql.budgetsByOwner, string(agentkey.OwnerAccount), id)
	entry := agentkey.TreeEntry(op, agentkey.EntryAccountMoved, id, st.parent, parentID)
	if err := s.queueEntries(b, []agentkey.Entry{entry}); err != nil {
		return agentkey.Account{}, fmt.Errorf("set parent: %w", err)
	}
	a, err := readAccount(tx.SendBatch(ctx, b))
	if err != nil {
		return agentkey.Account{}, fmt.Errorf("set parent: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return agentkey.Account{}, fmt.Errorf("set parent: commit: %w", err)
	}
	return a, nil
}

// depthLimit is the deepest level an account may sit at: maxDepth, but never
// more than the levels that a key's path follows.
func depthLimit(maxDepth int) int {
	return min(maxDepth, maxPathLevels)
}

// treeState is what the tree check finds about placing account id under
// parentID.
type treeState struct {
	// exists reports whether the account exists.
	exists bool
	// parentDepth is the parent's depth, a root's being 1; 0 when there is
	// no such parent.
	parentDepth int
	// cycle reports whether the account is the parent or one of its
	// ancestors.
	cycle bool
	// height counts the levels of the account's subtree, itself included.
	height int
	// parent is the account's parent now; empty for a root.
	parent string
}

// lockTree begins a transaction, takes the tree lock and checks placing id
// under parentID, all in one round trip. The caller must roll the returned
// transaction back or commit it, even on error. The check runs after the
// lock is granted and, under READ COMMITTED, sees every tree change committed
// before it.
func (s *Store) lockTree(ctx context.Context, id, parentID string) (pgx.Tx, treeState, error) {
	b := &pgx.Batch{}
	b.BeginTx(readCommitted)
	b.Queue(s.sql.treeLock, lockID("tree", s.cfg.Schema, s.cfg.TablePrefix))
	// One level more than any valid tree has, to see one that is too deep.
	b.Queue(s.sql.treeCheck, id, parentID, maxPathLevels+1)
	br := s.pool.SendBatch(ctx, b)
	tx := br.Tx()
	defer br.Close()

	if _, err := br.Exec(); err != nil {
		return tx, treeState{}, fmt.Errorf("begin: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return tx, treeState{}, fmt.Errorf("lock tree: %w", err)
	}
	var st treeState
	if err := br.QueryRow().Scan(&st.exists, &st.parentDepth, &st.cycle, &st.height,
		&st.parent); err != nil {
		return tx, treeState{}, fmt.Errorf("check tree: %w", err)
	}
	if err := br.Close(); err != nil {
		return tx, treeState{}, fmt.Errorf("check tree: %w", err)
	}
	return tx, st, nil
}

// Account returns an account with its budgets in id order, or an error
// wrapping agentkey.ErrNotFound.
func (s *Store) Account(ctx context.Context, id string) (agentkey.Account, error) {
	b := &pgx.Batch{}
	b.Queue(s.sql.accountByID, id)
	b.Queue(s.sql.budgetsByOwner, string(agentkey.OwnerAccount), id)
	a, err := readAccount(s.pool.SendBatch(ctx, b))
	if err != nil {
		return agentkey.Account{}, fmt.Errorf("load account: %w", err)
	}
	return a, nil
}

// readAccount reads a batch of two statements, one that returns an account
// row and one that returns its budgets, and closes br. No account row is
// agentkey.ErrNotFound.
func readAccount(br pgx.BatchResults) (agentkey.Account, error) {
	defer br.Close()

	var r accountRow
	if err := br.QueryRow().Scan(r.dest()...); errors.Is(err, pgx.ErrNoRows) {
		return agentkey.Account{}, agentkey.ErrNotFound
	} else if err != nil {
		return agentkey.Account{}, err
	}
	rows, err := br.Query()
	if err != nil {
		return agentkey.Account{}, fmt.Errorf("budgets: %w", err)
	}
	a := r.account()
	if a.Budgets, err = collectBudgets(rows); err != nil {
		return agentkey.Account{}, fmt.Errorf("budgets: %w", err)
	}
	return a, br.Close()
}

// Accounts lists the accounts that f selects in id order, each with its
// budgets: all accounts, or the children of f.ParentID.
func (s *Store) Accounts(ctx context.Context, f agentkey.AccountFilter,
) ([]agentkey.Account, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultAccountsLimit
	}
	var rows pgx.Rows
	var err error
	if f.ParentID == "" {
		rows, err = s.pool.Query(ctx, s.sql.accounts, f.After, limit)
	} else {
		rows, err = s.pool.Query(ctx, s.sql.accountChildren, f.After, limit, f.ParentID)
	}
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	accounts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (agentkey.Account, error) {
		var r accountRow
		err := row.Scan(r.dest()...)
		return r.account(), err
	})
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	if len(accounts) == 0 {
		return []agentkey.Account{}, nil
	}

	ids := make([]string, len(accounts))
	index := make(map[string]int, len(accounts))
	for i, a := range accounts {
		ids[i], index[a.ID] = a.ID, i
	}
	rows, err = s.pool.Query(ctx, s.sql.accountBudgets, ids)
	if err != nil {
		return nil, fmt.Errorf("list accounts: budgets: %w", err)
	}
	budgets, err := collectBudgets(rows)
	if err != nil {
		return nil, fmt.Errorf("list accounts: budgets: %w", err)
	}
	for _, b := range budgets {
		a := &accounts[index[b.OwnerID]]
		a.Budgets = append(a.Budgets, b)
	}
	return accounts, nil
}
