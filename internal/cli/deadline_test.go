package cli

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/pipeline"
)

// A PostgreSQL state store that stops answering — its connections open,
// no replies — fails calls quickly, never holds them. warden serve runs in
// a process of its own, with its state in a database of its own on the
// shared PostgreSQL, reached through a proxy the test freezes. The issue's
// scenario is a 20 s outage under load; the test scales it down to a few
// seconds and 1 s ceilings, which is the same scenario as far as a
// deadline can tell:
//   - every call made while the store is frozen ends within the ceilings it
//     can meet (plus slack) with a structured refusal: UNAVAILABLE or
//     AUDIT_UNAVAILABLE, or for authentication HTTP 503;
//   - once the store answers again, calls succeed again;
//   - no draft was written without its intent record, and the chain
//     verifies.
func TestFrozenStateStoreFailsCallsQuickly(t *testing.T) {
	const (
		ceiling   = time.Second
		freezeFor = 3 * time.Second
		workers   = 4
		// callBound is every ceiling a call can meet in turn (key lookup,
		// suspension check, audit, approvals, idempotency) and slack for a
		// loaded machine: it only tells a bounded call from a hung one.
		callBound = 5*ceiling + 3*time.Second
	)
	admin := os.Getenv("WARDEN_TEST_POSTGRES_URL")
	if admin == "" {
		t.Skip("WARDEN_TEST_POSTGRES_URL is not set; set it (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to test deadlines on a PostgreSQL state store")
	}
	dsn := freshDatabase(t, admin)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, u.Host)
	u.Host = proxy.addr
	cfgPath := deadlineConfig(t, u.String(), ceiling)
	key := createKeyWithScopes(t, cfgPath, "deadline-test", "crm.read", "crm.tickets.write")

	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Timeout: 4 * callBound, Transport: tr}
	srv := startWarden(t, client, cfgPath)

	var (
		mu sync.Mutex
		id int
	)
	nextID := func() int {
		mu.Lock()
		defer mu.Unlock()
		id++
		return id
	}
	// A call is a read, whose one record is its outcome, or a write, whose
	// intent is waited for; with an API key, which the key store must look up, or
	// anonymous, which reaches the suspension check and the audit log
	// without a lookup.
	type kind struct{ write, anonymous bool }
	kinds := []kind{{false, false}, {true, false}, {false, true}, {true, true}}
	call := func(k kind) callOutcome {
		n, key := nextID(), key
		if k.anonymous {
			key = ""
		}
		if k.write {
			return callTicket(t.Context(), client, srv.endpoint, key, n, fmt.Sprintf("deadline-%d", n))
		}
		return callGetCustomer(t.Context(), client, srv.endpoint, key, n)
	}
	for _, k := range kinds {
		if o := call(k); !o.ok {
			t.Fatalf("before the freeze, a call %+v = %v, want success", k, o)
		}
	}

	type result struct {
		o    callOutcome
		took time.Duration
	}
	var (
		results []result
		wg      sync.WaitGroup
		stop    = make(chan struct{})
	)
	proxy.freeze(true)
	time.AfterFunc(freezeFor, func() { close(stop) })
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				o := call(kinds[(w+i)%len(kinds)])
				took := time.Since(start)
				mu.Lock()
				results = append(results, result{o, took})
				mu.Unlock()
			}
		})
	}
	// Every call above starts and ends while the store is frozen.
	wg.Wait()
	proxy.freeze(false)

	counts := map[string]int{}
	var longest time.Duration
	for _, r := range results {
		longest = max(longest, r.took)
		kind := refusalKind(r.o)
		counts[kind]++
		if kind == "" {
			t.Errorf("while the store was frozen, a call = %v, want UNAVAILABLE, AUDIT_UNAVAILABLE or HTTP 503", r.o)
		} else if r.o.code != "" && r.o.retryAfter <= 0 {
			t.Errorf("while the store was frozen, a refusal had no retry_after: %v", r.o)
		}
		if r.took > callBound {
			t.Errorf("while the store was frozen, a call took %v (bound %v): %v", r.took, callBound, r.o)
		}
	}
	if len(results) == 0 {
		t.Fatal("no call was made while the store was frozen")
	}
	t.Logf("%d calls while frozen for %v: %v; the longest took %v", len(results), freezeFor, counts, longest)

	// Once the store answers, calls succeed again; the bound only ends a
	// failure, and each call paces the loop.
	thawed := time.Now()
	deadline := thawed.Add(rlDeadline)
	for _, k := range kinds {
		for {
			o := call(k)
			if o.ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%v after the store answered again, a call %+v = %v, want success", rlDeadline, k, o)
			}
		}
	}
	t.Logf("every kind of call succeeded again %v after the store answered", time.Since(thawed).Round(time.Millisecond))
	if !srv.alive() {
		t.Fatalf("warden exited:\n%s", srv.log)
	}
	checkIntents(t, cfgPath)
}

