package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Store keeps cached values until their TTL passes.
//
// Get returns the value stored under key and true, or false for a key that
// is absent or expired. Set stores val under key for ttl. A store may
// forget any value early (that is only a miss). Stores copy what they are
// given and what they return. An error means the store could not answer.
// A Store is safe for concurrent use; Close releases it.
type Store interface {
	Get(ctx context.Context, key string) (val []byte, ok bool, err error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	Close() error
}

var (
	_ Store = (*Memory)(nil)
	_ Store = (*Redis)(nil)
)

// Memory is the store of a single instance: a map bounded in entries,
// evicting the least recently used, with expiry on the given clock.
type Memory struct {
	now func() time.Time
	max int

	mu  sync.Mutex
	m   map[string]*list.Element
	lru list.List // of *memEntry, most recently used first
}

type memEntry struct {
	key string
	val []byte
	exp time.Time
}

// DefaultMaxEntries bounds a Memory store given no bound.
const DefaultMaxEntries = 10000

// NewMemory returns a store that reads the time from now (time.Now if nil)
// and holds at most max entries (DefaultMaxEntries if max <= 0).
func NewMemory(now func() time.Time, max int) *Memory {
	if now == nil {
		now = time.Now
	}
	if max <= 0 {
		max = DefaultMaxEntries
	}
	return &Memory{now: now, max: max, m: make(map[string]*list.Element)}
}

func (s *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.m[key]
	if !ok {
		return nil, false, nil
	}
	e := el.Value.(*memEntry)
	if !s.now().Before(e.exp) {
		s.lru.Remove(el)
		delete(s.m, key)
		return nil, false, nil
	}
	s.lru.MoveToFront(el)
	return slices.Clone(e.val), true, nil
}

func (s *Memory) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	e := &memEntry{key: key, val: slices.Clone(val), exp: s.now().Add(ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.m[key]; ok {
		el.Value = e
		s.lru.MoveToFront(el)
		return nil
	}
	s.m[key] = s.lru.PushFront(e)
	for len(s.m) > s.max {
		el := s.lru.Back()
		s.lru.Remove(el)
		delete(s.m, el.Value.(*memEntry).key)
	}
	return nil
}

// Len reports how many entries the store holds, expired ones included.
func (s *Memory) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *Memory) Close() error { return nil }

// Redis keeps cached values in Redis, shared by every Warden instance that
// uses the same server and key prefix. TTLs are Redis's own.
type Redis struct {
	client redis.UniversalClient
	prefix string
}

// NewRedis returns a store over client, with every key under prefix. The
// store owns the client: Close closes it.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix}
}

func (s *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	b, err := s.client.Get(ctx, s.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("cache in Redis: %w", err)
	}
	return b, true, nil
}

func (s *Redis) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := s.client.Set(ctx, s.prefix+key, val, ttl).Err(); err != nil {
		return fmt.Errorf("cache in Redis: %w", err)
	}
	return nil
}

func (s *Redis) Close() error { return s.client.Close() }
