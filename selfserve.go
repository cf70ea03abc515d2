package agentkey

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SelfServeOptions configure Service.SelfServe.
type SelfServeOptions struct {
	// SignupScopes are the scopes of every key that POST /signup mints; a
	// caller cannot choose them. Defaults to none: the key passes no scope
	// check. (A signup key never gets the nil scopes that mean every scope.)
	SignupScopes []string

	// SignupBudgets are the limits of the fresh account each signup gets.
	// They are put on the account, not on the key, so that every key minted
	// from the signup key with POST /sdk-keys shares them: minting more keys
	// cannot multiply what one signup may spend. Defaults (nil) to $1 a day;
	// a non-nil empty slice sets no limit, and usage is still metered.
	SignupBudgets []BudgetSpec

	// SignupExpiry is how long a signup key lives. Defaults to 24 hours.
	SignupExpiry time.Duration

	// SignupRate is how many signups one client address may make per hour;
	// more are refused with 429 and Retry-After. Defaults to 10; a negative
	// value removes the limit. Each process counts on its own: servers
	// sharing a database allow that many each.
	SignupRate int

	// ClientAddr returns the address a signup counts against. Defaults to
	// the host of r.RemoteAddr, an IPv6 address standing for its whole /64
	// (one host usually has that many). Behind a reverse proxy, set it to
	// read the address the proxy reports, such as X-Forwarded-For, and make
	// sure clients cannot set that header themselves.
	ClientAddr func(*http.Request) string

	// Disabled turns the routes off: the handler answers 404 to everything.
	Disabled bool
}

const (
	// defaultSignupLimit is the daily limit of a signup's account when
	// SelfServeOptions.SignupBudgets is nil.
	defaultSignupLimit  = Dollar
	defaultSignupExpiry = 24 * time.Hour
	defaultSignupRate   = 10
	// maxSelfServeBody bounds a self-serve request body.
	maxSelfServeBody = 64 << 10
)

// Log attribute keys of the self-serve routes.
const (
	logAccountID   = "account_id"
	logDelegatedBy = "delegated_by"
	logRevokedBy   = "revoked_by"
)

// SelfServe returns the reference's self-serve routes as an http.Handler:
//
//	POST   /signup         unauthenticated: a fresh account and a key on it
//	GET    /sdk-keys/me    the calling key (Authorization: Bearer ak_...) describes itself
//	POST   /sdk-keys       the calling key mints another on its own account, attenuated
//	DELETE /sdk-keys/{id}  the calling key revokes a key of its own account
//
// POST /signup takes {"email": ..., "name": ...}, both optional, and answers
// 201 with the new key's secret, shown once, as "key", beside its id,
// account_id, scopes, expires_at and budgets. Every signup gets a fresh
// account, with or without an email: the email is not verified, so sharing an
// account between the signups that give one email would let anyone act on
// someone else's keys. The email is recorded as the key's UserID, for the
// operator's information only. The key gets opts.SignupScopes, never scopes
// the caller asks for, and expires after opts.SignupExpiry.
//
// POST /sdk-keys takes {"name", "scopes", "budgets": [{"limit", "period"}],
// "expires_in" or "expires_at"}, all optional, and mints a key on the
// caller's account, delegated by the caller, that can never do more than the
// caller:
//
//   - scopes: only scopes the caller has (a caller with every scope, or with
//     admin, may grant any); none given means the caller's own;
//   - budgets: each limit no larger than the caller's limit for that period,
//     and the caller's own limits for the periods not given;
//   - expiry: no later than the caller's; none given means the caller's.
//
// A request asking for more is refused with 403. Note that each minted key
// has budgets of its own: to cap what all the keys of an account spend
// together, give the account a budget, as signups have.
//
// DELETE /sdk-keys/{id} revokes a key of the caller's account, the caller
// included; any other id is 404, so that an account cannot learn another's
// key ids. It takes no body: anything but an empty one or {} is 400, and
// nothing is revoked. A revoked or expired caller is refused with 401; one that is over
// budget may still use these routes.
//
// Bad input is refused with 400 {"error": "invalid_request", "message": ...},
// a body over 64 KiB with 413, and nothing is written. Mount the handler at
// the root of a mux, or strip a prefix before it. SelfServe panics if opts has
// scopes or budgets that the service would refuse.
func (s *Service) SelfServe(opts SelfServeOptions) http.Handler {
	if opts.Disabled {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusNotFound, requestError{Error: "not_found"})
		})
	}
	h, err := s.newSelfServe(opts)
	if err != nil {
		panic("agentkey: SelfServe: " + err.Error())
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /signup", h.signup)
	mux.HandleFunc("GET /sdk-keys/me", h.me)
	mux.HandleFunc("POST /sdk-keys", h.mint)
	mux.HandleFunc("DELETE /sdk-keys/{id}", h.revoke)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, requestError{Error: "not_found"})
	})
	return mux
}

