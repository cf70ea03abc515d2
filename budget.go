package agentkey

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// OwnerKind says what a budget belongs to.
type OwnerKind string

// The owners a budget can have.
const (
	// OwnerKey is an own key or an external subject (both are rows of keys).
	OwnerKey OwnerKind = "key"
	// OwnerAccount is an account: an organisation, a team, a customer.
	OwnerAccount OwnerKind = "account"
)

// BudgetSpec is a limit to put on a key, a subject or an account.
type BudgetSpec struct {
	// Limit is the most that may be used in one period. Zero is a valid limit:
	// nothing may be spent.
	Limit Money
	// Period is how often the budget starts again. Defaults to PeriodNone, a
	// lifetime cap.
	Period Period
	// Anchor fixes the day of the month on which a monthly budget resets.
	// Defaults to the time the budget is created.
	Anchor time.Time
}

// Budget is the state of one budget: its limit, its current period and what is
// used and held in it. A budget with Unlimited set still counts usage; it is
// the meter of a key that has no limit.
type Budget struct {
	ID        string    `json:"id"`
	OwnerKind OwnerKind `json:"owner_kind"`
	OwnerID   string    `json:"owner_id"`

	Limit     Money  `json:"limit"`
	Unlimited bool   `json:"unlimited"`
	Period    Period `json:"period"`
	// Location is the IANA name of the time zone of the period's boundaries.
	Location string    `json:"location"`
	Anchor   time.Time `json:"anchor"`

	PeriodStart time.Time `json:"period_start"`
	// ResetAt is when the current period ends; zero for PeriodNone.
	ResetAt time.Time `json:"reset_at,omitzero"`

	Used      Money     `json:"used"`
	Held      Money     `json:"held"`
	CreatedAt time.Time `json:"created_at"`
}

// MarshalJSON adds to the budget's fields its "remaining" amount, the limit
// less what is used and held; an unlimited budget has none.
func (b Budget) MarshalJSON() ([]byte, error) {
	type fields Budget // without this method
	out := struct {
		fields
		Remaining *Money `json:"remaining,omitempty"`
	}{fields: fields(b)}
	if !b.Unlimited {
		rem := b.Remaining()
		out.Remaining = &rem
	}
	return json.Marshal(out)
}

// Remaining returns what can still be charged or held in the current period:
// the limit less what is used and held, never below zero. An unlimited budget
// has MaxMoney remaining.
func (b Budget) Remaining() Money {
	if b.Unlimited {
		return MaxMoney
	}
	return max(0, b.Limit-b.Used-b.Held)
}

// Exhausted reports whether the budget has no room left at all.
func (b Budget) Exhausted() bool {
	return !b.Unlimited && b.Used+b.Held >= b.Limit
}

// fits reports whether amount more can be used or held without passing the
// limit. The sum is computed without overflow.
func (b Budget) fits(amount Money) bool {
	return b.Unlimited || amount <= b.Limit-b.Used-b.Held
}

// RollForward starts a new period if the current one has ended by now. It
// returns a reset entry recording what the closed period used, and whether a
// rollover happened. Held amounts stay held: a hold belongs to no period until
// it is settled.
func (b *Budget) RollForward(now time.Time) (Entry, bool, error) {
	if b.ResetAt.IsZero() || now.Before(b.ResetAt) {
		return Entry{}, false, nil
	}
	loc, err := loadLocation(b.Location)
	if err != nil {
		return Entry{}, false, err
	}

	reset := Entry{
		Kind:        EntryReset,
		BudgetID:    b.ID,
		Amount:      b.Used,
		PeriodStart: b.PeriodStart,
		CreatedAt:   now,
	}
	start, end := b.Period.Window(b.Anchor, loc, now)
	b.PeriodStart, b.ResetAt = start.UTC(), end.UTC()
	b.Used = 0
	return reset, true, nil
}

// newBudget fills a budget's period from a spec.
func newBudget(id string, kind OwnerKind, owner string, spec BudgetSpec, loc *time.Location,
	now time.Time,
) (Budget, error) {
	p, err := ParsePeriod(string(spec.Period))
	if err != nil {
		return Budget{}, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if spec.Limit < 0 {
		return Budget{}, fmt.Errorf("%w: budget limit: %w", ErrInvalidArgument, ErrAmountNegative)
	}
	anchor := spec.Anchor
	if anchor.IsZero() {
		anchor = now
	}

	b := Budget{
		ID:        id,
		OwnerKind: kind,
		OwnerID:   owner,
		Limit:     spec.Limit,
		Period:    p,
		Location:  loc.String(),
		Anchor:    anchor.UTC().Truncate(time.Microsecond),
		CreatedAt: now,
	}
	b.PeriodStart, b.ResetAt = p.Window(b.Anchor, loc, now)
	b.PeriodStart, b.ResetAt = b.PeriodStart.UTC(), b.ResetAt.UTC()
	return b, nil
}

// newBudgets fills the budgets of a new node from specs, one per period.
func newBudgets(o Owner, specs []BudgetSpec, loc *time.Location, now time.Time) ([]Budget, error) {
	var bs []Budget
	for _, spec := range specs {
		b, err := newBudget(newID("bud"), o.Kind, o.ID, spec, loc, now)
		if err != nil {
			return nil, err
		}
		for _, other := range bs {
			if other.Period == b.Period {
				return nil, fmt.Errorf("%w: two budgets with period %s", ErrInvalidArgument, b.Period)
			}
		}
		bs = append(bs, b)
	}
	return bs, nil
}

var locations sync.Map // name -> *time.Location

// loadLocation is time.LoadLocation with a cache, since budgets are rolled on
// the hot path and LoadLocation reads the zone database every time.
func loadLocation(name string) (*time.Location, error) {
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	if loc, ok := locations.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("budget time zone: %w", err)
	}
	locations.Store(name, loc)
	return loc, nil
}
