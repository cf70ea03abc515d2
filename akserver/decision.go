package akserver

import (
	"context"
	"net/http"
	"time"

	"github.com/agentkey-go/agentkey"
)

// The credential types of the decision API.
const (
	credentialAgentKey    = "agentkey"
	credentialClerkAPIKey = "clerk_api_key"
	credentialClerkM2M    = "clerk_m2m"
)

// authorizeRequest is the body of POST /v1/authorize.
type authorizeRequest struct {
	// Credential is what the end user presented: an agentkey key, a Clerk
	// API key or a Clerk M2M token.
	Credential string `json:"credential"`
	// CredentialType is agentkey (the default), clerk_api_key or clerk_m2m.
	CredentialType string `json:"credential_type"`
	// Scope, when set, is required of the credential.
	Scope string `json:"scope"`
	// Estimate, a decimal amount, is held against every budget on the
	// key's path when given.
	Estimate string `json:"estimate"`
	// HoldTTL is how long the hold lives unsettled, such as "90s" or "10m";
	// it needs an estimate.
	HoldTTL string `json:"hold_ttl"`
	// IdempotencyKey makes the hold happen once for retries of one request;
	// it needs an estimate.
	IdempotencyKey string `json:"idempotency_key"`
	// Metadata is recorded on the hold's ledger entries; without an
	// estimate there are none, and it is not kept.
	Metadata map[string]string `json:"metadata"`
}

// decisionAnswer is the answer of POST /v1/authorize and POST /v1/charge:
// always 200, with the status that the middleware would have answered the
// end user in Status.
type decisionAnswer struct {
	// Allow is set when the request may go ahead (authorize) or the amount
	// was charged (charge).
	Allow bool `json:"allow"`
	// Status is 200, or 401, 403 or 429 for a denial.
	Status int `json:"status"`
	// Error is the middleware's error for the end user: Missing API key,
	// invalid_key, insufficient_scope or budget_exceeded.
	Error string `json:"error,omitempty"`
	// Reason says why: invalid_key, expired, revoked, insufficient_scope or
	// budget_exceeded.
	Reason agentkey.Reason `json:"reason,omitempty"`
	// Required and Available are the required scope and the credential's
	// scopes, on insufficient_scope.
	Required  string   `json:"required,omitempty"`
	Available []string `json:"available,omitzero"`
	// RetryAfter is how many seconds until the refusing budget resets, on
	// budget_exceeded with a periodic budget.
	RetryAfter int64 `json:"retry_after,omitempty"`

	// Key is the credential's key or subject row, with the budgets of its
	// whole path after the decision.
	Key *agentkey.Key `json:"key,omitempty"`
	// Hold is the hold made for the estimate.
	Hold *agentkey.Hold `json:"hold,omitempty"`
	// Budget is the budget that refused, on budget_exceeded.
	Budget *agentkey.Budget `json:"budget,omitempty"`

	// Charged, OpID and Replayed describe a charge.
	Charged  *agentkey.Money `json:"charged,omitempty"`
	OpID     string          `json:"op_id,omitempty"`
	Replayed bool            `json:"replayed,omitempty"`
}

// allow is the answer for a credential that may go ahead.
func allow(key agentkey.Key) decisionAnswer {
	return decisionAnswer{Allow: true, Status: http.StatusOK, Key: &key}
}

// deny is the answer for a refusal, as the middleware's table has it. key
// may be empty, and refused nil.
func deny(reason agentkey.Reason, key agentkey.Key, scope string, refused *agentkey.Budget,
) decisionAnswer {
	a := decisionAnswer{Reason: reason, Error: string(reason)}
	if key.ID != "" {
		a.Key = &key
	}
	switch {
	case reason.KeyInvalid():
		a.Status, a.Error = http.StatusUnauthorized, string(agentkey.ReasonInvalidKey)

	case reason == agentkey.ReasonInsufficientScope:
		a.Status, a.Required, a.Available = http.StatusForbidden, scope, []string{}
		if key.Scopes != nil {
			a.Available = key.Scopes
		}

	case reason == agentkey.ReasonBudgetExceeded:
		a.Status = http.StatusTooManyRequests
		if refused == nil {
			for i := range key.Budgets {
				if key.Budgets[i].Exhausted() {
					refused = &key.Budgets[i]
					break
				}
			}
		}
		a.Budget = refused
		if refused != nil && !refused.ResetAt.IsZero() {
			a.RetryAfter = int64(max(1, (time.Until(refused.ResetAt)+time.Second-1)/time.Second))
		}

	default:
		a.Status = http.StatusBadRequest
	}
	return a
}

