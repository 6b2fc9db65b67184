package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardenmcp/warden/pipeline"
)

// records returns the store's records of trace, by phase.
func records(t *testing.T, s Store, trace string) map[Phase][]*Record {
	t.Helper()
	out := map[Phase][]*Record{}
	for _, r := range scanAll(t, s, Query{TraceID: trace}) {
		out[r.Phase] = append(out[r.Phase], r)
	}
	return out
}

// A write call ran, and the store refused its outcome: the caller still
// gets its result, the outcome waits in the spool, and once the store
// takes records again it is stored, marked late, in a chain that verifies.
// Without a spool the result says the outcome was not recorded.
func TestAuditorKeepsAnOutcomeTheStoreRefused(t *testing.T) {
	for _, tt := range []struct {
		name string
		// spool: none, working, or failing (its file closed under it).
		spool string
	}{
		{"with a spool", "working"},
		{"with a spool that fails", "failing"},
		{"without a spool", "none"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mem := newMemStore()
			// The intent is the first Append, the outcome the second.
			spy := &spyStore{Store: mem, outcome: map[int]outcome{2: failBefore}}
			var opts WriterOptions
			if tt.spool != "none" {
				sp, err := OpenSpool(filepath.Join(t.TempDir(), "spool"), "node-a")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { sp.Close() })
				if tt.spool == "failing" {
					sp.f.Close() // every write to it fails now
				}
				opts.Spool = sp
			}
			w := newWriter(t, spy, "node-a", opts)
			a := NewAuditor(w, secret, nil)
			ran := 0
			h := pipeline.Chain(func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
				ran++
				return &pipeline.Result{Tool: &pipeline.ToolResult{Content: []pipeline.Content{pipeline.Text("done")}}}, nil
			}, a.Outcome, a.Intent)
			res, err := h(context.Background(), auditedCall(pipeline.Write))
			if err != nil || ran != 1 {
				t.Fatalf("the call = %v, %v after %d runs; want its result, once", res, err, ran)
			}
			note := res.Tool.Meta[OutcomeMetaKey]
			st := w.Stats()
			if tt.spool == "working" {
				if note != nil || st.Spooled != 1 || st.SpoolPending != 1 || st.Unrecorded != 0 {
					t.Fatalf("with the outcome spooled: _meta %v, stats %+v; want no note, one record spooled", res.Tool.Meta, st)
				}
			} else if note != OutcomeUnrecorded || st.Unrecorded != 1 || st.Spooled != 0 {
				t.Fatalf("with nowhere durable to keep the outcome: _meta %v, stats %+v; want %q and one unrecorded", res.Tool.Meta, st, OutcomeUnrecorded)
			}
			if tt.spool == "none" {
				return
			}
			if got := records(t, mem, "trace-1"); len(got[Intent]) != 1 || len(got[Outcome]) != 0 {
				t.Fatalf("before the replay the store holds %v, want the intent alone", got)
			}

			// Spooled, or held in memory by a spool that failed, the outcome
			// is stored once the store takes records again.
			r := Recover(context.Background(), w, RecoverOptions{})
			defer r.Stop()
			got := records(t, mem, "trace-1")
			if len(got[Outcome]) != 1 || !got[Outcome][0].Late || got[Outcome][0].Status != StatusOK {
				t.Fatalf("after the replay the outcomes are %+v, want one, ok and late", got[Outcome])
			}
			if st := w.Stats(); st.Replayed != 1 || st.SpoolPending != 0 {
				t.Errorf("after the replay, stats %+v; want one replayed, none pending", st)
			}
			verified(t, mem)
		})
	}
}

// Replay skips a line torn by a crash, and a record whose trace already
// has its outcome in the store (stored after all, or replayed before the
// process died), and leaves the spool empty.
func TestSpoolReplaySkipsTornAndStoredRecords(t *testing.T) {
	forEachStore(t, false, func(t *testing.T, s testStore) { testSpoolReplaySkipsTornAndStoredRecords(t, s) })
}

