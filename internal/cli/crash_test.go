package cli

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
)

// A warden process killed without warning, in the middle of a stream of
// writes and reads, must leave behind an audit log that accounts for every
// call a client saw succeed, and a chain that still verifies — whether
// records are synced to disk (audit.durability fsync) or only handed to the
// operating system (os), which a crash of the process does not lose either.

const (
	crashWorkers        = 8
	crashCallsPerWorker = 1000 // a bound: the kill comes long before the workers are done
	crashSeen           = 50   // successes the clients see before the kill
	crashTool           = "create_support_ticket_draft"
	crashReadTool       = "get_order_status" // each read asks for an order id of its own

	// crashMarkerEnv carries a value unique to one test run into the
	// environment of the warden process it starts, so that the test can
	// find that process among its children to kill it.
	crashMarkerEnv = "WARDEN_CRASH_TEST_PROCESS"
)

// crashConfig writes the demo configuration, with limits that refuse none
// of the test's calls, the given audit durability and, if fixed, a fixed
// audit instance, so that a restarted process extends the chain of the one
// that was killed, into the demo's directory, and returns its path and the
// instance. Without a fixed instance every process has an id of its own,
// and another takes one for dead after a second without a heartbeat.
func crashConfig(t *testing.T, durability string, fixed bool) (path, instance string) {
	t.Helper()
	src, err := os.ReadFile(demoConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	instance = "crash-test-" + randomHex(4)
	doc := replaceTopLevel(string(src), "rate_limits", `rate_limits:
  per_principal_tool: {rate: 100000/s, burst: 100000}
  per_principal: {rate: 100000/s, burst: 100000}
  per_tool: {rate: 100000/s, burst: 100000}
  max_concurrent_per_principal: 64
`)
	if fixed {
		doc = replaceTopLevel(doc, "audit", fmt.Sprintf("audit:\n  instance: %s\n  durability: %s\n", instance, durability))
	} else {
		instance = ""
		doc = replaceTopLevel(doc, "audit", fmt.Sprintf("audit:\n  durability: %s\n  orphan_after: 1s\n", durability))
	}
	path = filepath.Join(os.Getenv("WARDEN_DEMO_DIR"), fmt.Sprintf("warden-%s.yaml", randomHex(4)))
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, instance
}

// callTicket sends one stateless (2026-07-28) tools/call of
// create_support_ticket_draft for acme's customer C-1001 with subject,
// authenticated with key. It succeeds only for a result that is not an
// error and holds the new draft.
func callTicket(ctx context.Context, client *http.Client, endpoint, key string, id int, subject string) callOutcome {
	return callTool(ctx, client, endpoint, key, id, crashTool, map[string]any{
		"customer_id": "C-1001",
		"subject":     subject,
		"body":        "Filed by the crash test.",
	}, strconv.Quote(subject))
}

// callOrder sends one stateless tools/call of get_order_status for order,
// an id no order has: the answer, no rows, is a success all the same.
func callOrder(ctx context.Context, client *http.Client, endpoint, key string, id int, order string) callOutcome {
	return callTool(ctx, client, endpoint, key, id, crashReadTool, map[string]any{"order_id": order}, `"rows"`)
}

// childWithEnv returns the pid of the child process of this one whose
// environment holds the variable kv ("NAME=value"), read from /proc.
func childWithEnv(t *testing.T, kv string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // it exited
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for v := range bytes.SplitSeq(env, []byte{0}) {
			if string(v) == kv {
				return pid
			}
		}
	}
	t.Fatalf("no child process of %d has %s in its environment", os.Getpid(), kv)
	return 0
}

// crashLog is what the audit log and the CRM hold after the kill.
type crashLog struct {
	intents  map[string]*audit.Record // of writes, by subject
	outcomes map[string]*audit.Record // by trace id
	calls    map[string]string        // the subject (writes) or order id (reads) of each outcome's trace
	other    []string                 // records that should not exist
	tickets  map[string]bool          // subjects of the drafts in the CRM
	report   *audit.Report
}

