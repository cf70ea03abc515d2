package clerkemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// APIKey is an API key as Clerk's Backend API describes it, less the constant
// "object" and "type" fields, which the emulator always answers as "api_key".
// Times travel as Unix milliseconds, so they keep millisecond precision.
type APIKey struct {
	// ID is the key's id. Defaults to a random id such as
	// "ak_2xhFjEI5X2qWRvtV13BzSj8H6Dk".
	ID string

	// Name is the key's display name.
	Name string

	// Subject is the user ("user_...") or organization ("org_...") the key
	// belongs to.
	Subject string

	// Description is the key's free-text description, or nil for none.
	Description *string

	// Claims is a JSON object of custom claims, or nil for JSON null. It must
	// be valid JSON.
	Claims json.RawMessage

	// Scopes are the key's scopes. Nil is answered as an empty array.
	Scopes []string

	// Revoked reports whether the key has been revoked.
	Revoked bool

	// RevocationReason is why the key was revoked, or nil for none.
	RevocationReason *string

	// Expired reports whether the key has expired. The emulator also answers
	// true when Expiration is not in the future, as Clerk derives the flag
	// from the expiration.
	Expired bool

	// Expiration is when the key expires, or nil if it never does.
	Expiration *time.Time

	// CreatedBy is the id of the user who created the key, or nil.
	CreatedBy *string

	// LastUsedAt is when the key was last used, or nil. The emulator answers
	// it as given and does not update it on verification.
	LastUsedAt *time.Time

	// CreatedAt is when the key was created. Defaults to the time it is
	// added.
	CreatedAt time.Time

	// UpdatedAt is when the key was last changed. Defaults to CreatedAt.
	UpdatedAt time.Time
}

// apiKeyObject is the JSON object Clerk answers for an API key, the one
// clerk-sdk-go decodes into clerk.APIKey.
type apiKeyObject struct {
	Object           string          `json:"object"`
	ID               string          `json:"id"`
	Type             string          `json:"type"`
	Name             string          `json:"name"`
	Subject          string          `json:"subject"`
	Description      *string         `json:"description"`
	Claims           json.RawMessage `json:"claims"`
	Scopes           []string        `json:"scopes"`
	Revoked          bool            `json:"revoked"`
	RevocationReason *string         `json:"revocation_reason"`
	Expired          bool            `json:"expired"`
	Expiration       *int64          `json:"expiration"`
	CreatedBy        *string         `json:"created_by"`
	LastUsedAt       *int64          `json:"last_used_at"`
	CreatedAt        int64           `json:"created_at"`
	UpdatedAt        int64           `json:"updated_at"`
}

// AddAPIKey makes secret a known API key described by k, replacing any key
// with the same secret. An empty ID and zero CreatedAt and UpdatedAt are
// filled in. It panics if k.Claims is not valid JSON.
func (s *Server) AddAPIKey(secret string, k APIKey) {
	if len(k.Claims) > 0 && !json.Valid(k.Claims) {
		panic(fmt.Sprintf("clerkemu: AddAPIKey: claims are not valid JSON: %q", k.Claims))
	}

	k = k.clone()
	if k.ID == "" {
		k.ID = newID("ak")
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = time.Now()
	}
	if k.UpdatedAt.IsZero() {
		k.UpdatedAt = k.CreatedAt
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.apiKeys[secret] = k
}

// RevokeAPIKey marks the API key secret as revoked for reason, or with no
// reason when reason is empty, as Clerk's revoke endpoint does. It panics if
// no such key has been added.
func (s *Server) RevokeAPIKey(secret, reason string) {
	s.updateAPIKey("RevokeAPIKey", secret, func(k *APIKey, now time.Time) {
		k.Revoked = true
		k.RevocationReason = nil
		if reason != "" {
			k.RevocationReason = &reason
		}
	})
}

// ExpireAPIKey marks the API key secret as expired, with an expiration one
// second in the past. It panics if no such key has been added.
func (s *Server) ExpireAPIKey(secret string) {
	s.updateAPIKey("ExpireAPIKey", secret, func(k *APIKey, now time.Time) {
		past := now.Add(-time.Second)
		k.Expired = true
		k.Expiration = &past
	})
}

// RemoveAPIKey forgets the API key secret, so that verifying it answers 404.
// Removing an unknown key does nothing.
func (s *Server) RemoveAPIKey(secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.apiKeys, secret)
}

