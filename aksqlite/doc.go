// Package aksqlite is the SQLite implementation of agentkey.Store, on the pure
// Go driver modernc.org/sqlite (no cgo). It is the embedded default: one file,
// no server, and still safe when several processes share that file.
//
// Every write (charges, holds, adjustments, keys, accounts, budgets,
// settings, Migrate) runs in one transaction begun IMMEDIATE, which takes
// SQLite's single write lock at BEGIN. The store loads the rows, lets the root
// package's Plan functions decide, and writes, all under that lock, so used +
// held stays within every limit whatever the number of goroutines and
// processes. SQLite has no row locks: the write lock stands for the lock of a
// key's path budgets, of a hold's row, and of the whole account tree, so that
// two moves can never build a cycle together and no two writers deadlock.
// Reads (Key, Account, Holds, Ledger, BudgetTotals, ...) take no lock: in WAL
// mode they see the last committed state and never wait for the writer.
//
// A key's path (its own budgets and those of its account and every account
// above it) is read in one statement with a recursive query, bounded to 16
// levels so that a corrupted tree cannot make it loop.
//
// Use [Open] to get a store that owns its database, or [New] to wrap a *sql.DB
// opened with the DSN that [DSN] returns.
package aksqlite
