package akserver

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/agentkey-go/agentkey"
)

// accountRequest is the body of POST /admin/v1/accounts.
type accountRequest struct {
	// ID defaults to a fresh "acct_" id.
	ID       string        `json:"id"`
	ParentID string        `json:"parent_id"`
	Name     string        `json:"name"`
	Budgets  []budgetInput `json:"budgets"`
}

func (s *Server) createAccount(w http.ResponseWriter, r *http.Request) error {
	var req accountRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := checkLabel("name", req.Name); err != nil {
		return err
	}
	budgets, err := specs(req.Budgets)
	if err != nil {
		return err
	}
	a, err := s.svc.CreateAccount(r.Context(), agentkey.AccountParams{
		ID: req.ID, ParentID: req.ParentID, Name: req.Name, Budgets: budgets,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, a)
	return nil
}

// accountPage is a page of accounts; Next, when set, is the after of the
// next page.
type accountPage struct {
	Accounts []agentkey.Account `json:"accounts"`
	Next     string             `json:"next,omitempty"`
}

func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := queryLimit(r, 100, 1000)
	if err != nil {
		return err
	}
	if err := queryIDs(q, "parent", "after"); err != nil {
		return err
	}
	as, err := s.svc.Accounts(r.Context(), q.Get("parent"), q.Get("after"), limit)
	if err != nil {
		return err
	}
	page := accountPage{Accounts: as}
	if len(as) == limit {
		page.Next = as[len(as)-1].ID
	}
	if page.Accounts == nil {
		page.Accounts = []agentkey.Account{}
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) showAccount(w http.ResponseWriter, r *http.Request) error {
	a, err := s.svc.Account(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

// moveAccountRequest is the body of PATCH /admin/v1/accounts/{id}.
type moveAccountRequest struct {
	// ParentID is the new parent; "" makes the account a root.
	ParentID *string `json:"parent_id"`
}

func (s *Server) moveAccount(w http.ResponseWriter, r *http.Request) error {
	var req moveAccountRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.ParentID == nil {
		return invalid(`parent_id is required ("" makes the account a root)`)
	}
	a, err := s.svc.MoveAccount(r.Context(), r.PathValue("id"), *req.ParentID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

// keyRequest is the body of POST /admin/v1/keys and, with Subject, of POST
// /admin/v1/subjects.
type keyRequest struct {
	Subject     string        `json:"subject,omitempty"`
	AccountID   string        `json:"account_id"`
	UserID      string        `json:"user_id"`
	DelegatedBy string        `json:"delegated_by"`
	Name        string        `json:"name"`
	Scopes      []string      `json:"scopes"`
	Budgets     []budgetInput `json:"budgets"`
	// ExpiresIn is a duration such as "7d"; ExpiresAt an RFC 3339 time.
	ExpiresIn string `json:"expires_in"`
	ExpiresAt string `json:"expires_at"`
}

// params checks the fields keys and subjects share.
func (req keyRequest) params() (agentkey.CreateKeyParams, error) {
	var p agentkey.CreateKeyParams
	for _, f := range []struct{ name, value string }{
		{"user_id", req.UserID}, {"delegated_by", req.DelegatedBy}, {"name", req.Name},
	} {
		if err := checkLabel(f.name, f.value); err != nil {
			return p, err
		}
	}
	budgets, err := specs(req.Budgets)
	if err != nil {
		return p, err
	}
	expiresIn, err := parseDuration("expires_in", req.ExpiresIn)
	if err != nil {
		return p, err
	}
	expiresAt, err := parseTime("expires_at", req.ExpiresAt)
	if err != nil {
		return p, err
	}
	switch {
	case expiresIn != 0 && !expiresAt.IsZero():
		return p, invalid("give expires_in or expires_at, not both")
	case !expiresAt.IsZero() && !expiresAt.After(time.Now()):
		return p, invalid("expires_at must be in the future")
	}
	return agentkey.CreateKeyParams{
		AccountID: req.AccountID, UserID: req.UserID, DelegatedBy: req.DelegatedBy,
		Name: req.Name, Scopes: req.Scopes, Budgets: budgets,
		ExpiresIn: expiresIn, ExpiresAt: expiresAt,
	}, nil
}

// createdKey is a new key: its secret, shown once, beside its state. The
// self-serve routes answer the same shape.
type createdKey struct {
	Secret string `json:"key"`
	agentkey.Key
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) error {
	var req keyRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Subject != "" {
		return invalid("subject: create subjects with POST /admin/v1/subjects")
	}
	if err := checkID("account_id", req.AccountID); err != nil {
		return err
	}
	p, err := req.params()
	if err != nil {
		return err
	}
	ck, err := s.svc.CreateKey(r.Context(), p)
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "key created", logKeyID, ck.Key.ID)
	writeJSON(w, http.StatusCreated, createdKey{Secret: ck.Secret, Key: ck.Key})
	return nil
}

// keyPage is a page of keys.
type keyPage struct {
	Keys []agentkey.Key `json:"keys"`
	Next string         `json:"next,omitempty"`
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := queryLimit(r, 100, 1000)
	if err != nil {
		return err
	}
	if err := queryIDs(q, "account_id", "after"); err != nil {
		return err
	}
	f := agentkey.KeyFilter{AccountID: q.Get("account_id"), Kind: q.Get("kind"),
		After: q.Get("after"), Limit: limit}
	if v := q.Get("include_revoked"); v != "" {
		if f.IncludeRevoked, err = strconv.ParseBool(v); err != nil {
			return invalid("include_revoked %q: want true or false", truncate(v, 20))
		}
	}
	keys, err := s.svc.Keys(r.Context(), f)
	if err != nil {
		return err
	}
	page := keyPage{Keys: keys}
	if len(keys) == limit {
		page.Next = keys[len(keys)-1].ID
	}
	if page.Keys == nil {
		page.Keys = []agentkey.Key{}
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) showKey(w http.ResponseWriter, r *http.Request) error {
	k, err := s.readKey(r.Context(), agentkey.KeyQuery{ID: r.PathValue("id")})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, k)
	return nil
}

// readKey returns a key with the budgets of its whole path in the period in
// force now. Unlike Service.ValidateByID, it does not count as a use.
func (s *Server) readKey(ctx context.Context, q agentkey.KeyQuery) (agentkey.Key, error) {
	what := q.ID
	if q.Subject != "" {
		what = q.Subject
	}
	k, err := s.store.Key(ctx, q)
	if err != nil {
		return agentkey.Key{}, fmt.Errorf("key %s: %w", truncate(what, 40), err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i := range k.Budgets {
		if _, _, err := k.Budgets[i].RollForward(now); err != nil {
			return agentkey.Key{}, fmt.Errorf("key %s: %w", k.ID, err)
		}
	}
	return k, nil
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) error {
	if err := noBody(r); err != nil {
		return err
	}
	k, err := s.svc.Revoke(r.Context(), r.PathValue("id"), "")
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "key revoked", logKeyID, k.ID)
	writeJSON(w, http.StatusOK, k)
	return nil
}

// moveKeyRequest is the body of PATCH /admin/v1/keys/{id}.
type moveKeyRequest struct {
	AccountID string `json:"account_id"`
}

func (s *Server) moveKey(w http.ResponseWriter, r *http.Request) error {
	var req moveKeyRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := checkID("account_id", req.AccountID); err != nil {
		return err
	}
	k, err := s.svc.MoveKey(r.Context(), r.PathValue("id"), req.AccountID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, k)
	return nil
}

// ensuredSubject is the answer of POST /admin/v1/subjects.
type ensuredSubject struct {
	// Created is set when this request created the subject's row.
	Created bool `json:"created"`
	agentkey.Key
}

func (s *Server) ensureSubject(w http.ResponseWriter, r *http.Request) error {
	var req keyRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Subject == "" {
		return invalid("subject is required, such as a Clerk user_ or org_ id")
	}
	if req.AccountID != "" {
		if err := checkID("account_id", req.AccountID); err != nil {
			return err
		}
	}
	if req.ExpiresAt != "" {
		return invalid("expires_at: a subject's expiry counts from its creation; " +
			"give expires_in")
	}
	p, err := req.params()
	if err != nil {
		return err
	}
	k, created, err := s.svc.EnsureSubject(r.Context(), req.Subject, agentkey.SubjectParams{
		AccountID: p.AccountID, UserID: p.UserID, DelegatedBy: p.DelegatedBy, Name: p.Name,
		Scopes: p.Scopes, Budgets: p.Budgets, ExpiresIn: p.ExpiresIn,
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, ensuredSubject{Created: created, Key: k})
	return nil
}

func (s *Server) showSubject(w http.ResponseWriter, r *http.Request) error {
	k, err := s.readKey(r.Context(), agentkey.KeyQuery{Subject: r.PathValue("subject")})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, k)
	return nil
}
