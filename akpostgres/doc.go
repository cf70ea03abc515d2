// Package akpostgres is the PostgreSQL implementation of agentkey.Store, on
// pgx v5 and its pgxpool. Any number of processes may share one database:
// every charge and adjustment checks and writes its budgets under their row
// locks, in one transaction, so that no limit is ever passed.
//
// The caller owns the pool:
//
//	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
//	...
//	defer pool.Close()
//	store, err := akpostgres.New(pool, akpostgres.Config{})
//	...
//	if err := store.Migrate(ctx); err != nil { ... }
//	svc, err := agentkey.New(store, agentkey.Config{})
//
// # Tables
//
// Migrate creates these tables, each name starting with Config.TablePrefix
// ("agentkey_" by default), in Config.Schema or the connection's current
// schema:
//
//   - keys: own keys (with the SHA-256 hash of their secret) and external
//     subjects, one row each, with scopes as text[] (NULL is unlimited).
//   - budgets: the budgets of keys and, later, accounts (owner_kind and
//     owner_id), with limit_micros NULL for no limit, and used and held in
//     micro-units.
//   - ledger: one entry per change of a budget, numbered by the database.
//   - idempotency: the result of each charge made with an idempotency key,
//     per key.
//   - migrations: the versions applied.
//
// The migrations are embedded in the package, applied in one transaction
// under an advisory lock, and recorded in the migrations table, so that
// several processes starting together apply each version once.
//
// # Statements
//
// All SQL is built when the Store is created, and pgx prepares and caches it
// per connection, which suits its default query exec mode. Behind a
// connection pooler in transaction mode, configure the pool with
// pgx.QueryExecModeExec or pgx.QueryExecModeSimpleProtocol instead.
package akpostgres
