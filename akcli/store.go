package akcli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akpostgres"
	"github.com/agentkey-go/agentkey/aksqlite"
)

// connectTimeout bounds each connection attempt to PostgreSQL when the URL
// does not say (connect_timeout), so that an unreachable host fails a command
// in seconds rather than after the operating system's TCP timeout.
const connectTimeout = 10 * time.Second

// app is what a command works with: the migrated store, a service on it and
// the logger.
type app struct {
	store agentkey.Store
	svc   *agentkey.Service
	log   *slog.Logger

	closeStore func()
}

// open opens the database the settings name, migrates it and starts a
// service on it. Every command migrates: migrations are versioned,
// idempotent and safe when several processes run them at once, so a fresh
// database works with any command. Each of configure may change the
// service's configuration.
func (c *cli) open(ctx context.Context, configure ...func(*agentkey.Config)) (*app, error) {
	log, err := c.global.logger(c.stderr)
	if err != nil {
		return nil, err
	}
	cfg, err := c.global.serviceConfig(log)
	if err != nil {
		return nil, err
	}
	for _, f := range configure {
		f(&cfg)
	}

	store, closeStore, err := openStore(ctx, &c.global)
	if err != nil {
		return nil, err
	}
	if err := store.Migrate(ctx); err != nil {
		closeStore()
		return nil, fmt.Errorf("migrate: %w", err)
	}

	svc, err := agentkey.New(store, cfg)
	if err != nil {
		closeStore()
		return nil, usageError{err}
	}
	return &app{store: store, svc: svc, log: log, closeStore: closeStore}, nil
}

// close stops the service, writing what it keeps in memory, and closes the
// database.
func (a *app) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.svc.Close(ctx); err != nil {
		a.log.Warn("close service", "err", err)
	}
	a.closeStore()
}

// withApp runs fn on an open app and closes it after.
func (c *cli) withApp(ctx context.Context, fn func(a *app) error) error {
	a, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer a.close()
	return fn(a)
}

// openStore opens PostgreSQL when a database URL is set, and the SQLite file
// otherwise. It does not migrate.
func openStore(ctx context.Context, g *globalSettings) (agentkey.Store, func(), error) {
	if g.databaseURL == "" {
		if g.pgSchema != "" {
			return nil, nil, usagef("--pg-schema needs --database-url: SQLite has no schemas")
		}
		store, err := aksqlite.Open(g.db, aksqlite.Config{TablePrefix: g.tablePrefix})
		if errors.Is(err, agentkey.ErrInvalidArgument) {
			return nil, nil, usagef("--db %q or --table-prefix %q: %w", g.db, g.tablePrefix, err)
		}
		if err != nil {
			return nil, nil, err
		}
		return store, func() { _ = store.Close() }, nil
	}

	cfg, err := pgxpool.ParseConfig(g.databaseURL)
	if err != nil {
		// pgx masks the password of the URL it quotes in this error.
		return nil, nil, usagef("--database-url: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	cfg.MaxConns = int32(max(4, 2*runtime.GOMAXPROCS(0)))

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to postgresql: %w", err)
	}
	store, err := akpostgres.New(pool,
		akpostgres.Config{Schema: g.pgSchema, TablePrefix: g.tablePrefix})
	if err != nil {
		pool.Close()
		return nil, nil, usagef("--pg-schema %q or --table-prefix %q: %w", g.pgSchema, g.tablePrefix, err)
	}
	return store, pool.Close, nil
}
