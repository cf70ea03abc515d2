package akserver

import (
	"net/http"
)

// purgeRequest is the body of POST /admin/v1/clerk/purge, with exactly one
// field set.
type purgeRequest struct {
	// Subject forgets every cached credential of a user_, org_ or mch_ id,
	// such as after revoking its keys in Clerk.
	Subject string `json:"subject"`
	// Credential forgets one API key's secret or M2M token. It travels in
	// the body, never in the URL, which proxies and access logs keep.
	Credential string `json:"credential"`
}

// purgeClerk makes the Clerk verifier forget what it cached of a subject or
// of a credential, so that the next use asks Clerk: a key revoked in Clerk
// is then refused at once rather than when its cache entry expires.
func (s *Server) purgeClerk(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Clerk == nil {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found",
			Message: "this server is not configured for Clerk, so it caches nothing of Clerk's"})
		return nil
	}
	var req purgeRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	switch {
	case (req.Subject == "") == (req.Credential == ""):
		return invalid("give subject or credential, exactly one")
	case len(req.Subject) > 255:
		return invalid("subject must be at most 255 bytes")
	case req.Subject != "":
		s.cfg.Clerk.PurgeSubject(req.Subject)
		s.log.InfoContext(r.Context(), "clerk cache purged", logSubject, req.Subject)
	default:
		s.cfg.Clerk.Purge(req.Credential)
		s.log.InfoContext(r.Context(), "clerk cache purged of a credential")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
