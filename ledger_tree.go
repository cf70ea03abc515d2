package agentkey

import "time"

// Op names one change of the tree or of a budget for its ledger entries: the
// operation's id and its time. The Service makes one per call and passes it
// to the Store, which writes the entries of TreeEntry and BudgetEntry in the
// same transaction as the change.
type Op struct {
	ID string
	At time.Time
}

// newOp returns an Op for a change made now.
func (s *Service) newOp() Op {
	return Op{ID: newID("op"), At: s.now()}
}

// The metadata keys of the entries of tree and budget changes.
const (
	metaParent    = "parent"
	metaFrom      = "from"
	metaTo        = "to"
	metaPeriod    = "period"
	metaLimit     = "limit"
	metaReplaced  = "replaced"
	metaUsed      = "used"
	metaHeld      = "held"
	metaUnlimited = "unlimited"
)

// AccountCreatedEntries returns the entries that record account a and its
// budgets: one EntryAccountCreated, then one EntryBudgetSet per budget.
func AccountCreatedEntries(op Op, a Account) []Entry {
	e := Entry{OpID: op.ID, Kind: EntryAccountCreated, AccountID: a.ID,
		PeriodStart: op.At, CreatedAt: op.At}
	if a.ParentID != "" {
		e.Metadata = map[string]string{metaParent: a.ParentID}
	}
	entries := []Entry{e}
	for _, b := range a.Budgets {
		entries = append(entries, BudgetEntry(op, EntryBudgetSet, b, a.ID, false))
	}
	return entries
}

// KeyCreatedEntries returns the EntryBudgetSet entries that record the
// budgets of a new key or subject.
func KeyCreatedEntries(op Op, k Key) []Entry {
	entries := make([]Entry, len(k.Budgets))
	for i, b := range k.Budgets {
		entries[i] = BudgetEntry(op, EntryBudgetSet, b, k.AccountID, false)
	}
	return entries
}

// TreeEntry returns the entry that records a move: kind EntryAccountMoved
// for account id, or EntryKeyMoved for key id, from one parent or account to
// another (empty for a root).
func TreeEntry(op Op, kind EntryKind, id, from, to string) Entry {
	e := Entry{OpID: op.ID, Kind: kind, PeriodStart: op.At, CreatedAt: op.At,
		Metadata: map[string]string{metaFrom: from, metaTo: to}}
	if kind == EntryKeyMoved {
		e.KeyID, e.AccountID = id, to
	} else {
		e.AccountID = id
	}
	return e
}

// BudgetEntry returns the entry that records budget b as set (EntryBudgetSet;
// replaced says it took the place of the owner's budget of its period) or as
// removed (EntryBudgetRemoved). accountID is the account of b's owner: the
// key's account for a key's budget.
func BudgetEntry(op Op, kind EntryKind, b Budget, accountID string, replaced bool) Entry {
	limit := b.Limit.String()
	if b.Unlimited {
		limit = metaUnlimited
	}
	e := Entry{
		OpID:        op.ID,
		Kind:        kind,
		BudgetID:    b.ID,
		AccountID:   accountID,
		PeriodStart: b.PeriodStart,
		CreatedAt:   op.At,
		Metadata:    map[string]string{metaPeriod: string(b.Period), metaLimit: limit},
	}
	if b.OwnerKind == OwnerKey {
		e.KeyID = b.OwnerID
	}
	if replaced {
		e.Metadata[metaReplaced] = "true"
	}
	if kind == EntryBudgetRemoved {
		e.Metadata[metaUsed], e.Metadata[metaHeld] = b.Used.String(), b.Held.String()
	}
	return e
}
