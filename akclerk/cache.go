package akclerk

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/agentkey-go/agentkey"
)

// credentialKind tells API keys and M2M tokens apart in the cache, since
// Clerk verifies them at different endpoints.
type credentialKind uint8

const (
	kindAPIKey credentialKind = iota + 1
	kindM2MToken
)

// cacheKey identifies a credential in the cache by the SHA-256 hash of its
// secret, so that no secret is kept in memory longer than a request.
type cacheKey struct {
	kind credentialKind
	hash [sha256.Size]byte
}

func newCacheKey(kind credentialKind, credential string) cacheKey {
	return cacheKey{kind: kind, hash: sha256.Sum256([]byte(credential))}
}

// verdict is Clerk's answer about one credential, as the cache keeps it.
type verdict struct {
	// object is the *clerk.APIKey or *clerk.M2MToken that Clerk answered, or
	// nil when Clerk does not know the credential.
	object  any
	subject string
	reason  agentkey.Reason
}

// entry is one cached verdict and when it stops being usable.
type entry struct {
	key     cacheKey
	verdict verdict
	expires time.Time
	lru     *lru // the list it is in
}

// lru is one list of entries, most recently used first, holding at most
// size of them.
type lru struct {
	size int
	ll   *list.List
}

// cache is a bounded LRU map of verdicts with a time to live per entry.
//
// Valid answers and rejections are kept in two lists with bounds of their
// own, rejections in the smaller: every bearer string a client makes up costs
// a Clerk call and a rejection, and in one list a flood of them would push
// out the valid answers that real customers' requests depend on.
//
// Its generation counts purges. A verification notes the generation before
// it asks Clerk and may store its answer only if no purge happened meanwhile,
// so that an answer fetched before a purge cannot bring back what the purge
// removed. One counter for all keys is enough: purges are rare, and a purge
// by subject must also stop verifications whose subject is not known yet.
type cache struct {
	mu              sync.Mutex
	valid, rejected lru
	items           map[cacheKey]*list.Element
	gen             uint64
}

// newCache returns a cache of at most size valid answers and, beside them,
// rejectedSize rejections. A size of 0 keeps none of that kind.
func newCache(size, rejectedSize int) *cache {
	return &cache{
		valid:    lru{size: size, ll: list.New()},
		rejected: lru{size: rejectedSize, ll: list.New()},
		items:    make(map[cacheKey]*list.Element),
	}
}

// get returns the verdict for k if it has not expired at now, and marks it
// as the most recently used.
func (c *cache) get(k cacheKey, now time.Time) (verdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()

	el, ok := c.items[k]
	if !ok {
		return verdict{}, false
	}
	e := el.Value.(*entry)
	if !now.Before(e.expires) {
		c.removeElement(el)
		return verdict{}, false
	}
	e.lru.ll.MoveToFront(el)
	return e.verdict, true
}

// generation returns the number of purges so far.
func (c *cache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// add stores v for k until expires, in the list of valid answers or of
// rejections, evicting that list's least recently used entry when it is
// full. It stores nothing if a purge has happened since generation gen.
func (c *cache) add(k cacheKey, v verdict, expires time.Time, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if gen != c.gen {
		return
	}
	if el, ok := c.items[k]; ok {
		c.removeElement(el)
	}
	l := &c.valid
	if v.reason != "" {
		l = &c.rejected
	}
	if l.size == 0 {
		return
	}

	c.items[k] = l.ll.PushFront(&entry{key: k, verdict: v, expires: expires, lru: l})
	for l.ll.Len() > l.size {
		c.removeElement(l.ll.Back())
	}
}

// remove drops the entries of keys and starts a new generation.
func (c *cache) remove(keys ...cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.gen++
	for _, k := range keys {
		if el, ok := c.items[k]; ok {
			c.removeElement(el)
		}
	}
}

// removeSubject drops every entry of subject and starts a new generation. It
// scans the whole cache, which is bounded and small; purges are rare.
func (c *cache) removeSubject(subject string) {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.gen++
	for _, l := range []*lru{&c.valid, &c.rejected} {
		for el := l.ll.Front(); el != nil; {
			next := el.Next()
			if el.Value.(*entry).verdict.subject == subject {
				c.removeElement(el)
			}
			el = next
		}
	}
}

func (c *cache) removeElement(el *list.Element) {
	e := el.Value.(*entry)
	e.lru.ll.Remove(el)
	delete(c.items, e.key)
}
