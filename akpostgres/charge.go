package akpostgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentkey-go/agentkey"
)

// Charge applies req to the budgets of the key's whole path in one READ
// COMMITTED transaction, as agentkey.Store documents. It replays the stored
// result of an earlier charge with the same idempotency key, even of a key
// revoked since.
//
// A charge that goes through costs two round trips: the begin, the key and
// idempotency lookup and the path budgets' lock in one batch; the writes and
// the commit in a second (see acquire). A replay or a refusal costs two as
// well: the first batch and the rollback. A charge of zero writes nothing,
// rollovers included, and is not recorded under its idempotency key.
func (s *Store) Charge(ctx context.Context, req agentkey.ChargeRequest,
) (agentkey.ChargeResult, error) {
	load, lock, arg := s.sql.loadByID, s.sql.lockPathByID, any(req.KeyID)
	if req.KeyID == "" {
		load, lock, arg = s.sql.loadByHash, s.sql.lockPathByHash, req.KeyHash
	}
	conn, release, err := s.acquire(ctx)
	if err != nil {
		return agentkey.ChargeResult{}, fmt.Errorf("charge: %w", err)
	}
	defer release()

	b := &pgx.Batch{}
	b.Queue(beginSQL)
	b.Queue(load, arg, nullString(req.IdempotencyKey), idemCharge)
	// Budgets are locked even when the lookup will find a replay or no key:
	// sending both statements at once saves a round trip on every charge,
	// and a lock taken for nothing is released by the rollback.
	b.Queue(lock, arg)
	b.Queue(s.sql.expiredHoldBudgets, req.Now)
	st, err := readChargeState(conn.SendBatch(ctx, b))
	if err != nil {
		return agentkey.ChargeResult{}, fmt.Errorf("load key: %w", err)
	}
	if st.stored != nil {
		return replayCharge(st.stored)
	}
	if !st.found {
		return agentkey.ChargeResult{Reason: agentkey.ReasonInvalidKey}, nil
	}
	key, budgets := st.key, st.budgets

	plan, err := agentkey.PlanCharge(req, key, budgets)
	if err != nil {
		return agentkey.ChargeResult{}, fmt.Errorf("plan charge: %w", err)
	}
	res := plan.Result(req, key)
	res.ExpiredHoldsOn = st.expiredOn
	if plan.Reason != "" || req.Amount == 0 {
		return res, nil
	}

	op := operation{keyID: key.ID, kind: idemCharge, idemKey: req.IdempotencyKey,
		opID: req.OpID, now: req.Now, result: res}
	if stored, err := s.write(ctx, conn, op, budgets, plan, nil); err != nil {
		return agentkey.ChargeResult{}, fmt.Errorf("write charge: %w", err)
	} else if stored != nil {
		return replayCharge(stored)
	}
	return res, nil
}

// operation is a charge or a hold that write records: its key, and the
// result to store under its idempotency key, if it has one.
type operation struct {
	keyID, kind, idemKey, opID string
	now                        time.Time
	result                     any
}

// write sends, in one batch ending with the commit, what a charge or a
// reservation writes: the idempotency record (first, so that a concurrent
// duplicate is found before anything else is written), the new hold if any,
// then each changed budget and each entry of the plan.
//
// It returns the stored result when a concurrent operation with the same
// idempotency key committed first (the unique index makes this insert wait
// for one still in flight, then fail): that operation is the one that
// counts. The failure skipped the rest of the batch, so nothing is
// committed; the result is read after the rollback.
func (s *Store) write(ctx context.Context, conn *pgxpool.Conn, op operation,
	before []agentkey.Budget, plan agentkey.ChargePlan, hold *agentkey.Hold,
) (stored []byte, err error) {
	w := &writeBatch{}
	if op.idemKey != "" {
		js, err := json.Marshal(op.result)
		if err != nil {
			return nil, fmt.Errorf("encode result: %w", err)
		}
		// As text, for every query exec mode: see encodeMetadata.
		w.queue("record idempotency key", s.sql.insertIdempotency, op.keyID, op.kind, op.idemKey,
			op.opID, string(js), op.now)
	}
	if hold != nil {
		args, err := holdArgs(*hold)
		if err != nil {
			return nil, fmt.Errorf("hold %s: %w", hold.ID, err)
		}
		w.queue("insert hold", s.sql.insertHold, args...)
	}
	if err := s.queueWrites(w, before, plan.Budgets, plan.Changed, plan.Entries); err != nil {
		return nil, err
	}

	err = w.send(ctx, conn)
	if err == nil {
		return nil, nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != uniqueViolation ||
		pgErr.ConstraintName != s.cfg.TablePrefix+"idempotency_pkey" {
		return nil, s.uniqueError(err)
	}
	// The rollback goes alone: the aborted transaction would refuse the
	// lookup's prepare, which pgx sends ahead of any batch it is queued in.
	if _, err := conn.Exec(ctx, rollbackSQL); err != nil {
		return nil, fmt.Errorf("roll back: %w", err)
	}
	err = conn.QueryRow(ctx, s.sql.idempotencyResult, op.keyID, op.kind, op.idemKey).Scan(&stored)
	if err != nil {
		return nil, fmt.Errorf("load idempotent result: %w", err)
	}
	return stored, nil
}

// chargeState is what the first batch of Charge and Reserve finds.
type chargeState struct {
	key   agentkey.Key
	found bool
	// stored is the result recorded under the operation's idempotency key.
	stored []byte
	// budgets are the key's path budgets, locked.
	budgets []agentkey.Budget
	// expiredOn are the path budgets that carry expired open holds, among
	// the oldest expiredHoldsProbe of them.
	expiredOn []string
}

// readChargeState reads the results of the first batch of Charge and
// Reserve: the begin, the key with the stored result of its idempotency key,
// the locked path budgets, and the path budgets with expired holds.
func readChargeState(br pgx.BatchResults) (chargeState, error) {
	defer br.Close()

	if _, err := br.Exec(); err != nil {
		return chargeState{}, fmt.Errorf("begin: %w", err)
	}
	var st chargeState
	var r keyRow
	if err := br.QueryRow().Scan(append(r.dest(), &st.stored)...); err != nil {
		return chargeState{}, err
	}
	rows, err := br.Query()
	if err != nil {
		return chargeState{}, fmt.Errorf("lock budgets: %w", err)
	}
	if st.budgets, err = collectBudgets(rows); err != nil {
		return chargeState{}, fmt.Errorf("lock budgets: %w", err)
	}
	rows, err = br.Query()
	if err != nil {
		return chargeState{}, fmt.Errorf("find expired holds: %w", err)
	}
	expiredOn, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return chargeState{}, fmt.Errorf("find expired holds: %w", err)
	}
	for _, b := range st.budgets {
		if slices.Contains(expiredOn, b.ID) {
			st.expiredOn = append(st.expiredOn, b.ID)
		}
	}
	if err := br.Close(); err != nil {
		return chargeState{}, err
	}

	st.key, st.found = r.record().Key, r.id.Valid
	st.key.Budgets = st.budgets
	return st, nil
}