// selfServe is the state behind the self-serve routes.
type selfServe struct {
	svc     *Service
	opts    SelfServeOptions
	limiter *rateLimiter
}

func (s *Service) newSelfServe(opts SelfServeOptions) (*selfServe, error) {
	if opts.SignupScopes == nil {
		opts.SignupScopes = []string{}
	}
	if err := s.checkScopes(opts.SignupScopes); err != nil {
		return nil, fmt.Errorf("SignupScopes: %w", err)
	}
	if opts.SignupBudgets == nil {
		opts.SignupBudgets = []BudgetSpec{{Limit: defaultSignupLimit, Period: PeriodDay}}
	}
	for _, spec := range opts.SignupBudgets {
		if _, err := newBudget("", OwnerAccount, "", spec, s.cfg.Location, s.now()); err != nil {
			return nil, fmt.Errorf("SignupBudgets: %w", err)
		}
	}
	if opts.SignupExpiry <= 0 {
		opts.SignupExpiry = defaultSignupExpiry
	}
	if opts.SignupRate == 0 {
		opts.SignupRate = defaultSignupRate
	}
	if opts.ClientAddr == nil {
		opts.ClientAddr = remoteHost
	}

	h := &selfServe{svc: s, opts: opts}
	if opts.SignupRate > 0 {
		h.limiter = newRateLimiter(opts.SignupRate, time.Hour)
	}
	return h, nil
}

// signupRequest is the body of POST /signup.
type signupRequest struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

// mintedKey is a new key as the self-serve routes answer it: its secret,
// shown once, beside its state.
type mintedKey struct {
	Secret string `json:"key"`
	Key
}

