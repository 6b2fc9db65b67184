package warden

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/authz"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/execute"
	outguard "github.com/wardenmcp/warden/internal/guard"
	"github.com/wardenmcp/warden/internal/policy"
	"github.com/wardenmcp/warden/internal/ratelimit"
	"github.com/wardenmcp/warden/internal/validate"
	"github.com/wardenmcp/warden/pipeline"
)

// BenchmarkStages measures what each policy stage adds to a call, on its
// own and all together, around a handler that does nothing. The call is the
// demo's get_customer: one patterned string argument and a bound tenant.
//
//	go test -run '^$' -bench Stages -benchmem .
func BenchmarkStages(b *testing.B) {
	in := &jsonschema.Schema{
		Type:                 "object",
		Required:             []string{"customer_id"},
		Properties:           map[string]*jsonschema.Schema{"customer_id": {Type: "string", Pattern: `^C-[0-9]{4}$`, MaxLength: jsonschema.Ptr(4096)}},
		AdditionalProperties: &jsonschema.Schema{Not: &jsonschema.Schema{}},
	}
	resolved, err := in.Resolve(nil)
	if err != nil {
		b.Fatal(err)
	}
	spec := &pipeline.Spec{
		Method: pipeline.CallTool, Name: "get_customer", Version: "1", Source: "sqlite",
		Scope: "crm.read", Input: resolved, Bound: map[string]string{"tenant_id": "tenant"},
	}
	principal := &pipeline.Principal{ID: "acme-support", Tenant: "acme", Scopes: []string{"crm.read"}, Groups: []string{"support"}, AuthMethod: "api_key"}
	raw := json.RawMessage(`{"customer_id":"C-1001"}`)
	ok := &pipeline.Result{}
	handler := func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return ok, nil }

	pol, err := policy.Parse("bench.cedar", []byte(`permit (principal in Warden::Group::"support", action == Warden::Action::"call_tool", resource);`))
	if err != nil {
		b.Fatal(err)
	}
	generous := &config.Limit{Rate: "1000000/s", Burst: 1000000000}
	lim, err := ratelimit.New(context.Background(), &config.RateLimits{
		Store: "memory", OnStoreError: "refuse", PerPrincipal: generous, PerTool: generous, PerPrincipalTool: generous,
		MaxConcurrentPerPrincipal: 1 << 20,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer lim.Close()

	// A real audit log: SQLite in a temporary directory, fsync'd commits.
	cfg := &config.Config{Dir: b.TempDir()}
	cfg.Server.State.SQLite = "state.db"
	store, err := audit.Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	w, err := audit.NewWriter(store, []byte("0123456789abcdef0123456789abcdef"), "bench", audit.WriterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	defer w.Close()
	red := outguard.NewRedactor(outguard.Options{})
	aud := audit.NewAuditor(w, []byte("0123456789abcdef0123456789abcdef"), nil)
	aud.Redact = func(v any) any { out, _ := red.Value(v, nil); return out }
	row := &pipeline.Result{Tool: &pipeline.ToolResult{
		Content:           []pipeline.Content{pipeline.Text(`{"rows":[{"id":"C-1001","name":"Ada Lovelace","email":"ada@example.com","tier":"platinum"}],"row_count":1,"truncated":false}`)},
		StructuredContent: map[string]any{"rows": []any{map[string]any{"id": "C-1001", "name": "Ada Lovelace", "email": "ada@example.com", "tier": "platinum"}}, "row_count": 1, "truncated": false},
	}, Rows: 1}
	withRow := func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
		// A fresh copy, as a source would return: the guard rewrites it.
		r := *row
		t := *row.Tool
		t.Content = []pipeline.Content{pipeline.Text(row.Tool.Content[0].Text)}
		r.Tool = &t
		return &r, nil
	}

	cases := []struct {
		name    string
		stages  []pipeline.Stage
		handler pipeline.Handler
	}{
		{"none", nil, nil},
		{"authorize", []pipeline.Stage{authz.Stage}, nil},
		{"validate", []pipeline.Stage{validate.Stage}, nil},
		{"policy", []pipeline.Stage{validate.Stage, authz.PolicyStage(pol)}, nil},
		{"ratelimit", []pipeline.Stage{ratelimit.Stage(lim)}, nil},
		{"execute", []pipeline.Stage{execute.Stage(0, slog.New(slog.DiscardHandler))}, nil},
		{"all", stages(&Options{Policy: pol, Limiter: lim}, slog.New(slog.DiscardHandler)), nil},
		{"audit-sqlite", []pipeline.Stage{aud.Outcome, aud.Intent}, nil},
		{"guard-row", []pipeline.Stage{outguard.Stage(red)}, withRow},
		{"all+audit+guard", stages(&Options{Policy: pol, Limiter: lim, Audit: aud, Guard: outguard.Stage(red)}, slog.New(slog.DiscardHandler)), withRow},
	}
	for _, tc := range cases {
		h := handler
		if tc.handler != nil {
			h = tc.handler
		}
		h = pipeline.Chain(h, tc.stages...)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				c := &pipeline.Call{Spec: spec, Target: "get_customer", Raw: raw, Principal: principal}
				if _, err := h(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
