package idempotency

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/state/statetest"
)

// TestStoreContract checks each store against the contract of Store.
func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			s := st.new(t)
			get := func(key string) *Entry {
				t.Helper()
				e, err := s.Get(ctx, key)
				if err != nil {
					t.Fatalf("Get(%s): %v", key, err)
				}
				return e
			}
			put := func(key string, e *Entry, ttl time.Duration) bool {
				t.Helper()
				ok, err := s.Put(ctx, key, e, ttl)
				if err != nil {
					t.Fatalf("Put(%s): %v", key, err)
				}
				return ok
			}

			if e := get("a"); e != nil {
				t.Fatalf("Get of an absent key = %+v, want nil", e)
			}
			claim := &Entry{ArgsHash: "h1", Pending: true}
			if !put("a", claim, time.Minute) {
				t.Fatal("Put of an absent key did not store")
			}
			if put("a", &Entry{ArgsHash: "h2"}, time.Minute) {
				t.Fatal("Put of a present key stored")
			}
			claim.ArgsHash = "changed by the caller"
			if e := get("a"); e == nil || e.ArgsHash != "h1" || !e.Pending || e.Result != nil {
				t.Fatalf("Get after Put = %+v, want the first claim", e)
			}

			done := &Entry{ArgsHash: "h1", Result: []byte(`{"content":[]}`)}
			if err := s.Set(ctx, "a", done, time.Hour); err != nil {
				t.Fatalf("Set: %v", err)
			}
			done.Result[0] = 'X'
			e := get("a")
			if e == nil || e.Pending || string(e.Result) != `{"content":[]}` {
				t.Fatalf("Get after Set = %+v, want the result", e)
			}
			e.Result[0] = 'Y'
			if e := get("a"); string(e.Result) != `{"content":[]}` {
				t.Fatalf("Get after changing what Get returned = %s", e.Result)
			}

			if err := s.Delete(ctx, "a"); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if e := get("a"); e != nil {
				t.Fatalf("Get after Delete = %+v, want nil", e)
			}
			if err := s.Delete(ctx, "a"); err != nil {
				t.Fatalf("Delete of an absent key: %v", err)
			}
			if !put("a", &Entry{ArgsHash: "h3"}, time.Minute) {
				t.Fatal("Put after Delete did not store")
			}

			if st.advance == nil {
				return
			}
			st.advance(time.Minute - time.Millisecond)
			if get("a") == nil {
				t.Fatal("an entry expired before its TTL")
			}
			st.advance(time.Millisecond)
			if e := get("a"); e != nil {
				t.Fatalf("Get after the TTL = %+v, want nil", e)
			}
			if !put("a", &Entry{ArgsHash: "h4"}, time.Minute) {
				t.Fatal("Put over an expired entry did not store")
			}
			if e := get("a"); e == nil || e.ArgsHash != "h4" {
				t.Fatalf("Get after Put over an expired entry = %+v", e)
			}
		})
	}
}

// TestStoreConcurrentPut claims one key from many goroutines at once:
// exactly one claim is stored.
func TestStoreConcurrentPut(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			s := st.new(t)
			var (
				wg   sync.WaitGroup
				wins atomic.Int64
			)
			for range 16 {
				wg.Go(func() {
					ok, err := s.Put(context.Background(), "k", &Entry{ArgsHash: "h", Pending: true}, time.Minute)
					if err != nil {
						t.Errorf("Put: %v", err)
					}
					if ok {
						wins.Add(1)
					}
				})
			}
			wg.Wait()
			if n := wins.Load(); n != 1 {
				t.Fatalf("%d concurrent claims stored, want 1", n)
			}
		})
	}
}

// TestSQLiteSurvivesRestart reopens the state file: a stored result is
// still replayed.
func TestSQLiteSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := statetest.SQLitePath(t)
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "k", &Entry{ArgsHash: "h", Result: []byte(`{}`)}, time.Hour); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if e, err := s.Get(ctx, "k"); err != nil || e == nil || string(e.Result) != `{}` {
		t.Fatalf("Get after reopening = %+v, %v; want the stored result", e, err)
	}
}

// TestSQLSweepsExpiredEntries checks that claims delete expired entries,
// so the table does not grow with every key ever used.
func TestSQLSweepsExpiredEntries(t *testing.T) {
	for _, st := range []struct {
		name string
		new  func(testing.TB, func() time.Time) Store
	}{
		{"sqlite", newSQLiteStore},
		{"postgres", newPostgresStore},
	} {
		t.Run(st.name, func(t *testing.T) {
			clk := statetest.NewClock(time.Unix(1_700_000_000, 0))
			s := st.new(t, clk.Now)
			ctx := context.Background()
			claim := func(n int, prefix string) {
				for i := range n {
					if _, err := s.Put(ctx, fmt.Sprint(prefix, i), &Entry{ArgsHash: "h"}, time.Minute); err != nil {
						t.Fatal(err)
					}
				}
			}
			claim(100, "old-")
			clk.Advance(time.Hour)
			claim(sweepEvery, "new-")
			var rows int
			if err := s.(*sqlStore).db.QueryRowContext(ctx, `SELECT count(*) FROM warden_idempotency`).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if rows != sweepEvery {
				t.Fatalf("%d rows after %d claims past the expiry of 100, want %d", rows, sweepEvery, sweepEvery)
			}
		})
	}
}
