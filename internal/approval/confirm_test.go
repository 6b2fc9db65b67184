package approval

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/nonce"
	"github.com/wardenmcp/warden/internal/state/statetest"
	"github.com/wardenmcp/warden/pipeline"
)

// confirmEnv is a Gate whose one tool needs its caller's confirmation, in
// front of a handler that counts real runs and dry runs.
type confirmEnv struct {
	h         pipeline.Handler
	runs, dry atomic.Int32
	clock     time.Time
	gate      Policy
	risk      string // the tool's risk tier
}

func newConfirmEnv(t *testing.T, p Policy, store Store) *confirmEnv {
	return newConfirmEnvNonces(t, p, store, nil)
}

// newConfirmEnvNonces is newConfirmEnv remembering accepted confirmations
// in nonces: an instance of several sharing it.
func newConfirmEnvNonces(t *testing.T, p Policy, store Store, nonces nonce.Store) *confirmEnv {
	t.Helper()
	e := &confirmEnv{clock: time.Now(), gate: p}
	gate := Gate(GateOptions{
		Store:    store,
		ArgsHash: func(c *pipeline.Call) string { return audit.ArgsHash(argsKey, c.Raw) },
		Summary:  func(c *pipeline.Call) string { return "set_priority " + string(c.Raw) },
		Args:     func(c *pipeline.Call) json.RawMessage { return c.Raw },
		Secret:   []byte("a confirmation secret of the test"),
		Nonces:   nonces,
		Now:      func() time.Time { return e.clock },
	})
	e.h = gate(func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		if c.DryRun {
			e.dry.Add(1)
			return &pipeline.Result{Tool: &pipeline.ToolResult{StructuredContent: map[string]any{"rows_affected": 1}}}, nil
		}
		e.runs.Add(1)
		return &pipeline.Result{Tool: &pipeline.ToolResult{}}, nil
	})
	return e
}

// call is alice's call with args; canElicit says whether her client can be
// asked; state and answer come from a previous round.
func (e *confirmEnv) call(principal, args string, canElicit bool, state string, answer *mcp.ElicitResult) (*pipeline.Call, *pipeline.Result, *pipeline.Error) {
	c := &pipeline.Call{
		Spec:      &pipeline.Spec{Name: "set_priority", Version: "1", Mode: pipeline.Write, DryRun: true, Gate: &e.gate, Risk: e.risk},
		Target:    "set_priority",
		Raw:       json.RawMessage(args),
		Args:      map[string]any{},
		Principal: &pipeline.Principal{ID: principal, Tenant: "acme"},
		Meta:      map[string]any{},
		CanElicit: canElicit,
		State:     state,
	}
	json.Unmarshal(c.Raw, &c.Args)
	if answer != nil {
		c.Responses = map[string]json.RawMessage{ConfirmID: mustJSON(answer)}
	}
	res, err := e.h(context.Background(), c)
	var pe *pipeline.Error
	if err != nil && !errors.As(err, &pe) {
		panic(err)
	}
	return c, res, pe
}

const args = `{"ticket_id": 3, "priority": "high"}`

// mustJSON encodes a client's answer as the client sends it.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

var yes = &mcp.ElicitResult{Action: "accept", Content: map[string]any{"confirm": true}}

// ask makes the first round and returns the state and the question.
func (e *confirmEnv) ask(t *testing.T) (string, *mcp.ElicitParams) {
	t.Helper()
	c, res, err := e.call("alice", args, true, "", nil)
	if err != nil || res == nil || res.Tool == nil {
		t.Fatalf("first round: %v, want an input request", err)
	}
	ir := res.Tool.InputRequests[ConfirmID]
	if ir == nil || ir.Method != "elicitation/create" || res.Tool.RequestState == "" {
		t.Fatalf("first round result %+v lacks the confirmation request or state", res.Tool)
	}
	// The question is read as the client reads it: the params on the wire.
	q := new(mcp.ElicitParams)
	if err := json.Unmarshal(mustJSON(ir.Params), q); err != nil || q.Mode != "form" || q.RequestedSchema == nil {
		t.Fatalf("confirmation request params %s: %v", mustJSON(ir.Params), err)
	}
	if e.runs.Load() != 0 {
		t.Fatal("the call ran before it was confirmed")
	}
	if c.Flags[len(c.Flags)-1] != "confirmation asked" {
		t.Fatalf("flags = %q", c.Flags)
	}
	return res.Tool.RequestState, q
}

