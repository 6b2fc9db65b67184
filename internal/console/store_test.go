package console

import (
	"context"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/state/statetest"
	"github.com/wardenmcp/warden/pipeline"
)

// sessionStores are every SessionStore: memory, and the state database in
// SQLite and in PostgreSQL.
func sessionStores() []struct {
	name string
	open func(t *testing.T) SessionStore
} {
	db := func(cfg func(t *testing.T) *config.Config) func(t *testing.T) SessionStore {
		return func(t *testing.T) SessionStore {
			s, err := OpenSessions(context.Background(), cfg(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	}
	return []struct {
		name string
		open func(t *testing.T) SessionStore
	}{
		{"memory", func(*testing.T) SessionStore { return newMemSessions() }},
		{"sqlite", db(func(t *testing.T) *config.Config {
			return &config.Config{Server: config.Server{State: config.State{SQLite: statetest.SQLitePath(t)}}}
		})},
		{"postgres", db(func(t *testing.T) *config.Config {
			return &config.Config{Server: config.Server{State: config.State{Postgres: statetest.Postgres(t)}}}
		})},
	}
}

// TestSessionStoreContract: a session stored is read back whole — its
// principal, credential and CSRF token — until it is deleted.
func TestSessionStoreContract(t *testing.T) {
	ctx := context.Background()
	for _, st := range sessionStores() {
		t.Run(st.name, func(t *testing.T) {
			s := st.open(t)
			now := time.Now().Truncate(time.Microsecond)
			want := &session{
				Key:       keyOf(randomToken()),
				Principal: &pipeline.Principal{ID: "ops", Tenant: "acme", Scopes: []string{ScopeConsole}, Groups: []string{"finance"}, AuthMethod: methodAPIKey},
				Method:    methodAPIKey, Credential: []byte{1, 2, 3}, CSRF: randomToken(),
				Created: now, Seen: now, Expires: now.Add(idleTimeout), Flash: "Approved.",
			}
			if got, err := s.Get(ctx, want.Key); err != nil || got != nil {
				t.Fatalf("Get of an absent session = %+v, %v", got, err)
			}
			if err := s.Put(ctx, want); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(ctx, want.Key)
			if err != nil || got == nil {
				t.Fatalf("Get after Put = %v, %v", got, err)
			}
			if got.Principal.ID != "ops" || got.Principal.Groups[0] != "finance" || got.CSRF != want.CSRF ||
				string(got.Credential) != "\x01\x02\x03" || !got.Expires.Equal(want.Expires) || got.Flash != "Approved." {
				t.Fatalf("Get = %+v, want %+v", got, want)
			}
			got.Flash = ""
			if err := s.Put(ctx, got); err != nil {
				t.Fatal(err)
			}
			if again, _ := s.Get(ctx, want.Key); again.Flash != "" {
				t.Fatalf("Put did not replace the session: flash %q", again.Flash)
			}
			if err := s.Delete(ctx, want.Key); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Get(ctx, want.Key); err != nil || got != nil {
				t.Fatalf("Get after Delete = %+v, %v", got, err)
			}
		})
	}
}

// TestFailuresContract: after a burst of failures an address is refused,
// on every handle of a shared store, while another address is not.
func TestFailuresContract(t *testing.T) {
	ctx := context.Background()
	clk := statetest.NewClock(time.Now())
	mem := newFailures(clk.Now)
	cases := []struct {
		name string
		one  func(t *testing.T) (Failures, Failures)
	}{
		{"memory", func(*testing.T) (Failures, Failures) { return mem, mem }},
		{"redis", func(t *testing.T) (Failures, Failures) {
			c, prefix := statetest.Redis(t)
			return NewRedisFailures(c, prefix), NewRedisFailures(c, prefix)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tc.one(t)
			for i := range failBurst {
				h := a
				if i%2 == 1 {
					h = b // failures through two instances count together
				}
				if ok, err := h.Allowed(ctx, "192.0.2.1"); err != nil || !ok {
					t.Fatalf("failure %d: Allowed = %v, %v; want allowed within the burst", i+1, ok, err)
				}
				if err := h.Add(ctx, "192.0.2.1"); err != nil {
					t.Fatal(err)
				}
			}
			for _, h := range []Failures{a, b} {
				if ok, err := h.Allowed(ctx, "192.0.2.1"); err != nil || ok {
					t.Fatalf("after %d failures: Allowed = %v, %v; want refused", failBurst, ok, err)
				}
			}
			if ok, err := b.Allowed(ctx, "192.0.2.2"); err != nil || !ok {
				t.Fatalf("another address: Allowed = %v, %v; want allowed", ok, err)
			}
			if tc.name == "memory" {
				clk.Advance(failEvery)
				if ok, _ := a.Allowed(ctx, "192.0.2.1"); !ok {
					t.Fatalf("after %v, one more try is not allowed", failEvery)
				}
			}
		})
	}
}
