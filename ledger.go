package agentkey

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// EntryKind says what a ledger entry records.
type EntryKind string

// The kinds of ledger entries.
const (
	// EntryCharge is money used: a charge after the work.
	EntryCharge EntryKind = "charge"
	// EntryAdjust is a manual debit (positive) or credit (negative) of used.
	EntryAdjust EntryKind = "adjust"
	// EntryReset closes a period; its amount is what the closed period used
	// and it is not counted again.
	EntryReset EntryKind = "reset"
	// EntryHold sets an amount aside: it adds to held.
	EntryHold EntryKind = "hold"
	// EntryRelease gives a hold's amount back: it takes from held. Settling a
	// hold writes a release and a settle.
	EntryRelease EntryKind = "release"
	// EntrySettle is money used by a settled hold.
	EntrySettle EntryKind = "settle"
	// EntryOverrun is what a settled hold cost above what any budget had
	// room for. It is kept for the record and not counted as used.
	EntryOverrun EntryKind = "overrun"

	// The changes of the tree and of budgets move no money: their amount is
	// zero and their metadata says what changed.

	// EntryAccountCreated records a new account; metadata "parent" names its
	// parent, if any.
	EntryAccountCreated EntryKind = "account_created"
	// EntryAccountMoved records an account put under another parent:
	// metadata "from" and "to" (empty for a root).
	EntryAccountMoved EntryKind = "account_moved"
	// EntryKeyMoved records a key or subject put in another account:
	// metadata "from" and "to".
	EntryKeyMoved EntryKind = "key_moved"
	// EntryBudgetSet records a budget put on a node, when the node is
	// created or later, or a node's budget replaced ("replaced": "true"):
	// metadata "period" and "limit" (a decimal amount, or "unlimited").
	EntryBudgetSet EntryKind = "budget_set"
	// EntryBudgetRemoved records a budget taken off a node: metadata
	// "period", "limit", and the "used" and "held" it had.
	EntryBudgetRemoved EntryKind = "budget_removed"
)

// entryKinds are all the kinds, in the order of their declaration.
var entryKinds = []EntryKind{
	EntryCharge, EntryAdjust, EntryReset, EntryHold, EntryRelease, EntrySettle, EntryOverrun,
	EntryAccountCreated, EntryAccountMoved, EntryKeyMoved, EntryBudgetSet, EntryBudgetRemoved,
}

// MoneyKinds are the kinds of entries that record money: charges,
// adjustments, resets, holds and their closing. The others record changes of
// the tree and of budgets.
var MoneyKinds = entryKinds[:7]

// ErrEntryKind is returned for a ledger entry kind that ParseEntryKind does
// not know.
var ErrEntryKind = errors.New("unknown ledger entry kind")

// ParseEntryKind returns the kind named s, or an error wrapping ErrEntryKind.
func ParseEntryKind(s string) (EntryKind, error) {
	for _, k := range entryKinds {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("%w %q", ErrEntryKind, truncate(s, 40))
}

// ParseEntryKinds parses a comma-separated list of kinds, as the admin API
// and the CLI take it; "money" stands for MoneyKinds. The empty string is no
// kind, which filters nothing.
func ParseEntryKinds(s string) ([]EntryKind, error) {
	if s == "" {
		return nil, nil
	}
	var kinds []EntryKind
	for name := range strings.SplitSeq(s, ",") {
		if name == "money" {
			kinds = append(kinds, MoneyKinds...)
			continue
		}
		k, err := ParseEntryKind(name)
		if err != nil {
			return nil, err
		}
		kinds = append(kinds, k)
	}
	return kinds, nil
}

// CountsAsUsed reports whether entries of kind k add up to a budget's used
// amount for their period.
func (k EntryKind) CountsAsUsed() bool {
	return k == EntryCharge || k == EntryAdjust || k == EntrySettle
}

// HeldDelta returns how an entry of kind k and amount a changes a budget's
// held amount.
func (k EntryKind) HeldDelta(a Money) Money {
	switch k {
	case EntryHold:
		return a
	case EntryRelease:
		return -a
	}
	return 0
}

// Entry is one line of the ledger. Every change to a budget's used amount is an
// entry; one operation that touches several budgets writes one entry per budget,
// all sharing the operation's OpID.
type Entry struct {
	ID   int64     `json:"id"`
	OpID string    `json:"op_id"`
	Kind EntryKind `json:"kind"`
	// BudgetID is the budget the entry changes; empty for a change of the
	// tree that touches no budget.
	BudgetID string `json:"budget_id,omitempty"`
	// KeyID is the key or subject the operation was made for, if any.
	KeyID     string `json:"key_id,omitempty"`
	AccountID string `json:"account_id,omitempty"`
	// HoldID is the hold a hold, release, settle or overrun entry belongs to.
	HoldID string `json:"hold_id,omitempty"`
	Amount Money  `json:"amount"`
	// PeriodStart is the start of the budget period the entry belongs to.
	PeriodStart    time.Time         `json:"period_start"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	CreatedAt      time.Time         `json:"created_at"`
}

// LedgerFilter selects ledger entries. Zero fields do not filter. Entries come
// in ascending ID order.
type LedgerFilter struct {
	KeyID     string
	AccountID string
	BudgetID  string
	// Kinds, when not empty, selects entries of these kinds only; MoneyKinds
	// leaves out the changes of the tree and of budgets.
	Kinds []EntryKind
	// Since and Until bound CreatedAt: Since <= CreatedAt < Until.
	Since time.Time
	Until time.Time
	// AfterID returns entries with an ID above it, for pagination.
	AfterID int64
	// Limit caps the number of entries. Defaults to 100; at most 10,000.
	Limit int
}

// BudgetTotal is a budget as stored next to the sum of the ledger entries that
// count as used in its current period. Stores return them for Audit.
type BudgetTotal struct {
	Budget     Budget
	LedgerUsed Money
	// LedgerHeld is what the ledger's hold and release entries leave held.
	LedgerHeld Money
	// OpenHolds is the sum of the amounts of the open holds on the budget.
	OpenHolds Money
}

// Drift is a budget whose stored used or held amount differs from its
// ledger, or whose held amount differs from its open holds.
type Drift struct {
	Budget     Budget `json:"budget"`
	LedgerUsed Money  `json:"ledger_used"`
	LedgerHeld Money  `json:"ledger_held"`
	OpenHolds  Money  `json:"open_holds"`
}

// AuditReport is the result of Audit.
type AuditReport struct {
	// Budgets is the number of budgets checked.
	Budgets int `json:"budgets"`
	// Drifts lists the budgets whose used or held amount does not match the
	// ledger or the open holds.
	Drifts []Drift `json:"drifts"`
}

// Clean reports whether no drift was found.
func (r AuditReport) Clean() bool { return len(r.Drifts) == 0 }
