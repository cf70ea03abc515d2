package aksqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/agentkey-go/agentkey"
)

// defaultAccountLimit is the number of accounts Accounts returns when the
// filter sets no limit.
const defaultAccountLimit = 100

// CreateAccount inserts an account and its budgets in one write transaction.
// The write lock is also the lock of the whole tree, so the parent's depth
// cannot change before the insert commits. It returns ErrNotFound for a
// missing parent, ErrTooDeep if the account would sit deeper than maxDepth
// (at most 16) levels, and ErrConflict if the id is taken.
func (s *Store) CreateAccount(ctx context.Context, a agentkey.Account, maxDepth int,
	op agentkey.Op,
) error {
	maxDepth = min(maxDepth, maxPathDepth)
	err := s.write(ctx, func(tx *sql.Tx) error {
		depth := 1
		if a.ParentID != "" {
			d, _, err := s.ancestry(ctx, tx, a.ParentID, "")
			if err != nil {
				return err
			}
			depth += d
		}
		if depth > maxDepth {
			return agentkey.ErrTooDeep
		}

		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO {p}accounts (id, parent_id, name, created_at)
			VALUES (?, ?, ?, ?)`), a.ID, nullString(a.ParentID), a.Name, micros(a.CreatedAt))
		if isPrimaryKeyViolation(err) {
			return agentkey.ErrConflict
		}
		if err != nil {
			return fmt.Errorf("insert account: %w", err)
		}
		if err := s.insertBudgets(ctx, tx, a.Budgets); err != nil {
			return err
		}
		return s.insertEntries(ctx, tx, agentkey.AccountCreatedEntries(op, a))
	})
	if err != nil {
		return fmt.Errorf("create account %s: %w", a.ID, err)
	}
	return nil
}

// isPrimaryKeyViolation reports whether err is SQLite's refusal of a
// duplicate primary key.
func isPrimaryKeyViolation(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// Account returns an account with its own budgets, or ErrNotFound.
func (s *Store) Account(ctx context.Context, id string) (agentkey.Account, error) {
	a, err := s.loadAccount(ctx, s.db, id)
	if err != nil {
		return agentkey.Account{}, fmt.Errorf("get account %s: %w", id, err)
	}
	return a, nil
}

// Accounts lists the accounts that f selects in id order, with their
// budgets, in one statement.
func (s *Store) Accounts(ctx context.Context, f agentkey.AccountFilter,
) ([]agentkey.Account, error) {
	var (
		conds []string
		args  []any
	)
	if f.ParentID != "" {
		conds, args = append(conds, "parent_id = ?"), append(args, f.ParentID)
	}
	if f.After != "" {
		conds, args = append(conds, "id > ?"), append(args, f.After)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultAccountLimit
	}
	where := ""
	if len(conds) > 0 {
		where = "WHERE " + strings.Join(conds, " AND ")
	}

	as, err := s.queryAccounts(ctx, s.db, `SELECT id, parent_id, name, created_at
		FROM {p}accounts `+where+` ORDER BY id LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	return as, nil
}

// SetParent moves an account under parentID, or makes it a root when
// parentID is empty, records the move in the ledger, and returns it. The
// write transaction is the lock of the whole tree: two moves run one after
// the other, and the second sees the first, so that two moves can never
// build a cycle together.
func (s *Store) SetParent(ctx context.Context, id, parentID string, maxDepth int, op agentkey.Op,
) (agentkey.Account, error) {
	maxDepth = min(maxDepth, maxPathDepth)
	var a agentkey.Account
	err := s.write(ctx, func(tx *sql.Tx) error {
		before, err := s.loadAccount(ctx, tx, id)
		if err != nil {
			return err
		}
		parentDepth := 0
		if parentID != "" {
			d, cycle, err := s.ancestry(ctx, tx, parentID, id)
			if err != nil {
				return err
			}
			if cycle {
				return agentkey.ErrCycle
			}
			parentDepth = d
		}

		// The deepest account of the moved subtree must stay within maxDepth.
		height, err := s.height(ctx, tx, id)
		if err != nil {
			return err
		}
		if parentDepth+height > maxDepth {
			return agentkey.ErrTooDeep
		}

		if _, err := tx.ExecContext(ctx, s.q(`UPDATE {p}accounts SET parent_id = ? WHERE id = ?`),
			nullString(parentID), id); err != nil {
			return fmt.Errorf("update account: %w", err)
		}
		entry := agentkey.TreeEntry(op, agentkey.EntryAccountMoved, id, before.ParentID, parentID)
		if err := s.insertEntries(ctx, tx, []agentkey.Entry{entry}); err != nil {
			return err
		}
		a, err = s.loadAccount(ctx, tx, id)
		return err
	})
	if err != nil {
		return agentkey.Account{}, fmt.Errorf("set parent of account %s: %w", id, err)
	}
	return a, nil
}

// ancestry walks up from account id to its root, and returns the depth of id
// (1 for a root) and whether find is id or one of its ancestors. It returns
// ErrNotFound when id does not exist. The walk stops after maxPathDepth
// accounts, so a corrupted, cyclic table reads as too deep.
func (s *Store) ancestry(ctx context.Context, q querier, id, find string,
) (depth int, found bool, err error) {
	err = q.QueryRowContext(ctx, s.q(`WITH RECURSIVE up (id, parent_id, depth) AS (
			SELECT id, parent_id, 1 FROM {p}accounts WHERE id = ?1
			UNION ALL
			SELECT a.id, a.parent_id, up.depth + 1 FROM up JOIN {p}accounts a ON a.id = up.parent_id
			WHERE up.depth < `+strconv.Itoa(maxPathDepth)+`)
		SELECT COUNT(*), COALESCE(MAX(id = ?2), 0) FROM up`), id, find).Scan(&depth, &found)
	if err != nil {
		return 0, false, fmt.Errorf("walk up from account %s: %w", id, err)
	}
	if depth == 0 {
		return 0, false, fmt.Errorf("account %s: %w", id, agentkey.ErrNotFound)
	}
	return depth, found, nil
}

// height returns the number of levels of the subtree under account id,
// counting id itself, up to maxPathDepth+1.
func (s *Store) height(ctx context.Context, q querier, id string) (int, error) {
	var h int
	err := q.QueryRowContext(ctx, s.q(`WITH RECURSIVE down (id, depth) AS (
			SELECT ?, 1
			UNION ALL
			SELECT a.id, down.depth + 1 FROM down JOIN {p}accounts a ON a.parent_id = down.id
			WHERE down.depth <= `+strconv.Itoa(maxPathDepth)+`)
		SELECT MAX(depth) FROM down`), id).Scan(&h)
	if err != nil {
		return 0, fmt.Errorf("walk down from account %s: %w", id, err)
	}
	return h, nil
}

// MoveKey sets a key's account, records the move in the ledger, and returns
// the key with the budgets of its new path. The account need not exist as an
// accounts row.
func (s *Store) MoveKey(ctx context.Context, keyID, accountID string, op agentkey.Op,
) (agentkey.Key, error) {
	var key agentkey.Key
	err := s.write(ctx, func(tx *sql.Tx) error {
		var from string
		err := tx.QueryRowContext(ctx, s.q(`SELECT account_id FROM {p}keys WHERE id = ?`),
			keyID).Scan(&from)
		if errors.Is(err, sql.ErrNoRows) {
			return agentkey.ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE {p}keys SET account_id = ? WHERE id = ?`),
			accountID, keyID); err != nil {
			return err
		}
		entry := agentkey.TreeEntry(op, agentkey.EntryKeyMoved, keyID, from, accountID)
		if err := s.insertEntries(ctx, tx, []agentkey.Entry{entry}); err != nil {
			return err
		}

		key, err = s.loadKey(ctx, tx, "id", keyID)
		return err
	})
	if err != nil {
		return agentkey.Key{}, fmt.Errorf("move key %s: %w", keyID, err)
	}
	return key, nil
}

// loadAccount reads one account with its budgets, or returns ErrNotFound.
func (s *Store) loadAccount(ctx context.Context, q querier, id string) (agentkey.Account, error) {
	as, err := s.queryAccounts(ctx, q, `SELECT id, parent_id, name, created_at
		FROM {p}accounts WHERE id = ?`, id)
	if err != nil {
		return agentkey.Account{}, err
	}
	if len(as) == 0 {
		return agentkey.Account{}, agentkey.ErrNotFound
	}
	return as[0], nil
}

// queryAccounts runs selection, a query of account columns in id order, and
// returns the accounts it selects, each with its budgets in id order, read
// in the same statement.
func (s *Store) queryAccounts(ctx context.Context, q querier, selection string, args ...any,
) ([]agentkey.Account, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT a.id, a.parent_id, a.name, a.created_at,
		`+qualify("b", budgetColumns)+`
		FROM (`+selection+`) a
		LEFT JOIN {p}budgets b ON b.owner_kind = 'account' AND b.owner_id = a.id
		ORDER BY a.id, b.id`), args...)
	if err != nil {
		return nil, fmt.Errorf("load accounts: %w", err)
	}
	defer rows.Close()

	as := []agentkey.Account{}
	for rows.Next() {
		var (
			a         agentkey.Account
			parent    sql.NullString
			createdAt int64
			br        budgetRow
		)
		dest := append([]any{&a.ID, &parent, &a.Name, &createdAt}, br.dest()...)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("load accounts: %w", err)
		}
		if len(as) == 0 || as[len(as)-1].ID != a.ID {
			a.ParentID, a.CreatedAt = parent.String, fromMicros(createdAt)
			as = append(as, a)
		}
		if b, ok := br.budget(); ok {
			last := &as[len(as)-1]
			last.Budgets = append(last.Budgets, b)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load accounts: %w", err)
	}
	return as, nil
}
