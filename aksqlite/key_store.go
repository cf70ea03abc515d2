package aksqlite

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentkey-go/agentkey"
)

const keyColumns = `id, prefix, subject, account_id, user_id, delegated_by, name, scopes,
	expires_at, revoked_at, created_at, last_used_at`

// CreateKey inserts a key, its budgets and their ledger entries in one
// transaction.
func (s *Store) CreateKey(ctx context.Context, k agentkey.KeyRecord, op agentkey.Op) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := s.insertKey(ctx, tx, k, ""); err != nil {
			return err
		}
		if err := s.insertBudgets(ctx, tx, k.Budgets); err != nil {
			return err
		}
		return s.insertEntries(ctx, tx, agentkey.KeyCreatedEntries(op, k.Key))
	})
	if err != nil {
		return fmt.Errorf("create key %s: %w", k.ID, err)
	}
	return nil
}

// EnsureSubject inserts k, the row of an external subject, with its budgets,
// unless a row for k.Subject exists, and returns the stored row and whether
// this call created it. Concurrent calls for one subject create one row: the
// inserts are serialized by the write lock, and the unique subject makes the
// later ones do nothing.
func (s *Store) EnsureSubject(ctx context.Context, k agentkey.KeyRecord, op agentkey.Op,
) (agentkey.Key, bool, error) {
	if k.Subject == "" {
		return agentkey.Key{}, false, fmt.Errorf("ensure subject: %w: empty subject",
			agentkey.ErrInvalidArgument)
	}

	var (
		key     agentkey.Key
		created bool
	)
	err := s.write(ctx, func(tx *sql.Tx) error {
		n, err := s.insertKey(ctx, tx, k, "ON CONFLICT (subject) DO NOTHING")
		if err != nil {
			return err
		}
		if created = n == 1; created {
			if err := s.insertBudgets(ctx, tx, k.Budgets); err != nil {
				return err
			}
			if err := s.insertEntries(ctx, tx, agentkey.KeyCreatedEntries(op, k.Key)); err != nil {
				return err
			}
		}
		key, err = s.loadKey(ctx, tx, "subject", k.Subject)
		return err
	})
	if err != nil {
		return agentkey.Key{}, false, fmt.Errorf("ensure subject: %w", err)
	}
	return key, created, nil
}

// insertKey inserts k's row, with conflict as its ON CONFLICT clause, and
// returns the number of rows inserted.
func (s *Store) insertKey(ctx context.Context, tx *sql.Tx, k agentkey.KeyRecord, conflict string,
) (int64, error) {
	scopes, err := encodeScopes(k.Scopes)
	if err != nil {
		return 0, fmt.Errorf("encode scopes: %w", err)
	}
	res, err := tx.ExecContext(ctx, s.q(`INSERT INTO {p}keys (id, hash, prefix, subject,
		account_id, user_id, delegated_by, name, scopes, expires_at, revoked_at, created_at,
		last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) `+conflict),
		k.ID, nullBytes(k.Hash), k.Prefix, nullString(k.Subject),
		k.AccountID, k.UserID, k.DelegatedBy, k.Name, scopes,
		nullMicros(k.ExpiresAt), nullMicros(k.RevokedAt), micros(k.CreatedAt),
		nullMicros(k.LastUsedAt),
	)
	if err != nil {
		return 0, fmt.Errorf("insert key: %w", err)
	}
	return res.RowsAffected()
}

// Key returns the key that q selects, with the budgets of its whole path in
// id order, or ErrNotFound; ErrInvalidArgument unless q sets exactly one
// field. It reads without a transaction, since in WAL mode a read never waits
// for the writer; the key and its path are one statement, hence one snapshot.
func (s *Store) Key(ctx context.Context, q agentkey.KeyQuery) (agentkey.Key, error) {
	var (
		column string
		arg    any
		set    int
	)
	if q.ID != "" {
		column, arg, set = "id", q.ID, set+1
	}
	if q.Hash != nil {
		column, arg, set = "hash", q.Hash, set+1
	}
	if q.Subject != "" {
		column, arg, set = "subject", q.Subject, set+1
	}
	if set != 1 {
		return agentkey.Key{}, fmt.Errorf("get key: %w: set exactly one of ID, Hash and Subject",
			agentkey.ErrInvalidArgument)
	}

	k, err := s.loadKey(ctx, s.db, column, arg)
	if err != nil {
		return agentkey.Key{}, fmt.Errorf("get key: %w", err)
	}
	return k, nil
}