// reasonMissing labels the denials of a request without a credential in
// the decisions metric.
const reasonMissing agentkey.Reason = "missing_key"

// missingCredential is the answer when the end user presented nothing.
func missingCredential() decisionAnswer {
	return decisionAnswer{Status: http.StatusUnauthorized, Error: "Missing API key"}
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var req authorizeRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := s.checkCredentialType(req.CredentialType); err != nil {
		return err
	}
	if len(req.Scope) > 128 {
		return invalid("scope must be at most 128 characters")
	}
	var opts []agentkey.ChargeOption
	estimate, err := s.holdOptions(req, &opts)
	if err != nil {
		return err
	}

	if req.Credential == "" {
		s.metrics.decision("authorize", reasonMissing)
		writeJSON(w, http.StatusOK, missingCredential())
		return nil
	}
	v, err := s.resolve(ctx, req.CredentialType, req.Credential)
	if err != nil {
		return err
	}
	if reason := v.Check(req.Scope); reason != "" {
		s.metrics.decision("authorize", reason)
		writeJSON(w, http.StatusOK, deny(reason, v.Key, req.Scope, nil))
		return nil
	}
	if estimate == nil {
		s.metrics.decision("authorize", "")
		writeJSON(w, http.StatusOK, allow(v.Key))
		return nil
	}

	res, err := s.svc.Reserve(ctx, v.Key.ID, *estimate, opts...)
	if err != nil {
		return err
	}
	s.metrics.decision("authorize", res.Reason)
	if !res.OK() {
		key := res.Key
		if key.ID == "" {
			key = v.Key
		}
		writeJSON(w, http.StatusOK, deny(res.Reason, key, req.Scope, res.RefusedBy))
		return nil
	}
	if !res.Replayed {
		s.metrics.holdOpened()
	}
	a := allow(res.Key)
	a.Hold, a.Replayed = &res.Hold, res.Replayed
	writeJSON(w, http.StatusOK, a)
	return nil
}

// holdOptions checks the hold fields of an authorize request and returns
// the estimate, nil when none is given.
func (s *Server) holdOptions(req authorizeRequest, opts *[]agentkey.ChargeOption,
) (*agentkey.Money, error) {
	if err := checkIdempotencyKey(req.IdempotencyKey); err != nil {
		return nil, err
	}
	if err := checkMetadata(req.Metadata); err != nil {
		return nil, err
	}
	ttl, err := parseDuration("hold_ttl", req.HoldTTL)
	if err != nil {
		return nil, err
	}
	if most := s.cfg.MaxHoldTTL; ttl > most {
		return nil, invalid("hold_ttl must be at most %s", agentkey.FormatDuration(most))
	}
	if req.Estimate == "" {
		switch {
		case req.HoldTTL != "":
			return nil, invalid("hold_ttl applies to a hold: give an estimate too")
		case req.IdempotencyKey != "":
			return nil, invalid("idempotency_key applies to a hold: give an estimate too " +
				"(an authorization without one writes nothing, so it needs no key)")
		}
		return nil, nil
	}
	estimate, err := parseAmount("estimate", req.Estimate, false)
	if err != nil {
		return nil, err
	}
	*opts = append(*opts, agentkey.WithHoldTTL(ttl), agentkey.WithMetadata(req.Metadata))
	if req.IdempotencyKey != "" {
		*opts = append(*opts, agentkey.WithIdempotencyKey(req.IdempotencyKey))
	}
	return &estimate, nil
}

func checkIdempotencyKey(k string) error {
	if len(k) > 255 {
		return invalid("idempotency_key must be at most 255 bytes")
	}
	return nil
}

