// Package pgtest gives every test binary a real PostgreSQL server.
//
// There are two tiers, chosen by the environment:
//
//   - When TEST_DATABASE_URL is set, tests use that server as it is. This is
//     the fast path for a developer who keeps a server running, and the way to
//     point CI at a managed database. The role in the URL needs the right to
//     create schemas and databases.
//   - Otherwise the first call to [URL] in a test binary starts a throwaway
//     cluster from the installed PostgreSQL server binaries: initdb into a
//     temporary directory, durability switched off for speed, no TCP listener,
//     only a unix socket in that directory, trust authentication. When the
//     tests run as root, initdb and postgres run as the postgres OS user,
//     because both refuse to run as root. [Stop] shuts the cluster down and
//     removes its files; [Main] does that for a TestMain.
//
// Either way one server is shared by all the tests of a binary, and by many
// binaries at once in the first tier, so tests isolate themselves. A test that
// can roll back works inside a transaction it never commits. A test that must
// commit takes a schema of its own from [NewSchema], and a test that needs a
// whole database, say to run migrations from several processes at once, takes
// one from [NewDatabase]. Both are dropped when the test ends.
//
// A test package wires it up like this:
//
//	func TestMain(m *testing.M) {
//		pgtest.Main(m)
//	}
//
//	func TestSomething(t *testing.T) {
//		schema, url := pgtest.NewSchema(t.Context(), t)
//		// Connect to url with search_path set to schema.
//	}
//
// Set PGTEST_KEEP=1 to keep the throwaway cluster's files, including the
// server log, after Stop for debugging.
//
// The package builds on Linux only: it relies on the parent-death signal to
// make sure the server never outlives the test binary.
package pgtest
