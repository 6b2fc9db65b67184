package idempotency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Entry is what a store keeps for one idempotency key.
type Entry struct {
	// ArgsHash identifies the arguments of the call that claimed the key;
	// a repeat with other arguments is refused.
	ArgsHash string `json:"args_hash"`
	// Result is the marshalled *pipeline.ToolResult of the call, once it
	// has succeeded.
	Result json.RawMessage `json:"result,omitempty"`
	// Pending means the call that claimed the key is still running.
	Pending bool `json:"pending,omitempty"`
}

// A Store keeps idempotency entries until their TTL passes.
//
// Get returns nil and no error for a key that is absent or expired. Put
// stores e only if key is absent (put-if-absent) and reports whether it did;
// Set stores e whatever is there; Delete removes key. Stores copy what they
// are given and what they return, so callers may keep or change either.
// An error means the store could not answer; nothing is known about what
// it holds. A Store is safe for concurrent use; Close releases it.
type Store interface {
	Get(ctx context.Context, key string) (*Entry, error)
	Put(ctx context.Context, key string, e *Entry, ttl time.Duration) (stored bool, err error)
	Set(ctx context.Context, key string, e *Entry, ttl time.Duration) error
	Delete(ctx context.Context, key string) error
	Close() error
}

var (
	_ Store = (*Memory)(nil)
	_ Store = (*Redis)(nil)
)

// ErrFull is returned by a Memory store that holds its maximum of live
// entries.
var ErrFull = errors.New("idempotency store is full")

// Memory is the store of a single instance: entries live in a map, bounded
// in size, and expire on the given clock.
type Memory struct {
	now func() time.Time
	max int

	mu sync.Mutex
	m  map[string]memEntry
	// sweepAt is the size at which expired entries are next swept out, so
	// the map holds at most about twice the live entries, at amortised
	// constant cost per Put.
	sweepAt int
}

type memEntry struct {
	e   Entry
	exp time.Time
}

const minSweep = 1024

// NewMemory returns a store that reads the time from now (time.Now if nil)
// and holds at most max live entries (no bound if max <= 0); beyond that,
// Put and Set fail with ErrFull rather than forget a key early, which
// would let a repeated call run twice.
func NewMemory(now func() time.Time, max int) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, max: max, m: make(map[string]memEntry), sweepAt: minSweep}
}

func clone(e *Entry) Entry {
	c := *e
	c.Result = slices.Clone(e.Result)
	return c
}

func (s *Memory) Get(_ context.Context, key string) (*Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	me, ok := s.m[key]
	if !ok || !s.now().Before(me.exp) {
		return nil, nil
	}
	c := clone(&me.e)
	return &c, nil
}

func (s *Memory) Put(_ context.Context, key string, e *Entry, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if me, ok := s.m[key]; ok && now.Before(me.exp) {
		return false, nil
	}
	return true, s.set(now, key, e, ttl)
}

func (s *Memory) Set(_ context.Context, key string, e *Entry, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set(s.now(), key, e, ttl)
}

// set stores e; s.mu is held.
func (s *Memory) set(now time.Time, key string, e *Entry, ttl time.Duration) error {
	if _, ok := s.m[key]; !ok {
		if len(s.m) >= s.sweepAt || (s.max > 0 && len(s.m) >= s.max) {
			for k, me := range s.m {
				if !now.Before(me.exp) {
					delete(s.m, k)
				}
			}
			s.sweepAt = max(2*len(s.m), minSweep)
		}
		if s.max > 0 && len(s.m) >= s.max {
			return ErrFull
		}
	}
	s.m[key] = memEntry{e: clone(e), exp: now.Add(ttl)}
	return nil
}

func (s *Memory) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

func (s *Memory) Close() error { return nil }

// Redis keeps entries in Redis, shared by every Warden instance that uses
// the same server and key prefix. Entries are JSON; the claim is SET NX PX,
// so of several instances exactly one claims a key. TTLs are Redis's own.
type Redis struct {
	client redis.UniversalClient
	prefix string
}

// NewRedis returns a store over client, with every key under prefix. The
// store owns the client: Close closes it.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix}
}

func (s *Redis) Get(ctx context.Context, key string) (*Entry, error) {
	b, err := s.client.Get(ctx, s.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("idempotency key in Redis: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("idempotency key in Redis: %w", err)
	}
	return &e, nil
}

func (s *Redis) Put(ctx context.Context, key string, e *Entry, ttl time.Duration) (bool, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return false, err
	}
	ok, err := s.client.SetNX(ctx, s.prefix+key, b, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("claiming idempotency key in Redis: %w", err)
	}
	return ok, nil
}

func (s *Redis) Set(ctx context.Context, key string, e *Entry, ttl time.Duration) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := s.client.Set(ctx, s.prefix+key, b, ttl).Err(); err != nil {
		return fmt.Errorf("storing idempotent result in Redis: %w", err)
	}
	return nil
}

func (s *Redis) Delete(ctx context.Context, key string) error {
	if err := s.client.Del(ctx, s.prefix+key).Err(); err != nil {
		return fmt.Errorf("releasing idempotency key in Redis: %w", err)
	}
	return nil
}

func (s *Redis) Close() error { return s.client.Close() }
