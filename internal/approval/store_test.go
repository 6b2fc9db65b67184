package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/state"
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
	s.(*sqlStore).clock = clock
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
		r.Risk, r.Policy, r.DryRun = "critical", "tools.refund_payment.approval", json.RawMessage(`{"rows":1}`)
		if err := s.Create(ctx, r); err != nil {
			t.Fatalf("Create: %v", err)
		}
		got, err := other.Get(ctx, r.ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got.State != Pending || got.Principal != "alice" || got.Summary != r.Summary || string(got.Args) != string(r.Args) ||
			len(got.Groups) != 2 || got.Needed != 2 || !got.CreatedAt.Equal(r.CreatedAt) || !got.ExpiresAt.Equal(r.ExpiresAt) ||
			got.Risk != r.Risk || got.Policy != r.Policy || string(got.DryRun) != string(r.DryRun) {
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
			{"another tenant's approver", Decision{Approver: "gina", Tenant: "globex", Approve: true}, finance, ErrOtherTenant},
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

// v1Schema is warden_approvals as the first release created it, before
// risk, policy and dry_run.
const v1Schema = `
CREATE TABLE warden_approvals (
	id           TEXT    PRIMARY KEY,
	principal    TEXT    NOT NULL,
	tenant       TEXT    NOT NULL,
	tool         TEXT    NOT NULL,
	tool_version TEXT    NOT NULL,
	args_hash    TEXT    NOT NULL,
	args         TEXT    NOT NULL,
	summary      TEXT    NOT NULL,
	groups       TEXT    NOT NULL,
	needed       BIGINT  NOT NULL,
	decisions    TEXT    NOT NULL,
	state        TEXT    NOT NULL,
	created_at   BIGINT  NOT NULL,
	expires_at   BIGINT  NOT NULL
)`

// v1Insert adds a pending request, expiring in an hour, to a v1 table.
const v1Insert = `INSERT INTO warden_approvals VALUES ('apr_old', 'alice', 'acme', 'refund_payment', '1', 'h1', '', 'refund 5', '["finance"]', 1, 'null', 'pending', %d, %d)`

func TestApprovalStoreMigratesOldTables(t *testing.T) {
	ctx := context.Background()
	created := time.Now().UTC().Truncate(time.Microsecond)
	insert := fmt.Sprintf(v1Insert, created.UnixMicro(), created.Add(time.Hour).UnixMicro())
	kinds := []struct {
		name string
		cfg  func(t *testing.T) *config.Config
	}{
		{"sqlite", func(t *testing.T) *config.Config {
			path := statetest.SQLitePath(t)
			db, err := state.OpenSQLite(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, q := range []string{v1Schema, insert} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			cfg := &config.Config{}
			cfg.Server.State.SQLite = path
			return cfg
		}},
		{"postgres", func(t *testing.T) *config.Config {
			dsn := statetest.Postgres(t)
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			for _, q := range []string{v1Schema, insert} {
				if _, err := conn.Exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			cfg := &config.Config{}
			cfg.Server.State.Postgres = dsn
			return cfg
		}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			cfg := k.cfg(t)
			// Twice: the second open finds the columns already there.
			for range 2 {
				s, err := OpenStore(ctx, cfg)
				if err != nil {
					t.Fatalf("OpenStore on an old table: %v", err)
				}
				s.Close()
			}
			s, err := OpenStore(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			old, err := s.Get(ctx, "apr_old")
			if err != nil {
				t.Fatalf("Get of an old row: %v", err)
			}
			if old.State != Pending || old.Summary != "refund 5" || !old.CreatedAt.Equal(created) ||
				old.Risk != "" || old.Policy != "" || old.DryRun != nil {
				t.Fatalf("old row = %+v; want it pending, with no risk, policy or dry run", old)
			}
			r := newRequest(1)
			r.Risk, r.Policy, r.DryRun = "high", "risk_policies.high", json.RawMessage(`{"would_refund":100}`)
			if err := s.Create(ctx, r); err != nil {
				t.Fatalf("Create after migration: %v", err)
			}
			got, err := s.Get(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Risk != "high" || got.Policy != "risk_policies.high" || string(got.DryRun) != `{"would_refund":100}` {
				t.Fatalf("new row = risk %q, policy %q, dry run %s", got.Risk, got.Policy, got.DryRun)
			}
		})
	}
}

func TestApprovalStorePurge(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() Store) {
		s := open()
		ctx := context.Background()
		t0 := time.Now()
		before := t0.Add(-time.Hour)
		finance := []string{"finance"}
		// mk creates a request made at t0+created, expiring at t0+expires,
		// and brings it to state, deciding with the clock at its creation.
		mk := func(state string, created, expires time.Duration) string {
			t.Helper()
			r := newRequest(1)
			r.CreatedAt, r.ExpiresAt = t0.Add(created), t0.Add(expires)
			if err := s.Create(ctx, r); err != nil {
				t.Fatal(err)
			}
			setClock(s, func() time.Time { return t0.Add(created) })
			defer setClock(s, now)
			switch state {
			case Approved, Used:
				if _, err := s.Decide(ctx, r.ID, Decision{Approver: "bob", Approve: true}, finance); err != nil {
					t.Fatal(err)
				}
			case Denied:
				if _, err := s.Decide(ctx, r.ID, Decision{Approver: "bob"}, finance); err != nil {
					t.Fatal(err)
				}
			}
			if state == Used {
				if err := s.Use(ctx, r.ID); err != nil {
					t.Fatal(err)
				}
			}
			return r.ID
		}
		kept := map[string]string{
			mk(Pending, -2*time.Hour, time.Hour):        "an old pending request, unexpired",
			mk(Approved, -2*time.Hour, time.Hour):       "an old approved request, unexpired",
			mk(Denied, -30*time.Minute, time.Hour):      "a recent denial",
			mk(Used, -30*time.Minute, time.Hour):        "a recently used approval",
			mk(Pending, -3*time.Hour, -30*time.Minute):  "a request expired after the cut-off",
			mk(Approved, -3*time.Hour, -30*time.Minute): "an approval expired after the cut-off",
		}
		deleted := map[string]string{
			mk(Denied, -2*time.Hour, time.Hour):         "an old denial",
			mk(Used, -2*time.Hour, time.Hour):           "an old used approval",
			mk(Pending, -3*time.Hour, -90*time.Minute):  "a request expired before the cut-off",
			mk(Approved, -3*time.Hour, -90*time.Minute): "an approval expired before the cut-off",
		}
		n, err := s.Purge(ctx, before)
		if err != nil || n != int64(len(deleted)) {
			t.Fatalf("Purge = %d, %v; want %d", n, err, len(deleted))
		}
		for id, what := range kept {
			if _, err := s.Get(ctx, id); err != nil {
				t.Errorf("%s: Get after Purge: %v; want it kept", what, err)
			}
		}
		for id, what := range deleted {
			if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: Get after Purge: %v; want ErrNotFound", what, err)
			}
		}
		if n, err := s.Purge(ctx, before); err != nil || n != 0 {
			t.Fatalf("second Purge = %d, %v; want 0", n, err)
		}
	})
}
