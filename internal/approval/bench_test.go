package approval

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/state/statetest"
	"github.com/wardenmcp/warden/pipeline"
)

// BenchmarkGate measures what the risk gate costs a call (SQLite state
// store): passing a tool that needs no approval, and redeeming an approved
// request (load, check the binding, mark it used).
func BenchmarkGate(b *testing.B) {
	cfg := &config.Config{}
	cfg.Server.State.SQLite = statetest.SQLitePath(b)
	store, err := OpenStore(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	hash := func(c *pipeline.Call) string { return audit.ArgsHash(argsKey, c.Raw) }
	gate := Gate(GateOptions{
		Store:    store,
		ArgsHash: hash,
		Summary:  func(*pipeline.Call) string { return "refund" },
	})
	h := gate(func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return &pipeline.Result{}, nil })
	ctx := context.Background()
	call := func(tool, id string) *pipeline.Call {
		c := &pipeline.Call{
			Spec:      &pipeline.Spec{Name: tool, Version: "1", Mode: pipeline.Write, Gate: &Policy{Groups: []string{"finance"}, Needed: 1, TTL: time.Hour}},
			Target:    tool,
			Raw:       json.RawMessage(`{"order_id":"O-5004"}`),
			Principal: &pipeline.Principal{ID: "agent", Tenant: "acme"},
			Meta:      map[string]any{},
		}
		if id != "" {
			c.Meta[MetaKey] = id
		}
		return c
	}

	b.Run("no-approval-needed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := h(ctx, call("close_ticket", "")); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("redeem-approved", func(b *testing.B) {
		b.ReportAllocs()
		ids := make([]string, b.N)
		for i := range ids {
			c := call("refund_payment", "")
			r := &Request{ID: NewID(), Principal: "agent", Tenant: "acme", Tool: "refund_payment", ToolVersion: "1",
				ArgsHash: hash(c), Groups: []string{"finance"}, Needed: 1, CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
			if err := store.Create(ctx, r); err != nil {
				b.Fatal(err)
			}
			if _, err := store.Decide(ctx, r.ID, Decision{Approver: "finance-1", Approve: true}, []string{"finance"}); err != nil {
				b.Fatal(err)
			}
			ids[i] = r.ID
		}
		b.ResetTimer()
		for i := range b.N {
			if _, err := h(ctx, call("refund_payment", ids[i])); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkConfirm measures the risk gate's in-band confirmation per call:
// asking (sealing the state; the dry run is the tool's own cost and is
// left out) and accepting the answer (opening and checking the state,
// using it once).
func BenchmarkConfirm(b *testing.B) {
	gate := Gate(GateOptions{
		ArgsHash: func(c *pipeline.Call) string { return audit.ArgsHash(argsKey, c.Raw) },
		Summary:  func(*pipeline.Call) string { return "set_priority" },
		Secret:   []byte("a confirmation secret of the benchmark"),
	})
	h := gate(func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return &pipeline.Result{}, nil })
	ctx := context.Background()
	call := func(state string, answer *mcp.ElicitResult) *pipeline.Call {
		c := &pipeline.Call{
			Spec:      &pipeline.Spec{Name: "set_priority", Version: "1", Mode: pipeline.Write, Gate: &Policy{Require: RequireConfirmation}},
			Raw:       json.RawMessage(`{"ticket_id":3,"priority":"low"}`),
			Args:      map[string]any{"ticket_id": 3, "priority": "low"},
			Principal: &pipeline.Principal{ID: "agent", Tenant: "acme"},
			CanElicit: true,
			State:     state,
		}
		if answer != nil {
			b, err := json.Marshal(answer)
			if err != nil {
				panic(err)
			}
			c.Responses = map[string]json.RawMessage{ConfirmID: b}
		}
		return c
	}
	b.Run("ask", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if res, err := h(ctx, call("", nil)); err != nil || res.Tool.RequestState == "" {
				b.Fatal(err)
			}
		}
	})
	b.Run("accept", func(b *testing.B) {
		b.ReportAllocs()
		states := make([]string, b.N)
		for i := range states {
			res, err := h(ctx, call("", nil))
			if err != nil {
				b.Fatal(err)
			}
			states[i] = res.Tool.RequestState
		}
		yes := &mcp.ElicitResult{Action: "accept", Content: map[string]any{"confirm": true}}
		b.ResetTimer()
		for i := range b.N {
			if _, err := h(ctx, call(states[i], yes)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
