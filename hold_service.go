package agentkey

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Reserve holds estimate against every budget on the key's path before the
// work: the key's own budgets and those of its account and each account above
// it. It succeeds only if the estimate fits all of them, and counts against
// them at once, so concurrent requests can never together pass a limit. The
// hold expires after Config.HoldTTL (or WithHoldTTL) unless it is settled or
// released first. An estimate must be positive: zero or less is refused with
// ReasonInvalidCost.
func (s *Service) Reserve(ctx context.Context, keyID string, estimate Money, opts ...ChargeOption,
) (ReserveResult, error) {
	o := applyOptions(opts)
	if estimate <= 0 {
		return ReserveResult{Reason: ReasonInvalidCost}, nil
	}
	if keyID == "" {
		return ReserveResult{Reason: ReasonInvalidKey}, nil
	}
	if err := checkIdempotencyKey(o.idempotencyKey); err != nil {
		return ReserveResult{}, fmt.Errorf("reserve: %w", err)
	}
	ttl := s.cfg.HoldTTL
	if o.holdTTL > 0 {
		ttl = o.holdTTL
	}
	now := s.now()

	req := ReserveRequest{
		OpID:           newID("op"),
		HoldID:         newID("hold"),
		KeyID:          keyID,
		Amount:         estimate,
		ExpiresAt:      now.Add(ttl),
		IdempotencyKey: o.idempotencyKey,
		Metadata:       o.metadata,
		Now:            now,
	}
	res, err := s.store.Reserve(ctx, req)
	if err == nil && s.releaseExpired(ctx, res.Reason, res.ExpiredHoldsOn, res.Key.Budgets) &&
		res.Reason == ReasonBudgetExceeded {
		res, err = s.store.Reserve(ctx, req)
	}
	if err != nil {
		return ReserveResult{}, fmt.Errorf("reserve for %s: %w", truncate(keyID, 40), err)
	}
	if res.Replayed && res.Hold.Amount != estimate {
		return ReserveResult{}, fmt.Errorf("reserve for %s: %w: first held %s, now %s",
			truncate(keyID, 40), ErrIdempotencyKeyReused, res.Hold.Amount, estimate)
	}
	return res, nil
}

// Settle charges the real cost of the work a hold was made for, and gives the
// rest back. A cost above the hold is charged as far as every budget has room;
// what does not fit is recorded in the ledger as an overrun and returned in
// the result. Settling a settled hold returns the first result; settling a
// released hold is ErrHoldClosed. A hold that expired before it was settled is
// settled as a charge, as far as it fits.
func (s *Service) Settle(ctx context.Context, holdID string, actual Money, opts ...ChargeOption,
) (CloseResult, error) {
	if actual < 0 {
		return CloseResult{}, fmt.Errorf("settle %s: %w: %w", truncate(holdID, 40), ErrInvalidArgument,
			ErrAmountNegative)
	}
	return s.closeHold(ctx, CloseRequest{HoldID: holdID, Settle: true, Actual: actual,
		Metadata: applyOptions(opts).metadata})
}

// Release gives a whole hold back. Releasing a released hold changes nothing;
// releasing a settled one is ErrHoldClosed.
func (s *Service) Release(ctx context.Context, holdID string) (CloseResult, error) {
	return s.closeHold(ctx, CloseRequest{HoldID: holdID})
}

func (s *Service) closeHold(ctx context.Context, req CloseRequest) (CloseResult, error) {
	if req.HoldID == "" {
		return CloseResult{}, fmt.Errorf("close hold: %w: hold id is required", ErrInvalidArgument)
	}
	req.OpID, req.Now = newID("op"), s.now()
	res, err := s.store.CloseHold(ctx, req)
	if err != nil {
		verb := "release"
		if req.Settle {
			verb = "settle"
		}
		return CloseResult{}, fmt.Errorf("%s %s: %w", verb, truncate(req.HoldID, 40), err)
	}
	return res, nil
}

