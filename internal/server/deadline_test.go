package server

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wardenmcp/warden/internal/anomaly"
	"github.com/wardenmcp/warden/internal/approval"
	"github.com/wardenmcp/warden/internal/cache"
	"github.com/wardenmcp/warden/internal/console"
	"github.com/wardenmcp/warden/internal/idempotency"
	"github.com/wardenmcp/warden/internal/keys"
	"github.com/wardenmcp/warden/internal/nonce"
)

// The stalled stores answer nothing until the caller's context ends.
type (
	stalledSus  struct{ anomaly.SuspensionStore }
	stalled     struct{ approval.Store }
	stalledIdem struct{ idempotency.Store }
	stalledKeys struct{ keys.Store }
	stalledUse  struct{ nonce.Store }
	stalledFail struct{ console.Failures }
)

func (stalledUse) Use(ctx context.Context, _ string, _ time.Time) (bool, error) {
	return false, wait(ctx)
}
func (stalledFail) Allowed(ctx context.Context, _ string) (bool, error) { return false, wait(ctx) }
func (stalledFail) Add(ctx context.Context, _ string) error             { return wait(ctx) }

func (stalledKeys) Lookup(ctx context.Context, _ []byte) (*keys.Key, error) { return nil, wait(ctx) }

func wait(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

func (stalledSus) Suspended(ctx context.Context, _ string) (bool, string, error) {
	return false, "", wait(ctx)
}
func (stalled) Create(ctx context.Context, _ *approval.Request) error { return wait(ctx) }
func (stalled) Get(ctx context.Context, _ string) (*approval.Request, error) {
	return nil, wait(ctx)
}
func (stalled) Use(ctx context.Context, _ string) error { return wait(ctx) }
func (stalled) Decide(ctx context.Context, _ string, _ approval.Decision, _ []string) (*approval.Request, error) {
	return nil, wait(ctx)
}
func (stalled) List(ctx context.Context, _ string) ([]*approval.Request, error) {
	return nil, wait(ctx)
}

func (stalledIdem) Get(ctx context.Context, _ string) (*idempotency.Entry, error) {
	return nil, wait(ctx)
}
func (stalledIdem) Put(ctx context.Context, _ string, _ *idempotency.Entry, _ time.Duration) (bool, error) {
	return false, wait(ctx)
}
func (stalledIdem) Set(ctx context.Context, _ string, _ *idempotency.Entry, _ time.Duration) error {
	return wait(ctx)
}
func (stalledIdem) Delete(ctx context.Context, _ string) error { return wait(ctx) }

// Every call a request makes to a stalled store ends at the store's
// ceiling, or at the request's own deadline if that comes first: never
// later.
func TestStoreCallsEndAtTheirCeiling(t *testing.T) {
	const ceiling = 2 * time.Second
	sus := suspensionsWithin{stalledSus{}, ceiling}
	apr := approvalsWithin{stalled{}, ceiling}
	idem := idempotencyWithin{stalledIdem{}, ceiling}
	key := keysWithin{stalledKeys{}, ceiling}
	use := noncesWithin{stalledUse{}, ceiling}
	fail := failuresWithin{stalledFail{}, ceiling}
	calls := map[string]func(context.Context) error{
		"key lookup":      func(ctx context.Context) error { _, err := key.Lookup(ctx, make([]byte, 32)); return err },
		"suspended":       func(ctx context.Context) error { _, _, err := sus.Suspended(ctx, "alice"); return err },
		"approval create": func(ctx context.Context) error { return apr.Create(ctx, &approval.Request{}) },
		"approval get":    func(ctx context.Context) error { _, err := apr.Get(ctx, "apr_1"); return err },
		"approval use":    func(ctx context.Context) error { return apr.Use(ctx, "apr_1") },
		"approval decide": func(ctx context.Context) error {
			_, err := apr.Decide(ctx, "apr_1", approval.Decision{}, nil)
			return err
		},
		"approval list":   func(ctx context.Context) error { _, err := apr.List(ctx, ""); return err },
		"idempotency get": func(ctx context.Context) error { _, err := idem.Get(ctx, "k"); return err },
		"idempotency put": func(ctx context.Context) error {
			_, err := idem.Put(ctx, "k", &idempotency.Entry{}, time.Hour)
			return err
		},
		"idempotency set":    func(ctx context.Context) error { return idem.Set(ctx, "k", &idempotency.Entry{}, time.Hour) },
		"idempotency delete": func(ctx context.Context) error { return idem.Delete(ctx, "k") },
		"confirmation use": func(ctx context.Context) error {
			_, err := use.Use(ctx, "n", time.Now().Add(time.Minute))
			return err
		},
		"sign-in allowed": func(ctx context.Context) error { _, err := fail.Allowed(ctx, "192.0.2.1"); return err },
		"sign-in failure": func(ctx context.Context) error { return fail.Add(ctx, "192.0.2.1") },
	}
	for name, call := range calls {
		for _, tt := range []struct {
			own, want time.Duration // the request's own deadline (0: none), and when the call ends
		}{{0, ceiling}, {time.Second, time.Second}, {time.Minute, ceiling}} {
			t.Run(name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					ctx := context.Background()
					if tt.own > 0 {
						var cancel context.CancelFunc
						ctx, cancel = context.WithTimeout(ctx, tt.own)
						defer cancel()
					}
					start := time.Now()
					err := call(ctx)
					if took := time.Since(start); took != tt.want || !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("with the request's deadline %v: ended after %v with %v, want %v and a deadline error", tt.own, took, err, tt.want)
					}
				})
			})
		}
	}
}

// stalledCache answers nothing until the caller's context ends, and counts
// the calls that reach it.
type stalledCache struct {
	cache.Store
	calls *int
}

func (s stalledCache) Get(ctx context.Context, _ string) ([]byte, bool, error) {
	*s.calls++
	return nil, false, wait(ctx)
}

func (s stalledCache) Set(ctx context.Context, _ string, _ []byte, _ time.Duration) error {
	*s.calls++
	return wait(ctx)
}

// A cache that does not answer is a miss at its ceiling, and is then left
// alone for a second: the calls of that second do not wait on it.
func TestStalledCacheIsLeftAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ceiling = time.Second
		calls := 0
		c := newCacheWithin(stalledCache{calls: &calls}, ceiling)
		start := time.Now()
		if _, ok, err := c.Get(context.Background(), "k"); ok || err == nil || time.Since(start) != ceiling {
			t.Fatalf("the first read = %v, %v after %v; want a miss with an error at the ceiling", ok, err, time.Since(start))
		}
		start = time.Now()
		if _, ok, err := c.Get(context.Background(), "k"); ok || !errors.Is(err, errCacheDown) || time.Since(start) != 0 {
			t.Errorf("a read in the next second = %v, %v after %v; want a miss at once", ok, err, time.Since(start))
		}
		if err := c.Set(context.Background(), "k", nil, time.Minute); !errors.Is(err, errCacheDown) {
			t.Errorf("a write in the next second = %v; want it skipped", err)
		}
		if calls != 1 {
			t.Errorf("the cache was asked %d times, want once", calls)
		}
		time.Sleep(cacheCooldown) // the fake clock of the bubble
		c.Get(context.Background(), "k")
		if calls != 2 {
			t.Errorf("after the cooldown the cache was asked %d times in all, want twice", calls)
		}
	})
}
