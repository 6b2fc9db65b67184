// Package gateway_test serves examples/gateway/warden.yaml: server-everything
// from npm behind Warden, to a client over stdio (its auth.stdio principal)
// and over HTTP.
package gateway_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/sandbox"
	"github.com/wardenmcp/warden/internal/server"
)

// The test binary is the sandbox helper of the upstream it starts.
func TestMain(m *testing.M) {
	sandbox.Main()
	os.Exit(m.Run())
}

// build loads the example as `warden serve` does, with its state in a
// temporary directory.
func build(t *testing.T, stdio bool) *server.Server {
	t.Helper()
	npm := os.Getenv("WARDEN_TEST_NPM_DIR")
	if npm == "" {
		t.Skip("WARDEN_TEST_NPM_DIR is not set: run scripts/test.sh, or npm ci in e2e/clients and set it to e2e/clients/node_modules")
	}
	if !sandbox.Check().Has(sandbox.Filesystem) {
		t.Skip("this host cannot build the sandbox's filesystem layer")
	}
	abs, err := filepath.Abs(npm)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NPM", abs)
	data, err := os.ReadFile("warden.yaml")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.Build(t.Context(), cfg, &server.Options{Stdio: stdio})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func check(t *testing.T, cs *mcp.ClientSession) {
	t.Helper()
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
		if tool.Name == "everything__echo" && tool.Description != "Echo a message back (served through Warden)." {
			t.Errorf("the description override is not shown: %q", tool.Description)
		}
	}
	if !slices.Contains(names, "everything__echo") || slices.Contains(names, "everything__get-env") {
		t.Errorf("tools = %v: want everything__echo, and get-env excluded", names)
	}
	out, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "through the gateway"}})
	if err != nil || out.IsError {
		t.Fatalf("everything__echo: %v %+v", err, out)
	}
	if tc, ok := out.Content[0].(*mcp.TextContent); !ok || !strings.Contains(tc.Text, "through the gateway") {
		t.Errorf("everything__echo = %+v", out.Content)
	}
}

func TestStdio(t *testing.T) {
	srv := build(t, true)
	st, ct := mcp.NewInMemoryTransports()
	if _, err := srv.MCP().Connect(context.Background(), st, nil); err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "example", Version: "1"}, nil).Connect(t.Context(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	check(t, cs)
}

func TestHTTP(t *testing.T) {
	srv := build(t, false)
	ts := httptest.NewServer(srv.HTTPHandler(srv.HTTPOptions()))
	defer ts.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "example", Version: "1"}, nil).Connect(t.Context(),
		&mcp.StreamableClientTransport{Endpoint: ts.URL + "/mcp"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	check(t, cs)
}
