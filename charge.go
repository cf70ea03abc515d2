package agentkey

import (
	"slices"
	"time"
)

// ChargeOption modifies one charge, hold or settlement.
type ChargeOption func(*callOptions)

type callOptions struct {
	idempotencyKey string
	metadata       map[string]string
	holdTTL        time.Duration
}

func applyOptions(opts []ChargeOption) callOptions {
	var o callOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithIdempotencyKey makes a charge or a hold happen at most once: a later
// call for the same key or subject with the same idempotency key returns the
// first result without charging or holding again. Only calls that went through
// are remembered; a refused one may be retried with the same idempotency key.
func WithIdempotencyKey(k string) ChargeOption {
	return func(o *callOptions) { o.idempotencyKey = k }
}

// WithMetadata attaches details such as a request id or a model name to the
// ledger entries of a charge, hold or settlement.
func WithMetadata(md map[string]string) ChargeOption {
	return func(o *callOptions) { o.metadata = md }
}

// WithHoldTTL sets how long a hold lives unsettled before it is released,
// instead of Config.HoldTTL.
func WithHoldTTL(d time.Duration) ChargeOption {
	return func(o *callOptions) { o.holdTTL = d }
}

// ChargeRequest is a charge as a Store receives it.
type ChargeRequest struct {
	// OpID identifies the operation in the ledger.
	OpID string
	// KeyID is the key or subject to charge.
	KeyID string
	// KeyHash finds the key by the hash of its secret when KeyID is empty,
	// so that charging by secret needs no separate lookup.
	KeyHash        []byte
	Amount         Money
	IdempotencyKey string
	Metadata       map[string]string
	// Now is the time of the charge, from the Service's clock.
	Now time.Time
}

// ChargeResult is the outcome of a charge.
type ChargeResult struct {
	// Reason is empty when the amount was charged, and otherwise one of
	// ReasonInvalidKey, ReasonBudgetExceeded or ReasonInvalidCost.
	Reason Reason `json:"reason,omitempty"`
	// Charged is the amount charged.
	Charged Money `json:"charged"`
	// Overrun is what a settled hold cost above what its budgets had room
	// for: recorded in the ledger, not charged.
	Overrun Money `json:"overrun,omitzero"`
	// Key is the state of the key and its budgets after the charge. It is
	// empty when the key is unknown.
	Key Key `json:"key"`
	// RefusedBy is the budget that had no room, on ReasonBudgetExceeded.
	RefusedBy *Budget `json:"refused_by,omitempty"`
	// OpID identifies the charge in the ledger.
	OpID string `json:"op_id,omitempty"`
	// Replayed is set when the result is that of an earlier charge with the
	// same idempotency key.
	Replayed bool `json:"replayed,omitempty"`
	// ExpiredHoldsOn lists the budgets of the key's path that the store found
	// carrying open holds past their expiry. The Service releases them.
	ExpiredHoldsOn []string `json:"-"`
}

// OK reports whether the amount was charged.
func (r ChargeResult) OK() bool { return r.Reason == "" }

// ChargePlan is what a store must write to apply a charge: the budgets after
// the charge, which of them changed, and the ledger entries. A plan with a
// Reason writes nothing.
type ChargePlan struct {
	Reason    Reason
	Budgets   []Budget
	Changed   []bool
	Entries   []Entry
	RefusedBy *Budget
}

// PlanCharge decides a charge against the current state of a key and its
// budgets. A store calls it inside its transaction, with the budgets' rows
// locked (or the database's single writer held), and then writes the plan.
// Deciding in one shared function keeps both stores' behaviour identical;
// the lock makes the decision and the write one atomic step.
func PlanCharge(req ChargeRequest, key Key, budgets []Budget) (ChargePlan, error) {
	if key.Revoked() || key.Expired(req.Now) {
		return ChargePlan{Reason: ReasonInvalidKey}, nil
	}
	if req.Amount < 0 {
		return ChargePlan{Reason: ReasonInvalidCost}, nil
	}

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
	if req.Amount == 0 {
		return p, nil
	}

	for i := range p.Budgets {
		if !p.Budgets[i].fits(req.Amount) {
			refused := p.Budgets[i]
			return ChargePlan{Reason: ReasonBudgetExceeded, Budgets: p.Budgets, RefusedBy: &refused}, nil
		}
	}
	for i := range p.Budgets {
		b := &p.Budgets[i]
		b.Used += req.Amount // cannot overflow: fits bounds it by the limit
		if b.Unlimited && b.Used < 0 {
			return ChargePlan{}, ErrAmountOverflow
		}
		p.Changed[i] = true
		p.Entries = append(p.Entries, opEntry(req, key, Entry{
			Kind:           EntryCharge,
			BudgetID:       b.ID,
			Amount:         req.Amount,
			PeriodStart:    b.PeriodStart,
			IdempotencyKey: req.IdempotencyKey,
			Metadata:       req.Metadata,
			CreatedAt:      req.Now,
		}))
	}
	return p, nil
}

// opEntry completes e with what the operation knows.
func opEntry(req ChargeRequest, key Key, e Entry) Entry {
	e.OpID = req.OpID
	e.KeyID = key.ID
	e.AccountID = key.AccountID
	return e
}
