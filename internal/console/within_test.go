package console

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// stalledSessions answers nothing until the caller's context ends.
type stalledSessions struct{ SessionStore }

func (stalledSessions) Put(ctx context.Context, _ *session) error { <-ctx.Done(); return ctx.Err() }
func (stalledSessions) Get(ctx context.Context, _ string) (*session, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (stalledSessions) Delete(ctx context.Context, _ string) error { <-ctx.Done(); return ctx.Err() }

// A session store that stops answering ends each console request's read
// or write at its ceiling, never later.
func TestSessionsWithinTheirCeiling(t *testing.T) {
	const ceiling = 2 * time.Second
	st := SessionsWithin(stalledSessions{}, ceiling)
	for name, call := range map[string]func(context.Context) error{
		"put":    func(ctx context.Context) error { return st.Put(ctx, &session{}) },
		"get":    func(ctx context.Context) error { _, err := st.Get(ctx, "k"); return err },
		"delete": func(ctx context.Context) error { return st.Delete(ctx, "k") },
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				err := call(context.Background())
				if took := time.Since(start); took != ceiling || !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("ended after %v with %v, want %v and a deadline error", took, err, ceiling)
				}
			})
		})
	}
}
