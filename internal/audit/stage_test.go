package audit

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wardenmcp/warden/pipeline"
)

func auditedCall(mode pipeline.Mode) *pipeline.Call {
	return &pipeline.Call{
		Spec:      &pipeline.Spec{Method: pipeline.CallTool, Name: "get_customer", Mode: mode, Source: "sqlite"},
		Target:    "get_customer",
		Raw:       json.RawMessage(`{"customer_id":"C-1001","password":"hunter2"}`),
		Principal: &pipeline.Principal{ID: "alice", Tenant: "acme", AuthMethod: "api_key"},
		TraceID:   "trace-1",
		Start:     time.Now(),
	}
}

// A write call runs only once its intent is durable, and answers once its
// outcome is: two records. A read call runs at once and leaves one record,
// its outcome, durable before its result leaves.
func TestAuditorWaits(t *testing.T) {
	for _, tt := range []struct {
		mode pipeline.Mode
		// runsBeforeCommit says the target runs while no record is durable.
		runsBeforeCommit bool
		phases           []Phase
	}{
		{pipeline.Write, false, []Phase{Intent, Outcome}},
		{pipeline.Read, true, []Phase{Outcome}},
	} {
		t.Run(tt.mode.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem := newMemStore()
				spy := &spyStore{Store: mem, gate: make(chan struct{})}
				w := newWriter(t, spy, "node-a", WriterOptions{})
				a := NewAuditor(w, secret, nil)
				a.Redact = func(v any) any {
					m := v.(map[string]any)
					m["password"] = "[REDACTED]"
					return m
				}
				var observed []Phase
				a.Observe = func(r *Record) { observed = append(observed, r.Phase) }
				var (
					mu  sync.Mutex
					ran bool
				)
				h := pipeline.Chain(func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
					mu.Lock()
					ran = true
					mu.Unlock()
					return &pipeline.Result{Rows: 1}, nil
				}, a.Outcome, a.Intent)
				var (
					res  *pipeline.Result
					err  error
					done = make(chan struct{})
				)
				go func() {
					res, err = h(context.Background(), auditedCall(tt.mode))
					close(done)
				}()
				synctest.Wait() // every Append is held at the gate
				mu.Lock()
				if ran != tt.runsBeforeCommit {
					t.Errorf("the target ran before any record was durable: %v, want %v", ran, tt.runsBeforeCommit)
				}
				mu.Unlock()
				select {
				case <-done:
					t.Fatal("the call answered before any record was durable")
				default:
				}
				close(spy.gate)
				<-done
				if err != nil || res == nil {
					t.Fatalf("the call: %v, %v", res, err)
				}
				recs := scanAll(t, mem, Query{})
				if got := phases(recs); !slices.Equal(got, tt.phases) {
					t.Fatalf("stored %v, want %v", got, tt.phases)
				}
				for _, r := range recs {
					if string(r.Args) != `{"customer_id":"C-1001","password":"[REDACTED]"}` || r.ArgsHash == "" || r.Mode != tt.mode.String() {
						t.Errorf("%s record: args %s, hash %q, mode %q", r.Phase, r.Args, r.ArgsHash, r.Mode)
					}
				}
				last := recs[len(recs)-1]
				if last.Principal != "alice" || last.Target != "get_customer" || last.Status != StatusOK || last.Decision != Allow || last.Rows != 1 {
					t.Errorf("the outcome %+v does not say who called what and how it went", last)
				}
				if !slices.Equal(observed, tt.phases) {
					t.Errorf("Observe saw %v, want %v", observed, tt.phases)
				}
				if st := w.Stats(); st.Batches != uint64(len(tt.phases)) {
					t.Errorf("%d commits, want %d", st.Batches, len(tt.phases))
				}
				verified(t, mem)
			})
		})
	}
}

func phases(recs []*Record) []Phase {
	var out []Phase
	for _, r := range recs {
		out = append(out, r.Phase)
	}
	return out
}

