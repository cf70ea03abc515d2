package akpostgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The statements that begin and end the transactions of the hot path, which
// the store sends in its own batches rather than through pgx.Tx: see acquire.
const (
	beginSQL    = "begin isolation level read committed"
	commitSQL   = "commit"
	rollbackSQL = "rollback"
)

// divisionByZero is the SQLSTATE of division_by_zero (PostgreSQL manual,
// Appendix A, PostgreSQL Error Codes), which the guarded updates raise when
// they find no row: see statements.guarded.
const divisionByZero = "22012"

// acquire returns a connection of the pool for a transaction that the caller
// begins with beginSQL, queued first in its first batch, and ends with
// commitSQL, queued last in the batch of its writes; and a function that
// rolls back whatever is left open and returns the connection to the pool,
// for the caller to defer.
//
// Charge, Reserve, CloseHold and Adjust hold their budgets' row locks from
// their first batch to their commit. pgx.Tx commits or rolls back with a
// statement of its own, a round trip while the locks are held, and cannot be
// told that a batch committed it: so those operations manage the transaction
// themselves, and commit in the batch of the writes. A write batch must then
// fail on the server whenever one of its checks fails, so that PostgreSQL
// skips the rest of the pipeline, COMMIT included, and leaves the
// transaction aborted for the rollback (PostgreSQL manual, Frontend/Backend
// Protocol, Pipelining). The rollback is a round trip only on the paths that
// do not commit: a refusal, a replay, an error.
func (s *Store) acquire(ctx context.Context) (*pgxpool.Conn, func(), error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	release := func() {
		// A connection left inside a transaction, when the rollback fails
		// too, is closed by Release rather than reused.
		if conn.Conn().PgConn().TxStatus() != 'I' {
			_, _ = conn.Exec(ctx, rollbackSQL)
		}
		conn.Release()
	}
	return conn, release, nil
}

// writeBatch is the batch of a transaction's writes, sent with the COMMIT
// that ends it. Each statement carries a label for its error.
type writeBatch struct {
	b      pgx.Batch
	labels []string
}

// queue queues a statement whose error send labels with label.
func (w *writeBatch) queue(label, sql string, args ...any) {
	w.b.Queue(sql, args...)
	w.labels = append(w.labels, label)
}

// send sends the batch with COMMIT queued last, and returns the first error,
// labelled with its statement. After an error nothing after the failing
// statement ran, and the caller's release rolls back.
//
// pgx forgets the prepared statements of a batch that fails, and prepares
// them again on their next use: a failure must be rare, as a concurrent
// retry with one idempotency key is.
func (w *writeBatch) send(ctx context.Context, conn *pgxpool.Conn) error {
	w.b.Queue(commitSQL)
	br := conn.SendBatch(ctx, &w.b)
	defer br.Close()

	for _, label := range w.labels {
		_, err := br.Exec()
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == divisionByZero {
			return fmt.Errorf("%s: the locked row changed under its lock: %w", label, err)
		} else if err != nil {
			return fmt.Errorf("%s: %w", label, err)
		}
	}
	// COMMIT of an aborted transaction rolls back without an error.
	if tag, err := br.Exec(); err != nil {
		return fmt.Errorf("commit: %w", err)
	} else if tag.String() != "COMMIT" {
		return fmt.Errorf("commit: the transaction ended with %s", tag)
	}
	return br.Close()
}
