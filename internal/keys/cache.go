package keys

import (
	"context"
	"slices"
	"sync"
	"time"
)

// DefaultCacheSize bounds how many keys a cache holds. Only keys that were
// active when looked up are cached, so only the operator, by issuing keys,
// can make it grow; the bound keeps a mistake from costing memory.
const DefaultCacheSize = 10_000

// NewCache returns a Store that remembers, for ttl, the active keys Lookup
// finds in s, so that a busy client costs one store query per ttl rather
// than one per call. A ttl of zero or less returns s itself: every call
// asks the store.
//
// What it remembers, and what it does not:
//   - An entry is keyed by the key's SHA-256 hash (the key itself is never
//     held) and holds the Key as the store returned it: principal, expiry,
//     and hash for Authenticate's constant-time comparison.
//   - Unknown, revoked and expired keys are never cached, so a client
//     guessing keys asks the store every time and adds nothing to memory;
//     at most DefaultCacheSize keys are held.
//   - Authenticate checks the expiry on every call, so a cached key is
//     refused from the instant it expires.
//
// Revocation: Revoke through the returned Store (the console, and anything
// else in this process holding it) drops every cached key before it
// returns, so the revoked key is refused on the next call. A revocation by
// another process or instance sharing the database (warden keys revoke,
// another replica's console) is seen when the entry's ttl runs out: within
// ttl on every instance. This weakens the Store contract ("Lookup sees it
// from then on") by exactly ttl for other processes' revocations.
//
// Close closes s.
func NewCache(s Store, ttl time.Duration) Store {
	if ttl <= 0 {
		return s
	}
	return &cache{Store: s, ttl: ttl, max: DefaultCacheSize, entries: map[string]cached{}}
}

// cache is a Store whose Lookup remembers active keys for ttl.
type cache struct {
	Store
	ttl time.Duration
	max int

	mu      sync.RWMutex
	entries map[string]cached // by string(hash)
	// epoch counts purges. A Lookup that missed stores its answer only if
	// no purge happened while it asked the store: otherwise a lookup that
	// read the key just before a revocation committed could cache it just
	// after the revocation purged the cache.
	epoch uint64
}

type cached struct {
	k     *Key
	until time.Time // when the store must be asked again
}

var _ Store = (*cache)(nil)

func (c *cache) Lookup(ctx context.Context, hash []byte) (*Key, error) {
	now := time.Now()
	c.mu.RLock()
	e, ok := c.entries[string(hash)]
	epoch := c.epoch
	c.mu.RUnlock()
	if ok && now.Before(e.until) {
		return e.k.clone(), nil
	}
	k, err := c.Store.Lookup(ctx, hash)
	if err != nil {
		return nil, err
	}
	if k.Active(now) {
		c.put(string(hash), cached{k: k.clone(), until: now.Add(c.ttl)}, epoch, now)
	}
	return k, nil
}

// put caches e under h unless the cache was purged since epoch, making
// room if the cache is full.
func (c *cache) put(h string, e cached, epoch uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return
	}
	if _, ok := c.entries[h]; !ok && len(c.entries) >= c.max {
		for old, oe := range c.entries {
			if !now.Before(oe.until) {
				delete(c.entries, old)
			}
		}
		// Still full of live entries: drop one, at random (map order).
		// It costs its owner one store query.
		for old := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, old)
		}
	}
	c.entries[h] = e
}

// Revoke revokes the key in the store, then forgets every cached key, so
// that the revoked one is refused on the next call. It purges even when
// the store returns an error: the revocation may have committed anyway.
// Revocations are rare; the other keys cost one store query each to cache
// again.
func (c *cache) Revoke(ctx context.Context, idOrName string) (*Key, error) {
	k, err := c.Store.Revoke(ctx, idOrName)
	c.purge()
	return k, err
}

func (c *cache) purge() {
	c.mu.Lock()
	c.epoch++
	clear(c.entries)
	c.mu.Unlock()
}

// clone returns a copy of k that shares nothing with it, so that a cached
// key stays as the store returned it whatever a caller does with its copy.
func (k *Key) clone() *Key {
	c := *k
	c.Scopes, c.Groups = slices.Clone(k.Scopes), slices.Clone(k.Groups)
	// hash is shared: it is unexported, and Authenticate only reads it.
	return &c
}
