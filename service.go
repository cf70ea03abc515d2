package agentkey

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config configures a Service. The zero value is usable.
type Config struct {
	// KeyPrefix starts every key the service mints. Defaults to "ak_".
	KeyPrefix string

	// ValidScopes, when set, is the list of scopes a key may be given;
	// creating a key with another scope is an error. Nil allows any scope.
	ValidScopes []string

	// Location is the time zone in which new budgets' periods start and end.
	// Each budget keeps the zone it was created with. Defaults to UTC.
	Location *time.Location

	// HoldTTL is how long a hold lives unsettled before it is released.
	// Defaults to 5 minutes.
	HoldTTL time.Duration

	// TouchInterval is how often a key's last use is written: last use is
	// tracked in memory and written at most once per key per interval, so a
	// busy key costs no database write per request. Defaults to 1 minute.
	TouchInterval time.Duration

	// Now is the clock. Defaults to time.Now.
	Now func() time.Time

	// Logger receives the service's logs. Defaults to discarding them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.KeyPrefix == "" {
		c.KeyPrefix = "ak_"
	}
	if c.Location == nil {
		c.Location = time.UTC
	}
	if c.TouchInterval == 0 {
		c.TouchInterval = time.Minute
	}
	if c.HoldTTL == 0 {
		c.HoldTTL = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	if strings.ContainsAny(c.KeyPrefix, " \t\r\n") || len(c.KeyPrefix) > 16 {
		return fmt.Errorf("config: KeyPrefix %q must be at most 16 characters without spaces",
			c.KeyPrefix)
	}
	if c.TouchInterval < 0 {
		return errors.New("config: TouchInterval must not be negative")
	}
	if c.HoldTTL < 0 {
		return errors.New("config: HoldTTL must not be negative")
	}
	for _, s := range c.ValidScopes {
		if err := checkScopeSyntax(s); err != nil {
			return fmt.Errorf("config: ValidScopes: %w", err)
		}
	}
	return nil
}

// Log attribute keys.
const (
	logKeyID   = "key_id"
	logSubject = "subject"
	logAmount  = "amount"
	logErr     = "err"
)

// Service enforces budgets, scopes and expiry for API keys. It is safe for
// concurrent use. Close it to write the last-use times still in memory.
type Service struct {
	store Store
	cfg   Config
	log   *slog.Logger

	mu      sync.Mutex
	touched map[string]time.Time // key id -> last use not yet written
	closed  bool

	stop chan struct{}
	done chan struct{}
}

// New returns a Service on store. The store must be migrated.
func New(store Store, cfg Config) (*Service, error) {
	if store == nil {
		return nil, errors.New("agentkey: nil store")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}

	s := &Service{
		store:   store,
		cfg:     cfg,
		log:     cfg.Logger,
		touched: make(map[string]time.Time),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go s.flushLoop()
	return s, nil
}

// Store returns the service's store.
func (s *Service) Store() Store { return s.store }

// Close stops the service's background work and writes pending last-use
// times. It does not close the store. A closed Service still answers every
// call, but no longer records when keys were last used.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	close(s.stop)
	<-s.done
	return s.flush(ctx)
}

// now returns the clock's time as stores keep it.
func (s *Service) now() time.Time {
	return s.cfg.Now().UTC().Truncate(time.Microsecond)
}

// CreateKeyParams describes a new key.
type CreateKeyParams struct {
	// AccountID owns the key. Required.
	AccountID string
	// UserID is the user the key belongs to, if any.
	UserID string
	// DelegatedBy is the person who authorised an agent's key, if any.
	DelegatedBy string
	// Name is a label for people.
	Name string
	// Scopes limit what the key may do. Nil means unlimited.
	Scopes []string
	// Budgets are the key's limits, each with its own period. None means no
	// limit; usage is still metered.
	Budgets []BudgetSpec
	// ExpiresIn, when positive, sets the expiry relative to now.
	ExpiresIn time.Duration
	// ExpiresAt sets an absolute expiry. It wins over ExpiresIn.
	ExpiresAt time.Time
}

