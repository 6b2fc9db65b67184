package main

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/bench/internal/anchor/anchortest"
)

func TestEcho(t *testing.T) {
	t.Run("stateless", func(t *testing.T) { anchortest.Stateless(t, newServer()) })
	t.Run("session", func(t *testing.T) { anchortest.Session(t, newServer()) })
	t.Run("stdio", func(t *testing.T) {
		anchortest.Stdio(t, func(in io.Reader, out io.Writer) error {
			return newServer().serveStdio(in, bufio.NewWriter(out))
		})
	})
}

// TestRefusals checks that the plain handler refuses what an MCP server
// must refuse on the requests it serves, so that it is not faster for
// skipping checks.
func TestRefusals(t *testing.T) {
	const call = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
	ok := http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {"echo"}}
	with := func(k, v string) http.Header {
		h := ok.Clone()
		h.Set(k, v)
		return h
	}
	tests := []struct {
		name   string
		header http.Header
		body   string
		want   int
	}{
		{"ok", ok, call, http.StatusOK},
		{"Mcp-Name disagrees", with("Mcp-Name", "other"), call, http.StatusBadRequest},
		{"Mcp-Method disagrees", with("Mcp-Method", "tools/list"), call, http.StatusBadRequest},
		{"version disagrees", with("Mcp-Protocol-Version", "2025-11-25"), call, http.StatusBadRequest},
		{"unknown session", with("Mcp-Session-Id", "nope"), call, http.StatusNotFound},
		{"unknown tool", with("Mcp-Name", "other"), strings.Replace(call, `"echo"`, `"other"`, 1), http.StatusBadRequest},
		{"message missing", ok, strings.Replace(call, `"message":"hi"`, `"text":"hi"`, 1), http.StatusBadRequest},
		{"message not a string", ok, strings.Replace(call, `"hi"`, `5`, 1), http.StatusBadRequest},
		{"not JSON", ok, `{`, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(tt.body))
			req.Header = tt.header.Clone()
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			newServer().ServeHTTP(w, req)
			if w.Code != tt.want {
				t.Errorf("HTTP %d (%s), want %d", w.Code, strings.TrimSpace(w.Body.String()), tt.want)
			}
		})
	}
}