// refusalKind names a structured refusal of an unavailable store, or is ""
// for anything else.
func refusalKind(o callOutcome) string {
	switch {
	case o.code == "UNAVAILABLE" || o.code == "AUDIT_UNAVAILABLE":
		return o.code
	case strings.HasPrefix(o.other, "HTTP 503: ") && strings.Contains(o.other, "authentication is unavailable"):
		return "HTTP 503"
	}
	return ""
}

// checkIntents reports, as test errors, every draft in the CRM without an
// intent record, every successful outcome of a write without its intent,
// every intent of a read (its outcome is its one record), and a chain that
// does not verify.
func checkIntents(t *testing.T, cfgPath string) {
	t.Helper()
	ctx := t.Context()
	store, secret := openAuditLog(t, cfgPath)
	var err error
	intents := map[string]bool{}  // by trace id
	subjects := map[string]bool{} // of drafts intended
	var outcomes []*audit.Record
	err = store.Scan(ctx, audit.Query{}, func(r *audit.Record) error {
		switch r.Phase {
		case audit.Intent:
			if r.Mode == pipeline.Read.String() {
				t.Errorf("%s of trace %s left an intent; a read leaves only its outcome", r.Target, r.TraceID)
			}
			intents[r.TraceID] = true
			var args struct{ Subject string }
			if json.Unmarshal(r.Args, &args) == nil && args.Subject != "" {
				subjects[args.Subject] = true
			}
		case audit.Outcome:
			if r.Target != "" {
				outcomes = append(outcomes, r)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range outcomes {
		if r.Mode == pipeline.Write.String() && r.Status == audit.StatusOK && !intents[r.TraceID] {
			t.Errorf("%s of trace %s has an outcome and no intent", r.Target, r.TraceID)
		}
	}
	rep, err := audit.Verify(ctx, store, secret)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Errorf("the audit chain does not verify: %+v", rep)
	}

	crm := filepath.Join(os.Getenv("WARDEN_DEMO_DIR"), "crm.db")
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: crm}).EscapedPath()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT subject FROM support_tickets WHERE subject LIKE 'deadline-%'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	drafts := 0
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		drafts++
		if !subjects[s] {
			t.Errorf("draft %q was written without an intent record", s)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d drafts written, each with its intent; %d intents, %d outcomes of calls", drafts, len(intents), len(outcomes))
}

// freshDatabase creates a database of its own on the PostgreSQL at admin,
// dropped when the test ends, and returns its DSN.
func freshDatabase(t *testing.T, admin string) string {
	t.Helper()
	name := "warden_deadline_" + randomHex(6)
	conn, err := pgx.Connect(t.Context(), admin)
	if err != nil {
		t.Fatalf("connecting to WARDEN_TEST_POSTGRES_URL: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), rlDeadline)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("dropping %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// deadlineConfig writes the demo configuration with its state in the
// PostgreSQL database at dsn, every state ceiling set to ceiling, anonymous
// callers admitted beside API keys, and limits that refuse none of the
// test's calls, and returns its path.
func deadlineConfig(t *testing.T, dsn string, ceiling time.Duration) string {
	t.Helper()
	src, err := os.ReadFile(demoConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	const sqliteState = "  state:\n    sqlite: ${WARDEN_DEMO_DIR}/state.db\n"
	if !strings.Contains(string(src), sqliteState) {
		t.Fatal("the demo configuration no longer keeps its state at ${WARDEN_DEMO_DIR}/state.db")
	}
	doc := strings.Replace(string(src), sqliteState, fmt.Sprintf(`  state:
    postgres: %q
    timeouts: {keys: %[2]s, audit: %[2]s, suspensions: %[2]s, approvals: %[2]s, idempotency: %[2]s}
`, dsn, ceiling), 1)
	doc = replaceTopLevel(doc, "rate_limits", `rate_limits:
  per_principal_tool: {rate: 100000/s, burst: 100000}
  per_principal: {rate: 100000/s, burst: 100000}
  per_tool: {rate: 100000/s, burst: 100000}
`)
	doc = replaceTopLevel(doc, "audit", "audit:\n  secret: "+randomHex(32)+"\n")
	doc = replaceTopLevel(doc, "auth", "auth:\n  anonymous: {id: deadline-anonymous, tenant: acme, scopes: [crm.read, crm.tickets.write]}\n")
	path := filepath.Join(os.Getenv("WARDEN_DEMO_DIR"), "warden-deadline.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
