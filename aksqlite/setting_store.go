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

// Settings returns the named values whose names start with prefix.
func (s *Store) Settings(ctx context.Context, prefix string) (map[string]string, error) {
	// substr, not LIKE, for which a name's _ would be a wildcard.
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT name, value FROM {p}settings
		WHERE substr(name, 1, length(?1)) = ?1`), prefix)
	if err != nil {
		return nil, fmt.Errorf("settings %s*: %w", prefix, err)
	}
	defer rows.Close()
	settings := map[string]string{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return nil, fmt.Errorf("settings %s*: %w", prefix, err)
		}
		settings[name] = value
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("settings %s*: %w", prefix, err)
	}
	return settings, nil
}
