package agentkey

import "errors"

// Errors returned by the Service and by stores. A refusal of a key or of a
// charge is not an error: it is a Reason in a Validation or a ChargeResult.
// Errors are for calls that cannot be answered (bad arguments, faults).
var (
	// ErrNotFound is returned when a key, subject or budget does not exist, or
	// is not owned by the account given.
	ErrNotFound = errors.New("not found")

	// ErrInvalidArgument is wrapped by every error about a caller's input, such
	// as a missing account id or an unknown scope.
	ErrInvalidArgument = errors.New("invalid argument")

	// ErrUnknownScope is returned when a key would get a scope outside the
	// configured list of valid scopes.
	ErrUnknownScope = errors.New("unknown scope")

	// ErrOverLimit is returned by Adjust when a debit would take a budget past
	// its limit.
	ErrOverLimit = errors.New("adjustment would exceed the budget's limit")

	// ErrCreditTooLarge is returned by Adjust when a credit is larger than what
	// the budget has used in its current period.
	ErrCreditTooLarge = errors.New("credit is larger than the amount used")

	// ErrNoKey is returned by Charge when the request's context carries no
	// key: the middleware is not installed on the route.
	ErrNoKey = errors.New("agentkey: no key in context")

	// ErrConflict is returned when an id to create is taken.
	ErrConflict = errors.New("already exists")

	// ErrCycle is returned when moving an account under itself or under one
	// of its descendants.
	ErrCycle = errors.New("account tree would have a cycle")

	// ErrTooDeep is returned when an account tree would pass MaxDepth levels.
	ErrTooDeep = errors.New("account tree would be too deep")

	// ErrHoldClosed is returned when settling a hold that was released, or
	// releasing one that was settled.
	ErrHoldClosed = errors.New("hold is already closed")

	// ErrIdempotencyKeyReused is returned when an idempotency key already
	// used for one operation comes back with a different amount: the first
	// operation stands, and the second is not applied.
	ErrIdempotencyKeyReused = errors.New("idempotency key already used with a different amount")
)

// Reason says why a key or a charge was refused. The empty Reason means allowed.
type Reason string

// The reasons for a refusal.
const (
	// ReasonInvalidKey: the key is malformed or unknown, or, for a charge,
	// also revoked or expired.
	ReasonInvalidKey Reason = "invalid_key"
	// ReasonExpired: the key's expiry has passed.
	ReasonExpired Reason = "expired"
	// ReasonRevoked: the key was revoked.
	ReasonRevoked Reason = "revoked"
	// ReasonBudgetExceeded: a budget has no room for the request.
	ReasonBudgetExceeded Reason = "budget_exceeded"
	// ReasonInsufficientScope: the key lacks the scope the route requires.
	ReasonInsufficientScope Reason = "insufficient_scope"
	// ReasonInvalidCost: the cost of a charge is negative.
	ReasonInvalidCost Reason = "invalid_cost"
)

// KeyInvalid reports whether r means that the credential itself cannot be used
// (unknown, expired or revoked), as opposed to a budget or scope refusal.
func (r Reason) KeyInvalid() bool {
	return r == ReasonInvalidKey || r == ReasonExpired || r == ReasonRevoked
}