// replayCharge decodes a stored charge result.
func replayCharge(stored []byte) (agentkey.ChargeResult, error) {
	var res agentkey.ChargeResult
	if err := json.Unmarshal(stored, &res); err != nil {
		return agentkey.ChargeResult{}, fmt.Errorf("decode idempotent result: %w", err)
	}
	res.Replayed = true
	return res, nil
}

// Adjust applies a manual adjustment to one budget under its row lock, and
// returns the budget after it. req.AccountID is filled from the budget's
// owner in the same statement that locks the budget. A budget that does not
// exist is agentkey.ErrNotFound; agentkey.PlanAdjust's errors are returned
// wrapped. It costs the round trips of Charge.
func (s *Store) Adjust(ctx context.Context, req agentkey.AdjustRequest) (agentkey.Budget, error) {
	conn, release, err := s.acquire(ctx)
	if err != nil {
		return agentkey.Budget{}, fmt.Errorf("adjust: %w", err)
	}
	defer release()

	b := &pgx.Batch{}
	b.Queue(beginSQL)
	b.Queue(s.sql.lockBudget, req.BudgetID)
	before, accountID, err := readLockedBudget(conn.SendBatch(ctx, b))
	if err != nil {
		return agentkey.Budget{}, err
	}
	req.AccountID = accountID
	after, entries, err := agentkey.PlanAdjust(req, before)
	if err != nil {
		return agentkey.Budget{}, fmt.Errorf("plan adjustment: %w", err)
	}

	w := &writeBatch{}
	olds, news, changed := []agentkey.Budget{before}, []agentkey.Budget{after}, []bool{true}
	if err := s.queueWrites(w, olds, news, changed, entries); err != nil {
		return agentkey.Budget{}, err
	}
	if err := w.send(ctx, conn); err != nil {
		return agentkey.Budget{}, fmt.Errorf("write adjustment: %w", err)
	}
	return after, nil
}

// readLockedBudget reads the results of Adjust's first batch: the begin, and
// the locked budget with the account of its owner.
func readLockedBudget(br pgx.BatchResults) (b agentkey.Budget, accountID string, err error) {
	defer br.Close()

	if _, err := br.Exec(); err != nil {
		return agentkey.Budget{}, "", fmt.Errorf("begin: %w", err)
	}
	var r budgetRow
	err = br.QueryRow().Scan(append(r.dest(), &accountID)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return agentkey.Budget{}, "", fmt.Errorf("lock budget: %w", agentkey.ErrNotFound)
	} else if err != nil {
		return agentkey.Budget{}, "", fmt.Errorf("lock budget: %w", err)
	}
	if err := br.Close(); err != nil {
		return agentkey.Budget{}, "", fmt.Errorf("lock budget: %w", err)
	}
	return r.budget(), accountID, nil
}

// queueWrites queues a guarded update of each changed budget, from its state
// in before to its state in after, and an insert of each entry, in order, so
// that the database numbers them in order.
//
// Each guarded update must find its row, and fails otherwise: it is locked,
// so nothing else can have changed it. This is a safety net against a store
// bug, not a retry path.
func (s *Store) queueWrites(w *writeBatch, before, after []agentkey.Budget, changed []bool,
	entries []agentkey.Entry,
) error {
	for i, c := range changed {
		if !c {
			continue
		}
		old, nu := before[i], after[i]
		w.queue("update budget "+nu.ID, s.sql.updateBudget, nu.ID, int64(nu.Used), int64(nu.Held),
			nu.PeriodStart, nullTime(nu.ResetAt), int64(old.Used), int64(old.Held), old.PeriodStart)
	}
	for _, e := range entries {
		args, err := entryArgs(e)
		if err != nil {
			return fmt.Errorf("ledger entry for budget %s: %w", e.BudgetID, err)
		}
		w.queue("insert ledger entry", s.sql.insertEntry, args...)
	}
	return nil
}
