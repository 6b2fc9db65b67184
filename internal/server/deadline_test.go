package server

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wardenmcp/warden/internal/anomaly"
	"github.com/wardenmcp/warden/internal/approval"
	"github.com/wardenmcp/warden/internal/idempotency"
	"github.com/wardenmcp/warden/internal/keys"
)

// The stalled stores answer nothing until the caller's context ends.
type (
	stalledSus  struct{ anomaly.SuspensionStore }
	stalled     struct{ approval.Store }
	stalledIdem struct{ idempotency.Store }
	stalledKeys struct{ keys.Store }
)

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
