// Package akpostgres is the PostgreSQL implementation of agentkey.Store, on
// pgx v5 and its pgxpool. Any number of processes may share one database:
// every charge, hold and adjustment checks and writes its budgets under their
// row locks, in one transaction, so that no limit is ever passed.
//
// Open connects a pool of its own, which the Store's Close closes:
//
//	store, err := akpostgres.Open(ctx, os.Getenv("DATABASE_URL"), akpostgres.Config{})
//	...
//	defer store.Close()
//	if err := store.Migrate(ctx); err != nil { ... }
//	svc, err := agentkey.New(store, agentkey.Config{})
//
// New takes a pool that the caller configured and keeps owning, to share
// it with other code or to set pgx options that Open leaves at pgx's
// defaults (see Statements below).
//
// # Tables
//
// Migrate creates these tables, each name starting with Config.TablePrefix
// ("agentkey_" by default), in Config.Schema or the connection's current
// schema:
//
//   - keys: own keys (with the SHA-256 hash of their secret) and external
//     subjects, one row each, with scopes as text[] (NULL is unlimited).
//   - accounts: the budget tree, each account with its parent_id (NULL for
//     a root).
//   - budgets: the budgets of keys and accounts (owner_kind and owner_id), at
//     most one per owner and period, with limit_micros NULL for no limit, and
//     used and held in micro-units.
//   - holds: every hold, open or closed, with the ids of the budgets it holds
//     on as text[].
//   - ledger: one entry per change of a budget, numbered by the database.
//   - idempotency: the result of each charge and each hold made with an
//     idempotency key, per key and kind.
//   - settings: named values kept for the application.
//   - migrations: the versions applied.
//
// The migrations are embedded in the package, applied in one transaction
// under an advisory lock, and recorded in the migrations table, so that
// several processes starting together apply each version once.
//
// # Locks
//
// Every operation locks rows in one order, so that no two deadlock: a hold's
// row before any budget, and budgets in id order (SELECT ... ORDER BY id FOR
// UPDATE). A charge or a hold locks the budgets of the key's whole path: its
// own, and those of its account and each account above it, found by a
// recursive query that stops after 16 levels. Changes of the account tree run
// under a transaction-level advisory lock of their own, so that two
// concurrent moves cannot build a cycle together.
//
// # Statements
//
// All SQL is built when the Store is created, and pgx prepares and caches it
// per connection, which suits its default query exec mode. Behind a
// connection pooler in transaction mode, configure the pool with
// pgx.QueryExecModeExec or pgx.QueryExecModeSimpleProtocol instead; the
// conformance suite runs in all three modes.
package akpostgres
