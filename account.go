package agentkey

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// MaxDepth is the most levels an account tree may have, counting the root: an
// organisation, its departments, their teams, and so on. Every charge locks a
// budget per level, so a deep tree costs on every request.
const MaxDepth = 8

// Account is a node of the budget tree: an organisation, a team, a customer.
// Keys and subjects belong to an account; every charge and hold applies to the
// budgets of the key and of each account from its own up to the root.
//
// A key's account need not exist as an Account: then the key's own budgets
// are its whole path, as for a key of a flat account.
type Account struct {
	ID string `json:"id"`
	// ParentID is the account above this one; empty for a root.
	ParentID  string    `json:"parent_id,omitempty"`
	Name      string    `json:"name,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// Budgets are the account's own budgets.
	Budgets []Budget `json:"budgets"`
}

// Owner names a node that can carry budgets: a key (or subject) or an account.
type Owner struct {
	Kind OwnerKind `json:"kind"`
	ID   string    `json:"id"`
}

// KeyOwner and AccountOwner name a key's and an account's node.
func KeyOwner(id string) Owner     { return Owner{Kind: OwnerKey, ID: id} }
func AccountOwner(id string) Owner { return Owner{Kind: OwnerAccount, ID: id} }

// AccountParams describe a new account.
type AccountParams struct {
	// ID is the account's id, such as "org_acme" or an id of your own system.
	// Defaults to a fresh "acct_" id.
	ID string
	// ParentID puts the account under another; it must exist.
	ParentID string
	Name     string
	// Budgets are the account's limits, each with its own period.
	Budgets []BudgetSpec
}

// CreateAccount adds an account to the tree, under ParentID if it is set.
func (s *Service) CreateAccount(ctx context.Context, p AccountParams) (Account, error) {
	if p.ID == "" {
		p.ID = newID("acct")
	}
	if err := checkID("account id", p.ID); err != nil {
		return Account{}, fmt.Errorf("create account: %w", err)
	}
	if p.ParentID != "" {
		if err := checkID("parent id", p.ParentID); err != nil {
			return Account{}, fmt.Errorf("create account: %w", err)
		}
	}
	now := s.now()

	a := Account{ID: p.ID, ParentID: p.ParentID, Name: p.Name, CreatedAt: now}
	budgets, err := newBudgets(AccountOwner(p.ID), p.Budgets, s.cfg.Location, now)
	if err != nil {
		return Account{}, fmt.Errorf("create account: %w", err)
	}
	a.Budgets = budgets

	if err := s.store.CreateAccount(ctx, a, MaxDepth, Op{ID: newID("op"), At: now}); err != nil {
		return Account{}, fmt.Errorf("create account %s: %w", a.ID, err)
	}
	return a, nil
}

// Account returns an account with its budgets in the period in force now.
func (s *Service) Account(ctx context.Context, id string) (Account, error) {
	a, err := s.store.Account(ctx, id)
	if err != nil {
		return Account{}, fmt.Errorf("account %s: %w", truncate(id, 40), err)
	}
	if a.Budgets, err = rolledBudgets(a.Budgets, s.now()); err != nil {
		return Account{}, fmt.Errorf("account %s: %w", id, err)
	}
	return a, nil
}

// Accounts lists accounts in id order, with their budgets in the period in
// force now: all of them, or the children of parentID when it is set. after
// and limit page through them.
func (s *Service) Accounts(ctx context.Context, parentID, after string, limit int) ([]Account, error) {
	if limit <= 0 {
		limit = 100
	}
	as, err := s.store.Accounts(ctx, AccountFilter{ParentID: parentID, After: after, Limit: min(limit, 1000)})
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	now := s.now()
	for i := range as {
		if as[i].Budgets, err = rolledBudgets(as[i].Budgets, now); err != nil {
			return nil, fmt.Errorf("accounts: %w", err)
		}
	}
	return as, nil
}

// MoveAccount puts an account under another parent, or makes it a root when
// parentID is empty. A move that would make a cycle or a tree deeper than
// MaxDepth is refused with ErrCycle or ErrTooDeep. Open holds stay on the
// budgets they were made against.
func (s *Service) MoveAccount(ctx context.Context, id, parentID string) (Account, error) {
	if id == parentID {
		return Account{}, fmt.Errorf("move account %s: %w", truncate(id, 40), ErrCycle)
	}
	a, err := s.store.SetParent(ctx, id, parentID, MaxDepth, s.newOp())
	if err != nil {
		return Account{}, fmt.Errorf("move account %s: %w", truncate(id, 40), err)
	}
	return a, nil
}

// MoveKey puts a key or subject in another account. The account need not
// exist as an Account. Open holds stay on the budgets they were made against.
func (s *Service) MoveKey(ctx context.Context, keyID, accountID string) (Key, error) {
	if err := checkID("account id", accountID); err != nil {
		return Key{}, fmt.Errorf("move key: %w", err)
	}
	k, err := s.store.MoveKey(ctx, keyID, accountID, s.newOp())
	if err != nil {
		return Key{}, fmt.Errorf("move key %s: %w", truncate(keyID, 40), err)
	}
	return k, nil
}

// SetBudget puts a budget on a node, or replaces the node's budget with the
// same period. A replaced budget keeps its current period and what it has
// used and held in it; its limit changes at once, and its anchor, when given,
// from the next reset. A node may
// carry one budget per period, for example $10 a day and $200 a month.
func (s *Service) SetBudget(ctx context.Context, o Owner, spec BudgetSpec) (Budget, error) {
	if err := o.check(); err != nil {
		return Budget{}, fmt.Errorf("set budget: %w", err)
	}
	op := s.newOp()
	b, err := newBudget(newID("bud"), o.Kind, o.ID, spec, s.cfg.Location, op.At)
	if err != nil {
		return Budget{}, fmt.Errorf("set budget: %w", err)
	}
	b, err = s.store.PutBudget(ctx, b, !spec.Anchor.IsZero(), op)
	if err != nil {
		return Budget{}, fmt.Errorf("set budget on %s %s: %w", o.Kind, truncate(o.ID, 40), err)
	}
	return b, nil
}

// RemoveBudget removes a node's budget with this period. Removing the last
// budget of a key leaves it unlimited, still metered.
func (s *Service) RemoveBudget(ctx context.Context, o Owner, p Period) error {
	if err := o.check(); err != nil {
		return fmt.Errorf("remove budget: %w", err)
	}
	if _, err := ParsePeriod(string(p)); err != nil {
		return fmt.Errorf("remove budget: %w: %w", ErrInvalidArgument, err)
	}
	if err := s.store.DeleteBudget(ctx, o, p, s.meter(o), s.newOp()); err != nil {
		return fmt.Errorf("remove budget of %s %s: %w", o.Kind, truncate(o.ID, 40), err)
	}
	return nil
}

// meter returns the unlimited budget a key gets when it has no other, so that
// its usage stays metered.
func (s *Service) meter(o Owner) *Budget {
	if o.Kind != OwnerKey {
		return nil
	}
	b, _ := newBudget(newID("bud"), OwnerKey, o.ID, BudgetSpec{}, s.cfg.Location, s.now())
	b.Unlimited = true
	return &b
}

// Budgets returns a node's budgets in the period in force now: limit, used,
// held, remaining (Budget.Remaining) and next reset.
func (s *Service) Budgets(ctx context.Context, o Owner) ([]Budget, error) {
	if err := o.check(); err != nil {
		return nil, fmt.Errorf("budgets: %w", err)
	}
	bs, err := s.store.Budgets(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("budgets of %s %s: %w", o.Kind, truncate(o.ID, 40), err)
	}
	return rolledBudgets(bs, s.now())
}

func (o Owner) check() error {
	if o.Kind != OwnerKey && o.Kind != OwnerAccount {
		return fmt.Errorf("%w: owner kind %q: want key or account", ErrInvalidArgument, truncate(string(o.Kind), 20))
	}
	return checkID("owner id", o.ID)
}

// checkID refuses ids that are empty, long or contain characters that would
// be trouble in a URL path or a log line.
func checkID(what, id string) error {
	if id == "" || len(id) > 255 || strings.ContainsFunc(id, func(r rune) bool {
		return r <= ' ' || r == '/' || r == '?' || r == '#' || r > '~'
	}) {
		return fmt.Errorf("%w: %s %q must be 1 to 255 printable characters without spaces or /?#",
			ErrInvalidArgument, what, truncate(id, 40))
	}
	return nil
}

func rolledBudgets(bs []Budget, now time.Time) ([]Budget, error) {
	for i := range bs {
		if _, _, err := bs[i].RollForward(now); err != nil {
			return nil, err
		}
	}
	return bs, nil
}

// AccountFilter selects accounts for Store.Accounts.
type AccountFilter struct {
	ParentID string
	// After returns accounts with an id above it.
	After string
	Limit int
}

// Keys lists keys and subjects in id order, each with its own budgets in the
// period in force now.
func (s *Service) Keys(ctx context.Context, f KeyFilter) ([]Key, error) {
	if f.Kind != "" && f.Kind != "key" && f.Kind != "subject" {
		return nil, fmt.Errorf("keys: %w: kind %q: want key or subject", ErrInvalidArgument,
			truncate(f.Kind, 20))
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	keys, err := s.store.Keys(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	now := s.now()
	for i := range keys {
		if keys[i].Budgets, err = rolledBudgets(keys[i].Budgets, now); err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
	}
	return keys, nil
}
