package agentkey

import (
	"context"
	"time"
)

// treeStore is the part of Store for the budget tree and holds.
type treeStore interface {
	// CreateAccount inserts an account and its budgets, and the entries of
	// AccountCreatedEntries. ErrConflict if the id is taken; ErrNotFound if
	// ParentID is set and does not exist; ErrTooDeep if the account would sit
	// deeper than maxDepth levels.
	CreateAccount(ctx context.Context, a Account, maxDepth int, op Op) error

	// Account returns an account with its own budgets (ordered by id), or
	// ErrNotFound.
	Account(ctx context.Context, id string) (Account, error)

	// Accounts lists accounts in id order, with their budgets.
	Accounts(ctx context.Context, f AccountFilter) ([]Account, error)

	// SetParent moves an account under parentID (a root when empty) and
	// returns it. Under one lock for all tree changes it refuses with ErrCycle
	// a parent that is the account or one of its descendants, and with
	// ErrTooDeep a move after which some account would sit deeper than
	// maxDepth levels. ErrNotFound if either account does not exist. It
	// writes the EntryAccountMoved entry of TreeEntry, from the old parent.
	SetParent(ctx context.Context, id, parentID string, maxDepth int, op Op) (Account, error)

	// Keys lists keys and subjects in id order, each with its own budgets
	// only (not its path's), ordered by id.
	Keys(ctx context.Context, f KeyFilter) ([]Key, error)

	// MoveKey sets a key's account and returns the key with its new path's
	// budgets, and writes the EntryKeyMoved entry of TreeEntry, from the old
	// account. ErrNotFound if the key does not exist.
	MoveKey(ctx context.Context, keyID, accountID string, op Op) (Key, error)

	// PutBudget inserts b, or, if its owner already has a budget with b's
	// period, replaces that budget's limit (and, when replaceAnchor is set, its
	// anchor) while keeping its id, window (period_start, reset_at), location,
	// used and held. It returns the stored budget. A new anchor takes effect at
	// the next reset: moving the current window would orphan the ledger
	// entries that make up its used amount. A key's unlimited meter (period
	// none) is replaced like any budget of its period. An account budget needs
	// the account to exist, and a key budget the key: ErrNotFound otherwise.
	// It writes the EntryBudgetSet entry of BudgetEntry for the stored
	// budget, with the account of its owner.
	PutBudget(ctx context.Context, b Budget, replaceAnchor bool, op Op) (Budget, error)

	// DeleteBudget removes the owner's budget with period p, or returns
	// ErrNotFound. If meter is not nil and the owner is left without any
	// budget, meter is inserted in the same transaction. It writes the
	// EntryBudgetRemoved entry of BudgetEntry for the removed budget, and an
	// EntryBudgetSet entry for the meter if it was inserted.
	DeleteBudget(ctx context.Context, o Owner, p Period, meter *Budget, op Op) error

	// Budgets returns the owner's own budgets, ordered by id.
	Budgets(ctx context.Context, o Owner) ([]Budget, error)

	// Reserve makes a hold, atomically: in one transaction it (1) returns the
	// earlier result, with Replayed set, if req has an idempotency key already
	// used with this key; (2) loads the key (ReasonInvalidKey if absent) and
	// locks the budgets of its whole path in id order; (3) calls PlanReserve
	// and, unless the plan has a Reason, writes the changed budgets, the
	// entries, the hold (NewHold) and the idempotency record; (4) returns the
	// result, with the key's path budgets after the hold and, as Charge does,
	// ExpiredHoldsOn.
	Reserve(ctx context.Context, req ReserveRequest) (ReserveResult, error)

	// CloseHold settles or releases a hold, atomically: it locks the hold's
	// row (ErrNotFound if absent), calls CheckClose, then locks the hold's
	// budgets that still exist in id order, calls PlanClose, and writes the
	// changed budgets, the entries and the closed hold.
	CloseHold(ctx context.Context, req CloseRequest) (CloseResult, error)

	// Hold returns a hold, or ErrNotFound.
	Hold(ctx context.Context, id string) (Hold, error)

	// Holds lists holds in id order.
	Holds(ctx context.Context, f HoldFilter) ([]Hold, error)

	// OpenHolds returns the number of open holds and the sum of their
	// amounts, expired ones not yet released included.
	OpenHolds(ctx context.Context) (HoldStats, error)

	// ExpiredHolds returns the ids of up to limit open holds whose expiry is
	// at or before now, oldest expiry first; when budgetIDs is not empty, only
	// holds on at least one of those budgets. A limit of 0 or less means 100.
	ExpiredHolds(ctx context.Context, now time.Time, budgetIDs []string, limit int) ([]string, error)

	// Setting returns a named value kept for the application (such as the
	// hash of an admin token), or ErrNotFound.
	Setting(ctx context.Context, name string) (string, error)

	// PutSetting stores a named value. With ifAbsent set it stores only if the
	// name has no value yet, atomically, and reports whether it stored.
	PutSetting(ctx context.Context, name, value string, ifAbsent bool) (bool, error)

	// Settings returns every named value whose name starts with prefix, by
	// name.
	Settings(ctx context.Context, prefix string) (map[string]string, error)
}

// KeyFilter selects keys for Store.Keys. Zero fields do not filter.
type KeyFilter struct {
	AccountID string
	// Kind is "key" for own keys (with a secret), "subject" for external
	// subjects, or empty for both.
	Kind string
	// IncludeRevoked lists revoked keys too.
	IncludeRevoked bool
	// After returns keys with an id above it.
	After string
	// Limit caps the number of keys. Defaults to 100.
	Limit int
}

// HoldStats counts open holds.
type HoldStats struct {
	Count  int64 `json:"count"`
	Amount Money `json:"amount"`
}

// HoldFilter selects holds for Store.Holds. Zero fields do not filter.
type HoldFilter struct {
	KeyID     string
	AccountID string
	State     HoldState
	// After returns holds with an id above it.
	After string
	Limit int
}
