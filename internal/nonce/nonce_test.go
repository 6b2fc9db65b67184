package nonce

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/state/statetest"
)

// store is one implementation under test: new returns it and a function
// that moves its clock, unless realClk says it expires on Redis's.
type store struct {
	name    string
	new     func(t *testing.T) (Store, func(time.Duration))
	realClk bool
}

func stores() []store {
	ctx := context.Background()
	sql := func(open func(t *testing.T) (Store, error)) func(t *testing.T) (Store, func(time.Duration)) {
		return func(t *testing.T) (Store, func(time.Duration)) {
			s, err := open(t)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			clk := statetest.NewClock(time.Now())
			s.(*sqlStore).now = clk.Now
			return s, clk.Advance
		}
	}
	return []store{
		{name: "memory", new: func(t *testing.T) (Store, func(time.Duration)) {
			clk := statetest.NewClock(time.Now())
			return NewMemory(clk.Now, 0), clk.Advance
		}},
		{name: "redis", realClk: true, new: func(t *testing.T) (Store, func(time.Duration)) {
			c, prefix := statetest.Redis(t)
			return NewRedis(c, prefix), nil
		}},
		{name: "sqlite", new: sql(func(t *testing.T) (Store, error) { return OpenSQLite(ctx, statetest.SQLitePath(t)) })},
		{name: "postgres", new: sql(func(t *testing.T) (Store, error) { return OpenPostgres(ctx, statetest.Postgres(t)) })},
	}
}

// TestStoreContract checks every store against the contract of Store: a
// value is accepted once, by one of many concurrent users, until it
// expires.
func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	for _, st := range stores() {
		t.Run(st.name, func(t *testing.T) {
			s, advance := st.new(t)
			use := func(v string, exp time.Time) bool {
				t.Helper()
				ok, err := s.Use(ctx, v, exp)
				if err != nil {
					t.Fatalf("Use(%s): %v", v, err)
				}
				return ok
			}
			exp := time.Now().Add(time.Minute)
			if !use("a", exp) {
				t.Fatal("the first Use of a value reported it used")
			}
			if use("a", exp) {
				t.Fatal("a second Use of a value was accepted: a replay")
			}
			if !use("b", exp) {
				t.Fatal("another value was refused")
			}

			// Of many concurrent users of one value, exactly one wins.
			var wins atomic.Int32
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					ok, err := s.Use(ctx, "race", exp)
					if err != nil {
						t.Error(err)
					}
					if ok {
						wins.Add(1)
					}
				})
			}
			wg.Wait()
			if n := wins.Load(); n != 1 {
				t.Fatalf("%d of 16 concurrent uses of one value were accepted, want 1", n)
			}

			// Once expired, a value is forgotten (whatever carried it is
			// refused for its age by then).
			if st.realClk {
				short := time.Now().Add(50*time.Millisecond - Skew)
				use("c", short)
				deadline := time.Now().Add(5 * time.Second)
				for !use("c", short.Add(time.Minute)) {
					if time.Now().After(deadline) {
						t.Fatal("an expired value was never forgotten")
					}
					time.Sleep(10 * time.Millisecond)
				}
				return
			}
			use("c", time.Now().Add(time.Second))
			advance(2*time.Second + Skew)
			if !use("c", time.Now().Add(time.Hour)) {
				t.Fatal("an expired value was not forgotten")
			}
			if use("c", time.Now().Add(time.Hour)) {
				t.Fatal("a value reused after expiry was accepted twice")
			}
		})
	}
}

// A memory store never forgets an unexpired value to make room: it
// refuses instead, so that nothing can be replayed.
func TestMemoryFull(t *testing.T) {
	clk := statetest.NewClock(time.Now())
	m := NewMemory(clk.Now, 3)
	for i := range 3 {
		if ok, err := m.Use(context.Background(), fmt.Sprint(i), clk.Now().Add(time.Minute)); !ok || err != nil {
			t.Fatalf("Use %d: %v %v", i, ok, err)
		}
	}
	if _, err := m.Use(context.Background(), "x", clk.Now().Add(time.Minute)); err != ErrFull {
		t.Fatalf("Use beyond the bound: %v, want ErrFull", err)
	}
	if ok, _ := m.Use(context.Background(), "0", clk.Now().Add(time.Minute)); ok {
		t.Fatal("a value was forgotten to make room")
	}
	clk.Advance(2 * time.Minute)
	if ok, err := m.Use(context.Background(), "x", clk.Now().Add(time.Minute)); !ok || err != nil {
		t.Fatalf("Use after the others expired: %v %v", ok, err)
	}
}
