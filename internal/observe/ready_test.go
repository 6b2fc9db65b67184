package observe

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wardenmcp/warden/internal/audit"
)

func TestReady(t *testing.T) {
	ok := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("audit store: disk full") }
	waits := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	panics := func(context.Context) error { panic("boom") }
	tests := []struct {
		name   string
		checks []func(context.Context) error
		want   []string // substrings of the error; nil means ready
	}{
		{"no checks", nil, nil},
		{"all pass", []func(context.Context) error{ok, ok}, nil},
		{"one fails", []func(context.Context) error{ok, down}, []string{"disk full"}},
		{"a check that honours its deadline", []func(context.Context) error{ok, waits}, []string{"deadline exceeded"}},
		{"a named check that does not answer", []func(context.Context) error{ok, Named("cache (Redis)", waits)}, []string{"cache (Redis): no answer within 500ms"}},
		{"a named check that fails", []func(context.Context) error{Named("source crm", down)}, []string{"source crm: audit store: disk full"}},
		{"a check that panics", []func(context.Context) error{panics, ok}, []string{"check 1 panicked: boom"}},
		{"every failure is reported", []func(context.Context) error{down, waits}, []string{"disk full", "deadline exceeded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				err := Ready(tt.checks...)()
				if tt.want == nil {
					if err != nil {
						t.Fatalf("Ready() = %v, want ready", err)
					}
					return
				}
				if err == nil {
					t.Fatal("Ready() = nil, want not ready")
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Ready() = %q, want it to mention %q", err, w)
					}
				}
			})
		})
	}
}

// A check that ignores its context is not waited for past CheckTimeout.
func TestReadyTimesOutAStuckCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		stuck := func(context.Context) error { <-release; return nil }
		start := time.Now()
		err := Ready(func(context.Context) error { return nil }, stuck)()
		if err == nil || !strings.Contains(err.Error(), "check 2 did not answer within 500ms") {
			t.Fatalf("Ready() = %v, want check 2 to time out", err)
		}
		if waited := time.Since(start); waited != CheckTimeout+checkGrace {
			t.Errorf("waited %v, want %v", waited, CheckTimeout+checkGrace)
		}
	})
}

func TestAuditReady(t *testing.T) {
	var s audit.Stats
	check := AuditReady(func() audit.Stats { return s })
	ctx := context.Background()
	steps := []struct {
		name  string
		set   func()
		ready bool
	}{
		{"fresh writer", func() { s.QueueSize = 100 }, true},
		{"appending", func() { s.Records, s.Batches = 50, 5 }, true},
		{"appends fail", func() { s.Failed = 10 }, false},
		{"still failing", func() { s.Failed = 20 }, false},
		{"no calls since: try again", func() {}, true},
		{"some failed, some stored", func() { s.Failed, s.Records = 25, 60 }, true},
		{"queue full, rejecting", func() { s.Rejected = 3 }, false},
		{"queue nearly full", func() { s.Records, s.QueueDepth = 70, 95 }, false},
		{"queue drained", func() { s.Records, s.QueueDepth = 165, 0 }, true},
	}
	for _, st := range steps {
		st.set()
		err := check(ctx)
		if (err == nil) != st.ready {
			t.Errorf("%s: check = %v, want ready %v", st.name, err, st.ready)
		}
	}
}
