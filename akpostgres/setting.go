package akpostgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/agentkey-go/agentkey"
)

// Setting returns a named value, or an error wrapping agentkey.ErrNotFound.
func (s *Store) Setting(ctx context.Context, name string) (string, error) {
	var value string
	err := s.pool.QueryRow(ctx, s.sql.settingByName, name).Scan(&value)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("load setting %s: %w", name, agentkey.ErrNotFound)
	} else if err != nil {
		return "", fmt.Errorf("load setting %s: %w", name, err)
	}
	return value, nil
}

// PutSetting stores a named value and reports whether it stored it. With
// ifAbsent set it stores only if the name has no value, in one INSERT ... ON
// CONFLICT DO NOTHING, so that of concurrent callers exactly one stores.
func (s *Store) PutSetting(ctx context.Context, name, value string, ifAbsent bool) (bool, error) {
	sql := s.sql.upsertSetting
	if ifAbsent {
		sql = s.sql.insertSetting
	}
	tag, err := s.pool.Exec(ctx, sql, name, value)
	if err != nil {
		return false, fmt.Errorf("put setting %s: %w", name, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Settings returns the named values whose names start with prefix.
func (s *Store) Settings(ctx context.Context, prefix string) (map[string]string, error) {
	rows, err := s.pool.Query(ctx, s.sql.settingsByPrefix, prefix)
	if err != nil {
		return nil, fmt.Errorf("load settings %s*: %w", prefix, err)
	}
	defer rows.Close()
	settings := map[string]string{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return nil, fmt.Errorf("load settings %s*: %w", prefix, err)
		}
		settings[name] = value
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load settings %s*: %w", prefix, err)
	}
	return settings, nil
}