// updateAPIKey applies change to the API key secret and bumps its UpdatedAt.
// Changing a key that was never added is a bug in the test, hence the panic.
func (s *Server) updateAPIKey(op, secret string, change func(*APIKey, time.Time)) {
	s.mu.Lock()
	defer s.mu.Unlock()

	k, ok := s.apiKeys[secret]
	if !ok {
		panic("clerkemu: " + op + ": no API key with that secret")
	}
	now := time.Now()
	change(&k, now)
	k.UpdatedAt = now
	s.apiKeys[secret] = k
}

// verifyAPIKey answers POST /v1/api_keys/verify.
func (s *Server) verifyAPIKey(w http.ResponseWriter, body []byte) {
	secret, e, ok := stringParam(body, "secret")
	if !ok {
		writeError(w, http.StatusBadRequest, e)
		return
	}

	s.mu.Lock()
	k, found := s.apiKeys[secret]
	s.mu.Unlock()
	if !found {
		writeError(w, http.StatusNotFound, errResourceNotFound)
		return
	}

	writeJSON(w, http.StatusOK, k.object(time.Now()))
}

// object returns the JSON object Clerk answers for k at time now.
func (k APIKey) object(now time.Time) apiKeyObject {
	return apiKeyObject{
		Object:           "api_key",
		ID:               k.ID,
		Type:             "api_key",
		Name:             k.Name,
		Subject:          k.Subject,
		Description:      k.Description,
		Claims:           nullIfEmpty(k.Claims),
		Scopes:           emptyIfNil(k.Scopes),
		Revoked:          k.Revoked,
		RevocationReason: k.RevocationReason,
		Expired:          k.Expired || expiredAt(k.Expiration, now),
		Expiration:       unixMilli(k.Expiration),
		CreatedBy:        k.CreatedBy,
		LastUsedAt:       unixMilli(k.LastUsedAt),
		CreatedAt:        k.CreatedAt.UnixMilli(),
		UpdatedAt:        k.UpdatedAt.UnixMilli(),
	}
}

// clone returns a copy of k that shares no memory with it, so that a caller
// changing its value after AddAPIKey cannot race with the handlers.
func (k APIKey) clone() APIKey {
	k.Description = clonePtr(k.Description)
	k.Claims = bytes.Clone(k.Claims)
	k.Scopes = slices.Clone(k.Scopes)
	k.RevocationReason = clonePtr(k.RevocationReason)
	k.Expiration = clonePtr(k.Expiration)
	k.CreatedBy = clonePtr(k.CreatedBy)
	k.LastUsedAt = clonePtr(k.LastUsedAt)
	return k
}

// clonePtr returns a pointer to a copy of *p, or nil if p is nil.
func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// unixMilli returns t as Unix milliseconds, or nil if t is nil.
func unixMilli(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	ms := t.UnixMilli()
	return &ms
}

// expiredAt reports whether an expiration has passed at now.
func expiredAt(expiration *time.Time, now time.Time) bool {
	return expiration != nil && !expiration.After(now)
}

// nullIfEmpty returns claims, or JSON null when there are none.
func nullIfEmpty(claims json.RawMessage) json.RawMessage {
	if len(claims) == 0 {
		return json.RawMessage("null")
	}
	return claims
}

// emptyIfNil returns scopes, or an empty slice that encodes as [] rather than
// null, as Clerk answers a credential without scopes.
func emptyIfNil(scopes []string) []string {
	if scopes == nil {
		return []string{}
	}
	return scopes
}
