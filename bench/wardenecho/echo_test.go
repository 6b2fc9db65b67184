package main

import (
	"context"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/server"
	"github.com/wardenmcp/warden/pipeline"
)

// TestEcho builds Warden from the benchmark's configuration, as serve does,
// and calls the echo tool through every control: the tool answers, and
// arguments beyond its one string are refused by strict validation.
func TestEcho(t *testing.T) {
	t.Setenv("WARDEN_BENCH_DIR", t.TempDir())
	cfg, err := config.Load("warden.yaml")
	if err != nil {
		t.Fatal(err)
	}
	local := func(context.Context) (*pipeline.Principal, error) {
		return &pipeline.Principal{ID: "bench", Tenant: "bench", Scopes: []string{"bench.echo"}, AuthMethod: "test"}, nil
	}
	srv, err := server.Build(t.Context(), cfg, &server.Options{Local: local})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	st, ct := mcp.NewInMemoryTransports()
	ss, err := srv.MCP().Connect(t.Context(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "v0"}, nil).Connect(t.Context(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "hello"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Content) != 1 || res.IsError {
		t.Fatalf("echo: got %+v, want one text content", res)
	}
	if tc, ok := res.Content[0].(*mcp.TextContent); !ok || tc.Text != "hello" {
		t.Fatalf("echo: got %#v, want the text hello", res.Content[0])
	}

	res, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "hello", "extra": 1}})
	if err == nil && !res.IsError {
		t.Fatalf("echo with an extra argument: got %+v, want a refusal", res)
	}
}