func (h *selfServe) signup(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req signupRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Email != "" && !plausibleEmail(req.Email) {
		writeInvalid(w, "email must be an address such as agent@example.com, "+
			"at most 254 characters")
		return
	}
	if err := checkLabel("name", req.Name); err != nil {
		writeInvalid(w, err.Error())
		return
	}

	if h.limiter != nil {
		if ok, wait := h.limiter.allow(h.opts.ClientAddr(r), h.svc.cfg.Now()); !ok {
			secs := int64((wait + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			writeJSON(w, http.StatusTooManyRequests, requestError{Error: "rate_limited",
				Message: "too many signups from this address; retry later"})
			return
		}
	}

	acct, err := h.svc.CreateAccount(ctx, AccountParams{Name: req.Name,
		Budgets: h.opts.SignupBudgets})
	if err != nil {
		h.fault(w, r, "create signup account", err)
		return
	}
	ck, err := h.svc.CreateKey(ctx, CreateKeyParams{
		AccountID: acct.ID,
		UserID:    req.Email,
		Name:      req.Name,
		Scopes:    h.opts.SignupScopes,
		ExpiresIn: h.opts.SignupExpiry,
	})
	if err != nil {
		h.fault(w, r, "create signup key", err)
		return
	}

	// The key's budgets as Validate shows them: its own meter, then its
	// account's limits.
	key := ck.Key
	key.Budgets = append(key.Budgets, acct.Budgets...)
	h.svc.log.InfoContext(ctx, "signup", logKeyID, key.ID, logAccountID, acct.ID)
	writeJSON(w, http.StatusCreated, mintedKey{Secret: ck.Secret, Key: key})
}

// caller authenticates the request's key, answering the request itself
// when it cannot be used.
func (h *selfServe) caller(w http.ResponseWriter, r *http.Request) (Key, bool) {
	secret, ok := ParseBearer(r.Header.Get("Authorization"))
	if !ok {
		WriteMissingKey(w)
		return Key{}, false
	}
	v, err := h.svc.Validate(r.Context(), secret)
	if err != nil {
		h.svc.log.ErrorContext(r.Context(), "validate key", logErr, err)
		WriteUnavailable(w)
		return Key{}, false
	}
	if v.Reason.KeyInvalid() {
		WriteDenial(w, Denial{Reason: v.Reason, Key: &v.Key})
		return Key{}, false
	}
	return v.Key, true
}

// introspection is the answer of GET /sdk-keys/me.
type introspection struct {
	Key
	// Remaining is the least any limited budget on the key's path has left;
	// absent when none has a limit.
	Remaining *Money `json:"remaining,omitempty"`
}

func (h *selfServe) me(w http.ResponseWriter, r *http.Request) {
	key, ok := h.caller(w, r)
	if !ok {
		return
	}
	out := introspection{Key: key}
	if rem, limited := key.Remaining(); limited {
		out.Remaining = &rem
	}
	writeJSON(w, http.StatusOK, out)
}

// mintRequest is the body of POST /sdk-keys.
type mintRequest struct {
	Name      string        `json:"name"`
	Scopes    []string      `json:"scopes"`
	Budgets   []budgetInput `json:"budgets"`
	ExpiresIn string        `json:"expires_in"`
	ExpiresAt string        `json:"expires_at"`
}

// budgetInput is a budget as a request body gives it.
type budgetInput struct {
	Limit  string `json:"limit"`
	Period string `json:"period"`
}

func (h *selfServe) mint(w http.ResponseWriter, r *http.Request) {
	caller, ok := h.caller(w, r)
	if !ok {
		return
	}
	var req mintRequest
	if !decodeBody(w, r, &req) {
		return
	}
	p, msg, forbidden := h.attenuate(caller, req)
	switch {
	case forbidden:
		writeJSON(w, http.StatusForbidden, requestError{Error: "forbidden", Message: msg})
		return
	case msg != "":
		writeInvalid(w, msg)
		return
	}

	ck, err := h.svc.CreateKey(r.Context(), p)
	if errors.Is(err, ErrInvalidArgument) {
		writeInvalid(w, trimSentinel(errors.New(strings.TrimPrefix(err.Error(), "create key: "))))
		return
	}
	if err != nil {
		h.fault(w, r, "mint key", err)
		return
	}
	h.svc.log.InfoContext(r.Context(), "key minted", logKeyID, ck.Key.ID, logDelegatedBy, caller.ID)
	writeJSON(w, http.StatusCreated, mintedKey{Secret: ck.Secret, Key: ck.Key})
}

// attenuate turns a mint request into the parameters of a key that can do
// no more than caller. It returns a message naming the field for bad input,
// with forbidden set when the input is well-formed but asks for more than the
// caller has.
func (h *selfServe) attenuate(caller Key, req mintRequest) (CreateKeyParams, string, bool) {
	p := CreateKeyParams{
		AccountID:   caller.AccountID,
		UserID:      caller.UserID,
		DelegatedBy: caller.ID,
		Name:        req.Name,
		Scopes:      slices.Clone(caller.Scopes),
	}
	if err := checkLabel("name", req.Name); err != nil {
		return p, err.Error(), false
	}

	if req.Scopes != nil {
		for i, sc := range req.Scopes {
			if err := checkScopeSyntax(sc); err != nil {
				return p, fmt.Sprintf("scopes[%d]: %v", i, trimSentinel(err)), false
			}
			if !caller.HasScope(sc) {
				msg := fmt.Sprintf("scopes[%d]: %q is not a scope of the calling key", i, sc)
				return p, msg, true
			}
		}
		p.Scopes = slices.Clone(req.Scopes)
	}

	budgets, msg, forbidden := attenuateBudgets(caller, req.Budgets)
	if msg != "" {
		return p, msg, forbidden
	}
	p.Budgets = budgets

	expiresAt, msg, forbidden := h.attenuateExpiry(caller, req)
	if msg != "" {
		return p, msg, forbidden
	}
	p.ExpiresAt = expiresAt
	return p, "", false
}

// attenuateBudgets returns the budgets of a minted key: those requested,
// each no larger than what the caller's path allows for its period, and the
// caller's own limits for the periods not requested.
func attenuateBudgets(caller Key, in []budgetInput) ([]BudgetSpec, string, bool) {
	// The caller's limit for a period is the least limit on its whole path:
	// its own budgets and those of its accounts.
	limits := map[Period]Money{}
	for _, b := range caller.Budgets {
		if b.Unlimited {
			continue
		}
		if l, ok := limits[b.Period]; !ok || b.Limit < l {
			limits[b.Period] = b.Limit
		}
	}

	var out []BudgetSpec
	seen := map[Period]bool{}
	for i, b := range in {
		if b.Limit == "" {
			return nil, fmt.Sprintf("budgets[%d].limit is required", i), false
		}
		limit, err := ParseMoney(b.Limit)
		if err != nil {
			return nil, fmt.Sprintf("budgets[%d].limit: %v", i, err), false
		}
		period, err := ParsePeriod(b.Period)
		if err != nil {
			return nil, fmt.Sprintf("budgets[%d].period: %v", i, err), false
		}
		if seen[period] {
			msg := fmt.Sprintf("budgets[%d].period: two budgets with period %s", i, period)
			return nil, msg, false
		}
		seen[period] = true
		if l, ok := limits[period]; ok && limit > l {
			msg := fmt.Sprintf("budgets[%d].limit: %s is above the calling key's %s limit of %s",
				i, limit, period, l)
			return nil, msg, true
		}
		out = append(out, BudgetSpec{Limit: limit, Period: period})
	}

	for _, b := range caller.Budgets {
		if b.OwnerKind == OwnerKey && !b.Unlimited && !seen[b.Period] {
			seen[b.Period] = true
			out = append(out, BudgetSpec{Limit: b.Limit, Period: b.Period})
		}
	}
	return out, "", false
}

// attenuateExpiry returns the expiry of a minted key: the one requested, no
// later than the caller's, or the caller's.
func (h *selfServe) attenuateExpiry(caller Key, req mintRequest) (time.Time, string, bool) {
	var at time.Time
	switch {
	case req.ExpiresIn != "" && req.ExpiresAt != "":
		return at, "give expires_in or expires_at, not both", false
	case req.ExpiresIn != "":
		d, err := ParseDuration(req.ExpiresIn)
		if err != nil {
			return at, fmt.Sprintf("expires_in: %v", err), false
		}
		at = h.svc.now().Add(d)
	case req.ExpiresAt != "":
		t, err := time.Parse(time.RFC3339, req.ExpiresAt)
		if err != nil {
			msg := fmt.Sprintf("expires_at %q: want an RFC 3339 time such as "+
				"2030-01-02T15:04:05Z", truncate(req.ExpiresAt, 40))
			return at, msg, false
		}
		if !t.After(h.svc.now()) {
			return at, "expires_at must be in the future", false
		}
		at = t.UTC().Truncate(time.Microsecond)
	}

	switch {
	case caller.ExpiresAt.IsZero():
		return at, "", false
	case at.IsZero():
		return caller.ExpiresAt, "", false
	case at.After(caller.ExpiresAt):
		return at, fmt.Sprintf("expiry %s is after the calling key's, %s",
			at.Format(time.RFC3339), caller.ExpiresAt.Format(time.RFC3339)), true
	}
	return at, "", false
}

func (h *selfServe) revoke(w http.ResponseWriter, r *http.Request) {
	if !noBody(w, r) {
		return
	}
	caller, ok := h.caller(w, r)
	if !ok {
		return
	}
	k, err := h.svc.Revoke(r.Context(), r.PathValue("id"), caller.AccountID)
	if errors.Is(err, ErrNotFound) {
		writeJSON(w, http.StatusNotFound, requestError{Error: "not_found",
			Message: "no key with this id in the calling key's account"})
		return
	}
	if err != nil {
		h.fault(w, r, "revoke key", err)
		return
	}
	h.svc.log.InfoContext(r.Context(), "key revoked", logKeyID, k.ID, logRevokedBy, caller.ID)
	writeJSON(w, http.StatusOK, k)
}

// fault answers a request that failed for a reason of the server's, logging
// the detail and showing none of it.
func (h *selfServe) fault(w http.ResponseWriter, r *http.Request, what string, err error) {
	h.svc.log.ErrorContext(r.Context(), what, logErr, err)
	writeJSON(w, http.StatusInternalServerError, requestError{Error: "internal_error"})
}

// requestError is the body of a refused self-serve request.
type requestError struct {
	Error   string `json:"error"`
	Message string `json:"message,omitempty"`
}

func writeInvalid(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, requestError{Error: "invalid_request", Message: msg})
}

// decodeBody decodes the request's JSON body into v, refusing unknown
// fields, trailing data and bodies over maxSelfServeBody. An empty body is
// an empty object. On failure it answers the request and returns false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.ContentLength > maxSelfServeBody {
		writeTooLarge(w)
		return false
	}
	body := http.MaxBytesReader(w, r.Body, maxSelfServeBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()

	err := dec.Decode(v)
	if err == nil {
		if _, err = dec.Token(); err == io.EOF {
			return true
		}
		if err == nil {
			err = errors.New("unexpected data after the JSON object")
		}
	} else if err == io.EOF {
		return true
	}

	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeTooLarge(w)
		return false
	}
	writeInvalid(w, describeJSONError(err))
	return false
}