// CreatedKey is a new key: its secret, shown once and never stored, and its state.
type CreatedKey struct {
	Secret string `json:"secret"`
	Key    Key    `json:"key"`
}

// CreateKey mints a key. The secret is returned once; only its hash is stored.
func (s *Service) CreateKey(ctx context.Context, p CreateKeyParams) (CreatedKey, error) {
	if p.AccountID == "" {
		return CreatedKey{}, fmt.Errorf("create key: %w: account id is required", ErrInvalidArgument)
	}
	secret, display := newSecret(s.cfg.KeyPrefix)
	rec, err := s.newKeyRecord(newID("key"), identity{
		AccountID: p.AccountID, UserID: p.UserID, DelegatedBy: p.DelegatedBy, Name: p.Name,
		Scopes: p.Scopes, Budgets: p.Budgets, ExpiresIn: p.ExpiresIn, ExpiresAt: p.ExpiresAt,
	})
	if err != nil {
		return CreatedKey{}, fmt.Errorf("create key: %w", err)
	}
	rec.Prefix, rec.Hash = display, HashSecret(secret)

	if err := s.store.CreateKey(ctx, rec, Op{ID: newID("op"), At: rec.CreatedAt}); err != nil {
		return CreatedKey{}, fmt.Errorf("create key: %w", err)
	}
	return CreatedKey{Secret: secret, Key: rec.Key}, nil
}

// identity is what own keys and subjects have in common at creation.
type identity struct {
	AccountID, UserID, DelegatedBy, Name string
	Scopes                               []string
	Budgets                              []BudgetSpec
	ExpiresIn                            time.Duration
	ExpiresAt                            time.Time
}

func (s *Service) newKeyRecord(id string, p identity) (KeyRecord, error) {
	if err := s.checkScopes(p.Scopes); err != nil {
		return KeyRecord{}, err
	}
	now := s.now()
	if p.ExpiresIn < 0 || (!p.ExpiresAt.IsZero() && !p.ExpiresAt.After(now)) {
		return KeyRecord{}, fmt.Errorf("%w: expiry must be in the future", ErrInvalidArgument)
	}

	k := Key{
		ID:          id,
		AccountID:   p.AccountID,
		UserID:      p.UserID,
		DelegatedBy: p.DelegatedBy,
		Name:        p.Name,
		Scopes:      slices.Clone(p.Scopes),
		CreatedAt:   now,
	}
	switch {
	case !p.ExpiresAt.IsZero():
		k.ExpiresAt = p.ExpiresAt.UTC().Truncate(time.Microsecond)
	case p.ExpiresIn > 0:
		k.ExpiresAt = now.Add(p.ExpiresIn)
	}

	specs := p.Budgets
	if len(specs) == 0 {
		specs = []BudgetSpec{{Period: PeriodNone}}
	}
	budgets, err := newBudgets(KeyOwner(id), specs, s.cfg.Location, now)
	if err != nil {
		return KeyRecord{}, err
	}
	for i := range budgets {
		budgets[i].Unlimited = len(p.Budgets) == 0
	}
	k.Budgets = budgets
	return KeyRecord{Key: k}, nil
}

func (s *Service) checkScopes(scopes []string) error {
	for _, sc := range scopes {
		if err := checkScopeSyntax(sc); err != nil {
			return err
		}
		if s.cfg.ValidScopes != nil && sc != ScopeAdmin && !slices.Contains(s.cfg.ValidScopes, sc) {
			return fmt.Errorf("%w: %w %q", ErrInvalidArgument, ErrUnknownScope, truncate(sc, 40))
		}
	}
	return nil
}

// checkScopeSyntax refuses empty, long or odd scopes, which can only be mistakes.
func checkScopeSyntax(sc string) error {
	if sc == "" || len(sc) > 128 || strings.ContainsFunc(sc, func(r rune) bool {
		return r <= ' ' || r == ',' || r > '~'
	}) {
		return fmt.Errorf("%w: scope %q must be 1 to 128 printable characters without spaces or commas",
			ErrInvalidArgument, truncate(sc, 40))
	}
	return nil
}

