package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestCheckResponse(t *testing.T) {
	const okResult = `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"{}"}],"structuredContent":{"row_count":1}}}`
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		wantKind    string // "" for success
	}{
		{"json result", 200, "application/json", okResult, ""},
		{"json with charset", 200, "application/json; charset=utf-8", okResult, ""},
		{"json rpc error", 200, "application/json",
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"unknown tool"}}`, "jsonrpc -32602"},
		{"json tool error", 200, "application/json",
			`{"jsonrpc":"2.0","id":7,"result":{"isError":true,"content":[{"type":"text","text":"PERMISSION_DENIED"}]}}`, "tool error"},
		{"json wrong id", 200, "application/json",
			`{"jsonrpc":"2.0","id":8,"result":{"content":[]}}`, "bad response"},
		{"json string id", 200, "application/json",
			`{"jsonrpc":"2.0","id":"7","result":{"content":[]}}`, "bad response"},
		{"json neither result nor error", 200, "application/json",
			`{"jsonrpc":"2.0","id":7}`, "bad response"},
		{"json not json", 200, "application/json", `<html>`, "bad response"},
		{"json notification only", 200, "application/json",
			`{"jsonrpc":"2.0","method":"notifications/message","params":{}}`, "bad response"},
		{"http 400 with rpc error", 400, "application/json",
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32020,"message":"missing required Mcp-Name header"}}`, "http 400"},
		{"http 401 plain", 401, "text/plain", "unauthorized\n", "http 401"},
		{"http 500 even with a result", 500, "application/json", okResult, "http 500"},
		{"unknown content type", 200, "text/html", okResult, "bad response"},
		{"missing content type", 200, "", okResult, "bad response"},

		{"sse result", 200, "text/event-stream",
			"event: message\ndata: " + okResult + "\n\n", ""},
		{"sse crlf and no space after colon", 200, "text/event-stream",
			"event: message\r\ndata:" + okResult + "\r\n\r\n", ""},
		{"sse notification then result", 200, "text/event-stream",
			"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n" +
				": keep-alive comment\n\n" +
				"id: 3\nevent: message\ndata: " + okResult + "\n\n", ""},
		{"sse data split over lines", 200, "text/event-stream",
			"data: {\"jsonrpc\":\"2.0\",\ndata: \"id\":7,\"result\":{\"content\":[]}}\n\n", ""},
		{"sse rpc error", 200, "text/event-stream",
			"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32603,\"message\":\"boom\"}}\n\n", "jsonrpc -32603"},
		{"sse tool error", 200, "text/event-stream",
			"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"isError\":true,\"content\":[]}}\n\n", "tool error"},
		{"sse server request", 200, "text/event-stream",
			"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"elicitation/create\",\"params\":{}}\n\n", "bad response"},
		{"sse unterminated event", 200, "text/event-stream",
			"data: " + okResult, "bad response"},
		{"sse empty", 200, "text/event-stream", "", "bad response"},
		{"sse only notifications", 200, "text/event-stream",
			"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n", "bad response"},
		{"sse invalid json", 200, "text/event-stream", "data: {nope\n\n", "bad response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkResponse(tt.status, tt.contentType, []byte(tt.body), 7)
			if tt.wantKind == "" {
				if err != nil {
					t.Fatalf("checkResponse = %v, want success", err)
				}
				return
			}
			var ce *callError
			if !errors.As(err, &ce) {
				t.Fatalf("checkResponse = %v, want a %q error", err, tt.wantKind)
			}
			if ce.Kind != tt.wantKind {
				t.Errorf("error kind = %q (%v), want %q", ce.Kind, ce, tt.wantKind)
			}
		})
	}
}

// TestAgainstSDK checks the requests the generator sends against the real
// go-sdk stateless handler, in both of its response modes, and that a wrong
// tool name or a tool error is counted as an error.
func TestAgainstSDK(t *testing.T) {
	type in struct {
		ID string `json:"customer_id"`
	}
	type out struct {
		RowCount int `json:"row_count"`
	}
	server := mcp.NewServer(&mcp.Implementation{Name: "test", Version: "v0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "get_customer"}, func(_ context.Context, _ *mcp.CallToolRequest, in in) (*mcp.CallToolResult, out, error) {
		if in.ID != "C-1001" {
			return nil, out{}, errors.New("no such customer")
		}
		return nil, out{RowCount: 1}, nil
	})

	for _, jsonResponse := range []bool{false, true} {
		handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
			&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: jsonResponse})
		ts := httptest.NewServer(handler)
		t.Cleanup(ts.Close)
		cfg := &config{concurrency: 2, timeout: 5 * time.Second}

		tests := []struct {
			name, tool, args string
			wantKind         string
		}{
			{"ok", "get_customer", `{"customer_id":"C-1001"}`, ""},
			{"tool error", "get_customer", `{"customer_id":"C-9999"}`, "tool error"},
			{"invalid arguments", "get_customer", `{"customer_id":5}`, "tool error"},
			{"unknown tool", "no_such_tool", `{}`, "http 400"},
		}
		for _, tt := range tests {
			name := tt.name + map[bool]string{false: " (sse)", true: " (json)"}[jsonResponse]
			t.Run(name, func(t *testing.T) {
				c, err := newCaller(newHTTPClient(cfg), ts.URL, tt.tool, json.RawMessage(tt.args), nil)
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				err = c.call(t.Context(), 42, &buf)
				if tt.wantKind == "" {
					if err != nil {
						t.Fatalf("call = %v, want success", err)
					}
					return
				}
				var ce *callError
				if !errors.As(err, &ce) || ce.Kind != tt.wantKind {
					t.Fatalf("call = %v, want a %q error", err, tt.wantKind)
				}
			})
		}
	}
}

// TestRunPhaseLimit checks that -n bounds the number of calls across callers
// and that every call is recorded.
func TestRunPhaseLimit(t *testing.T) {
	var served atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		var req struct {
			ID json.RawMessage `json:"id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":{"content":[]}}`))
	}))
	defer ts.Close()
	cfg := &config{concurrency: 4, timeout: 5 * time.Second}
	c, err := newCaller(newHTTPClient(cfg), ts.URL, "t", json.RawMessage(`{}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	var id atomic.Int64
	clients := []client{c, c, c, c}
	p := runPhase(t.Context(), clients, time.Minute, 25, true, &id)
	if p.calls != 25 || p.errors != 0 || len(p.latencies) != 25 || served.Load() != 25 {
		t.Errorf("calls=%d errors=%d latencies=%d served=%d, want 25, 0, 25, 25 (errors: %v)",
			p.calls, p.errors, len(p.latencies), served.Load(), p.kinds)
	}
}

func TestFlagsRefuseNonLoopback(t *testing.T) {
	tests := []struct {
		url     string
		wantErr string
	}{
		{"http://127.0.0.1:8080/mcp", ""},
		{"http://[::1]:8080/mcp", ""},
		{"http://192.0.2.1:8080/mcp", "not a loopback address"},
		{"http://10.0.0.1/mcp", "not a loopback address"},
		{"ftp://127.0.0.1/mcp", "want an http or https URL"},
	}
	for _, tt := range tests {
		_, err := parseFlags([]string{"-url", tt.url, "-tool", "t"}, &bytes.Buffer{})
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v, want accepted", tt.url, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: %v, want an error containing %q", tt.url, err, tt.wantErr)
		}
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{0.50, 50 * time.Millisecond}, {0.90, 90 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		if got := percentile(lat, tt.p); got != tt.want {
			t.Errorf("percentile(1..100ms, %v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
}
