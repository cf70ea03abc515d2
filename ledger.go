package agentkey

import "time"

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
)

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
	ID       int64     `json:"id"`
	OpID     string    `json:"op_id"`
	Kind     EntryKind `json:"kind"`
	BudgetID string    `json:"budget_id"`
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
}

// Drift is a budget whose stored used or held amount differs from its ledger.
type Drift struct {
	Budget     Budget `json:"budget"`
	LedgerUsed Money  `json:"ledger_used"`
	LedgerHeld Money  `json:"ledger_held"`
}

// AuditReport is the result of Audit.
type AuditReport struct {
	// Budgets is the number of budgets checked.
	Budgets int `json:"budgets"`
	// Drifts lists the budgets whose used amount does not match the ledger.
	Drifts []Drift `json:"drifts"`
}

// Clean reports whether no drift was found.
func (r AuditReport) Clean() bool { return len(r.Drifts) == 0 }
