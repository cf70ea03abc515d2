package aksqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/agentkey-go/agentkey"
)

// DefaultTablePrefix starts every table name unless Config.TablePrefix says
// otherwise.
const DefaultTablePrefix = "agentkey_"

const (
	// busyTimeout is how long a connection waits for another's write lock
	// before SQLITE_BUSY, in milliseconds.
	busyTimeout = 10_000

	// busyAttempts bounds how often a write transaction is run again after
	// SQLITE_BUSY escaped the busy timeout.
	busyAttempts = 5
)

// prefixPattern keeps the table prefix a plain identifier: it is spliced into
// SQL text, since table names cannot be bound as parameters.
var prefixPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,31}$`)

// Config configures a Store.
type Config struct {
	// TablePrefix starts every table name. Defaults to "agentkey_". It must
	// be a letter or underscore followed by at most 31 letters, digits or
	// underscores.
	TablePrefix string
}

// Store is an agentkey.Store in a SQLite database. It is safe for concurrent
// use, and several Stores, in one process or several, may share one database
// file.
type Store struct {
	db     *sql.DB
	owned  bool
	prefix string

	// writer admits one write transaction of this Store at a time. SQLite
	// allows a single writer anyway; queueing in Go instead of in SQLite's
	// busy handler, which polls with sleeps of up to 100 ms, keeps writers of
	// one process from wasting time and connections while they wait. Writers
	// of other Stores and processes still wait in the busy handler.
	writer chan struct{}

	queries sync.Map // query template -> query with the prefix filled in

	// stmts holds the prepared statements of the hot path, by query template.
	// database/sql prepares each once per connection and keeps it, so that a
	// charge does not parse its SQL every time: parsing the path query costs
	// more than running it.
	stmts sync.Map // query template -> *sql.Stmt

	// unprepared holds templates first run inside a write transaction. That
	// transaction holds a connection, so preparing on the pool then could wait
	// for itself (a pool of one connection); write prepares them after it.
	mu         sync.Mutex
	unprepared map[string]bool
}

var _ agentkey.Store = (*Store)(nil)

// DSN returns the data source name that Open uses for the database file at
// path, for callers that open the *sql.DB themselves and pass it to New:
//
//	db, err := sql.Open("sqlite", aksqlite.DSN(path))
//
// It sets, on every connection of the pool, WAL journaling (readers never wait
// for the writer), a busy timeout of 10 s, foreign keys, synchronous=FULL
// (a committed charge survives a power failure too; NORMAL would be faster
// and may lose the last transactions then,
// https://sqlite.org/pragma.html#pragma_synchronous), and
// _txlock=immediate, so that every
// read-write transaction takes the write lock at BEGIN. The last one matters
// most: a transaction that reads first and upgrades to a writer later can fail
// with SQLITE_BUSY however long the busy timeout is.
//
// path must be a file system path without '?'.
func DSN(path string) string {
	return path + fmt.Sprintf("?_pragma=busy_timeout(%d)", busyTimeout) +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=foreign_keys(on)" +
		"&_pragma=synchronous(FULL)" +
		"&_txlock=immediate"
}

// Open opens (creating if needed) the database file at path with the settings
// of DSN, and returns a Store that owns it: Close closes the database. Call
// Migrate before use.
func Open(path string, cfg Config) (*Store, error) {
	switch {
	case path == "" || path == ":memory:" || strings.HasPrefix(path, "file:"):
		// A memory or temporary database is private to one connection, so a
		// pool would see several different databases.
		return nil, fmt.Errorf("open sqlite: %w: path must name a file", agentkey.ErrInvalidArgument)
	case strings.ContainsRune(path, '?'):
		return nil, fmt.Errorf("open sqlite: %w: path must not contain '?'", agentkey.ErrInvalidArgument)
	}

	db, err := sql.Open("sqlite", DSN(path))
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	// Reads are CPU-bound in process; more connections than CPUs buy nothing,
	// and keeping them idle spares the pragmas of a new connection.
	n := max(4, runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)

	s, err := New(db, cfg)
	if err == nil {
		err = ping(db)
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	s.owned = true
	return s, nil
}

// ping opens a first connection, which switches a new file to WAL.
//
// The switch needs an exclusive lock. When several processes open a new file
// at once, SQLite refuses all but one with SQLITE_BUSY without calling the
// busy handler, since each holds a shared lock that the others wait for
// (https://sqlite.org/c3ref/busy_handler.html). The losers changed nothing, so
// they try again; once the file is in WAL, opening takes no exclusive lock.
func ping(db *sql.DB) error {
	for attempt := 1; ; attempt++ {
		err := db.PingContext(context.Background())
		if err == nil || !isBusy(err) || attempt == 4*busyAttempts {
			return err
		}
		time.Sleep(time.Duration(attempt) * 10 * time.Millisecond)
	}
}

// New returns a Store on db, which the caller opened and owns: Close does not
// close it. db must use the modernc.org/sqlite driver ("sqlite") with the
// settings that DSN describes; _txlock=immediate and busy_timeout are needed
// for writes to wait for each other rather than fail, and WAL for reads not
// to wait for writes. Call Migrate before use.
func New(db *sql.DB, cfg Config) (*Store, error) {
	if db == nil {
		return nil, errors.New("new sqlite store: nil db")
	}
	if _, ok := db.Driver().(*sqlite.Driver); !ok {
		return nil, fmt.Errorf("new sqlite store: %w: db must use the modernc.org/sqlite driver",
			agentkey.ErrInvalidArgument)
	}
	if cfg.TablePrefix == "" {
		cfg.TablePrefix = DefaultTablePrefix
	}
	if !prefixPattern.MatchString(cfg.TablePrefix) {
		return nil, fmt.Errorf("new sqlite store: %w: config: TablePrefix %q must be a letter or "+
			"underscore and at most 31 letters, digits or underscores",
			agentkey.ErrInvalidArgument, cfg.TablePrefix)
	}
	return &Store{db: db, prefix: cfg.TablePrefix, writer: make(chan struct{}, 1)}, nil
}

// DB returns the store's database.
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the store's prepared statements, and the database if Open
// opened it; a database passed to New stays open.
func (s *Store) Close() error {
	var errs []error
	s.stmts.Range(func(query, st any) bool {
		s.stmts.Delete(query)
		errs = append(errs, st.(*sql.Stmt).Close())
		return true
	})
	if s.owned {
		errs = append(errs, s.db.Close())
	}
	return errors.Join(errs...)
}

// q returns query with every "{p}" replaced by the table prefix.
func (s *Store) q(query string) string {
	if v, ok := s.queries.Load(query); ok {
		return v.(string)
	}
	filled := strings.ReplaceAll(query, "{p}", s.prefix)
	s.queries.Store(query, filled)
	return filled
}

// querier is what *sql.DB and *sql.Tx have in common, so that one loader
// serves reads outside and inside a transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// exec, query and queryRow run the query template on q, a *sql.DB or the
// current *sql.Tx, with the template's prepared statement when there is one.
func (s *Store) exec(ctx context.Context, q querier, query string, args ...any,
) (sql.Result, error) {
	if st := s.stmt(ctx, q, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return q.ExecContext(ctx, s.q(query), args...)
}

func (s *Store) query(ctx context.Context, q querier, query string, args ...any,
) (*sql.Rows, error) {
	if st := s.stmt(ctx, q, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return q.QueryContext(ctx, s.q(query), args...)
}

func (s *Store) queryRow(ctx context.Context, q querier, query string, args ...any) *sql.Row {
	if st := s.stmt(ctx, q, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return q.QueryRowContext(ctx, s.q(query), args...)
}

// stmt returns the prepared statement of query for q, or nil to run it
// unprepared. Outside a transaction it prepares a statement it does not have
// yet; inside one it leaves that to write, after the transaction. A failed
// prepare returns nil too: running the query unprepared reports the error.
func (s *Store) stmt(ctx context.Context, q querier, query string) *sql.Stmt {
	tx, inTx := q.(*sql.Tx)
	v, ok := s.stmts.Load(query)
	switch {
	case ok && inTx:
		return tx.StmtContext(ctx, v.(*sql.Stmt))
	case ok:
		return v.(*sql.Stmt)
	case inTx:
		s.mu.Lock()
		if s.unprepared == nil {
			s.unprepared = make(map[string]bool)
		}
		s.unprepared[query] = true
		s.mu.Unlock()
		return nil
	}
	return s.prepare(ctx, query)
}

// prepare prepares query on the pool and keeps it, or returns nil.
func (s *Store) prepare(ctx context.Context, query string) *sql.Stmt {
	st, err := s.db.PrepareContext(ctx, s.q(query))
	if err != nil {
		return nil
	}
	if v, loaded := s.stmts.LoadOrStore(query, st); loaded {
		_ = st.Close()
		return v.(*sql.Stmt)
	}
	return st
}

// prepareWaiting prepares the templates that a write transaction ran
// unprepared. A failure leaves them unprepared, to try again later.
func (s *Store) prepareWaiting(ctx context.Context) {
	s.mu.Lock()
	waiting := s.unprepared
	s.unprepared = nil
	s.mu.Unlock()

	for query := range waiting {
		s.prepare(ctx, query)
	}
}

// write runs fn in a write transaction, committing if fn returns nil. fn may
// run more than once and must set its results afresh each time.
//
// With _txlock=immediate and a busy timeout, BEGIN waits for the write lock,
// so SQLITE_BUSY should not escape. It still can, because SQLite skips the busy
// handler where waiting could deadlock (https://sqlite.org/c3ref/busy_handler.html):
// while another process recovers the WAL after a crash or switches a new file
// to WAL, and, for a db passed to New without _txlock=immediate, when a read
// snapshot went stale before the transaction wrote (SQLITE_BUSY_SNAPSHOT). In
// every case the transaction wrote nothing, so it is run again, a bounded
// number of times.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	defer s.prepareWaiting(ctx) // once the writer's turn is over
	select {
	case s.writer <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.writer }()

	for attempt := 1; ; attempt++ {
		err := s.writeOnce(ctx, fn)
		if err == nil || !isBusy(err) || attempt == busyAttempts {
			return err
		}

		t := time.NewTimer(time.Duration(attempt) * 20 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

func (s *Store) writeOnce(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// isBusy reports whether err is SQLITE_BUSY or one of its extended codes.
func isBusy(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_BUSY
}
