package akcli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akpostgres"
	"github.com/agentkey-go/agentkey/aksqlite"
)

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

	store, err := akpostgres.Open(ctx, g.databaseURL,
		akpostgres.Config{Schema: g.pgSchema, TablePrefix: g.tablePrefix})
	if errors.Is(err, agentkey.ErrInvalidArgument) {
		// pgx masks the password of the URL it quotes in its errors.
		return nil, nil, usagef("--database-url, --pg-schema or --table-prefix: %w", err)
	}
	if err != nil {
		return nil, nil, err
	}
	return store, store.Close, nil
}
