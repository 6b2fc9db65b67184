package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/state/statetest"
)

// testStore is a store under test, with a way around it to the database,
// for the tests that tamper with the log.
type testStore struct {
	Store
	// exec runs a statement directly on the database; write parameters
	// as ?.
	exec func(t testing.TB, query string, args ...any)
	// reopen opens another store on the same database, as a second
	// process would.
	reopen func(t testing.TB) Store
}

// stores are the implementations every contract test runs against. The
// memory store is the tests' own, for the Writer tests; it cannot be
// tampered with through SQL.
var stores = []struct {
	name string
	open func(t testing.TB) testStore
}{
	{"sqlite", openTestSQLite},
	{"postgres", openTestPostgres},
	{"sqlite-os", func(t testing.TB) testStore { return openSQLiteWith(t, config.DurabilityOS) }},
	{"postgres-os", func(t testing.TB) testStore { return openPostgresWith(t, config.DurabilityOS) }},
	{"memory", func(testing.TB) testStore { return testStore{Store: newMemStore()} }},
}

// forEachStore runs f as a subtest against a fresh, empty store of each
// kind; sqlOnly leaves out the memory store.
func forEachStore(t *testing.T, sqlOnly bool, f func(t *testing.T, s testStore)) {
	t.Helper()
	for _, st := range stores {
		if sqlOnly && st.name == "memory" {
			continue
		}
		t.Run(st.name, func(t *testing.T) { f(t, st.open(t)) })
	}
}

func openTestSQLite(t testing.TB) testStore { return openSQLiteWith(t, "") }

