package anomaly

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/pipeline"
)

// clock is a settable time source for detectors under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// set moves the clock to d after t0.
func (c *clock) set(d time.Duration) {
	c.mu.Lock()
	c.t = t0.Add(d)
	c.mu.Unlock()
}

// logs captures log records, and lets a test wait for one.
type logs struct {
	mu   sync.Mutex
	recs []slog.Record
	ch   chan slog.Record
}

func newLogs() *logs { return &logs{ch: make(chan slog.Record, 4096)} }

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logs) WithGroup(string) slog.Handler            { return l }

func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
	select {
	case l.ch <- r:
	default:
	}
	return nil
}

// all returns the records with message msg, as attribute maps.
func (l *logs) all(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, r := range l.recs {
		if r.Message == msg {
			out = append(out, attrs(r))
		}
	}
	return out
}

// wait returns the attributes of the next record with message msg.
func (l *logs) wait(t *testing.T, msg string) map[string]any {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r := <-l.ch:
			if r.Message == msg {
				return attrs(r)
			}
		case <-timeout:
			t.Fatalf("no log record %q within 10s", msg)
		}
	}
}

func attrs(r slog.Record) map[string]any {
	m := map[string]any{}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Any()
		return true
	})
	return m
}

const (
	alertMsg     = "anomaly detected"
	recordedMsg  = "anomaly: suspension recorded"
	deliveredMsg = "anomaly: alert delivered to the webhook"
	failedMsg    = "anomaly: the webhook did not accept an alert; it is in this log only"
)

// env is a detector under test, with its clock and logs.
type env struct {
	d   *Detector
	clk *clock
	log *logs
}

func newEnv(t *testing.T, rules Rules, store SuspensionStore) *env {
	t.Helper()
	e := &env{clk: newClock(), log: newLogs()}
	d, err := newDetector(context.Background(), rules, store, slog.New(e.log), nil,
		options{now: e.clk.Now, retry: time.Millisecond})
	if err != nil {
		t.Fatalf("newDetector: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	e.d = d
	return e
}

// call runs one call of principal through the detector's Stage, and
// returns the refusal, or nil if the call reached the handler.
func (e *env) call(t *testing.T, principal string) *pipeline.Error {
	t.Helper()
	ran := false
	h := e.d.Stage(func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
		ran = true
		return &pipeline.Result{}, nil
	})
	_, err := h(context.Background(), &pipeline.Call{
		Target:    "delete_customer",
		Principal: &pipeline.Principal{ID: principal, Tenant: "acme"},
	})
	if err == nil {
		if !ran {
			t.Fatalf("Stage returned no error but did not run the handler")
		}
		return nil
	}
	if ran {
		t.Fatalf("Stage ran the handler and returned %v", err)
	}
	var pe *pipeline.Error
	if !errors.As(err, &pe) {
		t.Fatalf("Stage returned %T %v, want a *pipeline.Error", err, err)
	}
	return pe
}

// Records as the audit stage writes them.

func writeIntent(p string) *audit.Record {
	return &audit.Record{Phase: audit.Intent, Principal: p, Tenant: "acme", Method: "tools/call",
		Target: "delete_customer", Mode: "write", TraceID: "trace-" + p}
}

func writeOutcome(p string) *audit.Record {
	r := writeIntent(p)
	r.Phase, r.Status = audit.Outcome, audit.StatusOK
	return r
}

// result is the outcome of a read, the one record of the call.
func result(p string, rows int64) *audit.Record {
	return &audit.Record{Phase: audit.Outcome, Principal: p, Tenant: "acme", Method: "tools/call",
		Target: "get_customer", Mode: "read", TraceID: "trace-" + p, Status: audit.StatusOK, Rows: rows}
}

// oldReadIntent is the intent of a read, which the audit stage no longer
// writes but logs written before 2026-12 hold.
func oldReadIntent(p string) *audit.Record {
	r := result(p, 0)
	r.Phase, r.Status = audit.Intent, ""
	return r
}

func refusal(p string) *audit.Record {
	r := writeIntent(p)
	r.Phase, r.Decision, r.Status = audit.Refusal, audit.Deny, audit.StatusRefused
	r.SetError(pipeline.Errorf(pipeline.PermissionDenied, "", "the principal lacks scope crm.write"))
	return r
}

// suspensionRefusal is the record of Stage refusing a suspended principal.
func suspendedRefusal(p string) *audit.Record {
	r := refusal(p)
	r.SetError(suspended("unusual activity"))
	return r
}

// memStore is a SuspensionStore in memory whose failures a test controls.
type memStore struct {
	mu         sync.Mutex
	m          map[string]Suspension
	err        error // returned by every method
	suspendErr error // returned by Suspend
}

func newMemStore() *memStore { return &memStore{m: map[string]Suspension{}} }

func (s *memStore) fail(err, suspendErr error) {
	s.mu.Lock()
	s.err, s.suspendErr = err, suspendErr
	s.mu.Unlock()
}

func (s *memStore) Suspend(_ context.Context, principal, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if s.suspendErr != nil {
		return s.suspendErr
	}
	reason, err := checkSuspend(principal, reason)
	if err != nil {
		return err
	}
	if _, ok := s.m[principal]; !ok {
		s.m[principal] = Suspension{Principal: principal, Reason: reason, Since: now()}
	}
	return nil
}

func (s *memStore) Lift(_ context.Context, principal string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if _, ok := s.m[principal]; !ok {
		return ErrNotSuspended
	}
	delete(s.m, principal)
	return nil
}

func (s *memStore) Suspended(_ context.Context, principal string) (bool, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false, "", s.err
	}
	sp, ok := s.m[principal]
	return ok, sp.Reason, nil
}

func (s *memStore) List(context.Context) ([]Suspension, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	return slices.SortedFunc(maps.Values(s.m), func(a, b Suspension) int { return a.Since.Compare(b.Since) }), nil
}

func (s *memStore) Close() error { return nil }
