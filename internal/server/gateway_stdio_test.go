package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/sandbox"
)

// stdioUpstreamEnv makes this test binary serve as an MCP server over
// stdio (the upstream of the stdio gateway tests).
const stdioUpstreamEnv = "WARDEN_TEST_STDIO_UPSTREAM"

func TestMain(m *testing.M) {
	sandbox.Main()
	if os.Getenv(stdioUpstreamEnv) == "1" {
		serveStdioUpstream()
		return
	}
	os.Exit(m.Run())
}

type readIn struct {
	Path string `json:"path" jsonschema:"the file to read"`
}

// serveStdioUpstream serves tools that show what the sandbox lets the
// upstream see and do.
func serveStdioUpstream() {
	s := mcp.NewServer(&mcp.Implementation{Name: "stdio-upstream", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "read_file", Description: "Read a file.", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(_ context.Context, _ *mcp.CallToolRequest, in readIn) (*mcp.CallToolResult, any, error) {
			b, err := os.ReadFile(in.Path)
			if err != nil {
				return nil, nil, fmt.Errorf("cannot read: %v", err)
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(b)}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "crash", Description: "Exit at once."},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			os.Exit(3)
			return nil, nil, nil
		})
	_ = s.Run(context.Background(), &mcp.StdioTransport{})
}

// children lists the processes whose parent is this one.
func children(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// A stdio upstream runs in the sandbox: it reads what is declared for it
// and nothing else; when it dies it is started again; when the server
// closes, its process is gone.
func TestGatewayStdioUpstreamInSandbox(t *testing.T) {
	if !sandbox.Check().Has(sandbox.Filesystem) {
		t.Skip("this host cannot build the sandbox's filesystem layer")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	shared := t.TempDir()
	os.WriteFile(filepath.Join(shared, "notes.txt"), []byte("shared notes"), 0o644)
	os.Chmod(shared, 0o755)
	cfg := fixture(t, fmt.Sprintf(`
server:
  name: gateway-stdio
upstreams:
  local:
    command: %s
    env: {%s: "1"}
    read_only: [%s]
    scope: local.use
    timeout: 5s
    tools:
      read_file: {mode: read}
`, exe, stdioUpstreamEnv, shared))
	srv, err := Build(t.Context(), cfg, &Options{Local: principal("ada", "acme", "local.use")})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			srv.Close()
		}
	})
	cs := session(t, srv)
	ctx := t.Context()
	read := func(path string) *mcp.CallToolResult {
		t.Helper()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "local__read_file", Arguments: map[string]any{"path": path}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := read(filepath.Join(shared, "notes.txt")); res.IsError || textOf(res) != "shared notes" {
		t.Errorf("reading the declared directory: %+v", res)
	}
	outside := filepath.Join(cfg.Dir, "secret.txt")
	if res := read(outside); !res.IsError || strings.Contains(textOf(res), "top secret") {
		t.Errorf("reading %s, outside what is declared, was not refused: %s", outside, textOf(res))
	}

	if len(children(t)) == 0 {
		t.Fatal("no upstream process runs")
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "local__crash"})
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, res); code != "UNAVAILABLE" {
		t.Errorf("a call that kills the upstream: %s, want UNAVAILABLE", code)
	}
	waitFor(t, "the upstream to be started again", func() bool {
		res := read(filepath.Join(shared, "notes.txt"))
		return !res.IsError && textOf(res) == "shared notes"
	})

	srv.Close()
	closed = true
	if pids := children(t); len(pids) != 0 {
		t.Errorf("processes left after Close: %v", pids)
	}
}
