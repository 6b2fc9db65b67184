package anomaly

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wardenmcp/warden/pipeline"
)

// wantSuspended fails unless err is the refusal of a suspended principal.
func wantSuspended(t *testing.T, err *pipeline.Error, reason string) {
	t.Helper()
	if err == nil {
		t.Fatal("the call ran; want it refused: the principal is suspended")
	}
	want := "your access is suspended: " + reason + "; an operator can lift it with `warden suspensions lift`"
	if err.Code != pipeline.PermissionDenied || err.Message != want || err.Suggestion == "" {
		t.Fatalf("refusal = %+v, want PERMISSION_DENIED %q with a suggestion", err, want)
	}
}

// tripRefusals makes principal trip max_refusals_per_minute, with its
// threshold at 1.
func tripRefusals(e *env, principal string) {
	e.d.Observe(refusal(principal))
	e.d.Observe(refusal(principal))
}

const autoReason = "unusual activity (rule max_refusals_per_minute)"

// TestSuspendAndLift runs against every store: the suspension is made by
// the detector, and lifted by an operator through a store of their own,
// as `warden suspensions lift` does.
func TestSuspendAndLift(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() SuspensionStore) {
		server, operator := open(), open()
		e := newEnv(t, Rules{MaxRefusalsPerMinute: 1, Suspend: true}, server)
		ctx := context.Background()

		if err := e.call(t, "ci-bot"); err != nil {
			t.Fatalf("before any alert: %v", err)
		}
		tripRefusals(e, "ci-bot")
		// At once, before the store has it: same instant, negative cache
		// warm from the call above.
		wantSuspended(t, e.call(t, "ci-bot"), autoReason)
		if err := e.call(t, "someone-else"); err != nil {
			t.Errorf("another principal: %v", err)
		}

		e.log.wait(t, recordedMsg)
		if ok, reason, err := operator.Suspended(ctx, "ci-bot"); !ok || reason != autoReason || err != nil {
			t.Fatalf("the operator's store: Suspended = %v %q %v, want true %q", ok, reason, err, autoReason)
		}
		wantSuspended(t, e.call(t, "ci-bot"), autoReason)

		if err := operator.Lift(ctx, "ci-bot"); err != nil {
			t.Fatalf("Lift: %v", err)
		}
		if err := e.call(t, "ci-bot"); err != nil {
			t.Errorf("right after the lift, same instant: %v; want the call to run", err)
		}

		// Refusals while suspended do not count, so the lift holds once
		// the alert's window has passed.
		e.clk.set(window + time.Second)
		e.d.Observe(suspendedRefusal("ci-bot"))
		e.d.Observe(suspendedRefusal("ci-bot"))
		if err := e.call(t, "ci-bot"); err != nil {
			t.Errorf("after the lift: %v", err)
		}
	})
}

func TestSuspensionElsewhereBindsWithinASecond(t *testing.T) {
	store := newMemStore()
	e := newEnv(t, Rules{}, store)
	ctx := context.Background()
	if err := e.call(t, "ci-bot"); err != nil {
		t.Fatal(err)
	}
	// Another instance, or an operator, suspends ci-bot.
	if err := store.Suspend(ctx, "ci-bot", "investigating"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		at      time.Duration
		refused bool
	}{
		{0, false}, // the negative cache answers
		{negativeTTL - time.Nanosecond, false},
		{negativeTTL, true},
		{negativeTTL + time.Minute, true},
	}
	for _, tt := range tests {
		e.clk.set(tt.at)
		err := e.call(t, "ci-bot")
		switch {
		case tt.refused:
			wantSuspended(t, err, "investigating")
		case err != nil:
			t.Errorf("at %v: %v; want the cached answer", tt.at, err)
		}
	}
}

func TestLocalSuspensionIgnoresTheNegativeCache(t *testing.T) {
	store := newMemStore()
	e := newEnv(t, Rules{MaxRefusalsPerMinute: 1, Suspend: true}, store)
	store.fail(nil, errors.New("disk full")) // held pending at first
	if err := e.call(t, "ci-bot"); err != nil {
		t.Fatal(err)
	}
	tripRefusals(e, "ci-bot")
	wantSuspended(t, e.call(t, "ci-bot"), autoReason)
	if s := e.d.Stats(); s.Pending != 1 {
		t.Errorf("Stats().Pending = %d, want 1 while the store refuses it", s.Pending)
	}
	e.log.wait(t, "anomaly: a suspension could not be recorded in the store; until it is, it binds this instance only")
	wantSuspended(t, e.call(t, "ci-bot"), autoReason)

	store.fail(nil, nil)
	e.log.wait(t, recordedMsg)
	// Pending no longer answers, and the cache entry made before the store
	// held the suspension is void: still refused, at the same instant.
	wantSuspended(t, e.call(t, "ci-bot"), autoReason)
	if s := e.d.Stats(); s.Pending != 0 {
		t.Errorf("Stats().Pending = %d, want 0", s.Pending)
	}
}

func TestStoreErrorsRefuse(t *testing.T) {
	store := newMemStore()
	e := newEnv(t, Rules{MaxRefusalsPerMinute: 1, Suspend: true}, store)
	tripRefusals(e, "suspended")
	e.log.wait(t, recordedMsg)
	store.fail(errors.New("connection refused"), nil)

	tests := []struct {
		principal string
		code      pipeline.Code
	}{
		{"ci-bot", pipeline.Unavailable},
		{"suspended", pipeline.Unavailable},
	}
	for _, tt := range tests {
		err := e.call(t, tt.principal)
		if err == nil || err.Code != tt.code || err.RetryAfter == 0 || strings.Contains(err.Message, "connection refused") {
			t.Errorf("%s with the store down: %+v; want %s with retry_after, not the store's error", tt.principal, err, tt.code)
		}
	}
	if got := e.log.all("anomaly: the suspension store cannot be read; calls are refused"); len(got) != 1 {
		t.Errorf("%d store errors logged, want 1 (throttled)", len(got))
	}

	// A suspension raised while the store is down binds here regardless.
	tripRefusals(e, "ci-bot")
	wantSuspended(t, e.call(t, "ci-bot"), autoReason)
}

func TestCallsWithoutAPrincipalPass(t *testing.T) {
	store := newMemStore()
	store.fail(errors.New("down"), nil)
	e := newEnv(t, Rules{}, store)
	h := e.d.Stage(func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return &pipeline.Result{}, nil })
	if _, err := h(context.Background(), &pipeline.Call{Target: "t"}); err != nil {
		t.Errorf("a call without a principal: %v; want it passed to the authorize stage, which refuses it", err)
	}
}

func TestCloseRecordsPendingSuspensions(t *testing.T) {
	tests := []struct {
		name       string
		storeFails bool
	}{
		{"the store answers", false},
		{"the store is down", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newMemStore()
			store.fail(nil, errors.New("down"))
			e := newEnv(t, Rules{MaxRefusalsPerMinute: 1, Suspend: true}, store)
			tripRefusals(e, "ci-bot")
			if !tt.storeFails {
				store.fail(nil, nil)
			}
			err := e.d.Close()
			ok, _, _ := store.Suspended(context.Background(), "ci-bot")
			if tt.storeFails {
				if err == nil || !strings.Contains(err.Error(), "not recorded in the store, and so lost on restart: 1") || ok {
					t.Errorf("Close = %v, stored %v; want an error naming the lost suspension", err, ok)
				}
				return
			}
			if err != nil || !ok {
				t.Errorf("Close = %v, stored %v; want the suspension recorded", err, ok)
			}
		})
	}
}
