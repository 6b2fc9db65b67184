package approval

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/pipeline"
)

var argsKey = audit.ArgsKey([]byte("test secret"))

// gateEnv is a Gate in front of a handler that counts its runs.
type gateEnv struct {
	store    Store
	gate     *Policy // the gate of refund_payment; other tools have none
	h        pipeline.Handler
	runs     atomic.Int32
	notified chan *Request
}

func newGateEnv(t *testing.T, store Store, needed int) *gateEnv {
	t.Helper()
	e := &gateEnv{store: store, notified: make(chan *Request, 16),
		gate: &Policy{Groups: []string{"finance"}, Needed: needed, TTL: time.Hour}}
	gate := Gate(GateOptions{
		Store:    store,
		ArgsHash: func(c *pipeline.Call) string { return audit.ArgsHash(argsKey, c.Raw) },
		Summary:  func(c *pipeline.Call) string { return "refund " + string(c.Raw) },
		Args:     func(c *pipeline.Call) json.RawMessage { return c.Raw },
		Notify:   func(r *Request) { e.notified <- r },
	})
	e.h = gate(func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
		e.runs.Add(1)
		return &pipeline.Result{}, nil
	})
	return e
}

// call calls tool as principal with args and, if id is not empty, the
// approval id; it returns the call (for its flags) and the refusal.
func (e *gateEnv) call(t *testing.T, tool, principal, args, id string) (*pipeline.Call, *pipeline.Error) {
	t.Helper()
	c := &pipeline.Call{
		Spec:      &pipeline.Spec{Name: tool, Version: "1", Mode: pipeline.Write},
		Target:    tool,
		Raw:       json.RawMessage(args),
		Principal: &pipeline.Principal{ID: principal, Tenant: "acme"},
		Meta:      map[string]any{},
	}
	if tool == "refund_payment" {
		c.Spec.Gate = e.gate
	}
	if id != "" {
		c.Meta[MetaKey] = id
	}
	_, err := e.h(context.Background(), c)
	if err == nil {
		return c, nil
	}
	var pe *pipeline.Error
	if !errors.As(err, &pe) {
		t.Fatalf("gate returned %T %v, want a *pipeline.Error", err, err)
	}
	return c, pe
}

// ask makes alice's first call and returns the approval id it was given.
func (e *gateEnv) ask(t *testing.T) string {
	t.Helper()
	c, err := e.call(t, "refund_payment", "alice", `{"amount": 100, "customer": "C-1"}`, "")
	if err == nil || err.Code != pipeline.ApprovalRequired || err.RetryAfter <= 0 {
		t.Fatalf("first call: %v, want APPROVAL_REQUIRED with retry_after", err)
	}
	r := <-e.notified
	if !strings.Contains(err.Message, r.ID) || !strings.Contains(err.Message, "refund") {
		t.Fatalf("message %q lacks the id %s or the summary", err.Message, r.ID)
	}
	if len(c.Flags) != 1 || c.Flags[0] != "approval requested "+r.ID {
		t.Fatalf("flags = %q", c.Flags)
	}
	if e.runs.Load() != 0 {
		t.Fatal("the action ran without approval")
	}
	return r.ID
}

func (e *gateEnv) decide(t *testing.T, id, approver string, approve bool) {
	t.Helper()
	if _, err := e.store.Decide(context.Background(), id, Decision{Approver: approver, Approve: approve}, []string{"finance"}); err != nil {
		t.Fatalf("Decide by %s: %v", approver, err)
	}
}

// retry repeats alice's call with id (arguments in another key order,
// which hashes the same) and checks the outcome.
func (e *gateEnv) retry(t *testing.T, id string, want pipeline.Code) {
	t.Helper()
	e.retryAs(t, "alice", `{"customer":"C-1","amount":100}`, id, want)
}

func (e *gateEnv) retryAs(t *testing.T, principal, args, id string, want pipeline.Code) {
	t.Helper()
	before := e.runs.Load()
	_, err := e.call(t, "refund_payment", principal, args, id)
	switch {
	case want == "" && err != nil:
		t.Fatalf("retry: %v, want it to run", err)
	case want == "" && e.runs.Load() != before+1:
		t.Fatalf("retry: ran %d times, want once", e.runs.Load()-before)
	case want != "" && (err == nil || err.Code != want):
		t.Fatalf("retry: %v, want %s", err, want)
	case want != "" && e.runs.Load() != before:
		t.Fatal("a refused retry ran the action")
	}
}

func TestApprovalGateApproveRunsOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() Store) {
		e := newGateEnv(t, open(), 1)
		id := e.ask(t)
		e.retry(t, id, pipeline.ApprovalRequired) // still pending
		e.decide(t, id, "bob", true)
		e.retry(t, id, "")
		e.retry(t, id, pipeline.ApprovalDenied) // used
		if _, err := e.call(t, "lookup_customer", "alice", `{}`, ""); err != nil || e.runs.Load() != 2 {
			t.Fatalf("a tool without a policy: %v", err)
		}
	})
}

