package akpostgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentkey-go/agentkey"
)

// DefaultTablePrefix starts every table name unless Config.TablePrefix says
// otherwise.
const DefaultTablePrefix = "agentkey_"

// maxIdentifier is the longest identifier PostgreSQL keeps; longer ones are
// silently truncated (PostgreSQL manual, section 4.1.1, Identifiers and Key
// Words), which would make two of our names collide.
const maxIdentifier = 63

// maxPrefix is the longest TablePrefix: it leaves 31 bytes of every name for
// the table, index and constraint names that follow it, now and in later
// migrations.
const maxPrefix = 32

// identifier is what Schema and TablePrefix may contain: names that need no
// quoting in hand-written SQL, so that psql users can type them as they are.
var identifier = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Config configures a Store. The zero value is usable.
type Config struct {
	// Schema holds the tables. Empty means the first schema of the
	// connection's search_path (usually public). Migrate creates the schema
	// if it is missing. Lowercase letters, digits and underscores, not
	// starting with a digit or pg_.
	Schema string

	// TablePrefix starts every table and index name. At most 32 lowercase
	// letters, digits and underscores, not starting with a digit. Defaults
	// to DefaultTablePrefix, "agentkey_".
	TablePrefix string
}

func (c Config) withDefaults() Config {
	if c.TablePrefix == "" {
		c.TablePrefix = DefaultTablePrefix
	}
	return c
}

func (c Config) validate() error {
	if c.Schema != "" {
		if !identifier.MatchString(c.Schema) || len(c.Schema) > maxIdentifier {
			return fmt.Errorf("%w: config: Schema %q must be at most %d lowercase letters, "+
				"digits and underscores, not starting with a digit",
				agentkey.ErrInvalidArgument, c.Schema, maxIdentifier)
		}
		if strings.HasPrefix(c.Schema, "pg_") {
			return fmt.Errorf("%w: config: Schema %q must not start with pg_, which "+
				"PostgreSQL reserves", agentkey.ErrInvalidArgument, c.Schema)
		}
	}
	if !identifier.MatchString(c.TablePrefix) || len(c.TablePrefix) > maxPrefix {
		return fmt.Errorf("%w: config: TablePrefix %q must be at most %d lowercase letters, "+
			"digits and underscores, not starting with a digit",
			agentkey.ErrInvalidArgument, c.TablePrefix, maxPrefix)
	}
	return nil
}

// Store is an agentkey.Store on PostgreSQL. It is safe for concurrent use by
// any number of goroutines, and any number of processes may share one
// database.
type Store struct {
	pool *pgxpool.Pool
	cfg  Config
	// ownsPool is set by Open, whose Store closes its pool on Close.
	ownsPool bool

	// migrations are the embedded migrations with names filled in.
	migrations []migration
	// sql holds every statement, built once by New so that no operation
	// builds strings, and so that pgx caches one prepared statement per
	// query on each connection.
	sql statements
}

var _ agentkey.Store = (*Store)(nil)

// New returns a Store that keeps its tables in pool's database, as cfg says.
// It validates cfg, with an error that wraps agentkey.ErrInvalidArgument,
// but does not connect. The caller owns pool and closes it
// after the last use of the Store. Call Migrate before other methods.
func New(pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if pool == nil {
		return nil, errors.New("akpostgres: nil pool")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}

	s := &Store{pool: pool, cfg: cfg}
	r := newRenderer(cfg)
	var err error
	if s.migrations, err = loadMigrations(r); err != nil {
		return nil, err
	}
	if err := s.sql.build(r); err != nil {
		return nil, err
	}
	return s, nil
}

// DefaultConnectTimeout is how long Open waits for a new connection when the
// URL sets no connect_timeout.
const DefaultConnectTimeout = 10 * time.Second

// Open connects a pool to the database at url (a postgres:// URL or a
// key=value connection string, as pgxpool.ParseConfig reads them) and
// returns a Store on it that owns the pool: Close closes it. Unless the URL
// says otherwise, a connection attempt gives up after
// DefaultConnectTimeout, and the pool keeps at most max(4, 2*GOMAXPROCS)
// connections. Open does not migrate. Errors quote the URL with its
// password masked, as pgx does. A URL or a Config that is not valid gives an
// error that wraps agentkey.ErrInvalidArgument.
func Open(ctx context.Context, url string, cfg Config) (*Store, error) {
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("akpostgres: %w: database url: %w", agentkey.ErrInvalidArgument, err)
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if !strings.Contains(url, "pool_max_conns") {
		pcfg.MaxConns = int32(max(4, 2*runtime.GOMAXPROCS(0)))
	}

	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("akpostgres: connect: %w", err)
	}
	s, err := New(pool, cfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.ownsPool = true
	return s, nil
}

// Close closes the pool when Open made it, after waiting for its
// connections to be returned. A Store made by New leaves its pool to the
// caller, and Close does nothing.
func (s *Store) Close() {
	if s.ownsPool {
		s.pool.Close()
	}
}

// Pool returns the pool the Store was created with.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// renderer fills the table and index names into SQL text.
type renderer struct {
	cfg   Config
	funcs template.FuncMap
}

func newRenderer(cfg Config) *renderer {
	r := &renderer{cfg: cfg}
	r.funcs = template.FuncMap{"table": r.table, "name": r.name}
	return r
}

// table returns the quoted, schema-qualified name of a table.
func (r *renderer) table(base string) (string, error) {
	name, err := r.prefixed(base)
	if err != nil {
		return "", err
	}
	if r.cfg.Schema == "" {
		return pgx.Identifier{name}.Sanitize(), nil
	}
	return pgx.Identifier{r.cfg.Schema, name}.Sanitize(), nil
}

// name returns the quoted name of an index or a constraint, which PostgreSQL
// places in its table's schema and which cannot be qualified.
func (r *renderer) name(base string) (string, error) {
	name, err := r.prefixed(base)
	if err != nil {
		return "", err
	}
	return pgx.Identifier{name}.Sanitize(), nil
}

func (r *renderer) prefixed(base string) (string, error) {
	name := r.cfg.TablePrefix + base
	if len(name) > maxIdentifier {
		return "", fmt.Errorf("name %q is longer than %d bytes", name, maxIdentifier)
	}
	return name, nil
}

// render executes text as a template with the table and name functions.
func (r *renderer) render(label, text string) (string, error) {
	t, err := template.New(label).Funcs(r.funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", label, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, nil); err != nil {
		return "", fmt.Errorf("render %s: %w", label, err)
	}
	return b.String(), nil
}

// querier is what pgxpool.Pool, pgxpool.Conn and pgx.Tx have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// uniqueViolation is the SQLSTATE of unique_violation (PostgreSQL manual,
// Appendix A, PostgreSQL Error Codes).
const uniqueViolation = "23505"

// uniqueError maps a unique violation to agentkey.ErrConflict, an id that is
// taken, except a second budget of one owner with one period, which is
// agentkey.ErrInvalidArgument. Other errors are returned as they are.
func (s *Store) uniqueError(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != uniqueViolation {
		return err
	}
	if pgErr.ConstraintName == s.cfg.TablePrefix+"budgets_owner_period_key" {
		return fmt.Errorf("%w: an owner may have one budget per period: %w",
			agentkey.ErrInvalidArgument, err)
	}
	return fmt.Errorf("%w: %w", agentkey.ErrConflict, err)
}

// readCommitted is the isolation of every transaction: each statement sees
// what committed before it, and row locks do the serializing.
var readCommitted = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}