// Validation is the answer to Validate: the key's state, and a Reason when it
// may not be used.
type Validation struct {
	Key    Key    `json:"key"`
	Reason Reason `json:"reason,omitempty"`
}

// OK reports whether the key may be used.
func (v Validation) OK() bool { return v.Reason == "" }

// Validate returns the state of the key with this secret, or the reason it
// cannot be used: ReasonInvalidKey, ReasonExpired, ReasonRevoked or
// ReasonBudgetExceeded (a budget has no room left). Budgets are shown in the
// period in force now, even when the store has not rolled them yet.
func (s *Service) Validate(ctx context.Context, secret string) (Validation, error) {
	if !wellFormed(secret, s.cfg.KeyPrefix) {
		return Validation{Reason: ReasonInvalidKey}, nil
	}
	return s.validate(ctx, KeyQuery{Hash: HashSecret(secret)}, true)
}

// ValidateBySubject is Validate for an external subject.
func (s *Service) ValidateBySubject(ctx context.Context, subject string) (Validation, error) {
	if subject == "" {
		return Validation{Reason: ReasonInvalidKey}, nil
	}
	return s.validate(ctx, KeyQuery{Subject: subject}, true)
}

// ValidateByID is Validate for a key or subject known by its id.
func (s *Service) ValidateByID(ctx context.Context, id string) (Validation, error) {
	if id == "" {
		return Validation{Reason: ReasonInvalidKey}, nil
	}
	return s.validate(ctx, KeyQuery{ID: id}, true)
}

// validate reads and judges a key. With retry set, a budget that is exhausted
// because of expired holds gets them released and the key read again.
func (s *Service) validate(ctx context.Context, q KeyQuery, retry bool) (Validation, error) {
	k, err := s.store.Key(ctx, q)
	if errors.Is(err, ErrNotFound) {
		return Validation{Reason: ReasonInvalidKey}, nil
	}
	if err != nil {
		return Validation{}, fmt.Errorf("validate: %w", err)
	}

	now := s.now()
	switch {
	case k.Revoked():
		return Validation{Key: k, Reason: ReasonRevoked}, nil
	case k.Expired(now):
		return Validation{Key: k, Reason: ReasonExpired}, nil
	}
	if k, err = k.rolled(now); err != nil {
		return Validation{}, fmt.Errorf("validate %s: %w", k.ID, err)
	}
	s.touch(k.ID, now)
	if b := k.blocking(); b != nil {
		if retry && s.sweepExhausted(ctx, k.Budgets) {
			return s.validate(ctx, q, false)
		}
		return Validation{Key: k, Reason: ReasonBudgetExceeded}, nil
	}
	return Validation{Key: k}, nil
}

// Revoke revokes a key or subject. With accountID set, only a key owned by
// that account can be revoked; any other id is ErrNotFound, so that one account
// cannot learn another's key ids. Revoking a revoked key changes nothing.
func (s *Service) Revoke(ctx context.Context, keyID, accountID string) (Key, error) {
	k, err := s.store.RevokeKey(ctx, keyID, accountID, s.now())
	if err != nil {
		return Key{}, fmt.Errorf("revoke %s: %w", truncate(keyID, 40), err)
	}
	return k, nil
}

// TrackUsage charges cost to the key with this secret, after the billable
// work. The charge is all or nothing across the key's budgets and exact to the
// micro-unit. It is refused with ReasonBudgetExceeded if it would pass a limit,
// ReasonInvalidKey if the key is unknown, revoked or expired, and
// ReasonInvalidCost if cost is negative. A zero cost charges nothing and
// reports the key's state.
func (s *Service) TrackUsage(ctx context.Context, secret string, cost Money, opts ...ChargeOption,
) (ChargeResult, error) {
	if !wellFormed(secret, s.cfg.KeyPrefix) {
		return ChargeResult{Reason: ReasonInvalidKey}, nil
	}
	return s.charge(ctx, ChargeRequest{KeyHash: HashSecret(secret), Amount: cost}, opts)
}