func TestConfirmationAcceptedRunsOnce(t *testing.T) {
	e := newConfirmEnv(t, Policy{Require: RequireConfirmation}, nil)
	e.risk = "write"
	state, q := e.ask(t)
	for _, want := range []string{"set_priority", "ticket_id: 3", `priority: "high"`, "Expected effect", "rows_affected"} {
		if !strings.Contains(q.Message, want) {
			t.Errorf("the question %q does not show %q", q.Message, want)
		}
	}
	if e.dry.Load() != 1 {
		t.Errorf("dry runs = %d, want 1 to show the expected effect", e.dry.Load())
	}
	c, _, err := e.call("alice", `{"priority":"high","ticket_id":3}`, true, state, yes)
	if err != nil || e.runs.Load() != 1 {
		t.Fatalf("confirmed call: %v, runs %d", err, e.runs.Load())
	}
	// The client carries the state and cannot read it: it is sealed, not
	// only signed.
	for _, part := range strings.Split(state, ".") {
		if raw, err := base64.RawURLEncoding.DecodeString(part); err == nil && bytes.Contains(raw, []byte("alice")) {
			t.Errorf("the confirmation state shows its principal to the client")
		}
	}
	if c.Flags[len(c.Flags)-1] != "confirmed by the user" {
		t.Fatalf("flags = %q", c.Flags)
	}
	if _, _, err := e.call("alice", args, true, state, yes); err == nil || err.Code != pipeline.ApprovalDenied || e.runs.Load() != 1 {
		t.Fatalf("replayed confirmation: %v, runs %d; want APPROVAL_DENIED and no second run", err, e.runs.Load())
	}
}

func TestConfirmationRefusals(t *testing.T) {
	tests := []struct {
		name      string
		principal string
		args      string
		state     func(string) string
		answer    *mcp.ElicitResult
		later     time.Duration
	}{
		{"declined", "alice", args, nil, &mcp.ElicitResult{Action: "decline"}, 0},
		{"cancelled", "alice", args, nil, &mcp.ElicitResult{Action: "cancel"}, 0},
		{"accepted without ticking", "alice", args, nil, &mcp.ElicitResult{Action: "accept", Content: map[string]any{"confirm": false}}, 0},
		{"no answer", "alice", args, nil, nil, 0},
		{"changed arguments", "alice", `{"ticket_id": 4, "priority": "high"}`, nil, yes, 0},
		{"another principal", "mallory", args, nil, yes, 0},
		{"forged state", "alice", args, func(s string) string {
			b := []byte(s) // one character altered, still base64
			if b[len(b)/2] == 'A' {
				b[len(b)/2] = 'B'
			} else {
				b[len(b)/2] = 'A'
			}
			return string(b)
		}, yes, 0},
		{"no state", "alice", args, func(string) string { return "" }, yes, 0},
		{"expired", "alice", args, nil, yes, 6 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newConfirmEnv(t, Policy{Require: RequireConfirmation}, nil)
			state, _ := e.ask(t)
			if tt.state != nil {
				state = tt.state(state)
			}
			e.clock = e.clock.Add(tt.later)
			_, _, err := e.call(tt.principal, tt.args, true, state, tt.answer)
			if err == nil || err.Code != pipeline.ApprovalDenied {
				t.Fatalf("got %v, want APPROVAL_DENIED", err)
			}
			if e.runs.Load() != 0 {
				t.Fatal("a refused confirmation ran the call")
			}
		})
	}
}

func TestConfirmationWithoutElicitation(t *testing.T) {
	e := newConfirmEnv(t, Policy{Require: RequireConfirmation}, nil)
	_, _, err := e.call("alice", args, false, "", nil)
	if err == nil || err.Code != pipeline.ConfirmationRequired || e.runs.Load() != 0 {
		t.Fatalf("client without elicitation: %v, want CONFIRMATION_REQUIRED and no run", err)
	}
	// With approvers configured, the call waits for them instead.
	forEachStore(t, func(t *testing.T, open func() Store) {
		e := newConfirmEnv(t, Policy{Require: RequireConfirmation, Groups: []string{"support-leads"}}, open())
		_, _, err := e.call("alice", args, false, "", nil)
		if err == nil || err.Code != pipeline.ApprovalRequired || err.ApprovalID == "" {
			t.Fatalf("client without elicitation, approvers configured: %v, want APPROVAL_REQUIRED with an id", err)
		}
	})
}

