package warden_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/pipeline"
)

// panicSecret is what the panicking tool panics with; no client may see it.
const panicSecret = "db password is hunter2"

// newServer returns a server with the tools the tests call:
//
//   - create_order, with a strict schema (pattern, integer bounds, enum,
//     default), which echoes the arguments it was given;
//   - explode, which panics;
//   - wait_forever, which waits for its 50ms deadline.
func newServer(t testing.TB) *warden.Server {
	t.Helper()
	srv := warden.New(&mcp.Implementation{Name: "warden-test", Version: "1.0.0"}, &warden.Options{LocalPrincipal: reader})
	srv.AddTool(&warden.Tool{
		Scope:       "orders.read",
		Name:        "create_order",
		Description: "Order a quantity of one product.",
		Mode:        pipeline.Write,
		Lean:        true,
		InputSchema: &jsonschema.Schema{
			Type:     "object",
			Required: []string{"sku", "quantity"},
			Properties: map[string]*jsonschema.Schema{
				"sku":      {Type: "string", Pattern: `^SKU-[0-9]{3}$`, Description: "Product code, such as SKU-123."},
				"quantity": {Type: "integer", Minimum: jsonschema.Ptr(1.0), Maximum: jsonschema.Ptr(10.0)},
				"priority": {Type: "string", Enum: []any{"low", "normal", "high"}, Default: json.RawMessage(`"normal"`)},
			},
		},
		Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			res := warden.TextResult("ordered")
			res.Tool.StructuredContent = c.Args
			return res, nil
		},
	})
	srv.AddTool(&warden.Tool{
		Scope:       "orders.read",
		Name:        "explode",
		Description: "Always panics.",
		Lean:        true,
		Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			panic(panicSecret)
		},
	})
	srv.AddTool(&warden.Tool{
		Scope:       "orders.read",
		Name:        "wait_forever",
		Description: "Waits until its deadline.",
		Lean:        true,
		Timeout:     50 * time.Millisecond,
		Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	return srv
}

// connect returns a client session connected in memory to srv.
func connect(t *testing.T, srv *warden.Server) *mcp.ClientSession {
	t.Helper()
	ctx := context.Background()
	ct, st := mcp.NewInMemoryTransports()
	ss, err := srv.MCP().Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1.0.0"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cs.Close()
		ss.Wait()
	})
	return cs
}

// refusal is the structured content of a tool error.
type refusal struct {
	Code       pipeline.Code `json:"error_code"`
	Message    string        `json:"message"`
	Suggestion string        `json:"suggestion"`
}

