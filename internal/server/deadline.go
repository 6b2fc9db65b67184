package server

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/wardenmcp/warden/internal/anomaly"
	"github.com/wardenmcp/warden/internal/approval"
	"github.com/wardenmcp/warden/internal/cache"
	"github.com/wardenmcp/warden/internal/console"
	"github.com/wardenmcp/warden/internal/idempotency"
	"github.com/wardenmcp/warden/internal/keys"
	"github.com/wardenmcp/warden/internal/nonce"
)

// The stores below are reached on a request's behalf, and each call to
// them runs under the request's own deadline capped by the store's
// ceiling (server.state.timeouts): a store that stops answering fails the
// request, as UNAVAILABLE with a retry_after, instead of holding it. The
// wrappers bound only the calls a request makes; background work (the
// approval cleaner, the detector's retried suspension writes) keeps its
// own deadlines. The rate limiter bounds its store itself
// (ratelimit.Limiter.StoreTimeout), so that a store that times out is
// left alone for a second, like one that fails.

// keysWithin bounds each API-key lookup: of an MCP request, a stdio call,
// the console.
type keysWithin struct {
	keys.Store
	ceiling time.Duration
}

func (s keysWithin) Lookup(ctx context.Context, hash []byte) (*keys.Key, error) {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.Store.Lookup(ctx, hash)
}

// suspensionsWithin bounds the suspension check.
type suspensionsWithin struct {
	anomaly.SuspensionStore
	ceiling time.Duration
}

func (s suspensionsWithin) Suspended(ctx context.Context, principal string) (bool, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.SuspensionStore.Suspended(ctx, principal)
}

// approvalsWithin bounds what the risk gate and the approvals API ask of
// the approval store.
type approvalsWithin struct {
	approval.Store
	ceiling time.Duration
}

func (s approvalsWithin) Create(ctx context.Context, r *approval.Request) error {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.Store.Create(ctx, r)
}

func (s approvalsWithin) Get(ctx context.Context, id string) (*approval.Request, error) {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.Store.Get(ctx, id)
}

func (s approvalsWithin) List(ctx context.Context, state string) ([]*approval.Request, error) {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.Store.List(ctx, state)
}

func (s approvalsWithin) Decide(ctx context.Context, id string, d approval.Decision, groups []string) (*approval.Request, error) {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.Store.Decide(ctx, id, d, groups)
}

func (s approvalsWithin) Use(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.Store.Use(ctx, id)
}

// idempotencyWithin bounds each read and write of an idempotency entry.
type idempotencyWithin struct {
	idempotency.Store
	ceiling time.Duration
}

func (s idempotencyWithin) Get(ctx context.Context, key string) (*idempotency.Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.Store.Get(ctx, key)
}

func (s idempotencyWithin) Put(ctx context.Context, key string, e *idempotency.Entry, ttl time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.Store.Put(ctx, key, e, ttl)
}

func (s idempotencyWithin) Set(ctx context.Context, key string, e *idempotency.Entry, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.Store.Set(ctx, key, e, ttl)
}

func (s idempotencyWithin) Delete(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.Store.Delete(ctx, key)
}

// cacheWithin bounds each read and write of the result cache. A read that
// fails or times out is a miss and the call runs: the cache saves work and
// controls nothing, so it is never a reason to refuse a call. After a
// failure the cache is left alone for cacheCooldown — reads miss and
// writes are skipped at once — so that a cache that stopped answering
// costs calls its ceiling once a second, not on every call.
type cacheWithin struct {
	cache.Store
	ceiling time.Duration
	// downUntil is when the cache is next asked, in Unix nanoseconds;
	// zero while it answers.
	downUntil *atomic.Int64
}

// cacheCooldown is how long a cache that failed is left alone.
const cacheCooldown = time.Second

// errCacheDown is what a read returns while the cache is left alone.
var errCacheDown = errors.New("the cache failed within the last second; not asked")

func newCacheWithin(s cache.Store, ceiling time.Duration) cacheWithin {
	return cacheWithin{Store: s, ceiling: ceiling, downUntil: new(atomic.Int64)}
}

func (s cacheWithin) down() bool {
	until := s.downUntil.Load()
	return until != 0 && time.Now().UnixNano() < until
}

func (s cacheWithin) failed(err error) {
	if err != nil {
		s.downUntil.Store(time.Now().Add(cacheCooldown).UnixNano())
	} else if s.downUntil.Load() != 0 {
		s.downUntil.Store(0)
	}
}

func (s cacheWithin) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if s.down() {
		return nil, false, errCacheDown
	}
	cctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	val, ok, err := s.Store.Get(cctx, key)
	if ctx.Err() == nil { // the caller giving up says nothing of the cache
		s.failed(err)
	}
	return val, ok, err
}

func (s cacheWithin) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if s.down() {
		return errCacheDown
	}
	cctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	err := s.Store.Set(cctx, key, val, ttl)
	if ctx.Err() == nil {
		s.failed(err)
	}
	return err
}

var (
	_ cache.Store             = cacheWithin{}
	_ keys.Store              = keysWithin{}
	_ anomaly.SuspensionStore = suspensionsWithin{}
	_ approval.Store          = approvalsWithin{}
	_ idempotency.Store       = idempotencyWithin{}
)

// noncesWithin bounds each use of a confirmation or single sign-on.
type noncesWithin struct {
	nonce.Store
	ceiling time.Duration
}

func (s noncesWithin) Use(ctx context.Context, value string, expires time.Time) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.Store.Use(ctx, value, expires)
}

// failuresWithin bounds the console's sign-in limits.
type failuresWithin struct {
	console.Failures
	ceiling time.Duration
}

func (s failuresWithin) Allowed(ctx context.Context, addr string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.Failures.Allowed(ctx, addr)
}

func (s failuresWithin) Add(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.Failures.Add(ctx, addr)
}