func TestApprovalGateRefusals(t *testing.T) {
	tests := []struct {
		name string
		// after runs between the request and the retry.
		after func(t *testing.T, e *gateEnv, id string)
		// retry repeats the call, and checks it is refused.
		retry func(t *testing.T, e *gateEnv, id string)
	}{
		{"self-approval", func(t *testing.T, e *gateEnv, id string) {
			if _, err := e.store.Decide(context.Background(), id, Decision{Approver: "alice", Approve: true}, []string{"finance"}); !errors.Is(err, ErrSelfApproval) {
				t.Fatalf("self-approval: %v", err)
			}
		}, func(t *testing.T, e *gateEnv, id string) { e.retry(t, id, pipeline.ApprovalRequired) }},
		{"approver outside the groups", func(t *testing.T, e *gateEnv, id string) {
			if _, err := e.store.Decide(context.Background(), id, Decision{Approver: "sam", Approve: true}, []string{"sales"}); !errors.Is(err, ErrNotApprover) {
				t.Fatalf("approval from sales: %v", err)
			}
		}, func(t *testing.T, e *gateEnv, id string) { e.retry(t, id, pipeline.ApprovalRequired) }},
		{"changed arguments", func(t *testing.T, e *gateEnv, id string) { e.decide(t, id, "bob", true) },
			func(t *testing.T, e *gateEnv, id string) {
				e.retryAs(t, "alice", `{"amount": 100000, "customer": "C-1"}`, id, pipeline.ApprovalDenied)
				e.retry(t, id, "") // the approval still serves the approved call
			}},
		{"another principal", func(t *testing.T, e *gateEnv, id string) { e.decide(t, id, "bob", true) },
			func(t *testing.T, e *gateEnv, id string) {
				e.retryAs(t, "mallory", `{"amount": 100, "customer": "C-1"}`, id, pipeline.ApprovalDenied)
			}},
		{"expired", func(t *testing.T, e *gateEnv, id string) {
			e.decide(t, id, "bob", true)
			setClock(e.store, func() time.Time { return time.Now().Add(2 * time.Hour) })
		}, func(t *testing.T, e *gateEnv, id string) { e.retry(t, id, pipeline.ApprovalDenied) }},
		{"denied", func(t *testing.T, e *gateEnv, id string) { e.decide(t, id, "bob", false) },
			func(t *testing.T, e *gateEnv, id string) { e.retry(t, id, pipeline.ApprovalDenied) }},
		{"unknown id", func(*testing.T, *gateEnv, string) {},
			func(t *testing.T, e *gateEnv, id string) { e.retry(t, "apr_guessed", pipeline.ApprovalDenied) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, open func() Store) {
				e := newGateEnv(t, open(), 1)
				id := e.ask(t)
				tt.after(t, e, id)
				tt.retry(t, e, id)
			})
		})
	}
}

func TestApprovalGateTwoOfM(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() Store) {
		e := newGateEnv(t, open(), 2)
		id := e.ask(t)
		e.decide(t, id, "bob", true)
		e.retry(t, id, pipeline.ApprovalRequired)
		e.decide(t, id, "carol", true)
		e.retry(t, id, "")
	})
}

func TestApprovalGateConcurrentRetries(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() Store) {
		e := newGateEnv(t, open(), 1)
		id := e.ask(t)
		e.decide(t, id, "bob", true)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			flags = make([][]string, 8)
		)
		for i := range flags {
			wg.Go(func() {
				<-start
				c, err := e.call(t, "refund_payment", "alice", `{"amount": 100, "customer": "C-1"}`, id)
				if err != nil && err.Code != pipeline.ApprovalDenied {
					t.Errorf("concurrent retry: %v", err)
				}
				flags[i] = c.Flags
			})
		}
		close(start)
		wg.Wait()
		if n := e.runs.Load(); n != 1 {
			t.Fatalf("%d concurrent retries ran the action %d times, want once", len(flags), n)
		}
		approved := 0
		for _, f := range flags {
			if len(f) == 1 && f[0] == "approval approved "+id {
				approved++
			}
		}
		if approved != 1 {
			t.Fatalf("flags = %q, want one approval approved", flags)
		}
	})
}

// TestGateThatCannotBeKept: a target whose gate the server cannot enforce
// (approval without a store, confirmation without a secret, an unknown
// requirement) is refused, never run ungated.
func TestGateThatCannotBeKept(t *testing.T) {
	for _, g := range []*Policy{
		{Groups: []string{"finance"}},
		{Require: RequireConfirmation},
		{Require: "vibes"},
		{Require: RequireApproval},
	} {
		ran := false
		h := Gate(GateOptions{ArgsHash: func(*pipeline.Call) string { return "" }})(func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
			ran = true
			return &pipeline.Result{}, nil
		})
		c := &pipeline.Call{Spec: &pipeline.Spec{Name: "refund_payment", Mode: pipeline.Write, Gate: g}, Principal: &pipeline.Principal{ID: "alice"}}
		_, err := h(context.Background(), c)
		if perr := pipeline.AsError(err); err == nil || perr.Code != pipeline.Unavailable || ran {
			t.Errorf("gate %+v: err %v, ran %v; want UNAVAILABLE and no run", g, err, ran)
		}
	}
}