// openSQLiteWith opens a SQLite store with audit.durability set to
// durability.
func openSQLiteWith(t testing.TB, durability string) testStore {
	t.Helper()
	path := statetest.SQLitePath(t)
	cfg := &config.Config{}
	cfg.Server.State.SQLite = path
	cfg.Audit.Durability = durability
	open := func(t testing.TB) Store {
		s, err := Open(context.Background(), cfg)
		if err != nil {
			t.Fatalf("opening the SQLite store: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return testStore{
		Store: open(t),
		exec: func(t testing.TB, query string, args ...any) {
			t.Helper()
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(query, args...); err != nil {
				t.Fatalf("%s: %v", query, err)
			}
		},
		reopen: func(t testing.TB) Store { return open(t) },
	}
}

// openTestPostgres opens a store in a schema of its own, dropped when the
// test ends.
func openTestPostgres(t testing.TB) testStore { return openPostgresWith(t, "") }

// openPostgresWith opens a PostgreSQL store with audit.durability set to
// durability.
func openPostgresWith(t testing.TB, durability string) testStore {
	t.Helper()
	dsn := statetest.Postgres(t)
	cfg := &config.Config{}
	cfg.Server.State.Postgres = dsn
	cfg.Audit.Durability = durability
	open := func(t testing.TB) Store {
		s, err := Open(context.Background(), cfg)
		if err != nil {
			t.Fatalf("opening the PostgreSQL store: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	param := regexp.MustCompile(`\?`)
	return testStore{
		Store: open(t),
		exec: func(t testing.TB, query string, args ...any) {
			t.Helper()
			n := 0
			query = param.ReplaceAllStringFunc(query, func(string) string { n++; return "$" + strconv.Itoa(n) })
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, query, args...); err != nil {
				t.Fatalf("%s: %v", query, err)
			}
		},
		reopen: func(t testing.TB) Store { return open(t) },
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

// full is a record with every field set, chained at instance and seq as a
// store sees it (a store checks no hashes, so these are made up).
func full(instance string, seq int64) *Record {
	return &Record{
		Instance: instance, Seq: seq,
		PrevHash: fmt.Sprintf("%064x", seq-1), Hash: fmt.Sprintf("%064x", seq),
		Time: t0.Add(time.Duration(seq) * time.Second), Phase: Outcome, TraceID: "trace-" + strconv.FormatInt(seq, 10),
		Principal: "alice@example.com", Tenant: "acme", AuthMethod: "jwt",
		ClientName: "Claude Desktop ☃", ClientVersion: "1.2.3", ProtocolVersion: "2025-11-25",
		SessionID: "sess-1", RemoteAddr: "203.0.113.7:5123",
		Method: "tools/call", Target: "get_customer", ToolVersion: "v2", Mode: "write", Source: "postgres",
		Args:     json.RawMessage(`{"customer_id":"c-1","note":"é \"quoted\" \\u0000 <b>","n":12345678901234567890}`),
		ArgsHash: "ab12",
		Decision: Deny, Reason: "over the limit", ErrorCode: "RATE_LIMITED", Suggestion: "wait", RetryAfter: 7,
		Status: StatusRefused, Duration: 1234567891 * time.Nanosecond,
		ResultBytes: 1 << 40, ResultTokens: 1 << 38, Rows: 42, Truncated: true,
		Approval: "approved", CacheHit: true, IdempotentReplay: true,
	}
}

func scanAll(t testing.TB, s Store, q Query) []*Record {
	t.Helper()
	var out []*Record
	if err := s.Scan(context.Background(), q, func(r *Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("Scan(%+v): %v", q, err)
	}
	return out
}

func TestStoreRoundTripsEveryField(t *testing.T) {
	forEachStore(t, false, func(t *testing.T, s testStore) {
		sparse := &Record{Instance: "i1", Seq: 2, PrevHash: "p", Hash: "h", Time: t0, Phase: Intent}
		want := []*Record{full("i1", 1), sparse}
		if err := s.Append(context.Background(), want); err != nil {
			t.Fatalf("Append: %v", err)
		}
		got := scanAll(t, s, Query{Instance: "i1"})
		if len(got) != 2 {
			t.Fatalf("Scan returned %d records, want 2", len(got))
		}
		for i := range want {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("record %d reads back as\n%+v\nwant\n%+v", i, got[i], want[i])
			}
		}
	})
}

func TestStoreLast(t *testing.T) {
	forEachStore(t, false, func(t *testing.T, s testStore) {
		ctx := context.Background()
		if seq, hash, err := s.Last(ctx, "i1"); seq != 0 || hash != "" || err != nil {
			t.Errorf("Last of an empty chain = %d, %q, %v; want 0, \"\", nil", seq, hash, err)
		}
		for _, b := range [][]*Record{{full("i1", 1), full("i1", 2)}, {full("i2", 1)}, {full("i1", 3)}} {
			if err := s.Append(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		for inst, want := range map[string]int64{"i1": 3, "i2": 1, "i3": 0} {
			seq, hash, err := s.Last(ctx, inst)
			wantHash := ""
			if want > 0 {
				wantHash = full(inst, want).Hash
			}
			if seq != want || hash != wantHash || err != nil {
				t.Errorf("Last(%s) = %d, %q, %v; want %d, %q", inst, seq, hash, err, want, wantHash)
			}
		}
	})
}

func TestStoreAppendIsAllOrNothing(t *testing.T) {
	batch := func(seqs ...int64) []*Record {
		var b []*Record
		for _, s := range seqs {
			b = append(b, full("i1", s))
		}
		return b
	}
	var long []int64 // long enough to take the SQL store several INSERTs in one transaction
	for s := range int64(2*chunk + 10) {
		long = append(long, s+2)
	}
	tests := []struct {
		name  string
		batch []*Record
	}{
		{"a stored seq in the middle", batch(2, 1, 3)},
		{"a stored seq at the end of a long batch", batch(append(long, 1)...)},
		{"the same seq twice", batch(append(long, 2)...)},
	}
	forEachStore(t, false, func(t *testing.T, s testStore) {
		ctx := context.Background()
		if err := s.Append(ctx, batch(1)); err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := s.Append(ctx, tt.batch); !errors.Is(err, ErrDuplicate) {
					t.Errorf("err = %v, want ErrDuplicate", err)
				}
				if n := len(scanAll(t, s, Query{})); n != 1 {
					t.Errorf("after the failed batch the store holds %d records, want 1: none of the batch", n)
				}
			})
		}
	})
}

func TestStoreScan(t *testing.T) {
	forEachStore(t, false, func(t *testing.T, s testStore) {
		// Four records in two chains, interleaved in time.
		a1, a2, b1, b2 := full("a", 1), full("a", 2), full("b", 1), full("b", 2)
		a1.Time, b1.Time, a2.Time, b2.Time = t0, t0.Add(time.Second), t0.Add(2*time.Second), t0.Add(2*time.Second)
		a1.Principal, a1.Tenant, a1.Decision, a1.ErrorCode, a1.Target = "bob", "globex", Allow, "", "list_orders"
		b2.Principal = "bob"
		if err := s.Append(context.Background(), []*Record{a1, a2}); err != nil {
			t.Fatal(err)
		}
		if err := s.Append(context.Background(), []*Record{b2, b1}); err != nil {
			t.Fatal(err)
		}
		name := func(r *Record) string { return r.Instance + strconv.FormatInt(r.Seq, 10) }
		tests := []struct {
			name string
			q    Query
			want []string
		}{
			{"everything, by time", Query{}, []string{"a1", "b1", "a2", "b2"}},
			{"newest first", Query{Desc: true}, []string{"b2", "a2", "b1", "a1"}},
			{"one instance, by seq", Query{Instance: "b"}, []string{"b1", "b2"}},
			{"one instance, newest first", Query{Instance: "a", Desc: true}, []string{"a2", "a1"}},
			{"principal", Query{Principal: "bob"}, []string{"a1", "b2"}},
			{"tenant", Query{Tenant: "globex"}, []string{"a1"}},
			{"target", Query{Target: "get_customer"}, []string{"b1", "a2", "b2"}},
			{"decision", Query{Decision: Allow}, []string{"a1"}},
			{"error code", Query{ErrorCode: "RATE_LIMITED"}, []string{"b1", "a2", "b2"}},
			{"since is inclusive", Query{Since: t0.Add(time.Second)}, []string{"b1", "a2", "b2"}},
			{"until is exclusive", Query{Until: t0.Add(2 * time.Second)}, []string{"a1", "b1"}},
			{"limit", Query{Limit: 2}, []string{"a1", "b1"}},
			{"the latest", Query{Limit: 1, Desc: true}, []string{"b2"}},
			{"filters combine", Query{Principal: "bob", Instance: "b"}, []string{"b2"}},
			{"nothing matches", Query{Principal: "carol"}, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var got []string
				for _, r := range scanAll(t, s, tt.q) {
					got = append(got, name(r))
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("Scan(%+v) = %v, want %v", tt.q, got, tt.want)
				}
			})
		}

		stop := errors.New("enough")
		n := 0
		err := s.Scan(context.Background(), Query{}, func(*Record) error { n++; return stop })
		if err != stop || n != 1 {
			t.Errorf("a callback that fails: Scan returned %v after %d records, want its error after 1", err, n)
		}
	})
}

func TestStoreConcurrentAppends(t *testing.T) {
	forEachStore(t, false, func(t *testing.T, s testStore) {
		ctx := context.Background()
		const writers, batches, per = 8, 10, 5
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
		for w := range writers {
			inst := "inst-" + strconv.Itoa(w)
			wg.Go(func() {
				for b := range batches {
					var recs []*Record
					for i := range per {
						recs = append(recs, full(inst, int64(b*per+i+1)))
					}
					if err := s.Append(ctx, recs); err != nil {
						fail(err)
					}
					if seq, _, err := s.Last(ctx, inst); err != nil || seq != int64((b+1)*per) {
						fail(fmt.Errorf("Last(%s) = %d, %v after batch %d", inst, seq, err, b))
					}
				}
			})
		}
		// Two appenders contend for one (instance, seq): exactly one wins.
		won := make(chan error, 2)
		for range 2 {
			wg.Go(func() { won <- s.Append(ctx, []*Record{full("contested", 1)}) })
		}
		wg.Wait()
		for _, err := range errs {
			t.Error(err)
		}
		e1, e2 := <-won, <-won
		if (e1 == nil) == (e2 == nil) || !errors.Is(errors.Join(e1, e2), ErrDuplicate) {
			t.Errorf("two appends of one seq: errors %v and %v, want exactly one ErrDuplicate", e1, e2)
		}
		if n := len(scanAll(t, s, Query{})); n != writers*batches*per+1 {
			t.Errorf("the store holds %d records, want %d", n, writers*batches*per+1)
		}
	})
}

func TestStoreClosedFails(t *testing.T) {
	forEachStore(t, false, func(t *testing.T, s testStore) {
		s.Close()
		if err := s.Append(context.Background(), []*Record{full("i1", 1)}); err == nil {
			t.Error("Append on a closed store succeeded")
		}
	})
}

// TestCommitsAreDurable checks the settings that make a commit survive a
// crash, which no functional test can see.
func TestCommitsAreDurable(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		s := openTestSQLite(t)
		db := s.Store.(*sqlStore).db
		var mode string
		var sync int
		if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			t.Errorf("journal_mode = %q, %v; want wal", mode, err)
		}
		if err := db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
			t.Errorf("synchronous = %d, %v; want 2 (FULL)", sync, err)
		}
	})
	t.Run("sqlite file is private", func(t *testing.T) {
		cfg := &config.Config{Dir: t.TempDir()}
		s, err := Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fi, err := os.Stat(filepath.Join(cfg.Dir, config.DefaultStateFile))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("state file: %v, %v; want mode 0600", fi.Mode(), err)
		}
	})
	// With durability os, appends, and only they, go through a connection
	// that commits without syncing.
	t.Run("sqlite, durability os", func(t *testing.T) {
		s := openSQLiteWith(t, config.DurabilityOS)
		if err := s.Append(context.Background(), []*Record{full("i", 1)}); err != nil {
			t.Fatal(err)
		}
		st := s.Store.(*sqlStore)
		var sync int
		if err := st.osConn.QueryRowContext(context.Background(), "PRAGMA synchronous").Scan(&sync); err != nil || sync != 1 {
			t.Errorf("appending connection: synchronous = %d, %v; want 1 (NORMAL)", sync, err)
		}
		if err := st.db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
			t.Errorf("other connections: synchronous = %d, %v; want 2 (FULL)", sync, err)
		}
	})
	t.Run("postgres, durability os", func(t *testing.T) {
		s := openPostgresWith(t, config.DurabilityOS)
		if err := s.Append(context.Background(), []*Record{full("i", 1)}); err != nil {
			t.Fatal(err)
		}
		st := s.Store.(*sqlStore)
		var sc string
		if err := st.osConn.QueryRowContext(context.Background(), "SHOW synchronous_commit").Scan(&sc); err != nil || sc != "off" {
			t.Errorf("appending connection: synchronous_commit = %q, %v; want off", sc, err)
		}
		if err := st.db.QueryRowContext(context.Background(), "SHOW synchronous_commit").Scan(&sc); err != nil || sc != "on" {
			t.Errorf("other connections: synchronous_commit = %q, %v; want on", sc, err)
		}
	})
	t.Run("postgres with synchronous_commit off", func(t *testing.T) {
		base := os.Getenv("WARDEN_TEST_POSTGRES_URL")
		if base == "" {
			t.Skip("set WARDEN_TEST_POSTGRES_URL to run the PostgreSQL tests")
		}
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("synchronous_commit", "off") // pgx sends unknown parameters as settings
		u.RawQuery = q.Encode()
		cfg := &config.Config{}
		cfg.Server.State.Postgres = u.String()
		s, err := Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var sc string
		if err := s.(*sqlStore).db.QueryRowContext(context.Background(), "SHOW synchronous_commit").Scan(&sc); err != nil || sc != "on" {
			t.Errorf("synchronous_commit = %q, %v; want on", sc, err)
		}
	})
}

// A store an older release created has an index on trace_id, which every
// record's random trace id made cost a page write of its own per commit;
// opening it drops the index and keeps the records.
func TestStoreDropsTraceIDIndex(t *testing.T) {
	forEachStore(t, true, func(t *testing.T, s testStore) {
		ctx := context.Background()
		if err := s.Append(ctx, []*Record{full("i1", 1)}); err != nil {
			t.Fatal(err)
		}
		s.exec(t, `CREATE INDEX warden_audit_trace_id ON warden_audit (trace_id)`)
		r := s.reopen(t)
		if got := scanAll(t, r, Query{}); len(got) != 1 || got[0].TraceID != "trace-1" {
			t.Fatalf("after reopening: %+v, want the one record", got)
		}
		// Creating the index again fails if it is still there.
		s.exec(t, `CREATE INDEX warden_audit_trace_id ON warden_audit (trace_id)`)
	})
}
