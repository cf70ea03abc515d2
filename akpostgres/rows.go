package akpostgres

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/agentkey-go/agentkey"
)

// keyRow receives the keyColumns of one row. Every column may be NULL, for
// the outer join of chargeLoad.
type keyRow struct {
	id, prefix, subject, accountID, userID, delegatedBy, name pgtype.Text

	hash   []byte
	scopes []string

	expiresAt, revokedAt, createdAt, lastUsedAt pgtype.Timestamptz
}

// dest returns the scan destinations in keyColumns order.
func (r *keyRow) dest() []any {
	return []any{
		&r.id, &r.hash, &r.prefix, &r.subject, &r.accountID, &r.userID, &r.delegatedBy, &r.name,
		&r.scopes, &r.expiresAt, &r.revokedAt, &r.createdAt, &r.lastUsedAt,
	}
}

// record returns the row as a KeyRecord without budgets.
func (r *keyRow) record() agentkey.KeyRecord {
	return agentkey.KeyRecord{
		Key: agentkey.Key{
			ID:          r.id.String,
			Prefix:      r.prefix.String,
			Subject:     r.subject.String,
			AccountID:   r.accountID.String,
			UserID:      r.userID.String,
			DelegatedBy: r.delegatedBy.String,
			Name:        r.name.String,
			Scopes:      r.scopes,
			ExpiresAt:   fromTimestamptz(r.expiresAt),
			RevokedAt:   fromTimestamptz(r.revokedAt),
			CreatedAt:   fromTimestamptz(r.createdAt),
			LastUsedAt:  fromTimestamptz(r.lastUsedAt),
		},
		Hash: r.hash,
	}
}

// keyArgs returns k as the arguments of insertKey and insertSubject.
func keyArgs(k agentkey.KeyRecord) []any {
	return []any{
		k.ID, k.Hash, k.Prefix, nullString(k.Subject), k.AccountID, k.UserID, k.DelegatedBy, k.Name,
		k.Scopes, nullTime(k.ExpiresAt), nullTime(k.RevokedAt), k.CreatedAt, nullTime(k.LastUsedAt),
	}
}

// budgetRow receives the budgetColumns of one row.
type budgetRow struct {
	id, ownerKind, ownerID, period, location string
	limit                                    pgtype.Int8
	anchor, periodStart, createdAt           time.Time
	resetAt                                  pgtype.Timestamptz
	used, held                               int64
}

// dest returns the scan destinations in budgetColumns order.
func (r *budgetRow) dest() []any {
	return []any{
		&r.id, &r.ownerKind, &r.ownerID, &r.limit, &r.period, &r.location, &r.anchor,
		&r.periodStart, &r.resetAt, &r.used, &r.held, &r.createdAt,
	}
}

func (r *budgetRow) budget() agentkey.Budget {
	return agentkey.Budget{
		ID:          r.id,
		OwnerKind:   agentkey.OwnerKind(r.ownerKind),
		OwnerID:     r.ownerID,
		Limit:       agentkey.Money(r.limit.Int64),
		Unlimited:   !r.limit.Valid,
		Period:      agentkey.Period(r.period),
		Location:    r.location,
		Anchor:      r.anchor.UTC(),
		PeriodStart: r.periodStart.UTC(),
		ResetAt:     fromTimestamptz(r.resetAt),
		Used:        agentkey.Money(r.used),
		Held:        agentkey.Money(r.held),
		CreatedAt:   r.createdAt.UTC(),
	}
}

// budgetArgs returns b as the arguments of insertBudget.
func budgetArgs(b agentkey.Budget) []any {
	var limit any
	if !b.Unlimited {
		limit = int64(b.Limit)
	}
	return []any{
		b.ID, string(b.OwnerKind), b.OwnerID, limit, string(b.Period), b.Location, b.Anchor,
		b.PeriodStart, nullTime(b.ResetAt), int64(b.Used), int64(b.Held), b.CreatedAt,
	}
}

// collectBudgets reads budget rows.
func collectBudgets(rows pgx.Rows) ([]agentkey.Budget, error) {
	defer rows.Close()

	var budgets []agentkey.Budget
	var r budgetRow
	for rows.Next() {
		if err := rows.Scan(r.dest()...); err != nil {
			return nil, err
		}
		budgets = append(budgets, r.budget())
	}
	return budgets, rows.Err()
}

// entryRow receives the entryColumns of one row.
type entryRow struct {
	id                                    int64
	opID, kind, budgetID                  string
	keyID, accountID, holdID, idempotency pgtype.Text
	amount                                int64
	periodStart, createdAt                time.Time
	metadata                              []byte
}

func (r *entryRow) dest() []any {
	return []any{
		&r.id, &r.opID, &r.kind, &r.budgetID, &r.keyID, &r.accountID, &r.holdID, &r.amount,
		&r.periodStart, &r.idempotency, &r.metadata, &r.createdAt,
	}
}