// Hold returns a hold by id.
func (s *Service) Hold(ctx context.Context, id string) (Hold, error) {
	h, err := s.store.Hold(ctx, id)
	if err != nil {
		return Hold{}, fmt.Errorf("hold %s: %w", truncate(id, 40), err)
	}
	return h, nil
}

// SweepHolds releases every hold that has expired, and returns how many it
// released. Expired holds are also released by the next charge or hold on
// any of their budgets, and by a Validate that finds a budget without room;
// a sweeper keeps the held amounts that reads show honest in between.
// RunSweeper calls it periodically.
func (s *Service) SweepHolds(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := s.sweep(ctx, nil)
		total += n
		if err != nil || n < sweepBatch {
			return total, err
		}
	}
}

// RunSweeper calls SweepHolds every interval until ctx is done. An interval
// of zero or less means DefaultSweepInterval.
func (s *Service) RunSweeper(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := s.SweepHolds(ctx); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "sweep expired holds", logErr, err)
			} else if n > 0 {
				s.log.InfoContext(ctx, "released expired holds", "holds", n)
			}
		}
	}
}

// DefaultSweepInterval is how often RunSweeper looks for expired holds when
// no interval is given.
const DefaultSweepInterval = 30 * time.Second

// sweepBatch bounds the holds one sweep releases.
const sweepBatch = 500

func (s *Service) sweep(ctx context.Context, budgetIDs []string) (int, error) {
	ids, err := s.store.ExpiredHolds(ctx, s.now(), budgetIDs, sweepBatch)
	if err != nil {
		return 0, fmt.Errorf("sweep holds: %w", err)
	}
	released := 0
	for _, id := range ids {
		_, err := s.store.CloseHold(ctx, CloseRequest{OpID: newID("op"), HoldID: id, Expired: true, Now: s.now()})
		if errors.Is(err, ErrHoldClosed) {
			continue // settled meanwhile
		}
		if err != nil {
			return released, fmt.Errorf("sweep hold %s: %w", id, err)
		}
		released++
	}
	return released, nil
}

// releaseExpired releases the expired holds that a charge or a hold found on
// the budgets of its path (res.ExpiredHoldsOn): this is how expired holds are
// released at the next touch of their budget. When the operation was refused
// for its budget, it also looks for expired holds on every budget of the path
// that holds anything, in case the store's look missed some (see
// akpostgres). It reports whether it released any, so that an operation they
// stood in the way of is tried once more. A failure is logged and left to the
// next touch or the sweeper.
func (s *Service) releaseExpired(ctx context.Context, reason Reason, expiredOn []string,
	path []Budget,
) bool {
	released := s.release(ctx, expiredOn)
	if reason == ReasonBudgetExceeded && !released {
		released = s.sweepExhausted(ctx, path)
	}
	return released
}

// release releases the expired holds on budgets, and reports whether it
// released any.
func (s *Service) release(ctx context.Context, budgets []string) bool {
	if len(budgets) == 0 {
		return false
	}
	n, err := s.sweep(ctx, budgets)
	if err != nil {
		s.log.WarnContext(ctx, "release expired holds", logErr, err)
		return false
	}
	return n > 0
}

// sweepExhausted releases the expired holds on the budgets of a key that has
// no room, since a read such as Validate finds no expired holds by itself, and
// reports whether it released any.
func (s *Service) sweepExhausted(ctx context.Context, budgets []Budget) bool {
	var held []string
	for _, b := range budgets {
		if b.Held > 0 {
			held = append(held, b.ID)
		}
	}
	return s.release(ctx, held)
}

// OpenHolds returns how many holds are open across every process that shares
// the store, and how much they hold.
func (s *Service) OpenHolds(ctx context.Context) (HoldStats, error) {
	st, err := s.store.OpenHolds(ctx)
	if err != nil {
		return HoldStats{}, fmt.Errorf("open holds: %w", err)
	}
	return st, nil
}

// Holds lists holds in id order.
func (s *Service) Holds(ctx context.Context, f HoldFilter) ([]Hold, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	hs, err := s.store.Holds(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("holds: %w", err)
	}
	return hs, nil
}
