package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wardenmcp/warden/internal/audit"
)

// The tests here run a write tool, create_slow_write, that takes its time — it inserts a row
// into a PostgreSQL table of its own after pg_sleep — so that a fault can
// strike the state store between a call's intent and its outcome: the tool
// has run, and its outcome cannot be stored.

const slowTool = "create_slow_write"

// slowToolConfig writes a configuration serving the slow tool over the
// PostgreSQL database sourceDSN (which must have the slow_writes table) to
// anonymous callers, with state as the YAML under server.state, every state
// ceiling 1 s, the audit spool in spoolDir, and extra appended, and returns
// its path.
func slowToolConfig(t *testing.T, sourceDSN, state, spoolDir, extra string) string {
	t.Helper()
	doc := fmt.Sprintf(`server:
  name: spool-test
  default_timeout: 20s
  shutdown_grace: 3s
  state:
%s
    timeouts: {keys: 1s, audit: 1s, suspensions: 1s, approvals: 1s, idempotency: 1s}
auth:
  anonymous: {id: spool-test, tenant: acme, scopes: [slow.write]}
rate_limits:
  per_principal_tool: {rate: 100000/s, burst: 100000}
  per_principal: {rate: 100000/s, burst: 100000}
  per_tool: {rate: 100000/s, burst: 100000}
audit:
  secret: %s
  spool: %q
sources:
  pg:
    kind: postgres
    dsn: %q
tools:
  %s:
    description: Sleep, then record a tag.
    scope: slow.write
    mode: write
    source: pg
    statement: INSERT INTO slow_writes (tag) SELECT CAST(:tag AS text) FROM pg_sleep(:secs) RETURNING tag
    columns:
      tag: {type: string, description: The tag recorded.}
    parameters:
      tag: {type: string, required: true, description: A tag.}
      secs: {type: number, required: true, description: Seconds to sleep first.}
%s`, state, randomHex(32), spoolDir, sourceDSN, slowTool, extra)
	path := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// slowSource creates a database of its own with the slow_writes table and
// returns its DSN, or skips the test without PostgreSQL.
func slowSource(t *testing.T) (admin, dsn string) {
	t.Helper()
	admin = os.Getenv("WARDEN_TEST_POSTGRES_URL")
	if admin == "" {
		t.Skip("WARDEN_TEST_POSTGRES_URL is not set; set it (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the audit spool fault tests")
	}
	dsn = freshDatabase(t, admin)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), `CREATE TABLE slow_writes (tag text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return admin, dsn
}

// slowWrites reports whether slow_writes in the database at dsn holds tag:
// whether the tool ran for it.
func slowWrites(t *testing.T, dsn, tag string) bool {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM slow_writes WHERE tag = $1`, tag).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// sleeping waits until the tool's statement for tag is running in the
// database at dsn: its intent is durable (a write runs only then) and its
// outcome is not yet written.
func sleeping(t *testing.T, dsn, tag string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(rlDeadline)
	for {
		var n int
		err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tool did not start running for %q within %v", tag, rlDeadline)
		}
		time.Sleep(20 * time.Millisecond) // polling another process's database; nothing to wait on
	}
}

// callSlow calls the slow tool anonymously.
func callSlow(ctx context.Context, client *http.Client, endpoint string, id int, tag string, secs float64) callOutcome {
	return callTool(ctx, client, endpoint, "", id, slowTool, map[string]any{"tag": tag, "secs": secs}, tag)
}