// TrackUsageBySubject is TrackUsage for an external subject.
func (s *Service) TrackUsageBySubject(ctx context.Context, subject string, cost Money,
	opts ...ChargeOption,
) (ChargeResult, error) {
	if subject == "" {
		return ChargeResult{Reason: ReasonInvalidKey}, nil
	}
	k, err := s.store.Key(ctx, KeyQuery{Subject: subject})
	if errors.Is(err, ErrNotFound) {
		return ChargeResult{Reason: ReasonInvalidKey}, nil
	}
	if err != nil {
		return ChargeResult{}, fmt.Errorf("track usage of subject: %w", err)
	}
	return s.ChargeKey(ctx, k.ID, cost, opts...)
}

// ChargeKey is TrackUsage for a key or subject known by its id, as the
// middleware knows it.
func (s *Service) ChargeKey(ctx context.Context, keyID string, cost Money, opts ...ChargeOption,
) (ChargeResult, error) {
	if keyID == "" {
		return ChargeResult{Reason: ReasonInvalidKey}, nil
	}
	return s.charge(ctx, ChargeRequest{KeyID: keyID, Amount: cost}, opts)
}

func (s *Service) charge(ctx context.Context, req ChargeRequest, opts []ChargeOption,
) (ChargeResult, error) {
	o := applyOptions(opts)
	req.OpID, req.Now = newID("op"), s.now()
	req.IdempotencyKey, req.Metadata = o.idempotencyKey, o.metadata
	if req.Amount < 0 {
		return ChargeResult{Reason: ReasonInvalidCost}, nil
	}
	if err := checkIdempotencyKey(req.IdempotencyKey); err != nil {
		return ChargeResult{}, fmt.Errorf("charge: %w", err)
	}

	res, err := s.store.Charge(ctx, req)
	if err == nil && s.releaseExpired(ctx, res.Reason, res.ExpiredHoldsOn, res.Key.Budgets) &&
		res.Reason == ReasonBudgetExceeded {
		res, err = s.store.Charge(ctx, req)
	}
	if err != nil {
		return ChargeResult{}, fmt.Errorf("charge: %w", err)
	}
	if res.Replayed && res.Charged != req.Amount {
		return ChargeResult{}, fmt.Errorf("charge: %w: first charged %s, now %s",
			ErrIdempotencyKeyReused, res.Charged, req.Amount)
	}
	if res.Key.ID != "" {
		s.touch(res.Key.ID, req.Now)
	}
	if res.OK() && !res.Replayed && req.Amount > 0 {
		s.log.DebugContext(ctx, "charged", logKeyID, res.Key.ID, logAmount, req.Amount.String())
	}
	return res, nil
}

// checkIdempotencyKey refuses an idempotency key too long to store.
func checkIdempotencyKey(k string) error {
	if len(k) > 255 {
		return fmt.Errorf("%w: idempotency key longer than 255 bytes", ErrInvalidArgument)
	}
	return nil
}

// SubjectParams describe the row created the first time a subject is seen.
type SubjectParams struct {
	// AccountID owns the subject's row. Defaults to the subject itself.
	AccountID   string
	UserID      string
	DelegatedBy string
	Name        string
	// Scopes limit what the subject may do. Nil means unlimited.
	Scopes []string
	// Budgets are the subject's limits. None means no limit.
	Budgets []BudgetSpec
	// ExpiresIn, when positive, ends the subject's access that long after it
	// was first seen.
	ExpiresIn time.Duration
}

