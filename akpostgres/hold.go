package akpostgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentkey-go/agentkey"
)

// defaultHoldsLimit is the page size of a HoldFilter without a Limit, and of
// ExpiredHolds without a limit.
const defaultHoldsLimit = 100

// Reserve makes a hold on the budgets of the key's whole path in one READ
// COMMITTED transaction, as agentkey.Store documents, with the round trips of
// Charge: the begin, the key and idempotency lookup and the path budgets'
// lock in one batch; the idempotency record, the hold, the budgets, the
// entries and the commit in a second. A replay or a refusal costs the first
// batch and the rollback.
func (s *Store) Reserve(ctx context.Context, req agentkey.ReserveRequest,
) (agentkey.ReserveResult, error) {
	conn, release, err := s.acquire(ctx)
	if err != nil {
		return agentkey.ReserveResult{}, fmt.Errorf("reserve: %w", err)
	}
	defer release()

	b := &pgx.Batch{}
	b.Queue(beginSQL)
	b.Queue(s.sql.loadByID, req.KeyID, nullString(req.IdempotencyKey), idemHold)
	b.Queue(s.sql.lockPathByID, req.KeyID)
	b.Queue(s.sql.expiredHoldBudgets, req.Now)
	st, err := readChargeState(conn.SendBatch(ctx, b))
	if err != nil {
		return agentkey.ReserveResult{}, fmt.Errorf("load key: %w", err)
	}
	if st.stored != nil {
		return replayHold(st.stored)
	}
	if !st.found {
		return agentkey.ReserveResult{Reason: agentkey.ReasonInvalidKey}, nil
	}
	key, budgets := st.key, st.budgets

	plan, err := agentkey.PlanReserve(req, key, budgets)
	if err != nil {
		return agentkey.ReserveResult{}, fmt.Errorf("plan hold: %w", err)
	}
	// A hold's plan is a charge's plan with held in place of used, and its
	// result carries the same reason, key and refusing budget.
	cr := plan.Result(agentkey.ChargeRequest{}, key)
	res := agentkey.ReserveResult{Reason: cr.Reason, Key: cr.Key, RefusedBy: cr.RefusedBy,
		ExpiredHoldsOn: st.expiredOn}
	if plan.Reason != "" {
		return res, nil
	}
	hold := agentkey.NewHold(req, key, budgets)
	res.Hold = hold

	op := operation{keyID: key.ID, kind: idemHold, idemKey: req.IdempotencyKey,
		opID: req.OpID, now: req.Now, result: res}
	if stored, err := s.write(ctx, conn, op, budgets, plan, &hold); err != nil {
		return agentkey.ReserveResult{}, fmt.Errorf("write hold: %w", err)
	} else if stored != nil {
		return replayHold(stored)
	}
	return res, nil
}

// replayHold decodes a stored reservation result.
func replayHold(stored []byte) (agentkey.ReserveResult, error) {
	var res agentkey.ReserveResult
	if err := json.Unmarshal(stored, &res); err != nil {
		return agentkey.ReserveResult{}, fmt.Errorf("decode idempotent result: %w", err)
	}
	res.Replayed = true
	return res, nil
}

// CloseHold settles or releases a hold in one READ COMMITTED transaction, as
// agentkey.Store documents.
//
// The first batch begins, locks the hold's row and then locks its budgets
// that still exist, in id order: the statements run one after the other, so
// the hold is always locked before its budgets, as everywhere, and sending
// them together saves a round trip. When agentkey.CheckClose finds nothing
// to do, the budgets were locked for nothing, briefly, as Charge locks them
// before it knows of a replay. A close costs two round trips: the first
// batch, and the writes with the commit or, for a replay or a refusal, the
// rollback.
func (s *Store) CloseHold(ctx context.Context, req agentkey.CloseRequest,
) (agentkey.CloseResult, error) {
	conn, release, err := s.acquire(ctx)
	if err != nil {
		return agentkey.CloseResult{}, fmt.Errorf("close hold: %w", err)
	}
	defer release()

	b := &pgx.Batch{}
	b.Queue(beginSQL)
	b.Queue(s.sql.lockHold, req.HoldID)
	b.Queue(s.sql.lockHoldBudgets, req.HoldID)
	h, budgets, err := readCloseState(conn.SendBatch(ctx, b))
	if err != nil {
		return agentkey.CloseResult{}, fmt.Errorf("lock hold: %w", err)
	}
	res, done, err := agentkey.CheckClose(req, h)
	if err != nil {
		return agentkey.CloseResult{}, fmt.Errorf("close hold: %w", err)
	}
	if done {
		return res, nil
	}

	plan, err := agentkey.PlanClose(req, h, budgets)
	if err != nil {
		return agentkey.CloseResult{}, fmt.Errorf("plan close: %w", err)
	}
	// The hold's row is locked, so the guard on its state is a safety net,
	// as the guarded budget updates are.
	w := &writeBatch{}
	closed := plan.Hold
	w.queue("close hold "+closed.ID, s.sql.closeHold, closed.ID, string(closed.State),
		closed.ClosedAt, int64(closed.Charged), int64(closed.Overrun), string(h.State))
	if err := s.queueWrites(w, budgets, plan.Budgets, plan.Changed, plan.Entries); err != nil {
		return agentkey.CloseResult{}, err
	}
	if err := w.send(ctx, conn); err != nil {
		return agentkey.CloseResult{}, fmt.Errorf("write close: %w", err)
	}
	return plan.Result, nil
}

