package pin

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/state/statetest"
)

// backend opens stores on one database of a test's own: each call to open
// is another handle, as another instance would have.
type backend struct {
	name string
	open func(t testing.TB) func() Store
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t testing.TB) func() Store {
			path := statetest.SQLitePath(t)
			return func() Store {
				return openStore(t, func(ctx context.Context) (Store, error) { return OpenSQLite(ctx, path) })
			}
		}},
		{"postgres", func(t testing.TB) func() Store {
			dsn := statetest.Postgres(t)
			return func() Store {
				return openStore(t, func(ctx context.Context) (Store, error) { return OpenPostgres(ctx, dsn) })
			}
		}},
	}
}

func openStore(t testing.TB, open func(context.Context) (Store, error)) Store {
	t.Helper()
	s, err := open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestStoreContract checks each store against the contract of Store.
func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			s := b.open(t)()
			list := func(f Filter) []Pin {
				t.Helper()
				pins, err := s.List(ctx, f)
				if err != nil {
					t.Fatalf("List(%+v): %v", f, err)
				}
				return pins
			}
			if pins := list(Filter{}); len(pins) != 0 {
				t.Fatalf("a new store lists %d pins", len(pins))
			}
			when := time.Date(2026, 12, 4, 22, 0, 0, 123000, time.UTC)
			a := Pin{
				Ref: Ref{"up", Tool, "search"}, State: Quarantined, Reason: ReasonChanged,
				Approved:       Version{Hash: "h1", Body: json.RawMessage(`{"name":"search"}`), Findings: []Finding{{RuleModel, "description", "ignore previous instructions"}}},
				Pending:        Version{Hash: "h2", Body: json.RawMessage(`{"name":"search","description":"x"}`)},
				RejectedHashes: []string{"h0"}, FirstSeen: when, Updated: when.Add(time.Second), DecidedBy: "alice",
			}
			ins := Pin{Ref: Ref{"up", Instructions, ""}, State: Approved, Approved: Version{Hash: "h3", Body: json.RawMessage(`"be nice"`)}, FirstSeen: when, Updated: when}
			other := Pin{Ref: Ref{"other", Prompt, "p"}, State: Approved, Approved: Version{Hash: "h4", Body: json.RawMessage(`{}`)}, FirstSeen: when, Updated: when}
			for _, p := range []Pin{a, ins, other} {
				if _, err := s.Update(ctx, p.Upstream, func(pins []Pin) ([]Pin, []*audit.Record, error) { return []Pin{p}, nil, nil }); err != nil {
					t.Fatalf("Update: %v", err)
				}
			}
			got := list(Filter{Upstream: "up"})
			if len(got) != 2 || got[0].Kind != Instructions || got[1].Name != "search" {
				t.Fatalf("List(up) = %+v, want instructions then search", got)
			}
			g := got[1]
			if g.State != Quarantined || g.Reason != ReasonChanged || g.Approved.Hash != "h1" || string(g.Approved.Body) != `{"name":"search"}` ||
				len(g.Approved.Findings) != 1 || g.Approved.Findings[0] != a.Approved.Findings[0] ||
				g.Pending.Hash != "h2" || len(g.RejectedHashes) != 1 || g.RejectedHashes[0] != "h0" ||
				!g.FirstSeen.Equal(when) || !g.Updated.Equal(when.Add(time.Second)) || g.DecidedBy != "alice" {
				t.Fatalf("pin read back = %+v, want %+v", g, a)
			}
			if got := list(Filter{State: Quarantined}); len(got) != 1 || got[0].Name != "search" {
				t.Fatalf("List(quarantined) = %+v", got)
			}
			if got := list(Filter{}); len(got) != 3 || got[0].Upstream != "other" {
				t.Fatalf("List() = %+v, want 3 pins, other first", got)
			}

			// fn sees the upstream's pins only, and its error stores nothing.
			boom := errors.New("boom")
			_, err := s.Update(ctx, "up", func(pins []Pin) ([]Pin, []*audit.Record, error) {
				if len(pins) != 2 {
					t.Errorf("Update(up) gave fn %d pins, want 2", len(pins))
				}
				p := pins[1]
				p.State = Approved
				return []Pin{p}, []*audit.Record{{Method: "upstreams/x"}}, boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("Update with a failing fn = %v, want boom", err)
			}
			if got := list(Filter{State: Quarantined}); len(got) != 1 {
				t.Fatal("a failed Update stored its pins")
			}
			// A pin of another upstream is refused, and nothing stored.
			_, err = s.Update(ctx, "up", func(pins []Pin) ([]Pin, []*audit.Record, error) {
				p := pins[1]
				p.State = Approved
				return []Pin{p, other}, nil, nil
			})
			if err == nil {
				t.Fatal("Update stored a pin of another upstream")
			}
			if got := list(Filter{State: Quarantined}); len(got) != 1 {
				t.Fatal("a refused Update stored its pins")
			}
		})
	}
}

