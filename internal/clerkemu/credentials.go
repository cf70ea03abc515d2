package clerkemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// credential is satisfied by the pointer type P of each kind of credential T
// the emulator stores, APIKey and M2MToken. A pointer, because the fields the
// kinds share are changed in place through it.
type credential[T any] interface {
	*T

	// fields points into the credential at the fields every kind has.
	fields() credentialFields

	// clone returns a copy that shares no memory with the credential, so that
	// a caller changing its value after adding it cannot race with the
	// handlers.
	clone() T

	// object returns the JSON object Clerk answers for the credential at time
	// now.
	object(now time.Time) any
}

// credentialFields points at the fields that both kinds of credential have
// and that [credentials] fills in and updates; the kinds name them alike, but
// a type parameter cannot reach a struct field by name.
type credentialFields struct {
	id               *string
	claims           *json.RawMessage
	createdAt        *time.Time
	updatedAt        *time.Time
	revoked          *bool
	revocationReason **string
	expired          *bool
	expiration       **time.Time
}

// credentials is the known credentials of one kind, by the secret a client
// presents to verify one. It has a lock of its own, as tests seed it while
// requests are in flight.
type credentials[T any, P credential[T]] struct {
	idPrefix string // of the ids filled in, such as "ak"
	param    string // the body parameter of the verify request
	what     string // how panics name an unknown one

	mu       sync.Mutex
	bySecret map[string]T
}

// newCredentials returns an empty set of credentials whose ids are filled in
// with idPrefix, whose verify request carries the secret as param, and whose
// unknown secrets are named in panics as "no " + what.
func newCredentials[T any, P credential[T]](idPrefix, param, what string) *credentials[T, P] {
	return &credentials[T, P]{
		idPrefix: idPrefix,
		param:    param,
		what:     what,
		bySecret: make(map[string]T),
	}
}

// add makes secret known as c, replacing any credential with the same
// secret, with an empty ID and zero CreatedAt and UpdatedAt filled in. Claims
// that are not valid JSON would make every verification fail to encode, so
// they panic here, in the test that added them, naming op.
func (cs *credentials[T, P]) add(op, secret string, c T) {
	c = P(&c).clone()
	f := P(&c).fields()
	if len(*f.claims) > 0 && !json.Valid(*f.claims) {
		panic(fmt.Sprintf("clerkemu: %s: claims are not valid JSON: %q", op, *f.claims))
	}

	if *f.id == "" {
		*f.id = newID(cs.idPrefix)
	}
	if f.createdAt.IsZero() {
		*f.createdAt = time.Now()
	}
	if f.updatedAt.IsZero() {
		*f.updatedAt = *f.createdAt
	}

	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.bySecret[secret] = c
}

// revoke marks the credential secret as revoked for reason, or with no reason
// when reason is empty, as Clerk's revoke endpoints do.
func (cs *credentials[T, P]) revoke(op, secret, reason string) {
	cs.update(op, secret, func(f credentialFields, now time.Time) {
		*f.revoked = true
		*f.revocationReason = nil
		if reason != "" {
			*f.revocationReason = &reason
		}
	})
}

// expire marks the credential secret as expired, with an expiration one
// second in the past so that the flag and the time agree.
func (cs *credentials[T, P]) expire(op, secret string) {
	cs.update(op, secret, func(f credentialFields, now time.Time) {
		past := now.Add(-time.Second)
		*f.expired = true
		*f.expiration = &past
	})
}

// remove forgets the credential secret, if it is known.
func (cs *credentials[T, P]) remove(secret string) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.bySecret, secret)
}

// update applies change to the credential secret and bumps its UpdatedAt.
// Changing a credential that was never added is a bug in the test, hence the
// panic, which names op.
func (cs *credentials[T, P]) update(op, secret string, change func(credentialFields, time.Time)) {
	cs.mu.Lock()
	defer cs.mu.Unlock()

	c, ok := cs.bySecret[secret]
	if !ok {
		panic("clerkemu: " + op + ": no " + cs.what)
	}
	now := time.Now()
	f := P(&c).fields()
	change(f, now)
	*f.updatedAt = now
	cs.bySecret[secret] = c
}

// verify answers a verify request, whose body carries the secret as cs.param.
func (cs *credentials[T, P]) verify(w http.ResponseWriter, body []byte) {
	secret, e, ok := stringParam(body, cs.param)
	if !ok {
		writeError(w, http.StatusBadRequest, e)
		return
	}

	cs.mu.Lock()
	c, found := cs.bySecret[secret]
	cs.mu.Unlock()
	if !found {
		writeError(w, http.StatusNotFound, errResourceNotFound)
		return
	}

	writeJSON(w, http.StatusOK, P(&c).object(time.Now()))
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