func (s *Server) checkCredentialType(typ string) error {
	switch typ {
	case "", credentialAgentKey:
		return nil
	case credentialClerkAPIKey, credentialClerkM2M:
		if s.cfg.Clerk == nil {
			return invalid("credential_type %s: this server is not configured for Clerk", typ)
		}
		return nil
	}
	return invalid("credential_type %q: want agentkey, clerk_api_key or clerk_m2m",
		truncate(typ, 20))
}

// resolve validates a credential of any type. A Clerk credential is
// verified with Clerk (or the verifier's cache), and its subject's row is
// created from ClerkDefaults on first sight.
func (s *Server) resolve(ctx context.Context, typ, credential string) (agentkey.Validation, error) {
	subject, v, err := s.clerkSubject(ctx, typ, credential)
	if err != nil || subject == "" {
		return v, err
	}
	v, err = s.svc.ValidateBySubject(ctx, subject)
	if err != nil || v.Reason != agentkey.ReasonInvalidKey || v.Key.ID != "" {
		return v, err
	}
	// No row yet. EnsureSubject makes concurrent first sights create one.
	if _, _, err := s.svc.EnsureSubject(ctx, subject, s.cfg.ClerkDefaults); err != nil {
		return agentkey.Validation{}, err
	}
	return s.svc.ValidateBySubject(ctx, subject)
}

// clerkSubject verifies a Clerk credential and returns its subject. For an
// agentkey credential, or a refused Clerk one, it returns no subject and the
// validation to answer with.
func (s *Server) clerkSubject(ctx context.Context, typ, credential string,
) (string, agentkey.Validation, error) {
	switch typ {
	case credentialClerkAPIKey:
		cv, err := s.cfg.Clerk.VerifyAPIKey(ctx, credential)
		if err != nil || !cv.OK() {
			return "", agentkey.Validation{Reason: cv.Reason}, err
		}
		return cv.APIKey.Subject, agentkey.Validation{}, nil
	case credentialClerkM2M:
		cv, err := s.cfg.Clerk.VerifyM2MToken(ctx, credential)
		if err != nil || !cv.OK() {
			return "", agentkey.Validation{Reason: cv.Reason}, err
		}
		return cv.M2MToken.Subject, agentkey.Validation{}, nil
	}
	v, err := s.svc.Validate(ctx, credential)
	return "", v, err
}

// chargeRequest is the body of POST /v1/charge.
type chargeRequest struct {
	// KeyID is the key or subject row to charge, as authorize returned it;
	// or Credential (with CredentialType) names it. Exactly one is required.
	KeyID          string `json:"key_id"`
	Credential     string `json:"credential"`
	CredentialType string `json:"credential_type"`
	// Amount is a decimal amount, such as "0.0004". Required.
	Amount         string            `json:"amount"`
	IdempotencyKey string            `json:"idempotency_key"`
	Metadata       map[string]string `json:"metadata"`
}

func (s *Server) charge(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var req chargeRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if (req.KeyID == "") == (req.Credential == "") {
		return invalid("give key_id or credential, exactly one")
	}
	if req.KeyID != "" && req.CredentialType != "" {
		return invalid("credential_type goes with credential, not key_id")
	}
	if err := s.checkCredentialType(req.CredentialType); err != nil {
		return err
	}
	if req.Amount == "" {
		return invalid("amount is required: a decimal such as \"0.0004\"")
	}
	amount, err := parseAmount("amount", req.Amount, false)
	if err != nil {
		return err
	}
	if err := checkIdempotencyKey(req.IdempotencyKey); err != nil {
		return err
	}
	if err := checkMetadata(req.Metadata); err != nil {
		return err
	}
	opts := []agentkey.ChargeOption{agentkey.WithMetadata(req.Metadata)}
	if req.IdempotencyKey != "" {
		opts = append(opts, agentkey.WithIdempotencyKey(req.IdempotencyKey))
	}

	var res agentkey.ChargeResult
	switch {
	case req.KeyID != "":
		res, err = s.svc.ChargeKey(ctx, req.KeyID, amount, opts...)
	case req.CredentialType == "" || req.CredentialType == credentialAgentKey:
		res, err = s.svc.TrackUsage(ctx, req.Credential, amount, opts...)
	default:
		var (
			subject string
			v       agentkey.Validation
		)
		subject, v, err = s.clerkSubject(ctx, req.CredentialType, req.Credential)
		if err == nil && subject == "" {
			s.metrics.decision("charge", v.Reason)
			writeJSON(w, http.StatusOK, deny(v.Reason, agentkey.Key{}, "", nil))
			return nil
		}
		if err == nil {
			res, err = s.chargeSubject(ctx, subject, amount, opts)
		}
	}
	if err != nil {
		return err
	}

	s.metrics.decision("charge", res.Reason)
	if !res.OK() {
		writeJSON(w, http.StatusOK, deny(res.Reason, res.Key, "", res.RefusedBy))
		return nil
	}
	if !res.Replayed {
		s.metrics.charged.Add(float64(res.Charged))
	}
	a := allow(res.Key)
	a.Charged, a.OpID, a.Replayed = &res.Charged, res.OpID, res.Replayed
	writeJSON(w, http.StatusOK, a)
	return nil
}