// TestStoreEvents: records stored by an Update are returned to it, and,
// undelivered, to a later Update once their lease is over — once, until
// that lease is over too; delivered, never again.
func TestStoreEvents(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			s := b.open(t)()
			clk := statetest.NewClock(time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC))
			s.(*sqlStore).now = clk.Now
			update := func(upstream string, recs ...*audit.Record) []string {
				t.Helper()
				evs, err := s.Update(ctx, upstream, func([]Pin) ([]Pin, []*audit.Record, error) { return nil, recs, nil })
				if err != nil {
					t.Fatalf("Update: %v", err)
				}
				var out []string
				for _, e := range evs {
					out = append(out, e.Record.Method+" "+e.Record.Reason)
				}
				return out
			}
			when := clk.Now()
			got := update("up", &audit.Record{Method: "upstreams/first_seen", Reason: "a", Time: when, Principal: "p"})
			if !slices.Equal(got, []string{"upstreams/first_seen a"}) {
				t.Fatalf("Update returned %q", got)
			}
			if got := update("up"); len(got) != 0 {
				t.Fatalf("within the lease another Update got %q", got)
			}
			clk.Advance(2 * time.Minute)
			if got := update("other"); len(got) != 0 {
				t.Fatalf("another upstream's Update got %q", got)
			}
			evs, err := s.Update(ctx, "up", func([]Pin) ([]Pin, []*audit.Record, error) {
				return nil, []*audit.Record{{Method: "upstreams/changed", Reason: "b"}}, nil
			})
			if err != nil || len(evs) != 2 || evs[0].Record.Reason != "a" || !evs[0].Record.Time.Equal(when) || evs[0].Record.Principal != "p" || evs[1].Record.Reason != "b" {
				t.Fatalf("after the lease: %+v %v, want the undelivered record, then the new one", evs, err)
			}
			if got := update("up"); len(got) != 0 {
				t.Fatalf("records claimed again within their new lease: %q", got)
			}
			if err := s.Delivered(ctx, evs); err != nil {
				t.Fatal(err)
			}
			clk.Advance(2 * time.Minute)
			if got := update("up"); len(got) != 0 {
				t.Fatalf("delivered records came back: %q", got)
			}
		})
	}
}

// TestStoreUpdatesTakeTurns runs read-increment-write Updates of one
// upstream from several handles at once, as instances sharing a database
// would: none is lost.
func TestStoreUpdatesTakeTurns(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			open := b.open(t)
			const n = 12
			stores := make([]Store, 4)
			for i := range stores {
				stores[i] = open()
			}
			var wg sync.WaitGroup
			for i := range n {
				s := stores[i%len(stores)]
				wg.Go(func() {
					_, err := s.Update(ctx, "up", func(pins []Pin) ([]Pin, []*audit.Record, error) {
						count := 0
						if len(pins) == 1 {
							count, _ = strconv.Atoi(pins[0].DecidedBy)
						}
						return []Pin{{Ref: Ref{"up", Tool, "counter"}, State: Approved, DecidedBy: strconv.Itoa(count + 1)}}, nil, nil
					})
					if err != nil {
						t.Errorf("Update: %v", err)
					}
				})
			}
			wg.Wait()
			pins, err := stores[0].List(ctx, Filter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(pins) != 1 || pins[0].DecidedBy != strconv.Itoa(n) {
				t.Fatalf("after %d concurrent increments: %+v", n, pins)
			}
		})
	}
}

// TestStoreVersions checks that the versions of an upstream's pins change
// when a decision is made through another handle on the database (as
// another process would make it), stay as they were when nothing that
// decides a verdict changed, and leave other upstreams' alone.
func TestStoreVersions(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			open := b.open(t)
			s, operator := open(), open()
			versions := func() map[string]string {
				t.Helper()
				v, err := s.Versions(ctx)
				if err != nil {
					t.Fatalf("Versions: %v", err)
				}
				return v
			}
			if v := versions(); len(v) != 0 {
				t.Fatalf("a new store has versions %v", v)
			}
			g := NewGuard(s, nil)
			v1, v2 := tool("echo", "Echo the text."), tool("echo", "Echo the text, loudly.")
			other := tool("other", "Another tool.")
			other.Upstream = "other"
			for _, defs := range [][]Definition{{v1}, {v2}} {
				if _, err := g.Check(ctx, "up", Policy{}, defs); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := g.Check(ctx, "other", Policy{}, []Definition{other}); err != nil {
				t.Fatal(err)
			}
			before := versions()
			if before["up"] == "" || before["other"] == "" || before["up"] == before["other"] {
				t.Fatalf("versions %v: want one per upstream, each its own", before)
			}
			if _, err := g.Check(ctx, "up", Policy{}, []Definition{v2}); err != nil {
				t.Fatal(err)
			}
			if again := versions(); again["up"] != before["up"] {
				t.Errorf("a check that changed no verdict changed the version: %v, was %v", again, before)
			}
			h2, _ := Hash(v2.Body)
			if _, err := NewGuard(operator, nil).Approve(ctx, Ref{"up", Tool, "echo"}, h2, "ops", "cli"); err != nil {
				t.Fatal(err)
			}
			after := versions()
			if after["up"] == before["up"] {
				t.Error("an approval made through another handle left the version as it was")
			}
			if after["other"] != before["other"] {
				t.Error("an approval on up changed the version of other")
			}
		})
	}
}
