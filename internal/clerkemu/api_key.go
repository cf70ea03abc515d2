package clerkemu

import (
	"bytes"
	"encoding/json"
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
	s.apiKeys.add("AddAPIKey", secret, k)
}

// RevokeAPIKey marks the API key secret as revoked for reason, or with no
// reason when reason is empty, as Clerk's revoke endpoint does. It panics if
// no such key has been added.
func (s *Server) RevokeAPIKey(secret, reason string) {
	s.apiKeys.revoke("RevokeAPIKey", secret, reason)
}

// ExpireAPIKey marks the API key secret as expired, with an expiration one
// second in the past. It panics if no such key has been added.
func (s *Server) ExpireAPIKey(secret string) {
	s.apiKeys.expire("ExpireAPIKey", secret)
}

// RemoveAPIKey forgets the API key secret, so that verifying it answers 404.
// Removing an unknown key does nothing.
func (s *Server) RemoveAPIKey(secret string) {
	s.apiKeys.remove(secret)
}

// object returns the JSON object Clerk answers for k at time now.
func (k APIKey) object(now time.Time) any {
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

// clone returns a copy of k that shares no memory with it.
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

// fields points at the fields of k that both kinds of credential have.
func (k *APIKey) fields() credentialFields {
	return credentialFields{id: &k.ID, claims: &k.Claims, createdAt: &k.CreatedAt,
		updatedAt: &k.UpdatedAt, revoked: &k.Revoked, revocationReason: &k.RevocationReason,
		expired: &k.Expired, expiration: &k.Expiration}
}