func (r *entryRow) entry() (agentkey.Entry, error) {
	e := agentkey.Entry{
		ID:             r.id,
		OpID:           r.opID,
		Kind:           agentkey.EntryKind(r.kind),
		BudgetID:       r.budgetID,
		KeyID:          r.keyID.String,
		AccountID:      r.accountID.String,
		HoldID:         r.holdID.String,
		Amount:         agentkey.Money(r.amount),
		PeriodStart:    r.periodStart.UTC(),
		IdempotencyKey: r.idempotency.String,
		CreatedAt:      r.createdAt.UTC(),
	}
	if err := decodeMetadata(r.metadata, &e.Metadata); err != nil {
		return agentkey.Entry{}, fmt.Errorf("entry %d: %w", r.id, err)
	}
	return e, nil
}

// entryArgs returns e as the arguments of insertEntry.
func entryArgs(e agentkey.Entry) ([]any, error) {
	metadata, err := encodeMetadata(e.Metadata)
	if err != nil {
		return nil, err
	}
	return []any{
		e.OpID, string(e.Kind), e.BudgetID, nullString(e.KeyID), nullString(e.AccountID),
		nullString(e.HoldID), int64(e.Amount), e.PeriodStart, nullString(e.IdempotencyKey),
		metadata, e.CreatedAt,
	}, nil
}

// holdRow receives the holdColumns of one row.
type holdRow struct {
	id, keyID, accountID, state string
	amount, charged, overrun    int64
	budgetIDs                   []string
	expiresAt, createdAt        time.Time
	closedAt                    pgtype.Timestamptz
	idempotency                 pgtype.Text
	metadata                    []byte
}

func (r *holdRow) dest() []any {
	return []any{
		&r.id, &r.keyID, &r.accountID, &r.amount, &r.budgetIDs, &r.state, &r.expiresAt,
		&r.createdAt, &r.closedAt, &r.charged, &r.overrun, &r.idempotency, &r.metadata,
	}
}

func (r *holdRow) hold() (agentkey.Hold, error) {
	h := agentkey.Hold{
		ID:             r.id,
		KeyID:          r.keyID,
		AccountID:      r.accountID,
		Amount:         agentkey.Money(r.amount),
		BudgetIDs:      r.budgetIDs,
		State:          agentkey.HoldState(r.state),
		ExpiresAt:      r.expiresAt.UTC(),
		CreatedAt:      r.createdAt.UTC(),
		ClosedAt:       fromTimestamptz(r.closedAt),
		Charged:        agentkey.Money(r.charged),
		Overrun:        agentkey.Money(r.overrun),
		IdempotencyKey: r.idempotency.String,
	}
	if err := decodeMetadata(r.metadata, &h.Metadata); err != nil {
		return agentkey.Hold{}, fmt.Errorf("hold %s: %w", r.id, err)
	}
	return h, nil
}

// holdArgs returns h as the arguments of insertHold.
func holdArgs(h agentkey.Hold) ([]any, error) {
	metadata, err := encodeMetadata(h.Metadata)
	if err != nil {
		return nil, err
	}
	return []any{
		h.ID, h.KeyID, h.AccountID, int64(h.Amount), h.BudgetIDs, string(h.State), h.ExpiresAt,
		h.CreatedAt, nullTime(h.ClosedAt), int64(h.Charged), int64(h.Overrun),
		nullString(h.IdempotencyKey), metadata,
	}, nil
}

// collectHolds reads hold rows.
func collectHolds(rows pgx.Rows) ([]agentkey.Hold, error) {
	defer rows.Close()

	holds := []agentkey.Hold{}
	var r holdRow
	for rows.Next() {
		if err := rows.Scan(r.dest()...); err != nil {
			return nil, err
		}
		h, err := r.hold()
		if err != nil {
			return nil, err
		}
		holds = append(holds, h)
	}
	return holds, rows.Err()
}

// accountRow receives the accountColumns of one row.
type accountRow struct {
	id, name  string
	parentID  pgtype.Text
	createdAt time.Time
}

func (r *accountRow) dest() []any {
	return []any{&r.id, &r.parentID, &r.name, &r.createdAt}
}

// account returns the row as an Account without budgets.
func (r *accountRow) account() agentkey.Account {
	return agentkey.Account{
		ID:        r.id,
		ParentID:  r.parentID.String,
		Name:      r.name,
		CreatedAt: r.createdAt.UTC(),
	}
}

// encodeMetadata returns md as JSON text, or nil (NULL) when md is nil.
//
// JSON goes to PostgreSQL as a string, never as []byte: pgx sends a string
// as text, which a json or jsonb column reads in every query exec mode,
// while in the modes that do not prepare (QueryExecModeExec and the simple
// protocol) it sends []byte as bytea, which a json column refuses.
func encodeMetadata(md map[string]string) (any, error) {
	if md == nil {
		return nil, nil
	}
	b, err := json.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	return string(b), nil
}

// decodeMetadata decodes JSON metadata into md, leaving it nil for NULL.
func decodeMetadata(b []byte, md *map[string]string) error {
	if b == nil {
		return nil
	}
	if err := json.Unmarshal(b, md); err != nil {
		return fmt.Errorf("decode metadata: %w", err)
	}
	return nil
}

// nullString returns s, or nil (NULL) when s is empty.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nullTime returns t, or nil (NULL) when t is zero.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// fromTimestamptz returns t in UTC, or the zero time for NULL.
func fromTimestamptz(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}
