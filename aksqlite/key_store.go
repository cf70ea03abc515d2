package aksqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/agentkey-go/agentkey"
)

const keyColumns = `id, prefix, subject, account_id, user_id, delegated_by, name, scopes,
	expires_at, revoked_at, created_at, last_used_at`

const budgetColumns = `id, owner_kind, owner_id, limit_micros, period, location, anchor,
	period_start, reset_at, used, held, created_at`

// CreateKey inserts a key and its budgets in one transaction.
func (s *Store) CreateKey(ctx context.Context, k agentkey.KeyRecord) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := s.insertKey(ctx, tx, k, ""); err != nil {
			return err
		}
		return s.insertBudgets(ctx, tx, k.Budgets)
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
func (s *Store) EnsureSubject(ctx context.Context, k agentkey.KeyRecord,
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

func (s *Store) insertBudgets(ctx context.Context, tx *sql.Tx, budgets []agentkey.Budget) error {
	for _, b := range budgets {
		var limit sql.NullInt64
		if !b.Unlimited {
			limit = sql.NullInt64{Int64: int64(b.Limit), Valid: true}
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO {p}budgets (`+budgetColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			b.ID, string(b.OwnerKind), b.OwnerID, limit, string(b.Period), b.Location,
			micros(b.Anchor), micros(b.PeriodStart), nullMicros(b.ResetAt),
			int64(b.Used), int64(b.Held), micros(b.CreatedAt),
		)
		if err != nil {
			return fmt.Errorf("insert budget %s: %w", b.ID, err)
		}
	}
	return nil
}

// Key returns the key that q selects, with its budgets in id order, or
// ErrNotFound; ErrInvalidArgument unless q sets exactly one field. It reads
// without a transaction, since in WAL mode a read never waits for the writer;
// the key row and its budgets are two reads, which is harmless because no
// write changes both.
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

// loadKey reads the key whose column equals arg, with its budgets. column is
// one of our own column names, never input.
func (s *Store) loadKey(ctx context.Context, q querier, column string, arg any,
) (agentkey.Key, error) {
	row := q.QueryRowContext(ctx, s.q(`SELECT `+keyColumns+` FROM {p}keys WHERE `+column+` = ?`), arg)
	k, err := scanKey(row)
	if errors.Is(err, sql.ErrNoRows) {
		return agentkey.Key{}, agentkey.ErrNotFound
	}
	if err != nil {
		return agentkey.Key{}, err
	}

	k.Budgets, err = s.loadBudgets(ctx, q, agentkey.OwnerKey, k.ID)
	if err != nil {
		return agentkey.Key{}, err
	}
	return k, nil
}

func scanKey(row *sql.Row) (agentkey.Key, error) {
	var (
		k                              agentkey.Key
		subject, scopes                sql.NullString
		expiresAt, revokedAt, lastUsed sql.NullInt64
		createdAt                      int64
	)
	err := row.Scan(&k.ID, &k.Prefix, &subject, &k.AccountID, &k.UserID, &k.DelegatedBy, &k.Name,
		&scopes, &expiresAt, &revokedAt, &createdAt, &lastUsed)
	if err != nil {
		return agentkey.Key{}, err
	}

	k.Subject = subject.String
	if k.Scopes, err = decodeScopes(scopes); err != nil {
		return agentkey.Key{}, fmt.Errorf("key %s: decode scopes: %w", k.ID, err)
	}
	k.ExpiresAt, k.RevokedAt = fromNullMicros(expiresAt), fromNullMicros(revokedAt)
	k.CreatedAt, k.LastUsedAt = fromMicros(createdAt), fromNullMicros(lastUsed)
	return k, nil
}

// loadBudgets returns an owner's budgets in ascending id order, the order in
// which every operation locks and processes them.
func (s *Store) loadBudgets(ctx context.Context, q querier, kind agentkey.OwnerKind, owner string,
) ([]agentkey.Budget, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT `+budgetColumns+` FROM {p}budgets
		WHERE owner_kind = ? AND owner_id = ? ORDER BY id`), string(kind), owner)
	if err != nil {
		return nil, fmt.Errorf("load budgets: %w", err)
	}
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

func scanBudget(row scanner, extra ...any) (agentkey.Budget, error) {
	var (
		b                              agentkey.Budget
		kind, period                   string
		limit, resetAt                 sql.NullInt64
		anchor, periodStart, createdAt int64
		used, held                     int64
	)
	dest := append([]any{&b.ID, &kind, &b.OwnerID, &limit, &period, &b.Location, &anchor,
		&periodStart, &resetAt, &used, &held, &createdAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return agentkey.Budget{}, err
	}

	b.OwnerKind, b.Period = agentkey.OwnerKind(kind), agentkey.Period(period)
	b.Limit, b.Unlimited = agentkey.Money(limit.Int64), !limit.Valid
	b.Anchor, b.PeriodStart = fromMicros(anchor), fromMicros(periodStart)
	b.ResetAt, b.CreatedAt = fromNullMicros(resetAt), fromMicros(createdAt)
	b.Used, b.Held = agentkey.Money(used), agentkey.Money(held)
	return b, nil
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