func TestDryRunPolicies(t *testing.T) {
	e := newConfirmEnv(t, Policy{Require: RequireDryRun}, nil)
	c, _, err := e.call("alice", args, true, "", nil)
	if err != nil || e.runs.Load() != 0 || e.dry.Load() != 1 || !c.DryRun {
		t.Fatalf("dry-run-only tool: %v, runs %d, dry runs %d; want only a dry run", err, e.runs.Load(), e.dry.Load())
	}
	// A dry run asked for by the caller needs neither confirmation nor approval.
	e = newConfirmEnv(t, Policy{Require: RequireConfirmation}, nil)
	c = &pipeline.Call{Spec: &pipeline.Spec{Name: "set_priority", DryRun: true, Gate: &e.gate}, DryRun: true, Raw: json.RawMessage(args)}
	if _, err := e.h(context.Background(), c); err != nil || e.dry.Load() != 1 {
		t.Fatalf("a dry run of a tool that needs confirmation: %v, dry runs %d", err, e.dry.Load())
	}
}

func TestApprovalRequestCarriesDryRun(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() Store) {
		store := open()
		e := newConfirmEnv(t, Policy{Groups: []string{"finance"}, DryRun: true, Ref: "risk_policies.high"}, store)
		e.risk = "high"
		_, _, err := e.call("alice", args, false, "", nil)
		if err == nil || err.Code != pipeline.ApprovalRequired {
			t.Fatalf("got %v, want APPROVAL_REQUIRED", err)
		}
		r, gerr := store.Get(context.Background(), err.ApprovalID)
		if gerr != nil {
			t.Fatal(gerr)
		}
		if string(r.DryRun) != `{"rows_affected":1}` || r.Risk != "high" || r.Policy != "risk_policies.high" {
			t.Fatalf("request dry run %s, risk %q, policy %q", r.DryRun, r.Risk, r.Policy)
		}
		if e.runs.Load() != 0 {
			t.Fatal("the held call ran")
		}
	})
}

// Two instances share the secret and, through Redis, the used nonces: a
// confirmation answered through one cannot be replayed through the other.
func TestConfirmationOnceAcrossInstances(t *testing.T) {
	client, prefix := statetest.Redis(t)
	shared := nonce.NewRedis(client, prefix)
	one := newConfirmEnvNonces(t, Policy{Require: RequireConfirmation}, nil, shared)
	two := newConfirmEnvNonces(t, Policy{Require: RequireConfirmation}, nil, shared)

	state, _ := one.ask(t)
	if _, _, err := one.call("alice", args, true, state, yes); err != nil {
		t.Fatalf("the confirmed call through the first instance: %v", err)
	}
	_, _, err := two.call("alice", args, true, state, yes)
	if err == nil || err.Code != pipeline.ApprovalDenied || !strings.Contains(err.Message, "already used") {
		t.Fatalf("the replay through the second instance: %v, want APPROVAL_DENIED, already used", err)
	}
	if n := one.runs.Load() + two.runs.Load(); n != 1 {
		t.Fatalf("the call ran %d times, want once", n)
	}
}

// A nonce store that cannot answer refuses the confirmed call, rather
// than run it without knowing whether the confirmation was used.
func TestConfirmationNonceStoreDown(t *testing.T) {
	e := newConfirmEnvNonces(t, Policy{Require: RequireConfirmation}, nil, failingNonces{})
	state, _ := e.ask(t)
	_, _, err := e.call("alice", args, true, state, yes)
	if err == nil || err.Code != pipeline.Unavailable || err.RetryAfter == 0 {
		t.Fatalf("a confirmed call with the nonce store down: %v, want UNAVAILABLE with retry_after", err)
	}
	if e.runs.Load() != 0 {
		t.Fatal("the call ran without its confirmation being recorded")
	}
}

type failingNonces struct{}

func (failingNonces) Use(context.Context, string, time.Time) (bool, error) {
	return false, errors.New("connection refused")
}
func (failingNonces) Close() error { return nil }
