package agentkey

import (
	"context"
	"time"
)

// Store keeps keys, budgets and the ledger. The akpostgres and aksqlite
// packages implement it, and both pass the conformance suite in
// internal/storetest. All times a Store receives come from the Service's clock,
// in UTC and truncated to microseconds; a Store returns them the same way.
//
// Decisions are made by the root package's Plan functions, which a Store calls
// inside its transaction after locking the rows involved (PostgreSQL: SELECT
// ... ORDER BY id FOR UPDATE, in one order everywhere so that no two operations
// deadlock; SQLite: a write transaction begun IMMEDIATE). Checking and writing
// under one lock is what keeps used + held within every limit.
type Store interface {
	// Migrate applies the embedded migrations that are not applied yet. It is
	// safe to call from several processes at once.
	Migrate(ctx context.Context) error

	// CreateKey inserts a key and its budgets, and the ledger entries of
	// KeyCreatedEntries(op, k.Key).
	CreateKey(ctx context.Context, k KeyRecord, op Op) error

	// EnsureSubject inserts k, a key row for an external subject, with its
	// budgets and the entries of KeyCreatedEntries, unless a row for
	// k.Subject exists. It returns the row as stored (with its path budgets,
	// as Key does) and whether it was created. Concurrent calls for one
	// subject create exactly one row.
	EnsureSubject(ctx context.Context, k KeyRecord, op Op) (Key, bool, error)

	// Key returns a key with the budgets of its whole path as stored (periods
	// are not rolled), or ErrNotFound. The path is the key's own budgets and
	// those of its account and every account above it, up to the root; an
	// account_id with no Account row contributes nothing. Budgets are ordered
	// by id.
	Key(ctx context.Context, q KeyQuery) (Key, error)

	// RevokeKey sets the key's RevokedAt to at, unless it is already revoked,
	// and returns the key with its path budgets. With accountID set, only a
	// key of that account is found. It returns ErrNotFound otherwise.
	RevokeKey(ctx context.Context, id, accountID string, at time.Time) (Key, error)

	// TouchKeys sets the LastUsedAt of each key in lastUsed, by key id, to the
	// later of its stored value and the given time.
	TouchKeys(ctx context.Context, lastUsed map[string]time.Time) error

	// Charge applies req to the budgets of the key's whole path (see Key),
	// atomically: in one transaction it (1) returns the stored result, with
	// Replayed set, if req has an idempotency key already used with this key;
	// (2) loads the key by req.KeyID, or by req.KeyHash when KeyID is empty
	// (ReasonInvalidKey if absent), and locks its path budgets in id order;
	// (3) calls PlanCharge and, unless the plan has a Reason, writes the
	// plan's changed budgets, its entries and the idempotency record; (4)
	// returns ChargePlan.Result with ExpiredHoldsOn set to the path budgets
	// that carry open holds whose expiry is at or before req.Now (a store may
	// look at only the oldest of a large backlog of them). Rollovers in
	// a refused plan need not be written. A zero amount writes nothing and
	// records no idempotency key.
	Charge(ctx context.Context, req ChargeRequest) (ChargeResult, error)

	// Adjust applies a manual adjustment to one budget with PlanAdjust, under
	// the budget's lock, and returns the budget after it. The store fills
	// req.AccountID from the budget's owner: the key's account for a key
	// budget, the account itself for an account budget. ErrNotFound if the
	// budget does not exist.
	Adjust(ctx context.Context, req AdjustRequest) (Budget, error)

	// Ledger returns the entries that f selects.
	Ledger(ctx context.Context, f LedgerFilter) ([]Entry, error)

	// BudgetTotals returns every budget with the sum of its ledger entries that
	// count as used (EntryKind.CountsAsUsed) and belong to its stored current
	// period (Entry.PeriodStart equal to Budget.PeriodStart), the sum over
	// all time of EntryKind.HeldDelta of its entries, and the sum of the
	// amounts of the open holds on it, all from one snapshot.
	BudgetTotals(ctx context.Context) ([]BudgetTotal, error)

	treeStore
}

// KeyQuery selects one key by exactly one of its fields.
type KeyQuery struct {
	ID      string
	Hash    []byte
	Subject string
}

// Result turns a plan into the result of the charge it decided. key is the
// key as loaded by the store.
func (p ChargePlan) Result(req ChargeRequest, key Key) ChargeResult {
	if p.Reason == ReasonInvalidKey {
		return ChargeResult{Reason: ReasonInvalidKey}
	}
	if p.Budgets != nil {
		key.Budgets = p.Budgets
	}
	r := ChargeResult{Reason: p.Reason, Key: key, RefusedBy: p.RefusedBy}
	if p.Reason == "" {
		r.Charged, r.OpID = req.Amount, req.OpID
	}
	return r
}

// AdjustRequest is a manual change of a budget's used amount: a positive
// amount is a debit, a negative one a credit.
type AdjustRequest struct {
	OpID     string
	BudgetID string
	// AccountID is the account of the budget's owner; the store fills it.
	AccountID string
	Amount    Money
	// Note says why, and is kept in the entry's metadata under "reason".
	Note string
	Now  time.Time
}

// PlanAdjust decides a manual adjustment of budget b. It returns the budget
// after it and the entries to write (a reset first if a period has ended).
// A debit must fit the limit; a credit cannot exceed what is used.
func PlanAdjust(req AdjustRequest, b Budget) (Budget, []Entry, error) {
	var entries []Entry
	reset, rolled, err := b.RollForward(req.Now)
	if err != nil {
		return Budget{}, nil, err
	}
	if rolled {
		reset.OpID, reset.AccountID = req.OpID, req.AccountID
		if b.OwnerKind == OwnerKey {
			reset.KeyID = b.OwnerID
		}
		entries = append(entries, reset)
	}

	switch {
	case req.Amount > 0 && !b.fits(req.Amount):
		return Budget{}, nil, ErrOverLimit
	case req.Amount < -b.Used:
		return Budget{}, nil, ErrCreditTooLarge
	}
	used, err := b.Used.Add(req.Amount)
	if err != nil {
		return Budget{}, nil, err
	}
	b.Used = used

	e := Entry{
		OpID:        req.OpID,
		Kind:        EntryAdjust,
		AccountID:   req.AccountID,
		BudgetID:    b.ID,
		Amount:      req.Amount,
		PeriodStart: b.PeriodStart,
		CreatedAt:   req.Now,
	}
	if b.OwnerKind == OwnerKey {
		e.KeyID = b.OwnerID
	}
	if req.Note != "" {
		e.Metadata = map[string]string{"reason": req.Note}
	}
	return b, append(entries, e), nil
}