// openAuditLog opens the audit store of the configuration at cfgPath and
// the secret its chain is keyed with, as an operator would after a fault;
// the store is closed when the test ends.
func openAuditLog(t *testing.T, cfgPath string) (audit.Store, []byte) {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := audit.LoadSecret(cfg)
	if err != nil {
		t.Fatal(err)
	}
	store, err := audit.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store, secret
}

// readCrashLog opens the audit store and the CRM of the configuration at
// cfgPath, as an operator would after the crash, and reads them.
func readCrashLog(t *testing.T, cfgPath string) *crashLog {
	t.Helper()
	ctx := t.Context()
	store, secret := openAuditLog(t, cfgPath)
	var err error

	l := &crashLog{intents: map[string]*audit.Record{}, outcomes: map[string]*audit.Record{}, calls: map[string]string{}, tickets: map[string]bool{}}
	err = store.Scan(ctx, audit.Query{}, func(r *audit.Record) error {
		if r.Target != crashTool && r.Target != crashReadTool {
			return nil
		}
		var args struct {
			Subject string
			OrderID string `json:"order_id"`
		}
		if err := json.Unmarshal(r.Args, &args); err != nil || args.Subject+args.OrderID == "" {
			l.other = append(l.other, fmt.Sprintf("%s record %d of trace %s has no subject or order id in its args %s", r.Phase, r.Seq, r.TraceID, r.Args))
			return nil
		}
		key := args.Subject + args.OrderID
		switch r.Phase {
		case audit.Intent:
			if r.Target == crashReadTool {
				// A read's outcome is its one record: a kill mid-read
				// leaves nothing open.
				l.other = append(l.other, fmt.Sprintf("an intent of the read of %q: trace %s", key, r.TraceID))
				return nil
			}
			if prev, dup := l.intents[key]; dup {
				l.other = append(l.other, fmt.Sprintf("two intents for %q: traces %s and %s", key, prev.TraceID, r.TraceID))
			}
			l.intents[key] = r
		case audit.Outcome:
			if _, dup := l.outcomes[r.TraceID]; dup {
				l.other = append(l.other, fmt.Sprintf("two outcomes for trace %s", r.TraceID))
			}
			l.outcomes[r.TraceID], l.calls[r.TraceID] = r, key
		default:
			l.other = append(l.other, fmt.Sprintf("a %s record for %q: %s %s", r.Phase, key, r.ErrorCode, r.Reason))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if l.report, err = audit.Verify(ctx, store, secret); err != nil {
		t.Fatal(err)
	}

	crm := filepath.Join(os.Getenv("WARDEN_DEMO_DIR"), "crm.db")
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: crm}).EscapedPath()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT subject FROM support_tickets WHERE subject LIKE 'crash-%'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		l.tickets[s] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return l
}

// check reports, as test errors, every call seen to succeed that the log
// or the CRM does not account for, every draft written without an intent,
// every outcome of a write without its intent, and a chain that does not
// verify. It returns how many intents have no outcome.
func (l *crashLog) check(t *testing.T, seen []string) (unfinished int) {
	t.Helper()
	for _, o := range l.other {
		t.Error(o)
	}
	readOf := map[string]*audit.Record{} // the outcomes of reads, by order id
	for trace, out := range l.outcomes {
		if out.Target == crashReadTool {
			readOf[l.calls[trace]] = out
		}
	}
	for _, s := range seen {
		var out *audit.Record
		if strings.HasPrefix(s, "O-") {
			// A read leaves one record, its outcome.
			if out = readOf[s]; out == nil {
				t.Errorf("read %q succeeded, but the audit log has no outcome for it", s)
				continue
			}
		} else {
			in := l.intents[s]
			if in == nil {
				t.Errorf("call %q succeeded, but the audit log has no intent for it", s)
				continue
			}
			if out = l.outcomes[in.TraceID]; out == nil {
				t.Errorf("call %q succeeded, but the audit log has no outcome for its trace %s", s, in.TraceID)
				continue
			}
		}
		switch {
		case out.Status != audit.StatusOK || out.Decision != audit.Allow:
			t.Errorf("call %q succeeded, but its outcome says status %q, decision %q: %s", s, out.Status, out.Decision, out.Reason)
		case !bytes.Contains(out.Args, []byte(strconv.Quote(s))):
			t.Errorf("call %q: the outcome of its trace %s names other arguments: %s", s, out.TraceID, out.Args)
		}
		if strings.HasPrefix(s, "crash-") && !l.tickets[s] {
			t.Errorf("call %q succeeded, but the CRM has no draft with that subject", s)
		}
	}
	for s := range l.tickets {
		if l.intents[s] == nil {
			t.Errorf("the CRM has a draft %q that the audit log has no intent for: a write ran unaudited", s)
		}
	}
	traces := map[string]bool{}
	for _, in := range l.intents {
		traces[in.TraceID] = true
		if l.outcomes[in.TraceID] == nil {
			unfinished++
		}
	}
	for id, out := range l.outcomes {
		if out.Target == crashTool && !traces[id] {
			t.Errorf("the audit log has an outcome of a write, trace %s, without an intent", id)
		}
	}
	if !l.report.OK {
		t.Errorf("the audit chain does not verify: %+v", l.report.Problems)
	}
	return unfinished
}

// Eight clients file drafts (writes, which wait for their intent to be
// durable before they run) and look up orders (reads, which leave one
// record, their outcome) as fast as warden answers; warden is killed with
// SIGKILL mid-stream. Every write a client saw succeed has its intent and
// its "ok" outcome in the audit log, and a draft its row in the CRM; every
// read it saw has its "ok" outcome, and no read has an intent, so a kill
// mid-read leaves nothing open; no draft exists without an intent; the
// chain verifies; and a restarted warden extends the same chain. In both
// durability modes: a record handed to the operating system survives the
// death of the process.
//
// What this test cannot do is cut the power. With durability os, a crash
// of the machine may lose the newest records, those not yet synced —
// records of calls that were answered, reads and writes alike — but never
// a record without those before it: the chain still verifies, and no
// outcome of a write survives without its intent (see the README's audit
// section). With fsync it loses none.
//
// The restart closes every intent the kill left open with an outcome of
// status unknown, late: in the same chain when the instance id is fixed
// (audit.instance), at start; otherwise the new process, with an id of its
// own, closes them once the killed one's heartbeat is older than
// audit.orphan_after.
func TestAuditSurvivesSIGKILL(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no SIGKILL")
	}
	if _, err := os.Stat("/proc/self/environ"); err != nil {
		t.Skipf("this test finds the warden process it kills through /proc, which %s lacks", runtime.GOOS)
	}
	for _, tt := range []struct {
		name, durability string
		fixed            bool
	}{
		{config.DurabilityFsync, config.DurabilityFsync, true},
		{config.DurabilityOS, config.DurabilityOS, true},
		{"new-instance", config.DurabilityFsync, false},
	} {
		t.Run(tt.name, func(t *testing.T) { testAuditSurvivesSIGKILL(t, tt.durability, tt.fixed) })
	}
}