// maxPathDepth bounds every walk up or down the account tree, so that a
// table corrupted into a cycle can never make a query loop. It is above
// agentkey.MaxDepth, which tree changes enforce.
const maxPathDepth = 16

// keyPathQuery selects the key whose column equals the parameter once per
// budget of its path, or once with NULL budget columns when the path has no
// budget: its own budgets, and those of its account and every account above
// it. column is one of our own column names, never input. The OR of two
// owner lookups lets SQLite search the budgets' owner index once for each
// (MULTI-INDEX OR); a join with a list of owners made it scan all budgets.
func keyPathQuery(column string) string {
	return `WITH RECURSIVE
		k AS (SELECT ` + keyColumns + ` FROM {p}keys WHERE ` + column + ` = ?),
		path (id, parent_id, depth) AS (
			SELECT a.id, a.parent_id, 1 FROM k JOIN {p}accounts a ON a.id = k.account_id
			UNION ALL
			SELECT a.id, a.parent_id, path.depth + 1
			FROM path JOIN {p}accounts a ON a.id = path.parent_id
			WHERE path.depth < ` + strconv.Itoa(maxPathDepth) + `)
		SELECT k.*, ` + qualify("b", budgetColumns) + `
		FROM k LEFT JOIN {p}budgets b
		ON b.owner_kind = 'key' AND b.owner_id = k.id
		OR b.owner_kind = 'account' AND b.owner_id IN (SELECT id FROM path)
		ORDER BY b.id`
}

// keyPathQueries are the path queries by the column that selects the key,
// built once since they are the templates of prepared statements.
var keyPathQueries = map[string]string{
	"id":      keyPathQuery("id"),
	"hash":    keyPathQuery("hash"),
	"subject": keyPathQuery("subject"),
}

// loadKey reads the key whose column equals arg, with the budgets of its
// path in id order, the order in which every operation locks and processes
// them. column is one of our own column names, never input.
func (s *Store) loadKey(ctx context.Context, q querier, column string, arg any,
) (agentkey.Key, error) {
	rows, err := s.query(ctx, q, keyPathQueries[column], arg)
	if err != nil {
		return agentkey.Key{}, fmt.Errorf("load key: %w", err)
	}
	defer rows.Close()

	var (
		k     agentkey.Key
		found bool
	)
	for rows.Next() {
		var (
			kr keyRow
			br budgetRow
		)
		if err := rows.Scan(append(kr.dest(), br.dest()...)...); err != nil {
			return agentkey.Key{}, fmt.Errorf("load key: %w", err)
		}
		if !found {
			if k, err = kr.key(); err != nil {
				return agentkey.Key{}, err
			}
			found = true
		}
		if b, ok := br.budget(); ok {
			k.Budgets = append(k.Budgets, b)
		}
	}
	if err := rows.Err(); err != nil {
		return agentkey.Key{}, fmt.Errorf("load key: %w", err)
	}
	if !found {
		return agentkey.Key{}, agentkey.ErrNotFound
	}
	return k, nil
}

// defaultKeyLimit is the number of keys Keys returns when the filter sets no
// limit.
const defaultKeyLimit = 100