// EnsureSubject returns the row of an external subject (such as a Clerk user_
// or org_ id), creating it from p on first sight. It is idempotent and safe
// under concurrency: many first calls for one subject create one row, and p is
// ignored once the row exists. It reports whether this call created the row.
func (s *Service) EnsureSubject(ctx context.Context, subject string, p SubjectParams,
) (Key, bool, error) {
	if subject == "" || len(subject) > 255 {
		return Key{}, false, fmt.Errorf("ensure subject: %w: subject must be 1 to 255 bytes",
			ErrInvalidArgument)
	}
	if k, err := s.store.Key(ctx, KeyQuery{Subject: subject}); err == nil {
		return k, false, nil
	} else if !errors.Is(err, ErrNotFound) {
		return Key{}, false, fmt.Errorf("ensure subject: %w", err)
	}

	if p.AccountID == "" {
		p.AccountID = subject
	}
	rec, err := s.newKeyRecord(newID("sub"), identity{
		AccountID: p.AccountID, UserID: p.UserID, DelegatedBy: p.DelegatedBy, Name: p.Name,
		Scopes: p.Scopes, Budgets: p.Budgets, ExpiresIn: p.ExpiresIn,
	})
	if err != nil {
		return Key{}, false, fmt.Errorf("ensure subject: %w", err)
	}
	rec.Subject = subject

	k, created, err := s.store.EnsureSubject(ctx, rec, Op{ID: newID("op"), At: rec.CreatedAt})
	if err != nil {
		return Key{}, false, fmt.Errorf("ensure subject: %w", err)
	}
	if created {
		s.log.InfoContext(ctx, "subject provisioned", logSubject, subject, logKeyID, k.ID)
	}
	return k, created, nil
}

// Adjust debits (a positive amount) or credits (a negative amount) one budget
// by hand, with a note saying why. It is written to the ledger like a charge.
func (s *Service) Adjust(ctx context.Context, budgetID string, amount Money, note string,
) (Budget, error) {
	if amount == 0 {
		return Budget{}, fmt.Errorf("adjust: %w: amount must not be zero", ErrInvalidArgument)
	}
	b, err := s.store.Adjust(ctx, AdjustRequest{
		OpID: newID("op"), BudgetID: budgetID, Amount: amount, Note: note, Now: s.now(),
	})
	if err != nil {
		return Budget{}, fmt.Errorf("adjust %s: %w", truncate(budgetID, 40), err)
	}
	return b, nil
}

// Ledger returns ledger entries, oldest first.
func (s *Service) Ledger(ctx context.Context, f LedgerFilter) ([]Entry, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 10_000)
	for _, k := range f.Kinds {
		if _, err := ParseEntryKind(string(k)); err != nil {
			return nil, fmt.Errorf("ledger: %w: %w", ErrInvalidArgument, err)
		}
	}
	entries, err := s.store.Ledger(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return entries, nil
}

// Audit checks every budget of the tree, of accounts, keys and subjects alike:
// it recomputes the used amount of its current period from the ledger, and
// its held amount both from the ledger and from the open holds, and reports
// the budgets where any of these differ from the stored amounts. The ledger
// is the truth; the running totals are a cache of it.
func (s *Service) Audit(ctx context.Context) (AuditReport, error) {
	totals, err := s.store.BudgetTotals(ctx)
	if err != nil {
		return AuditReport{}, fmt.Errorf("audit: %w", err)
	}
	report := AuditReport{Budgets: len(totals), Drifts: []Drift{}}
	for _, t := range totals {
		b := t.Budget
		if b.Used != t.LedgerUsed || b.Held != t.LedgerHeld || b.Held != t.OpenHolds {
			report.Drifts = append(report.Drifts, Drift{Budget: b, LedgerUsed: t.LedgerUsed,
				LedgerHeld: t.LedgerHeld, OpenHolds: t.OpenHolds})
		}
	}
	return report, nil
}

// touch records a key's use, to be written by the next flush.
func (s *Service) touch(id string, at time.Time) {
	s.mu.Lock()
	if !s.closed {
		s.touched[id] = at
	}
	s.mu.Unlock()
}

func (s *Service) flushLoop() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.TouchInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := s.flush(ctx); err != nil {
				s.log.WarnContext(ctx, "write last use of keys", logErr, err)
			}
			cancel()
		}
	}
}

// flush writes the pending last-use times in one store call. On failure the
// times are dropped: last use is informational and the next use records it.
func (s *Service) flush(ctx context.Context) error {
	s.mu.Lock()
	pending := s.touched
	s.touched = make(map[string]time.Time)
	s.mu.Unlock()

	if len(pending) == 0 {
		return nil
	}
	return s.store.TouchKeys(ctx, pending)
}
