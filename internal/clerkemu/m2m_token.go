package clerkemu

import (
	"bytes"
	"encoding/json"
	"slices"
	"time"
)

// M2MToken is a machine-to-machine token as Clerk's Backend API describes it,
// less the constant "object" field, which the emulator always answers as
// "machine_to_machine_token". Times travel as Unix milliseconds, so they keep
// millisecond precision.
type M2MToken struct {
	// ID is the token's id. Defaults to a random id such as
	// "mt_2xhFjEI5X2qWRvtV13BzSj8H6Dk".
	ID string

	// Subject is the machine ("mch_...") the token was issued to.
	Subject string

	// Claims is a JSON object of custom claims, or nil for JSON null. It must
	// be valid JSON.
	Claims json.RawMessage

	// Scopes are the machines ("mch_...") the token's machine may reach. Nil is
	// answered as an empty array.
	Scopes []string

	// Revoked reports whether the token has been revoked.
	Revoked bool

	// RevocationReason is why the token was revoked, or nil for none.
	RevocationReason *string

	// Expired reports whether the token has expired. The emulator also answers
	// true when Expiration is not in the future.
	Expired bool

	// Expiration is when the token expires, or nil if it never does.
	Expiration *time.Time

	// LastUsedAt is when the token was last used, or nil. The emulator
	// answers it as given and does not update it on verification.
	LastUsedAt *time.Time

	// CreatedAt is when the token was created. Defaults to the time it is
	// added.
	CreatedAt time.Time

	// UpdatedAt is when the token was last changed. Defaults to CreatedAt.
	UpdatedAt time.Time
}

// m2mTokenObject is the JSON object Clerk answers for an M2M token, the one
// clerk-sdk-go decodes into clerk.M2MToken.
type m2mTokenObject struct {
	Object           string          `json:"object"`
	ID               string          `json:"id"`
	Subject          string          `json:"subject"`
	Claims           json.RawMessage `json:"claims"`
	Scopes           []string        `json:"scopes"`
	Revoked          bool            `json:"revoked"`
	RevocationReason *string         `json:"revocation_reason"`
	Expired          bool            `json:"expired"`
	Expiration       *int64          `json:"expiration"`
	LastUsedAt       *int64          `json:"last_used_at"`
	CreatedAt        int64           `json:"created_at"`
	UpdatedAt        int64           `json:"updated_at"`
}

// AddM2MToken makes token a known M2M token described by t, replacing any
// token with the same value. An empty ID and zero CreatedAt and UpdatedAt are
// filled in. It panics if t.Claims is not valid JSON.
func (s *Server) AddM2MToken(token string, t M2MToken) {
	s.m2mTokens.add("AddM2MToken", token, t)
}

// RevokeM2MToken marks the M2M token as revoked for reason, or with no reason
// when reason is empty. It panics if no such token has been added.
func (s *Server) RevokeM2MToken(token, reason string) {
	s.m2mTokens.revoke("RevokeM2MToken", token, reason)
}

// ExpireM2MToken marks the M2M token as expired, with an expiration one second
// in the past. It panics if no such token has been added.
func (s *Server) ExpireM2MToken(token string) {
	s.m2mTokens.expire("ExpireM2MToken", token)
}

// RemoveM2MToken forgets the M2M token, so that verifying it answers 404.
// Removing an unknown token does nothing.
func (s *Server) RemoveM2MToken(token string) {
	s.m2mTokens.remove(token)
}

// object returns the JSON object Clerk answers for t at time now.
func (t M2MToken) object(now time.Time) any {
	return m2mTokenObject{
		Object:           "machine_to_machine_token",
		ID:               t.ID,
		Subject:          t.Subject,
		Claims:           nullIfEmpty(t.Claims),
		Scopes:           emptyIfNil(t.Scopes),
		Revoked:          t.Revoked,
		RevocationReason: t.RevocationReason,
		Expired:          t.Expired || expiredAt(t.Expiration, now),
		Expiration:       unixMilli(t.Expiration),
		LastUsedAt:       unixMilli(t.LastUsedAt),
		CreatedAt:        t.CreatedAt.UnixMilli(),
		UpdatedAt:        t.UpdatedAt.UnixMilli(),
	}
}

// clone returns a copy of t that shares no memory with it.
func (t M2MToken) clone() M2MToken {
	t.Claims = bytes.Clone(t.Claims)
	t.Scopes = slices.Clone(t.Scopes)
	t.RevocationReason = clonePtr(t.RevocationReason)
	t.Expiration = clonePtr(t.Expiration)
	t.LastUsedAt = clonePtr(t.LastUsedAt)
	return t
}

// fields points at the fields of t that both kinds of credential have.
func (t *M2MToken) fields() credentialFields {
	return credentialFields{id: &t.ID, claims: &t.Claims, createdAt: &t.CreatedAt,
		updatedAt: &t.UpdatedAt, revoked: &t.Revoked, revocationReason: &t.RevocationReason,
		expired: &t.Expired, expiration: &t.Expiration}
}
