package anomaly

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/state/statetest"
)

// stores are the implementations every contract test runs against. open
// returns a config naming a fresh, empty store of its kind; every store
// opened from it shares the same data, as processes sharing a database do.
var stores = []struct {
	name string
	cfg  func(t *testing.T) *config.Config
}{
	{"sqlite", sqliteConfig},
	{"postgres", postgresConfig},
}

// forEachStore runs f as a subtest for each kind of store; open opens a
// store on the same data each time it is called.
func forEachStore(t *testing.T, f func(t *testing.T, open func() SuspensionStore)) {
	t.Helper()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			cfg := st.cfg(t)
			f(t, func() SuspensionStore { return openStore(t, cfg) })
		})
	}
}

func openStore(t testing.TB, cfg *config.Config) SuspensionStore {
	t.Helper()
	s, err := OpenStore(context.Background(), cfg)
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sqliteConfig(t *testing.T) *config.Config {
	cfg := &config.Config{}
	cfg.Server.State.SQLite = statetest.SQLitePath(t)
	return cfg
}

// postgresConfig names a schema of its own, dropped when the test ends.
func postgresConfig(t *testing.T) *config.Config {
	cfg := &config.Config{}
	cfg.Server.State.Postgres = statetest.Postgres(t)
	return cfg
}

func TestStoreSuspendListLift(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() SuspensionStore) {
		s := open()
		ctx := context.Background()
		if ok, reason, err := s.Suspended(ctx, "ci-bot"); ok || reason != "" || err != nil {
			t.Fatalf("empty store: Suspended = %v %q %v", ok, reason, err)
		}
		before := time.Now().Add(-time.Second)
		if err := s.Suspend(ctx, "ci-bot", "too many refusals"); err != nil {
			t.Fatalf("Suspend: %v", err)
		}
		if err := s.Suspend(ctx, "alice@example.com", ""); err != nil {
			t.Fatalf("Suspend: %v", err)
		}
		// Suspending again keeps the first reason and time.
		first, _ := s.List(ctx)
		if err := s.Suspend(ctx, "ci-bot", "another reason"); err != nil {
			t.Fatalf("Suspend again: %v", err)
		}

		tests := []struct {
			principal, reason string
		}{
			{"ci-bot", "too many refusals"},
			{"alice@example.com", defaultReason},
		}
		for _, tt := range tests {
			if ok, reason, err := s.Suspended(ctx, tt.principal); !ok || reason != tt.reason || err != nil {
				t.Errorf("Suspended(%s) = %v %q %v; want true %q", tt.principal, ok, reason, err, tt.reason)
			}
		}
		list, err := s.List(ctx)
		if err != nil || len(list) != 2 {
			t.Fatalf("List = %v, %v; want 2 suspensions", list, err)
		}
		for i, sp := range list {
			if sp.Principal != tests[i].principal || sp.Reason != tests[i].reason ||
				sp.Since.Before(before) || sp.Since.After(time.Now()) || sp.Since.Location() != time.UTC ||
				!sp.Since.Equal(first[i].Since) {
				t.Errorf("suspension %d = %+v; want %s, %q, since it was first suspended, in UTC", i, sp, tests[i].principal, tests[i].reason)
			}
		}

		if err := s.Lift(ctx, "ci-bot"); err != nil {
			t.Fatalf("Lift: %v", err)
		}
		if ok, _, err := s.Suspended(ctx, "ci-bot"); ok || err != nil {
			t.Errorf("after Lift: Suspended = %v %v, want false", ok, err)
		}
		for _, p := range []string{"ci-bot", "nobody"} {
			if err := s.Lift(ctx, p); !errors.Is(err, ErrNotSuspended) || !strings.Contains(err.Error(), p) {
				t.Errorf("Lift(%s) of no suspension: %v; want ErrNotSuspended naming it", p, err)
			}
		}
		if list, _ := s.List(ctx); len(list) != 1 || list[0].Principal != "alice@example.com" {
			t.Errorf("List after Lift = %+v, want alice only", list)
		}
		if err := s.Lift(ctx, "alice@example.com"); err != nil {
			t.Fatal(err)
		}
		if list, err := s.List(ctx); list != nil || err != nil {
			t.Errorf("List of none = %#v, %v; want nil, nil", list, err)
		}
	})
}

func TestStoreIsSharedByEveryProcess(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() SuspensionStore) {
		a, b := open(), open()
		ctx := context.Background()
		if err := a.Suspend(ctx, "ci-bot", "investigating"); err != nil {
			t.Fatal(err)
		}
		if ok, reason, err := b.Suspended(ctx, "ci-bot"); !ok || reason != "investigating" || err != nil {
			t.Errorf("the other store: Suspended = %v %q %v", ok, reason, err)
		}
		if err := b.Lift(ctx, "ci-bot"); err != nil {
			t.Fatal(err)
		}
		if ok, _, err := a.Suspended(ctx, "ci-bot"); ok || err != nil {
			t.Errorf("after a lift by the other store: Suspended = %v %v", ok, err)
		}
	})
}

func TestStoreRefusesNoPrincipal(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() SuspensionStore) {
		s := open()
		if err := s.Suspend(context.Background(), "", "why"); err == nil || !strings.Contains(err.Error(), "a principal is required") {
			t.Errorf("Suspend of no one: %v", err)
		}
		if list, _ := s.List(context.Background()); len(list) != 0 {
			t.Errorf("List = %v, want none", list)
		}
	})
}

func TestStoreConcurrentUse(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() SuspensionStore) {
		s := open()
		ctx := context.Background()
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
		)
		fail := func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		for range 16 {
			wg.Go(func() {
				if err := s.Suspend(ctx, "contested", "burst"); err != nil {
					fail(err)
				}
				for range 10 {
					if _, _, err := s.Suspended(ctx, "contested"); err != nil {
						fail(err)
					}
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			t.Error(err)
		}
		if list, err := s.List(ctx); len(list) != 1 || err != nil {
			t.Errorf("List = %v, %v; want one suspension", list, err)
		}
	})
}

func TestClosedStoreFails(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() SuspensionStore) {
		s := open()
		s.Close()
		if _, _, err := s.Suspended(context.Background(), "ci-bot"); err == nil {
			t.Errorf("Suspended on a closed store: no error; want one, so that Stage refuses")
		}
	})
}

func TestSQLiteStateFileIsPrivate(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, &config.Config{Dir: dir}) // server.state unset: the default file
	if err := s.Suspend(context.Background(), "ci-bot", "x"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, config.DefaultStateFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("state file permissions %v; want none for group or others", perm)
	}
}

func TestOpenStoreRefusesTwoStores(t *testing.T) {
	cfg := &config.Config{Dir: t.TempDir()}
	cfg.Server.State = config.State{SQLite: "state.db", Postgres: "postgres://localhost/x"}
	if _, err := OpenStore(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("err = %v, want one saying to choose sqlite or postgres", err)
	}
}

func TestOpenStoreDoesNotEchoTheDSN(t *testing.T) {
	cfg := &config.Config{}
	cfg.Server.State.Postgres = "postgres://u:hunter2@127.0.0.1:1/x?sslmode=nonsense"
	_, err := OpenStore(context.Background(), cfg)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("err = %v; want an error that does not show the password", err)
	}
}
