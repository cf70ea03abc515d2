package agentkey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"time"
)

// ScopeAdmin passes every scope check.
const ScopeAdmin = "admin"

const (
	// secretBytes is the randomness of a key: 24 bytes, 192 bits, written as 48
	// hex characters after the prefix.
	secretBytes = 24
	// displayChars is how many characters after the prefix the display prefix keeps.
	displayChars = 8
)

// Key is the state of an own key or of an external subject: who owns it, what
// it may do, until when, and its budgets. A Key never holds its secret; only a
// SHA-256 hash of the secret is stored.
type Key struct {
	ID string `json:"id"`
	// Prefix is the start of the secret, safe to display ("ak_3f9a1c2b").
	// Empty for external subjects.
	Prefix string `json:"prefix,omitempty"`
	// Subject is the identity provider's id for an external subject, such as a
	// Clerk user_ or org_ id. Empty for own keys.
	Subject string `json:"subject,omitempty"`

	AccountID   string `json:"account_id"`
	UserID      string `json:"user_id,omitempty"`
	DelegatedBy string `json:"delegated_by,omitempty"`
	Name        string `json:"name,omitempty"`

	// Scopes are what the key may do. Nil means unlimited; an empty slice
	// means nothing.
	Scopes []string `json:"scopes"`

	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`

	// Budgets are the key's own budgets, each with its own period. A key
	// without a limit has one unlimited budget that meters its usage.
	Budgets []Budget `json:"budgets"`
}

// HasScope reports whether k may do scope: its scopes are unlimited, or they
// include scope or ScopeAdmin.
func (k *Key) HasScope(scope string) bool {
	return k.Scopes == nil || slices.Contains(k.Scopes, scope) || slices.Contains(k.Scopes, ScopeAdmin)
}

// Expired reports whether k's expiry has passed at now.
func (k *Key) Expired(now time.Time) bool {
	return !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt)
}

// Revoked reports whether k has been revoked.
func (k *Key) Revoked() bool {
	return !k.RevokedAt.IsZero()
}

// Remaining returns the least that any of k's budgets has left, and false when
// none of them has a limit.
func (k *Key) Remaining() (Money, bool) {
	least, limited := MaxMoney, false
	for _, b := range k.Budgets {
		if !b.Unlimited {
			least, limited = min(least, b.Remaining()), true
		}
	}
	return least, limited
}

// blocking returns the budget of k that keeps it from being used for longest,
// or nil when every budget has room: an exhausted lifetime budget, which never
// resets, or else the exhausted budget whose period ends last, since the key
// can be used again only once all of them have reset.
func (k *Key) blocking() *Budget {
	var worst *Budget
	for i := range k.Budgets {
		b := &k.Budgets[i]
		switch {
		case !b.Exhausted():
		case b.ResetAt.IsZero():
			return b
		case worst == nil || b.ResetAt.After(worst.ResetAt):
			worst = b
		}
	}
	return worst
}

// rolled returns a copy of k whose budgets show the periods in force at now,
// without writing anything; the store persists a rollover at the next write.
func (k Key) rolled(now time.Time) (Key, error) {
	k.Budgets = slices.Clone(k.Budgets)
	for i := range k.Budgets {
		if _, _, err := k.Budgets[i].RollForward(now); err != nil {
			return Key{}, err
		}
	}
	return k, nil
}

// KeyRecord is what a store keeps of a key: its state and the hash of its
// secret (nil for an external subject).
type KeyRecord struct {
	Key
	Hash []byte
}

// HashSecret returns the SHA-256 hash under which a secret is stored.
func HashSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// newSecret returns a fresh secret behind prefix and its display prefix.
func newSecret(prefix string) (secret, display string) {
	b := make([]byte, secretBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	secret = prefix + hex.EncodeToString(b)
	return secret, secret[:len(prefix)+displayChars]
}

// wellFormed reports whether secret could be one of our keys: the prefix then
// 48 lowercase hex characters. Anything else is refused before any database
// work, which keeps garbage and oversized headers off the store.
func wellFormed(secret, prefix string) bool {
	if len(secret) != len(prefix)+2*secretBytes || secret[:len(prefix)] != prefix {
		return false
	}
	for _, c := range []byte(secret[len(prefix):]) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// newID returns an identifier such as "key_0641f3a2b9c15f0c2d9e8a7b6c1d": 6
// bytes of the time in microseconds, then 8 random bytes. Ids sort in the order
// they were made (to the microsecond), so that a key's budgets, which stores
// return in id order, come in the order they were created.
func newID(kind string) string {
	var b [14]byte
	us := uint64(time.Now().UnixMicro())
	for i := 5; i >= 0; i-- {
		b[i], us = byte(us), us>>8
	}
	_, _ = rand.Read(b[6:])
	return kind + "_" + hex.EncodeToString(b[:])
}
