// Package e2e holds the end-to-end tests of the agentkey binary. They build
// cmd/agentkey into a temporary directory, run "agentkey serve" as separate
// processes on SQLite and PostgreSQL, and drive them over HTTP and through
// the CLI, as an operator would. The package has no code outside its tests.
package e2e
