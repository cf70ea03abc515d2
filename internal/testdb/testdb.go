// Package testdb opens fresh, migrated stores of every implementation, for
// the tests of the packages built on agentkey.Store: the middlewares, the
// Clerk package and the server. The stores' own tests use
// internal/storetest instead.
package testdb

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akpostgres"
	"github.com/agentkey-go/agentkey/aksqlite"
	"github.com/agentkey-go/agentkey/internal/pgtest"
)

// Factory opens fresh, migrated stores of one implementation.
type Factory struct {
	// Name names the implementation in subtest names: sqlite or postgres.
	Name string

	// Open returns a store, closed when the test ends, and a function that
	// breaks it as a lost database would, so that every later call fails.
	Open func(t testing.TB) (store agentkey.Store, breakStore func())
}

// Factories are the store implementations, SQLite first.
var Factories = []Factory{
	{Name: "sqlite", Open: SQLite},
	{Name: "postgres", Open: Postgres},
}

// ForEach runs fn as a parallel subtest per store implementation.
func ForEach(t *testing.T, fn func(t *testing.T, f Factory)) {
	t.Helper()
	for _, f := range Factories {
		t.Run(f.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, f)
		})
	}
}

// SQLite opens a store in a file of the test's temporary directory.
func SQLite(t testing.TB) (agentkey.Store, func()) {
	t.Helper()

	s, err := aksqlite.Open(filepath.Join(t.TempDir(), "agentkey.db"), aksqlite.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, s.Migrate(context.Background()))
	return s, func() { _ = s.Close() }
}

// Postgres opens a store in a schema of its own on the test cluster of
// internal/pgtest. A test binary that uses it stops the cluster at its end,
// with pgtest.Main or pgtest.Stop.
func Postgres(t testing.TB) (agentkey.Store, func()) {
	t.Helper()
	ctx := context.Background()

	schema, url := pgtest.NewSchema(ctx, t)
	s, err := akpostgres.Open(ctx, url, akpostgres.Config{Schema: schema})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	require.NoError(t, s.Migrate(ctx))
	return s, s.Close
}
