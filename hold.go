package agentkey

import (
	"fmt"
	"slices"
	"time"
)

// HoldState is where a hold is in its life.
type HoldState string

// The states of a hold. A hold is open until it is settled, released, or
// released because it expired; it closes once.
const (
	HoldOpen     HoldState = "open"
	HoldSettled  HoldState = "settled"
	HoldReleased HoldState = "released"
	HoldExpired  HoldState = "expired"
)

// Hold is money set aside before the work: it counts against every budget on
// its path at once, and is settled at the real cost or released after.
type Hold struct {
	ID        string `json:"id"`
	KeyID     string `json:"key_id"`
	AccountID string `json:"account_id"`
	// Amount is the estimate held on each budget of BudgetIDs.
	Amount Money `json:"amount"`
	// BudgetIDs are the budgets the hold counts against, fixed when it was
	// made: moving the key later does not move its open holds.
	BudgetIDs []string  `json:"budget_ids"`
	State     HoldState `json:"state"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedAt time.Time `json:"created_at"`
	// ClosedAt is when the hold was settled or released.
	ClosedAt time.Time `json:"closed_at,omitzero"`
	// Charged is what the settlement charged, and Overrun what the real cost
	// had above that which no budget had room for.
	Charged        Money             `json:"charged"`
	Overrun        Money             `json:"overrun"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
}

// ReserveRequest is a hold as a Store receives it.
type ReserveRequest struct {
	OpID   string
	HoldID string
	KeyID  string
	Amount Money
	// ExpiresAt is when an unsettled hold is released.
	ExpiresAt      time.Time
	IdempotencyKey string
	Metadata       map[string]string
	Now            time.Time
}

// ReserveResult is the outcome of a reservation.
type ReserveResult struct {
	// Reason is empty when the hold was made, and otherwise ReasonInvalidKey,
	// ReasonBudgetExceeded or ReasonInvalidCost.
	Reason Reason `json:"reason,omitempty"`
	// Hold is the hold made.
	Hold Hold `json:"hold"`
	// Key is the key after the reservation, with the budgets of its whole path.
	Key Key `json:"key"`
	// RefusedBy is the budget that had no room, on ReasonBudgetExceeded.
	RefusedBy *Budget `json:"refused_by,omitempty"`
	// Replayed is set when the hold is one made earlier with the same
	// idempotency key.
	Replayed bool `json:"replayed,omitempty"`
	// ExpiredHoldsOn lists the budgets of the key's path that the store found
	// carrying open holds past their expiry. The Service releases them.
	ExpiredHoldsOn []string `json:"-"`
}

// OK reports whether the hold was made.
func (r ReserveResult) OK() bool { return r.Reason == "" }

// PlanReserve decides a reservation against the key's path budgets, locked by
// the store. Like PlanCharge, it rolls elapsed periods and refuses unless the
// amount fits every budget; a hold adds to held instead of used.
func PlanReserve(req ReserveRequest, key Key, budgets []Budget) (ChargePlan, error) {
	cr := ChargeRequest{OpID: req.OpID, KeyID: req.KeyID, Amount: req.Amount, Now: req.Now}
	if key.Revoked() || key.Expired(req.Now) {
		return ChargePlan{Reason: ReasonInvalidKey}, nil
	}
	if req.Amount <= 0 {
		return ChargePlan{Reason: ReasonInvalidCost}, nil
	}
	p, err := rollAll(cr, key, budgets)
	if err != nil {
		return ChargePlan{}, err
	}

	if refused := firstWithoutRoom(p.Budgets, req.Amount); refused != nil {
		return ChargePlan{Reason: ReasonBudgetExceeded, Budgets: p.Budgets, RefusedBy: refused}, nil
	}
	for i := range p.Budgets {
		b := &p.Budgets[i]
		// Only an unlimited budget can get here with a sum out of range.
		if b.Held, err = b.Held.Add(req.Amount); err != nil {
			return ChargePlan{}, fmt.Errorf("hold on budget %s: %w", b.ID, err)
		}
		p.Changed[i] = true
		p.Entries = append(p.Entries, opEntry(cr, key, Entry{
			Kind:           EntryHold,
			BudgetID:       b.ID,
			HoldID:         req.HoldID,
			Amount:         req.Amount,
			PeriodStart:    b.PeriodStart,
			IdempotencyKey: req.IdempotencyKey,
			Metadata:       req.Metadata,
			CreatedAt:      req.Now,
		}))
	}
	return p, nil
}

// NewHold returns the hold a successful reservation creates.
func NewHold(req ReserveRequest, key Key, budgets []Budget) Hold {
	ids := make([]string, len(budgets))
	for i, b := range budgets {
		ids[i] = b.ID
	}
	return Hold{
		ID:             req.HoldID,
		KeyID:          key.ID,
		AccountID:      key.AccountID,
		Amount:         req.Amount,
		BudgetIDs:      ids,
		State:          HoldOpen,
		ExpiresAt:      req.ExpiresAt,
		CreatedAt:      req.Now,
		IdempotencyKey: req.IdempotencyKey,
		Metadata:       req.Metadata,
	}
}

// CloseRequest settles or releases a hold, as a Store receives it.
type CloseRequest struct {
	OpID   string
	HoldID string
	// Settle is set to settle the hold at Actual; otherwise it is released.
	Settle bool
	Actual Money
	// Expired marks a release made because the hold expired.
	Expired  bool
	Metadata map[string]string
	Now      time.Time
}

