package akserver

import (
	"net/http"
)

// tokenAnswer carries a token, shown this once.
type tokenAnswer struct {
	Name  string `json:"name,omitempty"`
	Token string `json:"token"`
}

func (s *Server) rotateAdminToken(w http.ResponseWriter, r *http.Request) error {
	if err := noBody(r); err != nil {
		return err
	}
	token, err := RotateAdminToken(r.Context(), s.store)
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "admin token rotated")
	writeJSON(w, http.StatusOK, tokenAnswer{Token: token})
	return nil
}

// serviceTokenRequest is the body of POST /admin/v1/service-tokens.
type serviceTokenRequest struct {
	Name string `json:"name"`
}

func (s *Server) createServiceToken(w http.ResponseWriter, r *http.Request) error {
	var req serviceTokenRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	token, err := CreateServiceToken(r.Context(), s.store, req.Name)
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "service token created", logService, req.Name)
	writeJSON(w, http.StatusCreated, tokenAnswer{Name: req.Name, Token: token})
	return nil
}

func (s *Server) revokeServiceToken(w http.ResponseWriter, r *http.Request) error {
	if err := noBody(r); err != nil {
		return err
	}
	name := r.PathValue("name")
	hash, err := revokeServiceToken(r.Context(), s.store, name)
	if err != nil {
		return err
	}
	s.tokens.forget(hash)
	s.log.InfoContext(r.Context(), "service token revoked", logService, name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// serviceTokenList is the answer of GET /admin/v1/service-tokens.
type serviceTokenList struct {
	ServiceTokens []ServiceToken `json:"service_tokens"`
}

func (s *Server) listServiceTokens(w http.ResponseWriter, r *http.Request) error {
	tokens, err := ServiceTokens(r.Context(), s.store)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, serviceTokenList{ServiceTokens: tokens})
	return nil
}
