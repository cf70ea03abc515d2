package akpostgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentkey-go/agentkey"
)

// defaultKeysLimit is the page size of a KeyFilter without a Limit.
const defaultKeysLimit = 100

// CreateKey inserts a key, its budgets and their ledger entries. A key id,
// hash or subject that is taken is agentkey.ErrConflict; two budgets with one
// period are agentkey.ErrInvalidArgument.
func (s *Store) CreateKey(ctx context.Context, k agentkey.KeyRecord, op agentkey.Op) error {
	// A batch runs in one implicit transaction (pgx's SendBatch), so the key
	// and its budgets are written together, in one round trip.
	b := &pgx.Batch{}
	b.Queue(s.sql.insertKey, keyArgs(k)...)
	queueBudgets(b, s.sql.insertBudget, k.Budgets)
	if err := s.queueEntries(b, agentkey.KeyCreatedEntries(op, k.Key)); err != nil {
		return fmt.Errorf("insert key: %w", err)
	}

	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("insert key: %w", s.uniqueError(err))
	}
	return nil
}

// EnsureSubject inserts k unless a key row for k.Subject exists, and returns
// the row as stored and whether this call inserted it. The subject's unique
// index makes concurrent inserts wait for each other, and all but one find
// the row in place.
func (s *Store) EnsureSubject(ctx context.Context, k agentkey.KeyRecord, op agentkey.Op,
) (agentkey.Key, bool, error) {
	if k.Subject == "" {
		return agentkey.Key{}, false, fmt.Errorf("ensure subject: %w: empty subject",
			agentkey.ErrInvalidArgument)
	}

	var (
		stored  agentkey.Key
		created bool
	)
	err := pgx.BeginTxFunc(ctx, s.pool, readCommitted, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, s.sql.insertSubject, keyArgs(k)...)
		if err != nil {
			return fmt.Errorf("insert key: %w", err)
		}
		if created = tag.RowsAffected() == 1; created {
			b := &pgx.Batch{}
			queueBudgets(b, s.sql.insertBudget, k.Budgets)
			if err := s.queueEntries(b, agentkey.KeyCreatedEntries(op, k.Key)); err != nil {
				return err
			}
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return fmt.Errorf("insert budgets: %w", s.uniqueError(err))
			}
		}

		stored, err = s.key(ctx, tx, agentkey.KeyQuery{Subject: k.Subject})
		return err
	})
	if err != nil {
		return agentkey.Key{}, false, fmt.Errorf("ensure subject: %w", err)
	}
	return stored, created, nil
}

// Key returns the key that q selects, with the budgets of its whole path in
// id order, or an error wrapping agentkey.ErrNotFound.
func (s *Store) Key(ctx context.Context, q agentkey.KeyQuery) (agentkey.Key, error) {
	return s.key(ctx, s.pool, q)
}

func (s *Store) key(ctx context.Context, db querier, q agentkey.KeyQuery) (agentkey.Key, error) {
	var keySQL, budgetsSQL string
	var arg any
	switch {
	case q.ID != "" && q.Hash == nil && q.Subject == "":
		keySQL, budgetsSQL, arg = s.sql.keyByID, s.sql.pathByID, q.ID
	case q.Hash != nil && q.ID == "" && q.Subject == "":
		keySQL, budgetsSQL, arg = s.sql.keyByHash, s.sql.pathByHash, q.Hash
	case q.Subject != "" && q.ID == "" && q.Hash == nil:
		keySQL, budgetsSQL, arg = s.sql.keyBySubject, s.sql.pathBySubject, q.Subject
	default:
		return agentkey.Key{}, fmt.Errorf("load key: %w: set exactly one of ID, Hash and Subject",
			agentkey.ErrInvalidArgument)
	}

	// Both statements go in one round trip. They may see different
	// snapshots, which is harmless: a key and its budgets are created in one
	// transaction, and a budget or a move that commits between the two is
	// one the key could as well have been read just before or after.
	b := &pgx.Batch{}
	b.Queue(keySQL, arg)
	b.Queue(budgetsSQL, arg)
	k, err := readKey(db.SendBatch(ctx, b))
	if err != nil {
		return agentkey.Key{}, fmt.Errorf("load key: %w", err)
	}
	return k, nil
}

// RevokeKey sets the key's revocation time to at unless it is revoked
// already, and returns the key. With accountID set, a key of another account
// is not found.
func (s *Store) RevokeKey(ctx context.Context, id, accountID string, at time.Time,
) (agentkey.Key, error) {
	b := &pgx.Batch{}
	b.Queue(s.sql.revokeKey, id, at, accountID)
	b.Queue(s.sql.pathByID, id)
	k, err := readKey(s.pool.SendBatch(ctx, b))
	if err != nil {
		return agentkey.Key{}, fmt.Errorf("revoke key: %w", err)
	}
	return k, nil
}