// CloseResult is the outcome of settling or releasing a hold.
type CloseResult struct {
	// Hold is the hold after it closed. A hold already closed is returned
	// as it is, with Replayed set.
	Hold Hold `json:"hold"`
	// Charged is what was charged (settle only); Overrun is what the real cost
	// had above that which did not fit; Released is what went back to the
	// budgets.
	Charged  Money `json:"charged"`
	Overrun  Money `json:"overrun"`
	Released Money `json:"released"`
	// Budgets are the hold's budgets after it closed. Budgets removed since
	// the hold was made are skipped.
	Budgets  []Budget `json:"budgets,omitempty"`
	Replayed bool     `json:"replayed,omitempty"`
}

// HoldPlan is what a store writes to close a hold: the budgets and entries of
// a ChargePlan, and the hold as closed.
type HoldPlan struct {
	ChargePlan
	Hold   Hold
	Result CloseResult
}

// PlanClose decides the settlement or release of an open hold, given its
// budgets locked by the store (those that still exist). Settling converts the
// hold into used: up to the held amount always fits, since it was set aside;
// a real cost above the hold is charged as far as every budget has room, and
// the rest is recorded as an overrun that is not counted as used. The key's
// state does not matter: a hold made while the key was valid settles after it
// expires or is revoked.
func PlanClose(req CloseRequest, h Hold, budgets []Budget) (HoldPlan, error) {
	cr := ChargeRequest{OpID: req.OpID, KeyID: h.KeyID, Now: req.Now}
	key := Key{ID: h.KeyID, AccountID: h.AccountID}
	p, err := rollAll(cr, key, budgets)
	if err != nil {
		return HoldPlan{}, err
	}

	// A hold released because it expired holds nothing any more; settling it
	// late charges the real cost as far as it fits, like a charge.
	held := h.Amount
	if h.State == HoldExpired {
		held = 0
	}

	var charged, overrun Money
	if req.Settle {
		base := min(req.Actual, held)
		extra := req.Actual - base
		room := extra
		for _, b := range p.Budgets {
			if !b.Unlimited {
				// Room for the extra once this hold is gone from held.
				heldAfter := b.Held - min(b.Held, held)
				room = min(room, max(0, b.Limit-b.Used-heldAfter-base))
			}
		}
		charged, overrun = base+room, extra-room
	}

	for i := range p.Budgets {
		b := &p.Budgets[i]
		b.Held -= min(b.Held, held)
		if b.Used, err = b.Used.Add(charged); err != nil {
			return HoldPlan{}, fmt.Errorf("settle on budget %s: %w", b.ID, err)
		}
		p.Changed[i] = true

		e := Entry{BudgetID: b.ID, HoldID: h.ID, PeriodStart: b.PeriodStart,
			Metadata: req.Metadata, CreatedAt: req.Now}
		for _, part := range []struct {
			kind   EntryKind
			amount Money
		}{{EntryRelease, held}, {EntrySettle, charged}, {EntryOverrun, overrun}} {
			if part.amount > 0 {
				e.Kind, e.Amount = part.kind, part.amount
				p.Entries = append(p.Entries, opEntry(cr, key, e))
			}
		}
	}

	h.ClosedAt, h.Charged, h.Overrun = req.Now, charged, overrun
	switch {
	case req.Settle:
		h.State = HoldSettled
	case req.Expired:
		h.State = HoldExpired
	default:
		h.State = HoldReleased
	}
	return HoldPlan{
		ChargePlan: p,
		Hold:       h,
		Result: CloseResult{Hold: h, Charged: charged, Overrun: overrun,
			Released: held - min(held, charged), Budgets: p.Budgets},
	}, nil
}

// rollAll starts a plan by rolling every budget's elapsed period forward.
func rollAll(req ChargeRequest, key Key, budgets []Budget) (ChargePlan, error) {
	p := ChargePlan{Budgets: slices.Clone(budgets), Changed: make([]bool, len(budgets))}
	for i := range p.Budgets {
		reset, rolled, err := p.Budgets[i].RollForward(req.Now)
		if err != nil {
			return ChargePlan{}, err
		}
		if rolled {
			p.Changed[i] = true
			p.Entries = append(p.Entries, opEntry(req, key, reset))
		}
	}
	return p, nil
}

// firstWithoutRoom returns a copy of the first budget that cannot take amount.
func firstWithoutRoom(budgets []Budget, amount Money) *Budget {
	for _, b := range budgets {
		if !b.fits(amount) {
			return &b
		}
	}
	return nil
}

// CheckClose decides, with the hold's row locked and before any budget is,
// whether req has anything to do. done is set when the hold is already closed
// the way req asks: the store returns result (the first outcome, with
// Replayed set) and writes nothing. ErrHoldClosed is returned when the hold is
// closed the other way, or when req releases an expired hold that is not due.
func CheckClose(req CloseRequest, h Hold) (result CloseResult, done bool, err error) {
	replay := CloseResult{Hold: h, Charged: h.Charged, Overrun: h.Overrun, Replayed: true}
	switch {
	case h.State == HoldOpen && req.Expired && req.Now.Before(h.ExpiresAt):
		return CloseResult{}, false, ErrHoldClosed
	case h.State == HoldOpen, h.State == HoldExpired && req.Settle:
		return CloseResult{}, false, nil
	case h.State == HoldSettled && req.Settle:
		replay.Released = h.Amount - min(h.Amount, h.Charged)
		return replay, true, nil
	case (h.State == HoldReleased || h.State == HoldExpired) && !req.Settle:
		replay.Released = h.Amount
		return replay, true, nil
	}
	return CloseResult{}, false, ErrHoldClosed
}