func testSpoolReplaySkipsTornAndStoredRecords(t *testing.T, mem Store) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node-a.jsonl")
	sp, err := OpenSpool(dir, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	w := newWriter(t, mem, "node-a", WriterOptions{Spool: sp})
	stored := &Record{Phase: Outcome, TraceID: "t-stored", Status: StatusOK, Decision: Allow}
	if err := w.Write(context.Background(), stored); err != nil {
		t.Fatal(err)
	}
	for _, tr := range []string{"t-stored", "t-new"} {
		if err := sp.Add(&Record{Phase: Outcome, TraceID: tr, Status: StatusOK, Decision: Allow, Target: "create_ticket"}); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"phase":"outcome","trace_id":"t-torn`) // the crash came mid-line
	f.Close()

	n, err := sp.Replay(context.Background(), w)
	if err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v; want the one record not yet stored", n, err)
	}
	if got := records(t, mem, "t-stored"); len(got[Outcome]) != 1 || got[Outcome][0].Late {
		t.Errorf("the outcome stored in time is %+v, want it alone and not late", got[Outcome])
	}
	if got := records(t, mem, "t-new"); len(got[Outcome]) != 1 || !got[Outcome][0].Late || got[Outcome][0].Target != "create_ticket" {
		t.Errorf("the replayed outcome is %+v, want it late, as spooled", got[Outcome])
	}
	if got := records(t, mem, "t-torn"); len(got[Outcome]) != 0 {
		t.Errorf("the torn line was stored: %+v", got)
	}
	if sp.Pending() != 0 {
		t.Errorf("after the replay %d records are pending", sp.Pending())
	}
	if _, err := os.Stat(path + ".replay"); !os.IsNotExist(err) {
		t.Errorf("the replayed file is still there: %v", err)
	}
	verified(t, mem)
}