// A read call whose outcome could not be stored ran, but its result does
// not leave, and it is not spooled: nothing else records the call, and it
// changed nothing. A write's outcome, in the same case, goes to the spool
// and its result leaves.
func TestAuditorWithholdsAReadWhoseOutcomeFailed(t *testing.T) {
	for _, tt := range []struct {
		mode pipeline.Mode
		// fail is the Append that fails: the read's first, the write's
		// second (its outcome).
		fail     int
		answered bool
		spooled  int
	}{
		{pipeline.Read, 1, false, 0},
		{pipeline.Write, 2, true, 1},
	} {
		t.Run(tt.mode.String(), func(t *testing.T) {
			mem := newMemStore()
			spy := &spyStore{Store: mem, outcome: map[int]outcome{tt.fail: failBefore}}
			sp, err := OpenSpool(filepath.Join(t.TempDir(), "spool"), "node-a")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sp.Close() })
			w := newWriter(t, spy, "node-a", WriterOptions{Spool: sp})
			a := NewAuditor(w, secret, nil)
			ran := 0
			h := pipeline.Chain(func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
				ran++
				return &pipeline.Result{Rows: 1}, nil
			}, a.Outcome, a.Intent)
			res, err := h(context.Background(), auditedCall(tt.mode))
			if ran != 1 {
				t.Errorf("the target ran %d times, want once", ran)
			}
			if tt.answered {
				if err != nil || res == nil {
					t.Fatalf("the write = %v, %v; want its result", res, err)
				}
			} else {
				var pe *pipeline.Error
				if res != nil || !errors.As(err, &pe) || pe.Code != pipeline.AuditUnavailable {
					t.Fatalf("the read = %v, %v; want AUDIT_UNAVAILABLE", res, err)
				}
				if recs := scanAll(t, mem, Query{}); len(recs) != 0 {
					t.Errorf("stored %+v, want nothing", recs)
				}
			}
			if n := sp.Pending(); n != tt.spooled {
				t.Errorf("%d records spooled, want %d", n, tt.spooled)
			}
		})
	}
}

// A store that stops answering holds no call past the writer's
// AppendTimeout: a write call is refused without running, a read call's
// result is withheld, each with a retry_after, after one deadline — not one
// per record.
func TestAuditorWaitIsBounded(t *testing.T) {
	for _, mode := range []pipeline.Mode{pipeline.Write, pipeline.Read} {
		t.Run(mode.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const timeout = 2 * time.Second
				spy := &spyStore{Store: newMemStore(), gate: make(chan struct{})}
				w := newWriter(t, spy, "node-a", WriterOptions{AppendTimeout: timeout})
				defer close(spy.gate) // before the writer closes
				a := NewAuditor(w, secret, nil)
				ran := false
				h := pipeline.Chain(func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
					ran = true
					return &pipeline.Result{Rows: 1}, nil
				}, a.Outcome, a.Intent)
				start := time.Now()
				res, err := h(context.Background(), auditedCall(mode))
				took := time.Since(start)
				var pe *pipeline.Error
				if res != nil || !errors.As(err, &pe) || pe.Code != pipeline.AuditUnavailable || pe.RetryAfter != 1 {
					t.Fatalf("the call = %v, %v; want AUDIT_UNAVAILABLE with retry_after 1", res, err)
				}
				if took != timeout {
					t.Errorf("the call ended after %v, want %v", took, timeout)
				}
				if want := mode == pipeline.Read; ran != want {
					t.Errorf("the target ran: %v, want %v", ran, want)
				}
			})
		})
	}
}

// However a read ends — answered, from the cache, with a tool error, timed
// out or failed — it leaves one record, its outcome, saying how.
func TestAuditorRecordsAReadOnce(t *testing.T) {
	for _, tt := range []struct {
		name     string
		res      *pipeline.Result
		err      error
		flags    []string
		status   string
		cacheHit bool
	}{
		{"answered", &pipeline.Result{Rows: 1}, nil, nil, StatusOK, false},
		{"cache hit", &pipeline.Result{Rows: 1}, nil, []string{"cache_hit"}, StatusOK, true},
		{"tool error", &pipeline.Result{Tool: &pipeline.ToolResult{IsError: true}}, nil, nil, StatusError, false},
		{"timed out", nil, pipeline.Errorf(pipeline.Timeout, "", "the call took too long"), nil, StatusTimeout, false},
		{"failed", nil, pipeline.Errorf(pipeline.Internal, "", "the source failed"), nil, StatusError, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mem := newMemStore()
			w := newWriter(t, mem, "node-a", WriterOptions{})
			a := NewAuditor(w, secret, nil)
			h := pipeline.Chain(func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
				c.Flags = tt.flags
				return tt.res, tt.err
			}, a.Outcome, a.Intent)
			h(context.Background(), auditedCall(pipeline.Read))
			recs := scanAll(t, mem, Query{})
			if len(recs) != 1 {
				t.Fatalf("stored %d records (%v), want one", len(recs), phases(recs))
			}
			r := recs[0]
			if r.Phase != Outcome || r.Mode != "read" || r.Status != tt.status || r.CacheHit != tt.cacheHit || r.Decision != Allow {
				t.Errorf("the record is %s, mode %s, status %s, cache hit %v, decision %s; want an outcome, read, %s, %v, allow",
					r.Phase, r.Mode, r.Status, r.CacheHit, r.Decision, tt.status, tt.cacheHit)
			}
		})
	}
}
