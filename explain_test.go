package warden_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/pipeline"
)

// Explain must agree with what the server does with the same call.
func TestExplainAgreesWithTheServer(t *testing.T) {
	tests := []struct {
		name   string
		p      *pipeline.Principal
		tool   string
		args   string
		allows bool
	}{
		{"allowed", &pipeline.Principal{ID: "a", Tenant: "acme", Scopes: []string{"orders.read"}}, "list_orders", `{"status":"open"}`, true},
		{"missing scope", &pipeline.Principal{ID: "a", Tenant: "acme", Scopes: []string{"other"}}, "list_orders", `{}`, false},
		{"no principal", nil, "list_orders", `{}`, false},
		{"invalid argument", &pipeline.Principal{ID: "a", Tenant: "acme", Scopes: []string{"orders.read"}}, "list_orders", `{"status":"lost"}`, false},
		{"bound argument supplied", &pipeline.Principal{ID: "a", Tenant: "acme", Scopes: []string{"orders.read"}}, "list_orders", `{"tenant":"globex"}`, false},
		{"no tenant to bind", &pipeline.Principal{ID: "a", Scopes: []string{"orders.read"}}, "list_orders", `{}`, false},
		{"suspended", &pipeline.Principal{ID: "suspended", Tenant: "acme", Scopes: []string{"orders.read"}}, "list_orders", `{}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ran bool
			srv := warden.New(&mcp.Implementation{Name: "t", Version: "1"}, &warden.Options{
				LocalPrincipal: func(context.Context) (*pipeline.Principal, error) { return tt.p, nil },
				Suspend:        suspendByName,
			})
			srv.AddTool(&warden.Tool{
				Name:        "list_orders",
				Description: "List the caller's orders.",
				Scope:       "orders.read",
				InputSchema: &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{
					"status": {Type: "string", Enum: []any{"open", "closed"}},
				}},
				Bound: map[string]string{"tenant": "tenant"},
				Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
					ran = true
					return warden.TextResult("orders of " + c.Args["tenant"].(string)), nil
				},
			})
			ex := srv.Explain(context.Background(), tt.p, tt.tool, json.RawMessage(tt.args))
			if ex.Allowed != tt.allows {
				t.Errorf("Explain allowed = %v, want %v; reasons %q", ex.Allowed, tt.allows, ex.Reasons)
			}
			if len(ex.Reasons) < 2 {
				t.Errorf("Explain gives too few reasons: %q", ex.Reasons)
			}

			st, ct := mcp.NewInMemoryTransports()
			ctx := context.Background()
			if _, err := srv.MCP().Connect(ctx, st, nil); err != nil {
				t.Fatal(err)
			}
			cs, err := mcp.NewClient(&mcp.Implementation{Name: "c", Version: "1"}, nil).Connect(ctx, ct, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tt.tool, Arguments: json.RawMessage(tt.args)})
			if err != nil {
				t.Fatal(err)
			}
			if res.IsError == tt.allows || ran != tt.allows {
				t.Errorf("server: isError=%v ran=%v, but Explain said allowed=%v", res.IsError, ran, ex.Allowed)
			}
			if !ex.Allowed && ex.Refusal == nil {
				t.Error("a refusal without its error")
			}
		})
	}
}

// suspendByName refuses the principal named "suspended", as the anomaly
// detector refuses one it suspended.
func suspendByName(next pipeline.Handler) pipeline.Handler {
	return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		if c.Principal != nil && c.Principal.ID == "suspended" {
			return nil, pipeline.Errorf(pipeline.PermissionDenied, "ask the operator", "your access is suspended")
		}
		return next(ctx, c)
	}
}