// MoveKey sets a key's account, records the move in the ledger, and returns
// the key with the budgets of its new path, in one transaction. Its open
// holds keep the budgets they were made against.
func (s *Store) MoveKey(ctx context.Context, keyID, accountID string, op agentkey.Op,
) (agentkey.Key, error) {
	var k agentkey.Key
	err := pgx.BeginTxFunc(ctx, s.pool, readCommitted, func(tx pgx.Tx) error {
		var from string
		err := tx.QueryRow(ctx, s.sql.lockKeyAccount, keyID).Scan(&from)
		if errors.Is(err, pgx.ErrNoRows) {
			return agentkey.ErrNotFound
		} else if err != nil {
			return fmt.Errorf("lock key: %w", err)
		}

		b := &pgx.Batch{}
		b.Queue(s.sql.moveKey, keyID, accountID)
		b.Queue(s.sql.pathByID, keyID)
		entry := agentkey.TreeEntry(op, agentkey.EntryKeyMoved, keyID, from, accountID)
		if err := s.queueEntries(b, []agentkey.Entry{entry}); err != nil {
			return err
		}
		k, err = readKey(tx.SendBatch(ctx, b))
		return err
	})
	if err != nil {
		return agentkey.Key{}, fmt.Errorf("move key: %w", err)
	}
	return k, nil
}

// Keys lists the keys and subjects that f selects in id order, each with its
// own budgets only.
func (s *Store) Keys(ctx context.Context, f agentkey.KeyFilter) ([]agentkey.Key, error) {
	// As in Ledger, the WHERE clause names only the filters that are set.
	var (
		b    strings.Builder
		args []any
	)
	b.WriteString(s.sql.selectKeys)
	b.WriteString("\nWHERE id > $1")
	args = append(args, f.After)
	if f.AccountID != "" {
		args = append(args, f.AccountID)
		b.WriteString(" AND account_id = $" + strconv.Itoa(len(args)))
	}
	switch f.Kind {
	case "":
	case "key":
		b.WriteString(" AND subject IS NULL")
	case "subject":
		b.WriteString(" AND subject IS NOT NULL")
	default:
		return nil, fmt.Errorf("list keys: %w: kind %q: want key, subject or empty",
			agentkey.ErrInvalidArgument, f.Kind)
	}
	if !f.IncludeRevoked {
		b.WriteString(" AND revoked_at IS NULL")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultKeysLimit
	}
	args = append(args, limit)
	b.WriteString("\nORDER BY id LIMIT $" + strconv.Itoa(len(args)))

	rows, err := s.pool.Query(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (agentkey.Key, error) {
		var r keyRow
		err := row.Scan(r.dest()...)
		return r.record().Key, err
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	if len(keys) == 0 {
		return []agentkey.Key{}, nil
	}

	ids := make([]string, len(keys))
	index := make(map[string]int, len(keys))
	for i, k := range keys {
		ids[i], index[k.ID] = k.ID, i
	}
	rows, err = s.pool.Query(ctx, s.sql.keyBudgets, ids)
	if err != nil {
		return nil, fmt.Errorf("list keys: budgets: %w", err)
	}
	budgets, err := collectBudgets(rows)
	if err != nil {
		return nil, fmt.Errorf("list keys: budgets: %w", err)
	}
	for _, bud := range budgets {
		k := &keys[index[bud.OwnerID]]
		k.Budgets = append(k.Budgets, bud)
	}
	return keys, nil
}

// readKey reads a batch of two statements, one that returns a key row and
// one that returns its budgets, and closes br. No key row is
// agentkey.ErrNotFound.
func readKey(br pgx.BatchResults) (agentkey.Key, error) {
	defer br.Close()

	var r keyRow
	if err := br.QueryRow().Scan(r.dest()...); errors.Is(err, pgx.ErrNoRows) {
		return agentkey.Key{}, agentkey.ErrNotFound
	} else if err != nil {
		return agentkey.Key{}, err
	}
	rows, err := br.Query()
	if err != nil {
		return agentkey.Key{}, fmt.Errorf("budgets: %w", err)
	}
	k := r.record().Key
	if k.Budgets, err = collectBudgets(rows); err != nil {
		return agentkey.Key{}, fmt.Errorf("budgets: %w", err)
	}
	return k, br.Close()
}

// TouchKeys sets the last use of each key in lastUsed to the later of its
// stored value and the given time, in one transaction.
func (s *Store) TouchKeys(ctx context.Context, lastUsed map[string]time.Time) error {
	if len(lastUsed) == 0 {
		return nil
	}
	ids := make([]string, 0, len(lastUsed))
	for id := range lastUsed {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	times := make([]time.Time, len(ids))
	for i, id := range ids {
		times[i] = lastUsed[id]
	}

	// The rows are locked in id order first, so that two processes touching
	// the same keys cannot deadlock, whichever order the UPDATE's plan visits
	// them in. The batch is one implicit transaction, so the locks last until
	// the update is done.
	b := &pgx.Batch{}
	b.Queue(s.sql.lockKeys, ids)
	b.Queue(s.sql.touchKeys, ids, times)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("touch keys: %w", err)
	}
	return nil
}

// queueEntries queues an insert of each ledger entry, in order.
func (s *Store) queueEntries(b *pgx.Batch, entries []agentkey.Entry) error {
	for _, e := range entries {
		args, err := entryArgs(e)
		if err != nil {
			return fmt.Errorf("%s entry: %w", e.Kind, err)
		}
		b.Queue(s.sql.insertEntry, args...)
	}
	return nil
}

// queueBudgets queues an insert of each budget.
func queueBudgets(b *pgx.Batch, sql string, budgets []agentkey.Budget) {
	for _, bud := range budgets {
		b.Queue(sql, budgetArgs(bud)...)
	}
}