// chargeSubject charges a Clerk subject, creating its row from
// ClerkDefaults on first sight, as authorize does: a service may charge a
// Clerk caller after the work without having authorized it first.
func (s *Server) chargeSubject(ctx context.Context, subject string, amount agentkey.Money,
	opts []agentkey.ChargeOption,
) (agentkey.ChargeResult, error) {
	// EnsureSubject reads the row, as TrackUsageBySubject would, and creates
	// it only when absent; concurrent first sights create one row.
	k, _, err := s.svc.EnsureSubject(ctx, subject, s.cfg.ClerkDefaults)
	if err != nil {
		return agentkey.ChargeResult{}, err
	}
	return s.svc.ChargeKey(ctx, k.ID, amount, opts...)
}

// settleRequest is the body of POST /v1/settle.
type settleRequest struct {
	HoldID string `json:"hold_id"`
	// Amount is the real cost of the work, a decimal amount. Required.
	Amount   string            `json:"amount"`
	Metadata map[string]string `json:"metadata"`
	// IdempotencyKey is accepted for clients that send one with every
	// call, and not needed: settling is idempotent by hold_id.
	IdempotencyKey string `json:"idempotency_key"`
}

// settle answers POST /v1/settle with the agentkey.CloseResult. Settling a
// settled hold again answers the first result, with replayed set, whatever
// its amount and idempotency key.
func (s *Server) settle(w http.ResponseWriter, r *http.Request) error {
	var req settleRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := checkID("hold_id", req.HoldID); err != nil {
		return err
	}
	if err := checkIdempotencyKey(req.IdempotencyKey); err != nil {
		return err
	}
	if req.Amount == "" {
		return invalid("amount is required: the real cost, a decimal such as \"0.0004\"")
	}
	amount, err := parseAmount("amount", req.Amount, false)
	if err != nil {
		return err
	}
	if err := checkMetadata(req.Metadata); err != nil {
		return err
	}
	res, err := s.svc.Settle(r.Context(), req.HoldID, amount, agentkey.WithMetadata(req.Metadata))
	if err != nil {
		return err
	}
	s.metrics.holdClosed(res)
	writeJSON(w, http.StatusOK, res)
	return nil
}

// releaseRequest is the body of POST /v1/release.
type releaseRequest struct {
	HoldID string `json:"hold_id"`
	// IdempotencyKey is accepted and not needed, as for settle.
	IdempotencyKey string `json:"idempotency_key"`
}

// release answers POST /v1/release with the agentkey.CloseResult. Releasing
// a released hold again answers the first result, with replayed set.
func (s *Server) release(w http.ResponseWriter, r *http.Request) error {
	var req releaseRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := checkID("hold_id", req.HoldID); err != nil {
		return err
	}
	if err := checkIdempotencyKey(req.IdempotencyKey); err != nil {
		return err
	}
	res, err := s.svc.Release(r.Context(), req.HoldID)
	if err != nil {
		return err
	}
	s.metrics.holdClosed(res)
	writeJSON(w, http.StatusOK, res)
	return nil
}
