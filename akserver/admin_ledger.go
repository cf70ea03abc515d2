package akserver

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/agentkey-go/agentkey"
)

// ledgerPage is a page of ledger entries; Next, when set, is the after of
// the next page.
type ledgerPage struct {
	Entries []agentkey.Entry `json:"entries"`
	Next    string           `json:"next,omitempty"`
}

// csvPageSize is how many entries the CSV export reads at a time.
const csvPageSize = 1000

// ledger answers GET /admin/v1/ledger: entries filtered by key_id (or
// subject), account_id, budget_id, kind (comma-separated kinds, or "money"
// for the entries that move money), since and until (RFC 3339), paged by after
// and limit, as JSON, or as CSV with ?format=csv or Accept: text/csv. The CSV
// export streams every page; limit, if given, caps its rows.
func (s *Server) ledger(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := queryIDs(q, "key_id", "account_id", "budget_id"); err != nil {
		return err
	}
	if len(q.Get("subject")) > 255 {
		return invalid("subject must be at most 255 bytes")
	}
	f := agentkey.LedgerFilter{KeyID: q.Get("key_id"), AccountID: q.Get("account_id"),
		BudgetID: q.Get("budget_id")}
	kinds, err := agentkey.ParseEntryKinds(q.Get("kind"))
	if err != nil {
		return invalid("kind: %v", err)
	}
	f.Kinds = kinds
	if f.Since, err = parseTime("since", q.Get("since")); err != nil {
		return err
	}
	if f.Until, err = parseTime("until", q.Get("until")); err != nil {
		return err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return invalid("since must be before until")
	}
	if v := q.Get("after"); v != "" {
		if f.AfterID, err = strconv.ParseInt(v, 10, 64); err != nil || f.AfterID < 0 {
			return invalid("after %q: want an entry id, a whole number", truncate(v, 20))
		}
	}

	asCSV := false
	switch format := q.Get("format"); format {
	case "":
		asCSV = strings.Contains(r.Header.Get("Accept"), "text/csv")
	case "csv":
		asCSV = true
	case "json":
	default:
		return invalid("format %q: want json or csv", truncate(format, 20))
	}
	limit, err := queryLimit(r, 100, 10_000)
	if err != nil {
		return err
	}
	if asCSV && q.Get("limit") == "" {
		limit = 0 // every entry
	}

	if subject := q.Get("subject"); subject != "" {
		if f.KeyID != "" {
			return invalid("give key_id or subject, not both")
		}
		k, err := s.store.Key(r.Context(), agentkey.KeyQuery{Subject: subject})
		switch {
		case errors.Is(err, agentkey.ErrNotFound):
			// An unknown subject has no entries; ids never have spaces.
			f.KeyID = " "
		case err != nil:
			return err
		default:
			f.KeyID = k.ID
		}
	}

	if asCSV {
		return s.ledgerCSV(w, r, f, limit)
	}
	f.Limit = limit
	entries, err := s.svc.Ledger(r.Context(), f)
	if err != nil {
		return err
	}
	page := ledgerPage{Entries: entries}
	if len(entries) == limit {
		page.Next = strconv.FormatInt(entries[len(entries)-1].ID, 10)
	}
	if page.Entries == nil {
		page.Entries = []agentkey.Entry{}
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// ledgerCSV streams the entries f selects, up to limit (0: all), as CSV. A
// failure after the first page has gone out aborts the response, so that the
// client sees a broken transfer rather than a short file.
func (s *Server) ledgerCSV(w http.ResponseWriter, r *http.Request, f agentkey.LedgerFilter,
	limit int,
) error {
	ctx := r.Context()
	f.Limit = csvPageSize
	if limit > 0 {
		f.Limit = min(limit, csvPageSize)
	}
	entries, err := s.svc.Ledger(ctx, f)
	if err != nil {
		return err
	}

	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="ledger.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	cw := NewLedgerCSV(w)

	written := 0
	for {
		for _, e := range entries {
			_ = cw.Write(e) // an error is kept for Flush
		}
		written += len(entries)
		if err := cw.Flush(); err != nil {
			return nil // the client went away
		}
		_ = http.NewResponseController(w).Flush()

		if len(entries) < f.Limit || limit > 0 && written >= limit {
			return nil
		}
		f.AfterID = entries[len(entries)-1].ID
		if limit > 0 {
			f.Limit = min(limit-written, csvPageSize)
		}
		if entries, err = s.svc.Ledger(ctx, f); err != nil {
			s.log.ErrorContext(ctx, "ledger export", logErr, err)
			panic(http.ErrAbortHandler)
		}
	}
}

// auditReport is the answer of GET /admin/v1/audit.
type auditReport struct {
	agentkey.AuditReport
	// Clean is set when no budget drifts from its ledger.
	Clean bool `json:"clean"`
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request) error {
	rep, err := s.svc.Audit(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, auditReport{AuditReport: rep, Clean: rep.Clean()})
	return nil
}