// outcomesOf returns the intent and outcome records of the slow tool's
// calls with tag.
func outcomesOf(t *testing.T, store audit.Store, tag string) (intents, outcomes []*audit.Record) {
	t.Helper()
	err := store.Scan(t.Context(), audit.Query{Target: slowTool}, func(r *audit.Record) error {
		var args struct{ Tag string }
		if json.Unmarshal(r.Args, &args) != nil || args.Tag != tag {
			return nil
		}
		switch r.Phase {
		case audit.Intent:
			intents = append(intents, r)
		case audit.Outcome:
			outcomes = append(outcomes, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return intents, outcomes
}

// waitLate polls the audit log until the outcome of the call with tag is
// stored, and returns it.
func waitLate(t *testing.T, store audit.Store, tag string) *audit.Record {
	t.Helper()
	deadline := time.Now().Add(rlDeadline)
	for {
		if _, out := outcomesOf(t, store, tag); len(out) > 0 {
			if len(out) > 1 {
				t.Errorf("the call %q has %d outcomes, want one", tag, len(out))
			}
			return out[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the outcome of %q did not reach the store within %v", tag, rlDeadline)
		}
		time.Sleep(100 * time.Millisecond) // the replay runs in another process
	}
}

// verifyChain fails the test unless the audit log verifies.
func verifyChain(t *testing.T, store audit.Store, secret []byte) {
	t.Helper()
	rep, err := audit.Verify(t.Context(), store, secret)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Errorf("the audit chain does not verify: %+v", rep.Problems)
	}
}

func readyz(t *testing.T, client *http.Client, base string) (int, string) {
	t.Helper()
	resp, err := client.Get(base + "/readyz")
	if err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// A PostgreSQL state store that stops answering while a write tool runs:
//   - /readyz turns unready at once, naming the state store and nothing of
//     its address, and ready again once it answers;
//   - the call that was running when it froze still gets its result, in
//     about the audit ceiling, and its outcome, which the store could not
//     take, is kept in the spool;
//   - once the store answers again, the outcome is stored, marked late,
//     and the chain verifies;
//   - SIGTERM while the store is frozen ends the process within its
//     shutdown grace, not after PostgreSQL connections give up.
func TestOutcomeSpooledWhenTheStateStoreFreezes(t *testing.T) {
	_, source := slowSource(t)
	u, err := url.Parse(source)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, u.Host)
	u.Host = proxy.addr
	spool := filepath.Join(t.TempDir(), "spool")
	cfgPath := slowToolConfig(t, source, fmt.Sprintf("    postgres: %q", u.String()), spool, "")
	client := &http.Client{Timeout: 2 * rlDeadline}
	marker := randomHex(8)
	t.Setenv(crashMarkerEnv, marker)
	srv := startWarden(t, client, cfgPath)
	pid := childWithEnv(t, crashMarkerEnv+"="+marker)
	store, secret := openDirect(t, cfgPath, source)

	if o := callSlow(t.Context(), client, srv.endpoint, 1, "before", 0); !o.ok {
		t.Fatalf("before the freeze, a call = %v", o)
	}
	if code, body := readyz(t, client, srv.base); code != http.StatusOK {
		t.Fatalf("before the freeze, /readyz = %d %q", code, body)
	}

	done := make(chan callOutcome, 1)
	start := time.Now()
	go func() { done <- callSlow(t.Context(), client, srv.endpoint, 2, "frozen", 1.5) }()
	sleeping(t, source, "frozen")
	proxy.freeze(true)
	code, body := readyz(t, client, srv.base)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "state store (PostgreSQL)") {
		t.Errorf("with the store frozen, /readyz = %d %q, want 503 naming the state store", code, body)
	}
	for _, secret := range []string{proxy.addr, "postgres://", "127.0.0.1"} {
		if strings.Contains(body, secret) {
			t.Errorf("/readyz shows %q: %q", secret, body)
		}
	}
	o := <-done
	took := time.Since(start)
	if !o.ok || strings.Contains(string(o.meta), audit.OutcomeMetaKey) {
		t.Errorf("the call whose outcome the frozen store could not take = %v, _meta %s; want its result, without a note (the spool has its outcome)", o, o.meta)
	}
	if !slowWrites(t, source, "frozen") {
		t.Errorf("the tool did not run for the call that succeeded")
	}
	t.Logf("the call running when the store froze answered after %v", took.Round(time.Millisecond))
	if _, out := outcomesOf(t, store, "frozen"); len(out) != 0 {
		t.Errorf("with the store frozen, the outcome was stored: %+v", out)
	}
	if files, _ := filepath.Glob(filepath.Join(spool, "*.jsonl*")); len(files) == 0 {
		t.Errorf("the spool %s holds no file", spool)
	}

	proxy.freeze(false)
	out := waitLate(t, store, "frozen")
	if !out.Late || out.Status != audit.StatusOK {
		t.Errorf("the replayed outcome is %+v, want it late and ok", out)
	}
	if in, _ := outcomesOf(t, store, "frozen"); len(in) != 1 || in[0].TraceID != out.TraceID {
		t.Errorf("the intents of the call are %+v, want one of trace %s", in, out.TraceID)
	}
	verifyChain(t, store, secret)
	deadline := time.Now().Add(rlDeadline)
	for code, body := readyz(t, client, srv.base); code != http.StatusOK; code, body = readyz(t, client, srv.base) {
		if time.Now().After(deadline) {
			t.Fatalf("after the store answered again, /readyz = %d %q", code, body)
		}
	}

	// SIGTERM with the store frozen and a call waiting on it.
	proxy.freeze(true)
	go func() { done <- callSlow(context.Background(), client, srv.endpoint, 3, "at-shutdown", 0) }()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	termed := time.Now()
	const grace, slack = 3 * time.Second, 3 * time.Second // server.shutdown_grace, and a loaded machine's
	select {
	case <-srv.exited:
	case <-time.After(rlDeadline):
		t.Fatalf("warden did not exit within %v of SIGTERM", rlDeadline)
	}
	if took := time.Since(termed); took > grace+slack {
		t.Errorf("warden took %v to exit after SIGTERM with the store frozen; its shutdown grace is %v", took, grace)
	} else {
		t.Logf("SIGTERM with the store frozen: exited after %v (grace %v)", took.Round(time.Millisecond), grace)
	}
	<-done
}

// openDirect opens the audit log of the configuration at cfgPath on the
// PostgreSQL database dsn directly, not through the test's proxy.
func openDirect(t *testing.T, cfgPath, dsn string) (audit.Store, []byte) {
	t.Helper()
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	i := strings.Index(doc, "    postgres: ")
	j := i + strings.IndexByte(doc[i:], '\n')
	direct := filepath.Join(t.TempDir(), "direct.yaml")
	if err := os.WriteFile(direct, []byte(doc[:i]+fmt.Sprintf("    postgres: %q", dsn)+doc[j:]), 0o600); err != nil {
		t.Fatal(err)
	}
	return openAuditLog(t, direct)
}