// noBody refuses a body on a route that takes none: only an empty body,
// whitespace or {} pass, since a client that sent more meant something, and
// acting on a request that was not understood is worse than refusing it. On
// failure it answers the request and returns false.
func noBody(w http.ResponseWriter, r *http.Request) bool {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSelfServeBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeTooLarge(w)
		return false
	case err != nil:
		writeInvalid(w, "the body could not be read")
		return false
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return true
	}
	if raw[0] != '{' {
		writeInvalid(w, "this route takes no body: send none, or {}")
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(raw))
	var none struct{}
	return decodeBody(w, r, &none) // names an unknown field
}

func writeTooLarge(w http.ResponseWriter) {
	writeJSON(w, http.StatusRequestEntityTooLarge, requestError{Error: "request_too_large",
		Message: fmt.Sprintf("the body must be at most %d bytes", maxSelfServeBody)})
}

// describeJSONError turns an error from decoding a request's JSON body into
// a message for the client that names the offending field when it can.
func describeJSONError(err error) string {
	var (
		syntax  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d: %s", syntax.Offset,
			strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return fmt.Sprintf("the body must be a JSON object, got %s", typeErr.Value)
		}
		want := jsonKind(typeErr.Type.Kind().String())
		return fmt.Sprintf("%s: want a %s, got %s", typeErr.Field, want, typeErr.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: the body ends too early"
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	return truncate(msg, 200)
}

// jsonKind names a Go kind as the JSON value that decodes into it.
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "slice", "array":
		return "list"
	case "map", "struct":
		return "object"
	case "bool":
		return "boolean"
	}
	return "number"
}

