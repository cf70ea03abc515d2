package akpostgres

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one embedded migration, its names filled in.
type migration struct {
	version int
	name    string // file name without .sql, such as "001_init"
	sql     string
}

// loadMigrations reads the embedded migrations, renders them and sorts them
// by version. File names are NNN_words.sql; a version may appear once.
func loadMigrations(r *renderer) ([]migration, error) {
	files, err := migrationFiles.ReadDir("migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}

	var ms []migration
	for _, f := range files {
		name := strings.TrimSuffix(f.Name(), ".sql")
		digits, _, _ := strings.Cut(name, "_")
		version, err := strconv.Atoi(digits)
		if err != nil || version <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive version", f.Name())
		}
		text, err := migrationFiles.ReadFile(path.Join("migrations", f.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", f.Name(), err)
		}
		sql, err := r.render(name, string(text))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: version, name: name, sql: sql})
	}

	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share a version", ms[i-1].name, ms[i].name)
		}
	}
	return ms, nil
}

// Migrate applies the embedded migrations that the database lacks, in
// version order, and records each in the <prefix>migrations table. It is
// idempotent, and safe to call from several processes at once: all of its
// work happens in one transaction that first takes an advisory lock derived
// from the schema and the prefix, so concurrent calls run one after the
// other, and each later one finds nothing left to do.
func (s *Store) Migrate(ctx context.Context) error {
	err := pgx.BeginTxFunc(ctx, s.pool, readCommitted, func(tx pgx.Tx) error {
		// A transaction-level lock is released by commit or rollback, so a
		// failed or killed migrator cannot leave it held (PostgreSQL manual,
		// section 13.3.5, Advisory Locks). Under READ COMMITTED every later
		// statement sees what the previous holder committed.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.lockID()); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if err := s.createSchema(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.sql.createMigrations); err != nil {
			return fmt.Errorf("create migrations table: %w", err)
		}

		rows, err := tx.Query(ctx, s.sql.appliedVersions)
		if err != nil {
			return fmt.Errorf("read applied versions: %w", err)
		}
		applied, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			return fmt.Errorf("read applied versions: %w", err)
		}

		for _, m := range s.migrations {
			if slices.Contains(applied, m.version) {
				continue
			}
			// Exec without arguments uses the simple protocol, which runs a
			// file of several statements.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("apply %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, s.sql.recordMigration, m.version, m.name); err != nil {
				return fmt.Errorf("record %s: %w", m.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// createSchema creates Config.Schema if it is set and missing.
//
// Existence is checked first because CREATE SCHEMA IF NOT EXISTS demands the
// CREATE privilege on the database even when the schema exists, which a role
// that only owns its schema lacks. Stores with other prefixes may create the
// same schema at the same moment, so the check and the creation run under a
// second lock derived from the schema alone, always taken after the first:
// two migrators never wait for each other in opposite orders.
func (s *Store) createSchema(ctx context.Context, tx pgx.Tx) error {
	if s.cfg.Schema == "" {
		return nil
	}
	lock := lockID("schema", s.cfg.Schema)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lock); err != nil {
		return fmt.Errorf("lock schema: %w", err)
	}

	var exists bool
	err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)",
		s.cfg.Schema).Scan(&exists)
	if err != nil {
		return fmt.Errorf("look up schema: %w", err)
	}
	if exists {
		return nil
	}
	if _, err := tx.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{s.cfg.Schema}.Sanitize()); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	return nil
}

// lockID returns the advisory lock key of this store's migrations.
func (s *Store) lockID() int64 {
	return lockID("migrate", s.cfg.Schema, s.cfg.TablePrefix)
}

// lockID hashes parts into an advisory lock key. FNV-1a spreads them over
// the whole int64 space, where a collision with an application's own locks
// only serializes two unrelated operations.
func lockID(parts ...string) int64 {
	h := fnv.New64a()
	h.Write([]byte("agentkey"))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return int64(h.Sum64())
}