// refusalOf returns the refusal in res, failing the test if res is not a
// tool error.
func refusalOf(t *testing.T, res *mcp.CallToolResult) refusal {
	t.Helper()
	if !res.IsError {
		t.Fatalf("the call succeeded (%s), want a tool error", textOf(res))
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	var r refusal
	if err := json.Unmarshal(b, &r); err != nil || r.Code == "" {
		t.Fatalf("structured content %s is not a refusal (%v)", b, err)
	}
	return r
}

func textOf(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func TestToolArguments(t *testing.T) {
	cs := connect(t, newServer(t))
	tests := []struct {
		name string
		args any
		// wantField is the argument the refusal must name; "" means the call
		// succeeds.
		wantField string
		wantEcho  string // the arguments the handler saw, if the call succeeds
	}{
		{name: "valid, with the default applied", args: map[string]any{"sku": "SKU-123", "quantity": 2},
			wantEcho: `{"priority":"normal","quantity":2,"sku":"SKU-123"}`},
		{name: "valid, every argument", args: map[string]any{"sku": "SKU-001", "quantity": 10, "priority": "high"},
			wantEcho: `{"priority":"high","quantity":10,"sku":"SKU-001"}`},
		{name: "missing required", args: map[string]any{"sku": "SKU-123"}, wantField: "quantity"},
		{name: "no arguments at all", args: nil, wantField: "sku"},
		{name: "unknown argument", args: map[string]any{"sku": "SKU-123", "quantity": 1, "discount": 100}, wantField: "discount"},
		{name: "string for integer", args: map[string]any{"sku": "SKU-123", "quantity": "two"}, wantField: "quantity"},
		{name: "fraction for integer", args: map[string]any{"sku": "SKU-123", "quantity": 1.5}, wantField: "quantity"},
		{name: "above maximum", args: map[string]any{"sku": "SKU-123", "quantity": 11}, wantField: "quantity"},
		{name: "below minimum", args: map[string]any{"sku": "SKU-123", "quantity": 0}, wantField: "quantity"},
		{name: "pattern mismatch", args: map[string]any{"sku": "SKU-12; DROP TABLE orders", "quantity": 1}, wantField: "sku"},
		{name: "not in enum", args: map[string]any{"sku": "SKU-123", "quantity": 1, "priority": "urgent"}, wantField: "priority"},
		{name: "null for string", args: map[string]any{"sku": nil, "quantity": 1}, wantField: "sku"},
		{name: "number for string", args: map[string]any{"sku": 123, "quantity": 1}, wantField: "sku"},
		{name: "object for string", args: map[string]any{"sku": map[string]any{"$gt": ""}, "quantity": 1}, wantField: "sku"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "create_order", Arguments: tt.args})
			if err != nil {
				t.Fatalf("CallTool: %v", err)
			}
			if tt.wantField == "" {
				if res.IsError {
					t.Fatalf("tool error: %s", textOf(res))
				}
				if got, _ := json.Marshal(res.StructuredContent); string(got) != tt.wantEcho {
					t.Errorf("the handler saw %s, want %s", got, tt.wantEcho)
				}
				return
			}
			r := refusalOf(t, res)
			if r.Code != pipeline.InvalidArgument {
				t.Errorf("error_code = %s, want %s", r.Code, pipeline.InvalidArgument)
			}
			if !strings.Contains(r.Message, `"`+tt.wantField+`"`) {
				t.Errorf("message %q does not name the argument %q", r.Message, tt.wantField)
			}
			if !strings.Contains(textOf(res), string(pipeline.InvalidArgument)) {
				t.Errorf("text %q does not carry the error code", textOf(res))
			}
		})
	}
}

func TestUnknownToolIsAProtocolError(t *testing.T) {
	cs := connect(t, newServer(t))
	_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "drop_database", Arguments: map[string]any{}})
	var rpcErr *jsonrpc.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != jsonrpc.CodeInvalidParams {
		t.Fatalf("CallTool(drop_database) = %v, want a JSON-RPC invalid-params error", err)
	}
}

func TestFailuresAreContained(t *testing.T) {
	cs := connect(t, newServer(t))
	tests := []struct {
		tool     string
		wantCode pipeline.Code
	}{
		{"explode", pipeline.Internal},
		{"wait_forever", pipeline.Timeout},
	}
	for _, tt := range tests {
		t.Run(tt.tool, func(t *testing.T) {
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tt.tool, Arguments: map[string]any{}})
			if err != nil {
				t.Fatalf("CallTool: %v", err)
			}
			r := refusalOf(t, res)
			if r.Code != tt.wantCode {
				t.Errorf("error_code = %s, want %s", r.Code, tt.wantCode)
			}
			wire, _ := json.Marshal(res)
			if strings.Contains(string(wire), "hunter2") || strings.Contains(string(wire), "goroutine") {
				t.Errorf("the result reveals the failure's details: %s", wire)
			}
			if _, ok := res.Meta["io.wardenmcp/trace_id"].(string); !ok {
				t.Errorf("the result has no trace id to give the operator: %v", res.Meta)
			}
			// The server still serves.
			res, err = cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "create_order", Arguments: map[string]any{"sku": "SKU-123", "quantity": 1}})
			if err != nil || res.IsError {
				t.Fatalf("a call after the failure = %v, %v; want success", res, err)
			}
		})
	}
}