// Keys lists the keys and subjects that f selects in id order, each with its
// own budgets in id order, in one statement.
func (s *Store) Keys(ctx context.Context, f agentkey.KeyFilter) ([]agentkey.Key, error) {
	var (
		conds []string
		args  []any
	)
	if f.AccountID != "" {
		conds, args = append(conds, "account_id = ?"), append(args, f.AccountID)
	}
	switch f.Kind {
	case "":
	case "key":
		conds = append(conds, "subject IS NULL")
	case "subject":
		conds = append(conds, "subject IS NOT NULL")
	default:
		return nil, fmt.Errorf("keys: %w: kind %q: want key or subject",
			agentkey.ErrInvalidArgument, f.Kind)
	}
	if !f.IncludeRevoked {
		conds = append(conds, "revoked_at IS NULL")
	}
	if f.After != "" {
		conds, args = append(conds, "id > ?"), append(args, f.After)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultKeyLimit
	}
	where := ""
	if len(conds) > 0 {
		where = "WHERE " + strings.Join(conds, " AND ")
	}

	rows, err := s.db.QueryContext(ctx, s.q(`SELECT k.*, `+qualify("b", budgetColumns)+`
		FROM (SELECT `+keyColumns+` FROM {p}keys `+where+` ORDER BY id LIMIT ?) k
		LEFT JOIN {p}budgets b ON b.owner_kind = 'key' AND b.owner_id = k.id
		ORDER BY k.id, b.id`), append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer rows.Close()

	keys := []agentkey.Key{}
	for rows.Next() {
		var (
			kr keyRow
			br budgetRow
		)
		if err := rows.Scan(append(kr.dest(), br.dest()...)...); err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		if len(keys) == 0 || keys[len(keys)-1].ID != kr.k.ID {
			k, err := kr.key()
			if err != nil {
				return nil, fmt.Errorf("keys: %w", err)
			}
			keys = append(keys, k)
		}
		if b, ok := br.budget(); ok {
			last := &keys[len(keys)-1]
			last.Budgets = append(last.Budgets, b)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return keys, nil
}

// keyRow receives the columns of keyColumns.
type keyRow struct {
	k                              agentkey.Key
	subject, scopes                sql.NullString
	expiresAt, revokedAt, lastUsed sql.NullInt64
	createdAt                      int64
}

func (r *keyRow) dest() []any {
	return []any{&r.k.ID, &r.k.Prefix, &r.subject, &r.k.AccountID, &r.k.UserID,
		&r.k.DelegatedBy, &r.k.Name, &r.scopes, &r.expiresAt, &r.revokedAt, &r.createdAt,
		&r.lastUsed}
}

func (r *keyRow) key() (agentkey.Key, error) {
	k := r.k
	k.Subject = r.subject.String
	var err error
	if k.Scopes, err = decodeScopes(r.scopes); err != nil {
		return agentkey.Key{}, fmt.Errorf("key %s: decode scopes: %w", k.ID, err)
	}
	k.ExpiresAt, k.RevokedAt = fromNullMicros(r.expiresAt), fromNullMicros(r.revokedAt)
	k.CreatedAt, k.LastUsedAt = fromMicros(r.createdAt), fromNullMicros(r.lastUsed)
	return k, nil
}

// RevokeKey sets the key's revoked_at to at unless it is set already, and
// returns the key with its budgets. With accountID set, only a key of that
// account matches. It returns ErrNotFound when no key matches.
func (s *Store) RevokeKey(ctx context.Context, id, accountID string, at time.Time,
) (agentkey.Key, error) {
	var key agentkey.Key
	err := s.write(ctx, func(tx *sql.Tx) error {
		query, args := `UPDATE {p}keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`,
			[]any{micros(at), id}
		if accountID != "" {
			query, args = query+` AND account_id = ?`, append(args, accountID)
		}
		res, err := tx.ExecContext(ctx, s.q(query), args...)
		if err != nil {
			return err
		}
		// SQLite counts every row the WHERE matched, changed or not, so a
		// second revoke still finds the key.
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return agentkey.ErrNotFound
		}

		key, err = s.loadKey(ctx, tx, "id", id)
		return err
	})
	if err != nil {
		return agentkey.Key{}, fmt.Errorf("revoke key: %w", err)
	}
	return key, nil
}

// TouchKeys sets each key's last_used_at to the later of its stored value and
// the time given, in one transaction. Zero times and unknown ids are skipped.
func (s *Store) TouchKeys(ctx context.Context, lastUsed map[string]time.Time) error {
	if len(lastUsed) == 0 {
		return nil
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, s.q(`UPDATE {p}keys
			SET last_used_at = MAX(COALESCE(last_used_at, ?1), ?1) WHERE id = ?2`))
		if err != nil {
			return err
		}
		defer stmt.Close()

		for _, id := range slices.Sorted(maps.Keys(lastUsed)) {
			at := lastUsed[id]
			if at.IsZero() {
				continue
			}
			if _, err := stmt.ExecContext(ctx, micros(at), id); err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("touch keys: %w", err)
	}
	return nil
}
