package akserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/agentkey-go/agentkey"
)

// maxCachedTokens bounds the verification cache. Only well-formed tokens are
// cached, so filling it takes that many random guesses; when it is full the
// expired entries go, and if none has expired, all of them.
const maxCachedTokens = 10_000

// tokenCache verifies service tokens and remembers the answers, valid or
// not, for ttl, so that the decision API reads no setting on most requests.
// The price: a token revoked by another process (the CLI, another server)
// keeps working here for up to ttl. A ttl of 0 remembers nothing.
type tokenCache struct {
	store agentkey.Store
	ttl   time.Duration
	now   func() time.Time

	mu      sync.RWMutex
	entries map[[sha256.Size]byte]tokenEntry
}

type tokenEntry struct {
	name    string // empty for a token that is not valid
	expires time.Time
}

func newTokenCache(store agentkey.Store, ttl time.Duration) *tokenCache {
	return &tokenCache{store: store, ttl: ttl, now: time.Now,
		entries: map[[sha256.Size]byte]tokenEntry{}}
}

// verify returns the name of the service whose token this is, or "" when it
// is not a live service token.
func (c *tokenCache) verify(ctx context.Context, token string) (string, error) {
	if !wellFormed(token, ServiceTokenPrefix) {
		return "", nil
	}
	sum := sha256.Sum256([]byte(token))
	now := c.now()
	c.mu.RLock()
	e, ok := c.entries[sum]
	c.mu.RUnlock()
	if ok && now.Before(e.expires) {
		return e.name, nil
	}

	hash := hex.EncodeToString(sum[:])
	name, err := c.lookup(ctx, hash)
	if err != nil {
		return "", err
	}
	if c.ttl == 0 {
		return name, nil
	}
	c.mu.Lock()
	if len(c.entries) >= maxCachedTokens {
		c.evict(now)
	}
	c.entries[sum] = tokenEntry{name: name, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return name, nil
}

// lookup finds a token's service by its hash, and checks that the name still
// points back at the hash: a name revoked and given a new token leaves its
// old hash pointing at it.
func (c *tokenCache) lookup(ctx context.Context, hash string) (string, error) {
	name, err := c.store.Setting(ctx, settingServiceHash+hash)
	if errors.Is(err, agentkey.ErrNotFound) || err == nil && name == "" {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read service token: %w", err)
	}
	current, err := c.store.Setting(ctx, settingServiceName+name)
	if errors.Is(err, agentkey.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read service token %s: %w", name, err)
	}
	if !equalHashes(current, hash) {
		return "", nil
	}
	return name, nil
}

// forget drops a token's cached verification, by its hex hash.
func (c *tokenCache) forget(hash string) {
	raw, err := hex.DecodeString(hash)
	if err != nil || len(raw) != sha256.Size {
		return
	}
	c.mu.Lock()
	delete(c.entries, [sha256.Size]byte(raw))
	c.mu.Unlock()
}

// evict makes room in a full cache; c.mu is held.
func (c *tokenCache) evict(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	if len(c.entries) >= maxCachedTokens {
		clear(c.entries)
	}
}