// trimSentinel drops the "invalid argument: " that the service's errors
// begin with, which says nothing to a client already told its request is
// invalid.
func trimSentinel(err error) string {
	return strings.TrimPrefix(err.Error(), ErrInvalidArgument.Error()+": ")
}

// checkLabel refuses a name that is long or has control characters.
func checkLabel(field, s string) error {
	if len(s) > 200 || strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("%s must be at most 200 characters without control characters", field)
	}
	return nil
}

// plausibleEmail reports whether s looks like an email address. It is not
// verified: the address is only recorded.
func plausibleEmail(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	return ok && len(s) <= 254 && local != "" && domain != "" && !strings.Contains(domain, "@") &&
		!strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// remoteHost is the default SelfServeOptions.ClientAddr: the host of
// r.RemoteAddr, with an IPv6 address standing for its /64.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}

// rateLimiter allows each address a burst of n events and then one every
// per/n, keeping for each address only the time at which its allowance is
// whole again (the generic cell rate algorithm, GCRA). An address whose
// allowance is whole is forgotten.
type rateLimiter struct {
	interval  time.Duration // per / n
	tolerance time.Duration // how far ahead of now an address may run: (n-1) * interval

	mu    sync.Mutex
	full  map[string]time.Time // address -> when its allowance is whole again
	calls int
}

func newRateLimiter(n int, per time.Duration) *rateLimiter {
	interval := per / time.Duration(n)
	return &rateLimiter{interval: interval, tolerance: per - interval, full: map[string]time.Time{}}
}

// allow reports whether addr may have one more event at now, and otherwise
// how long it must wait.
func (l *rateLimiter) allow(addr string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()

	l.calls++
	if l.calls%1024 == 0 {
		for a, t := range l.full {
			if !t.After(now) {
				delete(l.full, a)
			}
		}
	}

	t := l.full[addr]
	if t.Before(now) {
		t = now
	}
	if wait := t.Sub(now) - l.tolerance; wait > 0 {
		return false, wait
	}
	l.full[addr] = t.Add(l.interval)
	return true, 0
}
