// Package nonce remembers single-use values — the nonce of a confirmation,
// the state of a single sign-on — so that each is accepted once, by
// whichever instance sees it first, and never again by any.
//
//	store := nonce.NewMemory(time.Now, 100_000) // one instance; for several,
//	// nonce.NewRedis(client, "warden:nonce:") or nonce.Open(ctx, cfg)
//	first, err := store.Use(ctx, n, expires)
//	if err != nil { /* refuse: whether n was used is unknown */ }
//	if !first { /* refuse: a replay */ }
//
// A value need only be remembered until it expires: after that, whatever
// carries it is refused for its age, so stores forget it then (the shared
// ones a little later: see Skew).
package nonce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Store remembers used values until they expire.
//
// Use marks value used until expires and reports whether it was not
// already: of several calls with one value, on one instance or many, at
// most one reports true. An error means the store could not answer; the
// caller must refuse, as it cannot know whether value was used. A Store is
// safe for concurrent use; Close releases it.
type Store interface {
	Use(ctx context.Context, value string, expires time.Time) (first bool, err error)
	Close() error
}

var (
	_ Store = (*Memory)(nil)
	_ Store = (*Redis)(nil)
)

// ErrFull is returned by a Memory store that remembers its maximum of
// unexpired values: forgetting one early would let it be replayed.
var ErrFull = errors.New("too many single-use values in flight")

// Memory remembers values in this process: the store of a single instance.
type Memory struct {
	now func() time.Time
	max int

	mu      sync.Mutex
	used    map[string]time.Time // value → expiry
	sweepAt int
}

const minSweep = 1024

// NewMemory returns a store on the clock now (time.Now if nil) that holds
// at most max unexpired values (no bound if max <= 0).
func NewMemory(now func() time.Time, max int) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, max: max, used: map[string]time.Time{}, sweepAt: minSweep}
}

func (m *Memory) Use(_ context.Context, value string, expires time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if exp, ok := m.used[value]; ok && now.Before(exp) {
		return false, nil
	}
	if len(m.used) >= m.sweepAt || (m.max > 0 && len(m.used) >= m.max) {
		for v, exp := range m.used {
			if !now.Before(exp) {
				delete(m.used, v)
			}
		}
		m.sweepAt = max(2*len(m.used), minSweep)
	}
	if m.max > 0 && len(m.used) >= m.max {
		return false, ErrFull
	}
	m.used[value] = expires
	return true, nil
}

func (m *Memory) Close() error { return nil }

// Skew is how long past its expiry a shared store remembers a value: the
// instances that check expiry read their own clocks, and one running behind
// must not accept again what another's store has already forgotten.
const Skew = time.Minute

// Redis remembers values in Redis, shared by every instance using the same
// server and prefix: Use is SET NX with the value's expiry (plus Skew),
// which Redis makes atomic, and Redis forgets the key then.
type Redis struct {
	client redis.UniversalClient
	prefix string
}

// NewRedis returns a store over client with its keys under prefix. It does
// not own the client: Close leaves it open.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix}
}

func (r *Redis) Use(ctx context.Context, value string, expires time.Time) (bool, error) {
	ttl := time.Until(expires) + Skew
	if ttl < time.Millisecond {
		// Long expired: whatever carries it is refused for its age;
		// remember it briefly all the same, so that Use stays once.
		ttl = time.Millisecond
	}
	ok, err := r.client.SetNX(ctx, r.prefix+value, 1, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("single-use value in Redis: %w", err)
	}
	return ok, nil
}

func (r *Redis) Close() error { return nil }
