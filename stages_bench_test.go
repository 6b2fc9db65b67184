package warden

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/wardenmcp/warden/internal/authz"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/execute"
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
	spec := &pipeline.Spec{
		Method: pipeline.CallTool, Name: "get_customer", Version: "1", Source: "sqlite",
		Scope: "crm.read", Input: mustResolve("get_customer", in), Bound: map[string]string{"tenant_id": "tenant"},
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
	}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer lim.Close()

	cases := []struct {
		name   string
		stages []pipeline.Stage
	}{
		{"none", nil},
		{"authorize", []pipeline.Stage{authz.Stage}},
		{"validate", []pipeline.Stage{validate.Stage}},
		{"policy", []pipeline.Stage{validate.Stage, authz.PolicyStage(pol)}},
		{"ratelimit", []pipeline.Stage{ratelimit.Stage(lim)}},
		{"execute", []pipeline.Stage{execute.Stage(0, slog.New(slog.DiscardHandler))}},
		{"all", stages(&Options{Policy: pol, Limiter: lim}, slog.New(slog.DiscardHandler))},
	}
	for _, tc := range cases {
		h := pipeline.Chain(handler, tc.stages...)
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
