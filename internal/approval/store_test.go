package approval

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/state/statetest"
)

// forEachStore runs f as a subtest for each kind of store; open opens a
// store on the same data each time it is called, as processes sharing a
// database do.
func forEachStore(t *testing.T, f func(t *testing.T, open func() Store)) {
	t.Helper()
	kinds := []struct {
		name string
		cfg  func(t *testing.T) *config.Config
	}{
		{"sqlite", func(t *testing.T) *config.Config {
			cfg := &config.Config{}
			cfg.Server.State.SQLite = statetest.SQLitePath(t)
			return cfg
		}},
		{"postgres", func(t *testing.T) *config.Config {
			cfg := &config.Config{}
			cfg.Server.State.Postgres = statetest.Postgres(t)
			return cfg
		}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			cfg := k.cfg(t)
			f(t, func() Store {
				s, err := OpenStore(context.Background(), cfg)
				if err != nil {
					t.Fatalf("OpenStore: %v", err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			})
		})
	}
}

// setClock makes s read the time from clock.
func setClock(s Store, clock func() time.Time) {
	switch s := s.(type) {
	case *sqliteStore:
		s.clock = clock
	case *postgresStore:
		s.clock = clock
	}
}

func newRequest(needed int) *Request {
	return &Request{
		ID: NewID(), Principal: "alice", Tenant: "acme", Tool: "refund_payment", ToolVersion: "1",
		ArgsHash: "h1", Args: []byte(`{"amount":100}`), Summary: "refund 100 to C-1", Groups: []string{"finance", "ops"},
		Needed: needed, ExpiresAt: time.Now().Add(time.Hour),
	}
}

func TestApprovalStoreRoundTrip(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() Store) {
		s, other := open(), open()
		ctx := context.Background()
		r := newRequest(2)
		if err := s.Create(ctx, r); err != nil {
			t.Fatalf("Create: %v", err)
		}
		got, err := other.Get(ctx, r.ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got.State != Pending || got.Principal != "alice" || got.Summary != r.Summary || string(got.Args) != string(r.Args) ||
			len(got.Groups) != 2 || got.Needed != 2 || !got.CreatedAt.Equal(r.CreatedAt) || !got.ExpiresAt.Equal(r.ExpiresAt) {
			t.Fatalf("Get = %+v, want %+v", got, r)
		}
		if _, err := s.Get(ctx, "apr_nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get unknown: %v, want ErrNotFound", err)
		}
		if l, err := s.List(ctx, Pending); err != nil || len(l) != 1 || l[0].ID != r.ID {
			t.Fatalf("List pending = %v, %v", l, err)
		}
		if l, err := s.List(ctx, Approved); err != nil || len(l) != 0 {
			t.Fatalf("List approved = %v, %v", l, err)
		}
	})
}

func TestApprovalStoreDecide(t *testing.T) {
	finance := []string{"finance"}
	forEachStore(t, func(t *testing.T, open func() Store) {
		s := open()
		ctx := context.Background()
		r := newRequest(2)
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		refusals := []struct {
			name   string
			d      Decision
			groups []string
			want   error
		}{
			{"self-approval", Decision{Approver: "alice", Approve: true}, finance, ErrSelfApproval},
			{"outside the groups", Decision{Approver: "mallory", Approve: true}, []string{"sales"}, ErrNotApprover},
		}
		for _, tt := range refusals {
			if _, err := s.Decide(ctx, r.ID, tt.d, tt.groups); !errors.Is(err, tt.want) {
				t.Errorf("%s: Decide = %v, want %v", tt.name, err, tt.want)
			}
		}
		got, err := s.Decide(ctx, r.ID, Decision{Approver: "bob", Approve: true, Reason: "ok"}, finance)
		if err != nil || got.State != Pending || len(got.Approvals) != 1 {
			t.Fatalf("first of two approvals: %+v, %v; want pending", got, err)
		}
		if _, err := s.Decide(ctx, r.ID, Decision{Approver: "bob", Approve: true}, finance); !errors.Is(err, ErrAlreadyDecided) {
			t.Fatalf("second decision by bob: %v, want ErrAlreadyDecided", err)
		}
		if err := s.Use(ctx, r.ID); !errors.Is(err, ErrNotApproved) {
			t.Fatalf("Use of a pending request: %v, want ErrNotApproved", err)
		}
		got, err = s.Decide(ctx, r.ID, Decision{Approver: "carol", Approve: true}, []string{"ops"})
		if err != nil || got.State != Approved {
			t.Fatalf("second approval: %+v, %v; want approved", got, err)
		}
		if _, err := s.Decide(ctx, r.ID, Decision{Approver: "dave", Approve: false}, finance); !errors.Is(err, ErrNotPending) {
			t.Fatalf("deciding an approved request: %v, want ErrNotPending", err)
		}
		if err := s.Use(ctx, r.ID); err != nil {
			t.Fatalf("Use: %v", err)
		}
		if err := s.Use(ctx, r.ID); !errors.Is(err, ErrNotApproved) {
			t.Fatalf("second Use: %v, want ErrNotApproved", err)
		}
		if got, _ := s.Get(ctx, r.ID); got.State != Used {
			t.Fatalf("state after Use = %s, want used", got.State)
		}

		denied := newRequest(2)
		s.Create(ctx, denied)
		if got, err := s.Decide(ctx, denied.ID, Decision{Approver: "bob", Approve: false, Reason: "no"}, finance); err != nil || got.State != Denied {
			t.Fatalf("deny: %+v, %v", got, err)
		}
		if err := s.Use(ctx, denied.ID); !errors.Is(err, ErrNotApproved) {
			t.Fatalf("Use of a denied request: %v", err)
		}
	})
}

func TestApprovalStoreExpiry(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() Store) {
		s := open()
		ctx := context.Background()
		pending, approved := newRequest(1), newRequest(1)
		s.Create(ctx, pending)
		s.Create(ctx, approved)
		if _, err := s.Decide(ctx, approved.ID, Decision{Approver: "bob", Approve: true}, []string{"finance"}); err != nil {
			t.Fatal(err)
		}
		setClock(s, func() time.Time { return time.Now().Add(2 * time.Hour) })
		if _, err := s.Decide(ctx, pending.ID, Decision{Approver: "bob", Approve: true}, []string{"finance"}); !errors.Is(err, ErrExpired) {
			t.Fatalf("deciding an expired request: %v, want ErrExpired", err)
		}
		if err := s.Use(ctx, approved.ID); !errors.Is(err, ErrNotApproved) {
			t.Fatalf("Use of an expired approval: %v, want ErrNotApproved", err)
		}
		if l, _ := s.List(ctx, Expired); len(l) != 2 {
			t.Fatalf("List expired = %d requests, want 2", len(l))
		}
	})
}

func TestApprovalStoreConcurrentUse(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() Store) {
		a, b := open(), open()
		ctx := context.Background()
		r := newRequest(1)
		a.Create(ctx, r)
		if _, err := a.Decide(ctx, r.ID, Decision{Approver: "bob", Approve: true}, []string{"finance"}); err != nil {
			t.Fatal(err)
		}
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins int
		)
		for i := range 8 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				if err := s.Use(ctx, r.ID); err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				} else if !errors.Is(err, ErrNotApproved) {
					t.Errorf("Use: %v", err)
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d concurrent Uses succeeded, want 1", wins)
		}
	})
}
