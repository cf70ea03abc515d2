package akserver

import (
	"net/http"

	"github.com/agentkey-go/agentkey"
)

// owner reads the budget owner of a path: /budgets/{owner_kind}/{owner_id}.
func owner(r *http.Request) (agentkey.Owner, error) {
	o := agentkey.Owner{Kind: agentkey.OwnerKind(r.PathValue("owner_kind")),
		ID: r.PathValue("owner_id")}
	if o.Kind != agentkey.OwnerKey && o.Kind != agentkey.OwnerAccount {
		return o, invalid("owner kind %q: want key or account", truncate(string(o.Kind), 20))
	}
	return o, checkID("owner id", o.ID)
}

// setBudgetRequest is the body of PUT /admin/v1/budgets/{owner_kind}/{owner_id}/{period}.
type setBudgetRequest struct {
	// Limit is a decimal amount. Required.
	Limit string `json:"limit"`
	// Anchor, an RFC 3339 time, fixes the day a monthly budget resets.
	Anchor string `json:"anchor"`
}

func (s *Server) setBudget(w http.ResponseWriter, r *http.Request) error {
	o, err := owner(r)
	if err != nil {
		return err
	}
	var req setBudgetRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	spec, err := budgetInput{Limit: req.Limit, Period: r.PathValue("period"), Anchor: req.Anchor}.
		spec("budget")
	if err != nil {
		return err
	}
	b, err := s.svc.SetBudget(r.Context(), o, spec)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

func (s *Server) removeBudget(w http.ResponseWriter, r *http.Request) error {
	o, err := owner(r)
	if err != nil {
		return err
	}
	if err := noBody(r); err != nil {
		return err
	}
	p, err := agentkey.ParsePeriod(r.PathValue("period"))
	if err != nil {
		return invalid("period: %v", err)
	}
	if err := s.svc.RemoveBudget(r.Context(), o, p); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// budgetList is the answer of GET /admin/v1/budgets/{owner_kind}/{owner_id}.
type budgetList struct {
	Budgets []agentkey.Budget `json:"budgets"`
}

func (s *Server) showBudgets(w http.ResponseWriter, r *http.Request) error {
	o, err := owner(r)
	if err != nil {
		return err
	}
	bs, err := s.svc.Budgets(r.Context(), o)
	if err != nil {
		return err
	}
	if bs == nil {
		bs = []agentkey.Budget{}
	}
	writeJSON(w, http.StatusOK, budgetList{Budgets: bs})
	return nil
}

// adjustRequest is the body of POST /admin/v1/budgets/{budget_id}/adjust.
type adjustRequest struct {
	// Amount is a signed decimal: positive debits the budget, negative
	// credits it. Required, not zero.
	Amount string `json:"amount"`
	// Reason says why, and is kept in the ledger entry. Required.
	Reason string `json:"reason"`
}

func (s *Server) adjustBudget(w http.ResponseWriter, r *http.Request) error {
	var req adjustRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Amount == "" {
		return invalid("amount is required: a signed decimal such as \"5\" or \"-2.50\"")
	}
	amount, err := parseAmount("amount", req.Amount, true)
	if err != nil {
		return err
	}
	if amount == 0 {
		return invalid("amount must not be zero")
	}
	if req.Reason == "" {
		return invalid("reason is required: say why the budget is adjusted")
	}
	if err := checkLabel("reason", req.Reason); err != nil {
		return err
	}
	id := r.PathValue("budget_id")
	if err := checkID("budget id", id); err != nil {
		return err
	}
	b, err := s.svc.Adjust(r.Context(), id, amount, req.Reason)
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "budget adjusted", logBudgetID, b.ID, logAmount, amount.String())
	writeJSON(w, http.StatusOK, b)
	return nil
}

// holdPage is a page of holds.
type holdPage struct {
	Holds []agentkey.Hold `json:"holds"`
	Next  string          `json:"next,omitempty"`
}

func (s *Server) listHolds(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := queryLimit(r, 100, 1000)
	if err != nil {
		return err
	}
	if err := queryIDs(q, "key_id", "account_id", "after"); err != nil {
		return err
	}
	f := agentkey.HoldFilter{KeyID: q.Get("key_id"), AccountID: q.Get("account_id"),
		State: agentkey.HoldState(q.Get("state")), After: q.Get("after"), Limit: limit}
	switch f.State {
	case "", agentkey.HoldOpen, agentkey.HoldSettled, agentkey.HoldReleased, agentkey.HoldExpired:
	default:
		return invalid("state %q: want open, settled, released or expired",
			truncate(string(f.State), 20))
	}
	hs, err := s.svc.Holds(r.Context(), f)
	if err != nil {
		return err
	}
	page := holdPage{Holds: hs}
	if len(hs) == limit {
		page.Next = hs[len(hs)-1].ID
	}
	if page.Holds == nil {
		page.Holds = []agentkey.Hold{}
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) showHold(w http.ResponseWriter, r *http.Request) error {
	h, err := s.svc.Hold(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, h)
	return nil
}

func (s *Server) releaseHold(w http.ResponseWriter, r *http.Request) error {
	if err := noBody(r); err != nil {
		return err
	}
	res, err := s.svc.Release(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	s.metrics.holdClosed(res)
	writeJSON(w, http.StatusOK, res)
	return nil
}