// Intents left open when a process ended are closed, late, with status
// unknown: those of the instance's own chain when a process with the same
// instance id starts, and those of an instance that stopped beating by the
// first other instance to notice, once. Closed intents are not closed again.
func TestRecoverClosesOpenIntents(t *testing.T) {
	forEachStore(t, true, func(t *testing.T, s testStore) {
		ctx := context.Background()
		write := func(w *Writer, phase Phase, trace string) {
			t.Helper()
			if err := w.Write(ctx, &Record{Phase: phase, TraceID: trace, Target: "create_ticket", Principal: "alice", Decision: Allow}); err != nil {
				t.Fatal(err)
			}
		}
		// A process of instance a: one call finished, one in flight when it
		// died; then one of instance b the same.
		a, err := NewWriter(s.Store, secret, "node-a", WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		write(a, Intent, "a-done")
		write(a, Outcome, "a-done")
		write(a, Intent, "a-open")
		a.Close()
		b, err := NewWriter(s.Store, secret, "node-b", WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		write(b, Intent, "b-open")
		b.Close()
		l := s.Store.(leaser)
		if err := l.Heartbeat(ctx, "node-b", time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}

		// Instance a restarts: it closes its own open intent, and b's, dead
		// for an hour.
		a2 := newWriter(t, s.Store, "node-a", WriterOptions{})
		Recover(ctx, a2, RecoverOptions{}).Stop()
		for _, tr := range []string{"a-open", "b-open"} {
			out := records(t, s, tr)[Outcome]
			if len(out) != 1 || out[0].Status != StatusUnknown || !out[0].Late || out[0].ErrorCode != ErrorProcessEnded ||
				out[0].Instance != "node-a" || out[0].Target != "create_ticket" || out[0].Principal != "alice" {
				t.Errorf("trace %s is closed by %+v, want one late outcome of status unknown in node-a's chain", tr, out)
			}
		}
		if out := records(t, s, "a-done")[Outcome]; len(out) != 1 || out[0].Status == StatusUnknown {
			t.Errorf("the finished call's outcomes are %+v, want its own alone", out)
		}

		// Instance a dies again with a call in flight, and restarts: only
		// the new open intent is closed, once; the closed ones stay as
		// they are.
		write(a2, Intent, "a-open2")
		a2.Close()
		a3 := newWriter(t, s.Store, "node-a", WriterOptions{})
		Recover(ctx, a3, RecoverOptions{}).Stop()
		for _, tr := range []string{"a-open", "b-open", "a-open2"} {
			if out := records(t, s, tr)[Outcome]; len(out) != 1 || out[0].Status != StatusUnknown {
				t.Errorf("after the second restart, trace %s is closed by %+v, want one closing", tr, out)
			}
		}

		// Another instance starting later finds nothing left to close.
		c := newWriter(t, s.Store, "node-c", WriterOptions{})
		Recover(ctx, c, RecoverOptions{}).Stop()
		if seq, _, err := s.Last(ctx, "node-c"); err != nil || seq != 0 {
			t.Errorf("node-c wrote %d records (%v), want none", seq, err)
		}
		verified(t, s)
	})
}

// Processes sharing a spool directory replay one another's files only once
// their owner has ended: a running process's file is its own to replay.
func TestSpoolReplaysTheFilesOfEndedProcesses(t *testing.T) {
	mem := newMemStore()
	dir := t.TempDir()
	other, err := OpenSpool(dir, "node-b")
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Add(&Record{Phase: Outcome, TraceID: "t-b", Status: StatusOK, Decision: Allow}); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSpool(dir, "node-b"); err == nil {
		t.Fatal("a second process opened the spool file of running instance node-b")
	}
	sp, err := OpenSpool(dir, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	w := newWriter(t, mem, "node-a", WriterOptions{Spool: sp})
	if n, err := sp.Replay(context.Background(), w); err != nil || n != 0 {
		t.Fatalf("with node-b running, Replay = %d, %v; want nothing replayed", n, err)
	}
	other.Close() // node-b ends; the kernel drops its lock
	if n, err := sp.Replay(context.Background(), w); err != nil || n != 1 {
		t.Fatalf("with node-b ended, Replay = %d, %v; want its record", n, err)
	}
	if got := records(t, mem, "t-b"); len(got[Outcome]) != 1 || !got[Outcome][0].Late || got[Outcome][0].Instance != "node-a" {
		t.Errorf("node-b's spooled outcome is stored as %+v, want it late in node-a's chain", got[Outcome])
	}
	if _, err := os.Stat(filepath.Join(dir, "node-b.jsonl")); !os.IsNotExist(err) {
		t.Errorf("node-b's spool file is still there: %v", err)
	}
	verified(t, mem)
}

// A log an older release wrote, without the late column, opens: the
// column is added, the old records still verify, and late records follow.
func TestStoreAddsLateToAnOlderTable(t *testing.T) {
	forEachStore(t, true, func(t *testing.T, s testStore) {
		w := newWriter(t, s.Store, "node-a", WriterOptions{})
		if err := w.Write(context.Background(), call(1)); err != nil {
			t.Fatal(err)
		}
		w.Close()
		s.exec(t, `ALTER TABLE warden_audit DROP COLUMN late`)
		old := s.reopen(t)
		w = newWriter(t, old, "node-a", WriterOptions{})
		if err := w.Write(context.Background(), &Record{Phase: Outcome, TraceID: "trace-001", Status: StatusOK, Late: true}); err != nil {
			t.Fatal(err)
		}
		got := records(t, old, "trace-001")
		if len(got[Intent]) != 1 || got[Intent][0].Late || len(got[Outcome]) != 1 || !got[Outcome][0].Late {
			t.Errorf("after the upgrade, the records are %+v, want the old one not late and the new one late", got)
		}
		verified(t, old)
	})
}

// No index covers trace_id, so finding the open intents must read the log a
// bounded number of times, not once per intent: a correlated subquery that
// SQLite runs as a scan per intent took minutes for the 4,000 open intents
// of a 76,000-record log (the query below, 90ms).
func TestOrphansScanTheLogOnce(t *testing.T) {
	s := openTestSQLite(t).Store.(*sqlStore)
	scansOnce(t, s, orphansQuery(s.db.Dialect), "node-a", 0)
}

// Outcomes answers for many traces at once, in chunks, as the spool's
// replay asks: a trace with an outcome or a refusal is done, one with only
// an intent or no record is not.
func TestOutcomesOfManyTraces(t *testing.T) {
	forEachStore(t, true, func(t *testing.T, s testStore) {
		w := newWriter(t, s, "node-a", WriterOptions{})
		for _, r := range []*Record{
			{Phase: Intent, TraceID: "t-open", Decision: Allow},
			{Phase: Intent, TraceID: "t-done", Decision: Allow},
			{Phase: Outcome, TraceID: "t-done", Decision: Allow, Status: StatusOK},
			{Phase: Refusal, TraceID: "t-refused", Decision: Deny, Status: StatusRefused},
		} {
			if err := w.Write(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		traces := []string{"t-open", "t-done", "t-refused", "t-unknown"}
		for i := range outcomesChunk {
			traces = append(traces, fmt.Sprintf("t-none-%d", i))
		}
		traces = append(traces, "t-done") // in the second chunk too
		done, err := s.Store.(outcomeFinder).Outcomes(context.Background(), traces)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]bool{"t-done": true, "t-refused": true}; !reflect.DeepEqual(done, want) {
			t.Errorf("Outcomes = %v, want %v", done, want)
		}
	})
}

// Like the search for open intents, asking which spooled traces have an
// outcome must read the log once, not once per trace.
func TestOutcomesScanTheLogOnce(t *testing.T) {
	s := openTestSQLite(t).Store.(*sqlStore)
	scansOnce(t, s, outcomesQuery(s.db.Dialect), s.db.Dialect.List([]string{"t-1", "t-2"}))
}

// scansOnce fails the test unless SQLite's plan for query reads
// warden_audit with no subquery run per row.
func scansOnce(t *testing.T, s *sqlStore, query string, args ...any) {
	t.Helper()
	rows, err := s.db.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if p := strings.Join(plan, "\n"); strings.Contains(p, "CORRELATED") {
		t.Errorf("the query runs a subquery per row:\n%s", p)
	}
}

// A log written before reads stopped leaving intents holds an intent of
// every read: it verifies, its finished reads stay as they are, a read its
// process left open is closed like any intent, and the reads of the
// process that follows add one record each, which leaves nothing to close
// after another restart.
func TestOldLogWithReadIntents(t *testing.T) {
	forEachStore(t, true, func(t *testing.T, s testStore) {
		ctx := context.Background()
		old, err := NewWriter(s.Store, secret, "node-a", WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []Record{
			{Phase: Intent, TraceID: "old-done"},
			{Phase: Outcome, TraceID: "old-done", Status: StatusOK},
			{Phase: Intent, TraceID: "old-open"},
		} {
			r.Target, r.Mode, r.Principal, r.Decision = "get_customer", "read", "alice", Allow
			if err := old.Write(ctx, &r); err != nil {
				t.Fatal(err)
			}
		}
		old.Close()

		w := newWriter(t, s.Store, "node-a", WriterOptions{})
		Recover(ctx, w, RecoverOptions{}).Stop()
		if out := records(t, s, "old-open")[Outcome]; len(out) != 1 || out[0].Status != StatusUnknown || !out[0].Late {
			t.Errorf("the old open read is closed by %+v, want one late outcome of status unknown", out)
		}
		if out := records(t, s, "old-done")[Outcome]; len(out) != 1 || out[0].Status != StatusOK {
			t.Errorf("the old finished read's outcomes are %+v, want its own alone", out)
		}
		a := NewAuditor(w, secret, nil)
		h := pipeline.Chain(func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
			return &pipeline.Result{Rows: 1}, nil
		}, a.Outcome, a.Intent)
		if _, err := h(ctx, auditedCall(pipeline.Read)); err != nil {
			t.Fatal(err)
		}
		w.Close()

		again := newWriter(t, s.Store, "node-a", WriterOptions{})
		Recover(ctx, again, RecoverOptions{}).Stop()
		if got := phases(scanAll(t, s, Query{TraceID: "trace-1"})); !slices.Equal(got, []Phase{Outcome}) {
			t.Errorf("the new read left %v, want its outcome alone", got)
		}
		// Three old records, the closing of the open one, the new read.
		if n := verified(t, s); n["node-a"] != 5 {
			t.Errorf("the chain holds %d records, want 5", n["node-a"])
		}
	})
}
