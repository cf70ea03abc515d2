// Package akcli is the command line of the agentkey binary: "agentkey serve",
// which runs package akserver's HTTP server, and the commands that manage
// keys, accounts, budgets, holds, tokens and the ledger directly in the
// database. cmd/agentkey calls Main and nothing else, so that tests run the
// commands in process with their own streams and environment.
//
// # Commands
//
//	agentkey serve
//	agentkey keys create|list|show|revoke|move
//	agentkey accounts create|list|show|tree|move
//	agentkey budgets set|show|remove|adjust
//	agentkey usage [--json|--csv]
//	agentkey ledger list|audit
//	agentkey holds list|show|release
//	agentkey admin-token rotate
//	agentkey service-tokens create|list|revoke
//	agentkey migrate
//	agentkey version
//
// # Settings
//
// Every setting is a flag and an environment variable, and --help lists
// both; a flag wins over its variable. The database settings apply to every
// command: --database-url (DATABASE_URL) selects PostgreSQL, and otherwise
// --db (AGENTKEY_DB, default ./agentkey.db) names the SQLite file;
// --table-prefix and --pg-schema place the tables. Every command migrates the
// database before it starts.
//
// Amounts are decimal strings ("12.50", "0.0004"); durations take agentkey's
// units ("30m", "7d", "1mo") or Go's ("90s"), as the HTTP APIs do
// (akserver.ParseDuration); periods are none, day, week or month. CSV output
// quotes text that a spreadsheet would run as a formula, and "ledger list
// --csv" writes what the admin API's export does (akserver.LedgerCSV).
//
// # Exit codes
//
//	0  ExitOK: done
//	1  ExitError: the command failed (database unreachable, not found, ...)
//	2  ExitUsage: the command line is wrong (unknown flag, bad amount, ...)
//	3  ExitDrift: "agentkey ledger audit" found a budget that drifted
//
// Errors go to stderr, results to stdout. "agentkey serve" prints its admin
// token (on first start only) and "listening on http://HOST:PORT" to
// stdout, and logs with log/slog to stderr.
package akcli