func TestToolsAreListedStrict(t *testing.T) {
	cs := connect(t, newServer(t))
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tool         string
		wantReadOnly bool
	}{
		{"create_order", false},
		{"explode", true},
		{"wait_forever", true},
	}
	for _, tt := range tests {
		t.Run(tt.tool, func(t *testing.T) {
			var tool *mcp.Tool
			for _, tl := range res.Tools {
				if tl.Name == tt.tool {
					tool = tl
				}
			}
			if tool == nil {
				t.Fatalf("%s is not listed", tt.tool)
			}
			schema, _ := json.Marshal(tool.InputSchema)
			if !strings.Contains(string(schema), `"additionalProperties":false`) {
				t.Errorf("input schema %s does not refuse unknown arguments", schema)
			}
			if tool.Annotations == nil || tool.Annotations.ReadOnlyHint != tt.wantReadOnly {
				t.Errorf("annotations %+v, want readOnlyHint %v", tool.Annotations, tt.wantReadOnly)
			}
		})
	}
}

// reader is the local principal of the test servers: it holds the one
// scope their tools need.
func reader(context.Context) (*pipeline.Principal, error) {
	return &pipeline.Principal{ID: "tester", Scopes: []string{"orders.read"}, AuthMethod: "local"}, nil
}

// A write tool with a dry run takes the argument dry_run; with it, the dry
// run answers, with the same arguments the real handler would get.
func TestToolDryRun(t *testing.T) {
	srv := warden.New(&mcp.Implementation{Name: "warden-test", Version: "1.0.0"}, &warden.Options{LocalPrincipal: reader})
	var real, dry []map[string]any
	srv.AddTool(&warden.Tool{
		Scope:       "orders.read",
		Name:        "cancel_order",
		Description: "Cancel one order.",
		Mode:        pipeline.Write,
		InputSchema: &jsonschema.Schema{Type: "object", Required: []string{"order_id"},
			Properties: map[string]*jsonschema.Schema{"order_id": {Type: "string"}}},
		Handler: func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			real = append(real, c.Args)
			return warden.TextResult("cancelled"), nil
		},
		DryRun: func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			dry = append(dry, c.Args)
			return warden.TextResult("would cancel"), nil
		},
	})
	cs := connect(t, srv)
	tools, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	schema, _ := json.Marshal(tools.Tools[0].InputSchema)
	if !strings.Contains(string(schema), `"dry_run":{"description":"Set to true to see what this call would change, without changing anything.","type":"boolean"}`) {
		t.Errorf("the input schema does not offer dry_run: %s", schema)
	}
	for _, args := range []map[string]any{{"order_id": "O-1", "dry_run": true}, {"order_id": "O-1", "dry_run": false}, {"order_id": "O-1"}} {
		if res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "cancel_order", Arguments: args}); err != nil || res.IsError {
			t.Fatalf("cancel_order(%v): %v %v", args, err, res)
		}
	}
	if len(dry) != 1 || len(real) != 2 {
		t.Fatalf("dry runs %d, real runs %d; want 1 and 2", len(dry), len(real))
	}
	for _, args := range append(dry, real...) {
		if _, ok := args["dry_run"]; ok || args["order_id"] != "O-1" {
			t.Errorf("a handler got %v; want the arguments without dry_run", args)
		}
	}
	if res, _ := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "cancel_order", Arguments: map[string]any{"order_id": "O-1", "dry_run": "yes"}}); !res.IsError {
		t.Error("dry_run must be a boolean")
	}
	defer func() {
		if recover() == nil {
			t.Error("a read tool with a dry run did not panic")
		}
	}()
	srv.AddTool(&warden.Tool{Scope: "orders.read", Name: "get_order", Description: "Read.", Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return nil, nil },
		DryRun: func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return nil, nil }})
}