// readCloseState reads the results of CloseHold's first batch: the begin, the
// locked hold and its locked budgets. No hold is agentkey.ErrNotFound.
func readCloseState(br pgx.BatchResults) (agentkey.Hold, []agentkey.Budget, error) {
	defer br.Close()

	if _, err := br.Exec(); err != nil {
		return agentkey.Hold{}, nil, fmt.Errorf("begin: %w", err)
	}
	var r holdRow
	if err := br.QueryRow().Scan(r.dest()...); errors.Is(err, pgx.ErrNoRows) {
		return agentkey.Hold{}, nil, agentkey.ErrNotFound
	} else if err != nil {
		return agentkey.Hold{}, nil, err
	}
	h, err := r.hold()
	if err != nil {
		return agentkey.Hold{}, nil, err
	}
	rows, err := br.Query()
	if err != nil {
		return agentkey.Hold{}, nil, fmt.Errorf("lock budgets: %w", err)
	}
	budgets, err := collectBudgets(rows)
	if err != nil {
		return agentkey.Hold{}, nil, fmt.Errorf("lock budgets: %w", err)
	}
	return h, budgets, br.Close()
}

// Hold returns a hold, or an error wrapping agentkey.ErrNotFound.
func (s *Store) Hold(ctx context.Context, id string) (agentkey.Hold, error) {
	var r holdRow
	err := s.pool.QueryRow(ctx, s.sql.holdByID, id).Scan(r.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return agentkey.Hold{}, fmt.Errorf("load hold: %w", agentkey.ErrNotFound)
	} else if err != nil {
		return agentkey.Hold{}, fmt.Errorf("load hold: %w", err)
	}
	h, err := r.hold()
	if err != nil {
		return agentkey.Hold{}, fmt.Errorf("load hold: %w", err)
	}
	return h, nil
}

// Holds lists the holds that f selects in id order.
func (s *Store) Holds(ctx context.Context, f agentkey.HoldFilter) ([]agentkey.Hold, error) {
	// As in Ledger, the WHERE clause names only the filters that are set,
	// so that each combination gets a plan that uses its index.
	var (
		b    strings.Builder
		args []any
	)
	b.WriteString(s.sql.selectHolds)
	b.WriteString("\nWHERE id > $1")
	args = append(args, f.After)
	where := func(cond string, arg any) {
		args = append(args, arg)
		b.WriteString(" AND ")
		b.WriteString(cond)
		b.WriteString(strconv.Itoa(len(args)))
	}
	if f.KeyID != "" {
		where("key_id = $", f.KeyID)
	}
	if f.AccountID != "" {
		where("account_id = $", f.AccountID)
	}
	if f.State != "" {
		where("state = $", string(f.State))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultHoldsLimit
	}
	args = append(args, limit)
	b.WriteString("\nORDER BY id LIMIT $" + strconv.Itoa(len(args)))

	rows, err := s.pool.Query(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list holds: %w", err)
	}
	holds, err := collectHolds(rows)
	if err != nil {
		return nil, fmt.Errorf("list holds: %w", err)
	}
	return holds, nil
}

// ExpiredHolds returns the ids of up to limit open holds whose expiry is at
// or before now, oldest expiry first; with budgetIDs, only holds on at least
// one of them. Both queries are served by partial indexes of open holds.
func (s *Store) ExpiredHolds(ctx context.Context, now time.Time, budgetIDs []string, limit int,
) ([]string, error) {
	if limit <= 0 {
		limit = defaultHoldsLimit
	}
	var rows pgx.Rows
	var err error
	if len(budgetIDs) == 0 {
		rows, err = s.pool.Query(ctx, s.sql.expiredHolds, now, limit)
	} else {
		rows, err = s.pool.Query(ctx, s.sql.expiredHoldsOn, now, limit, budgetIDs)
	}
	if err != nil {
		return nil, fmt.Errorf("list expired holds: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list expired holds: %w", err)
	}
	return ids, nil
}

// OpenHolds counts the open holds and adds up their amounts, through the
// partial index of open holds.
func (s *Store) OpenHolds(ctx context.Context) (agentkey.HoldStats, error) {
	var count, amount int64
	if err := s.pool.QueryRow(ctx, s.sql.openHolds).Scan(&count, &amount); err != nil {
		return agentkey.HoldStats{}, fmt.Errorf("count open holds: %w", err)
	}
	return agentkey.HoldStats{Count: count, Amount: agentkey.Money(amount)}, nil
}