func testAuditSurvivesSIGKILL(t *testing.T, durability string, fixed bool) {
	began := time.Now()
	cfgPath, instance := crashConfig(t, durability, fixed)
	code, out, errOut := runCLI(t, nil, "keys", "create", "--init", "--config", cfgPath, "--name", "crash-test",
		"--scopes", "crm.read,crm.tickets.write", "--tenant", "acme", "--expires", "1h")
	if code != exitOK {
		t.Fatalf("keys create: exit %d\n%s", code, errOut)
	}
	key := strings.TrimSpace(out)

	client := newTestClient(t)
	marker := randomHex(8)
	t.Setenv(crashMarkerEnv, marker)
	srv := startWarden(t, client, cfgPath)
	pid := childWithEnv(t, crashMarkerEnv+"="+marker)

	var (
		mu        sync.Mutex
		seen      []string // subjects and order ids of the calls seen to succeed
		cutOff    int      // workers whose call failed once the kill was under way
		early     []string // calls that failed before it
		successes atomic.Int64
		killed    atomic.Bool
		enough    = make(chan struct{})
		once      sync.Once
		wg        sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for w := range crashWorkers {
		wg.Go(func() {
			for n := range crashCallsPerWorker {
				// Writes and reads in turn; every call's arguments are its own.
				id := w*crashCallsPerWorker + n + 1
				subject := fmt.Sprintf("crash-%d-%d", w, n/2)
				var o callOutcome
				if n%2 == 0 {
					o = callTicket(ctx, client, srv.endpoint, key, id, subject)
				} else {
					subject = fmt.Sprintf("O-%04d", id)
					o = callOrder(ctx, client, srv.endpoint, key, id, subject)
				}
				mu.Lock()
				switch {
				case o.ok:
					seen = append(seen, subject)
				case killed.Load():
					// Set before the kill, so a failure it causes is
					// never counted as early.
					cutOff++
				default:
					early = append(early, fmt.Sprintf("%s: %v", subject, o))
				}
				mu.Unlock()
				if o.ok && successes.Add(1) >= crashSeen {
					once.Do(func() { close(enough) })
				}
				if !o.ok {
					return
				}
			}
		})
	}
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }()

	select {
	case <-enough:
	case <-workersDone:
		t.Fatalf("the workers stopped after %d successes, before the kill; the failures: %v", successes.Load(), early)
	case <-time.After(rlDeadline):
		t.Fatalf("only %d calls succeeded within %v", successes.Load(), rlDeadline)
	}
	killed.Store(true)
	proc, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Kill(); err != nil { // SIGKILL: no handler, no flush, no shutdown
		t.Fatalf("killing warden process %d: %v", pid, err)
	}
	killedAt := time.Since(began)
	select {
	case <-srv.exited:
	case <-time.After(rlDeadline):
		t.Fatalf("warden process %d did not exit within %v of SIGKILL", pid, rlDeadline)
	}
	cancel() // the workers' calls now fail; none is counted as seen
	select {
	case <-workersDone:
	case <-time.After(rlDeadline):
		t.Fatalf("the workers did not stop within %v of the kill", rlDeadline)
	}
	if !strings.Contains(srv.log.String(), "serving MCP over Streamable HTTP") || strings.Contains(srv.log.String(), "shutting down") {
		t.Errorf("warden did not die abruptly: its log shows a shutdown:\n%s", srv.log)
	}
	if os := strings.Contains(srv.log.String(), "audit.durability is os"); os != (durability == config.DurabilityOS) {
		t.Errorf("with audit.durability %s, the log warns of os durability: %v\n%s", durability, os, srv.log)
	}
	if len(early) > 0 {
		t.Errorf("%d calls failed before the kill; the first: %s", len(early), early[0])
	}
	if cutOff == 0 {
		t.Errorf("no call was cut off by the kill: it came after the workers had stopped, not under load")
	}

	// After the crash, as `warden audit verify` would.
	l := readCrashLog(t, cfgPath)
	unfinished := l.check(t, seen)
	if !fixed && len(l.report.Chains) == 1 {
		instance = l.report.Chains[0].Instance
	}
	var head int64
	for _, c := range l.report.Chains {
		if c.Instance == instance {
			head = c.Head
		}
	}
	okNotSeen := 0 // calls that completed, whose response the kill cut off
	for trace, out := range l.outcomes {
		if out.Status == audit.StatusOK && !slices.Contains(seen, l.calls[trace]) {
			okNotSeen++
		}
	}
	reads := 0
	for _, s := range seen {
		if strings.HasPrefix(s, "O-") {
			reads++
		}
	}
	t.Logf("durability %s: killed warden at %v, after %d calls (%d of them reads) were seen to succeed; %d of %d workers had a call cut off or refused by the kill",
		durability, killedAt.Round(time.Millisecond), len(seen), reads, cutOff, crashWorkers)
	t.Logf("audit log after the kill: %d intents, %d outcomes, %d intents without an outcome (in flight at the kill), "+
		"%d ok outcomes whose response the client never got; %d drafts in the CRM; chain %s verified to seq %d",
		len(l.intents), len(l.outcomes), unfinished, okNotSeen, len(l.tickets), instance, head)
	if head == 0 {
		t.Fatalf("the audit log has no chain for instance %s; chains: %+v", instance, l.report.Chains)
	}
	if t.Failed() {
		return
	}

	// A new process on the same state closes the intents the kill left
	// open, picks the chain up where the killed one left it (with a fixed
	// instance id), and stops cleanly when the subtest ends.
	const after = "crash-after-restart"
	t.Run("restart", func(t *testing.T) {
		srv := startWarden(t, client, cfgPath)
		if o := callTicket(t.Context(), client, srv.endpoint, key, 1, after); !o.ok {
			t.Fatalf("after the restart, a call = %v, want success", o)
		}
		// The open intents are closed at start with a fixed instance id,
		// else once the killed process has missed its heartbeats.
		deadline := time.Now().Add(rlDeadline)
		for {
			l := readCrashLog(t, cfgPath)
			open := 0
			for _, in := range l.intents {
				if l.outcomes[in.TraceID] == nil {
					open++
				}
			}
			if open == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%v after the restart, %d intents are still open", rlDeadline, open)
			}
			time.Sleep(100 * time.Millisecond) // the closing runs in the other process
		}
	})
	l = readCrashLog(t, cfgPath)
	if n := l.check(t, append(seen, after)); n != 0 {
		t.Errorf("after the restart, %d intents have no outcome; want every one closed", n)
	}
	closed := 0
	for _, out := range l.outcomes {
		if out.Status != audit.StatusUnknown {
			continue
		}
		closed++
		if !out.Late || out.ErrorCode != audit.ErrorProcessEnded || out.Decision != audit.Allow || !strings.Contains(out.Reason, instance) {
			t.Errorf("an intent of trace %s is closed by %+v; want a late outcome naming instance %s", out.TraceID, out, instance)
		}
	}
	if closed != unfinished {
		t.Errorf("the restart closed %d intents; %d were left open by the kill", closed, unfinished)
	}
	// As an operator sees them.
	code, out, errOut = runCLI(t, nil, "audit", "query", "--config", cfgPath, "--error-code", audit.ErrorProcessEnded)
	if code != exitOK || strings.Count(out, "allow unknown "+audit.ErrorProcessEnded+" (late)") != closed {
		t.Errorf("warden audit query --error-code %s: exit %d, want %d closings shown as late:\n%s%s", audit.ErrorProcessEnded, code, closed, out, errOut)
	}
	if code, out, errOut := runCLI(t, nil, "audit", "verify", "--config", cfgPath); code != exitOK {
		t.Errorf("warden audit verify: exit %d\n%s%s", code, out, errOut)
	}
	in := l.intents[after]
	switch {
	case in == nil:
		t.Fatalf("after the restart, the call has no intent")
	case fixed && (in.Instance != instance || in.Seq <= head):
		t.Errorf("after the restart, the intent of a call is %+v; want it in chain %s after seq %d", in, instance, head)
	case !fixed && in.Instance == instance:
		t.Errorf("after the restart, the intent of a call is in the killed process's chain %s", instance)
	}
	if want := map[bool]int{true: 1, false: 2}[fixed]; len(l.report.Chains) != want {
		t.Fatalf("the audit log holds chains %+v, want %d", l.report.Chains, want)
	}
	t.Logf("after a restart and one more call: %d intents left open by the kill closed as unknown; chains %+v verify; the test took %v",
		closed, l.report.Chains, time.Since(began).Round(time.Millisecond))
}
