package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestMain lets the test binary stand in for a stdio server (see
// TestStdio): a bare go-sdk server with one echo tool.
func TestMain(m *testing.M) {
	if os.Getenv("LOADGEN_TEST_STDIO_SERVER") == "1" {
		if err := echoServer().Run(context.Background(), &mcp.StdioTransport{}); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func echoServer() *mcp.Server {
	type in struct {
		Message string `json:"message"`
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "test", Version: "v0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, in in) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Message}}}, nil, nil
	})
	return s
}

// TestSession checks the session path against the go-sdk's handler with
// sessions, in both of its response modes: each client initializes its own
// session and calls on it; a stateless server is refused at once.
func TestSession(t *testing.T) {
	s := echoServer()
	for _, stateless := range []bool{false, true} {
		for _, jsonResponse := range []bool{false, true} {
			var (
				mu       sync.Mutex
				sessions []string
			)
			h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
				&mcp.StreamableHTTPOptions{Stateless: stateless, JSONResponse: jsonResponse})
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if sid := r.Header.Get("Mcp-Session-Id"); sid != "" && r.Method == http.MethodDelete {
					mu.Lock()
					sessions = append(sessions, sid)
					mu.Unlock()
				}
				h.ServeHTTP(w, r)
			}))
			cfg := &config{mode: modeSession, url: ts.URL, tool: "echo", args: json.RawMessage(`{"message":"hi"}`), concurrency: 2, timeout: 5 * time.Second}
			clients, _, done, err := connect(t.Context(), cfg)
			if stateless {
				if err == nil || !strings.Contains(err.Error(), "no Mcp-Session-Id") {
					t.Errorf("stateless server: connect = %v, want a refusal naming the missing session", err)
				}
				ts.Close()
				continue
			}
			if err != nil {
				t.Fatalf("json=%v: connect: %v", jsonResponse, err)
			}
			var buf bytes.Buffer
			for i, c := range clients {
				if err := c.call(t.Context(), int64(i+1), &buf); err != nil {
					t.Errorf("json=%v: client %d: %v", jsonResponse, i, err)
				}
			}
			done()
			mu.Lock()
			if len(sessions) != 2 || sessions[0] == sessions[1] {
				t.Errorf("json=%v: sessions ended %q, want two distinct", jsonResponse, sessions)
			}
			mu.Unlock()
			ts.Close()
		}
	}
}

// TestStdio starts this test binary as a go-sdk stdio server and calls it.
func TestStdio(t *testing.T) {
	t.Setenv("LOADGEN_TEST_STDIO_SERVER", "1")
	s, err := startStdio(t.Context(), []string{os.Args[0]}, "echo", json.RawMessage(`{"message":"hi"}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for id := int64(1); id <= 3; id++ {
		if err := s.call(t.Context(), id, &buf); err != nil {
			t.Errorf("call %d: %v", id, err)
		}
	}
	bad, err := startStdio(t.Context(), []string{os.Args[0]}, "no_such_tool", json.RawMessage(`{}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.call(t.Context(), 1, &buf); err == nil {
		t.Error("a call of an unknown tool succeeded")
	}
	for _, srv := range []*stdioServer{s, bad} {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

func TestFlagsStdio(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-mode", "stdio", "-tool", "t", "--", "srv", "--stdio"}, ""},
		{[]string{"-mode", "stdio", "-tool", "t"}, "give the server's command line"},
		{[]string{"-mode", "stdio", "-tool", "t", "-c", "2", "--", "srv"}, "-c 1"},
		{[]string{"-mode", "session", "-tool", "t", "srv"}, "only -mode stdio takes a command"},
		{[]string{"-mode", "bogus", "-tool", "t"}, "want stateless, session or stdio"},
	}
	for _, tt := range tests {
		cfg, err := parseFlags(tt.args, &bytes.Buffer{})
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tt.args, err)
		case tt.wantErr == "" && strings.Join(cfg.command, " ") != "srv --stdio":
			t.Errorf("%q: command %q", tt.args, cfg.command)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%q: %v, want an error containing %q", tt.args, err, tt.wantErr)
		}
	}
}
