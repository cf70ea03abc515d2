// Package aksqlite is the SQLite implementation of agentkey.Store, on the pure
// Go driver modernc.org/sqlite (no cgo). It is the embedded default: one file,
// no server, and still safe when several processes share that file.
//
// Every write (Charge, Adjust, CreateKey, EnsureSubject, RevokeKey, TouchKeys,
// Migrate) runs in one transaction begun IMMEDIATE, which takes SQLite's single
// write lock at BEGIN. The store loads the rows, lets the root package's Plan
// functions decide, and writes, all under that lock, so used + held stays
// within every limit whatever the number of goroutines and processes. Reads
// (Key, Ledger, BudgetTotals) take no lock: in WAL mode they see the last
// committed state and never wait for the writer.
//
// Use [Open] to get a store that owns its database, or [New] to wrap a *sql.DB
// opened with the DSN that [DSN] returns.
package aksqlite
