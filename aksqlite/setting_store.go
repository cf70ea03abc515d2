package aksqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/agentkey-go/agentkey"
)

// Setting returns the value stored under name, or ErrNotFound.
func (s *Store) Setting(ctx context.Context, name string) (string, error) {
	var value string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT value FROM {p}settings WHERE name = ?`), name).
		Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("setting %s: %w", name, agentkey.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("setting %s: %w", name, err)
	}
	return value, nil
}

// PutSetting stores value under name and reports whether it stored. With
// ifAbsent set it stores only if name has no value yet, in one statement, so
// that of concurrent first calls exactly one stores.
//
// updated_at is the wall clock's time: PutSetting is given no time.
func (s *Store) PutSetting(ctx context.Context, name, value string, ifAbsent bool) (bool, error) {
	conflict := `DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`
	if ifAbsent {
		conflict = `DO NOTHING`
	}

	var stored bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`INSERT INTO {p}settings (name, value, updated_at)
			VALUES (?, ?, ?) ON CONFLICT (name) `+conflict),
			name, value, time.Now().UnixMicro())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		stored = n == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("put setting %s: %w", name, err)
	}
	return stored, nil
}
