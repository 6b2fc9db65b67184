package warden_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/pipeline"
)

const (
	stateless = "2026-07-28"
	legacy    = "2025-11-25"
)

// serve starts srv's HTTP handler on a loopback port.
func serve(t testing.TB, srv *warden.Server, opts *warden.HTTPOptions) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(srv.HTTPHandler(opts))
	t.Cleanup(ts.Close)
	return ts
}

// rpcMessage is one JSON-RPC response.
type rpcMessage struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int64  `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// response is what an HTTP exchange produced.
type response struct {
	status    int
	header    http.Header
	body      []byte
	msg       *rpcMessage // the JSON-RPC response in the body, if any
	sessionID string
}

// post sends body to url with MCP's headers, as modified by edit.
func post(t *testing.T, url, body string, edit func(*http.Request)) *response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if edit != nil {
		edit(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return parseResponse(t, resp.StatusCode, resp.Header, b)
}

func parseResponse(t *testing.T, status int, h http.Header, b []byte) *response {
	t.Helper()
	r := &response{status: status, header: h, body: b, sessionID: h.Get("Mcp-Session-Id")}
	data := b
	if strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") {
		// The first event that carries data is the response (a priming
		// event carries none).
		data = nil
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok && d != "" {
				data = []byte(d)
				break
			}
		}
	}
	var m rpcMessage
	if len(data) > 0 && json.Unmarshal(data, &m) == nil {
		r.msg = &m
	}
	return r
}

// toolResult decodes the tools/call result in r.
func (r *response) toolResult(t *testing.T) *mcp.CallToolResult {
	t.Helper()
	if r.status != http.StatusOK || r.msg == nil || r.msg.Error != nil {
		t.Fatalf("HTTP %d %s: want a tools/call result", r.status, r.body)
	}
	var res mcp.CallToolResult
	if err := json.Unmarshal(r.msg.Result, &res); err != nil {
		t.Fatalf("decoding %s: %v", r.msg.Result, err)
	}
	return &res
}

// statelessCall is a 2026-07-28 tools/call: no session, the version and
// client in every request.
func statelessCall(tool string, args any) (string, func(*http.Request)) {
	params, _ := json.Marshal(map[string]any{
		"name":      tool,
		"arguments": args,
		"_meta": map[string]any{
			"io.modelcontextprotocol/protocolVersion":    stateless,
			"io.modelcontextprotocol/clientCapabilities": map[string]any{},
			"io.modelcontextprotocol/clientInfo":         map[string]any{"name": "raw-http", "version": "1"},
		},
	})
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":` + string(params) + `}`
	return body, func(r *http.Request) {
		r.Header.Set("Mcp-Protocol-Version", stateless)
		r.Header.Set("Mcp-Method", "tools/call")
		r.Header.Set("Mcp-Name", tool)
	}
}

var validOrder = map[string]any{"sku": "SKU-123", "quantity": 1}

// assertServes fails the test unless a valid call to url succeeds.
func assertServes(t *testing.T, url string) {
	t.Helper()
	body, edit := statelessCall("create_order", validOrder)
	if res := post(t, url, body, edit).toolResult(t); res.IsError {
		t.Fatalf("a valid call failed: %s", textOf(res))
	}
}

func TestHTTPGuard(t *testing.T) {
	ts := serve(t, newServer(t), &warden.HTTPOptions{MaxBodyBytes: 4096})
	url := ts.URL + "/mcp"
	call, statelessHeaders := statelessCall("create_order", validOrder)
	big, _ := statelessCall("create_order", map[string]any{"sku": strings.Repeat("A", 5000), "quantity": 1})
	tests := []struct {
		name       string
		url        string
		body       string
		edit       func(*http.Request)
		wantStatus int
		wantCode   int64 // the JSON-RPC error code in the body; 0 for none
	}{
		{name: "a valid call", body: call, wantStatus: http.StatusOK},
		{name: "a loopback browser origin", body: call, edit: header("Origin", "http://localhost:5173"), wantStatus: http.StatusOK},
		{name: "malformed JSON", body: `{"jsonrpc":"2.0","id":1,"method":`, wantStatus: http.StatusBadRequest, wantCode: jsonrpc.CodeParseError},
		{name: "trailing bytes after the message", body: call + `{"jsonrpc":"2.0"`, wantStatus: http.StatusBadRequest, wantCode: jsonrpc.CodeParseError},
		{name: "not JSON at all", body: `tools/call create_order`, wantStatus: http.StatusBadRequest, wantCode: jsonrpc.CodeParseError},
		{name: "an empty body", body: ``, wantStatus: http.StatusBadRequest, wantCode: jsonrpc.CodeParseError},
		{name: "an oversized body", body: big, wantStatus: http.StatusRequestEntityTooLarge, wantCode: jsonrpc.CodeInvalidRequest},
		{name: "an oversized chunked body", body: big, edit: func(r *http.Request) {
			r.ContentLength = -1 // the length is not announced: the cap applies while reading
			r.Body = io.NopCloser(strings.NewReader(big))
		}, wantStatus: http.StatusRequestEntityTooLarge, wantCode: jsonrpc.CodeInvalidRequest},
		{name: "text/plain", body: call, edit: header("Content-Type", "text/plain"), wantStatus: http.StatusUnsupportedMediaType, wantCode: jsonrpc.CodeInvalidRequest},
		{name: "a form", body: call, edit: header("Content-Type", "application/x-www-form-urlencoded"), wantStatus: http.StatusUnsupportedMediaType, wantCode: jsonrpc.CodeInvalidRequest},
		{name: "no Content-Type", body: call, edit: header("Content-Type", ""), wantStatus: http.StatusUnsupportedMediaType, wantCode: jsonrpc.CodeInvalidRequest},
		{name: "a foreign origin", body: call, edit: header("Origin", "https://evil.example"), wantStatus: http.StatusForbidden, wantCode: jsonrpc.CodeInvalidRequest},
		{name: "the null origin", body: call, edit: header("Origin", "null"), wantStatus: http.StatusForbidden, wantCode: jsonrpc.CodeInvalidRequest},
		{name: "a foreign host (DNS rebinding)", body: call, edit: host("evil.example"), wantStatus: http.StatusForbidden, wantCode: jsonrpc.CodeInvalidRequest},
		{name: "a foreign host with the right port", body: call, edit: host("attacker.example:" + ts.URL[strings.LastIndex(ts.URL, ":")+1:]), wantStatus: http.StatusForbidden, wantCode: jsonrpc.CodeInvalidRequest},
		{name: "a host that starts like localhost", body: call, edit: host("localhost.evil.example"), wantStatus: http.StatusForbidden, wantCode: jsonrpc.CodeInvalidRequest},
		{name: "a query string", url: url + "?debug=1", body: call, wantStatus: http.StatusBadRequest, wantCode: jsonrpc.CodeInvalidRequest},
		{name: "a token in the query string", url: url + "?api_key=secret", body: call, wantStatus: http.StatusUnauthorized, wantCode: jsonrpc.CodeInvalidRequest},
		{name: "an access token in the query string", url: url + "?access_token=secret", body: call, wantStatus: http.StatusUnauthorized, wantCode: jsonrpc.CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := tt.url
			if u == "" {
				u = url
			}
			r := post(t, u, tt.body, func(r *http.Request) {
				statelessHeaders(r)
				if tt.edit != nil {
					tt.edit(r)
				}
			})
			if r.status != tt.wantStatus {
				t.Fatalf("HTTP %d %s, want %d", r.status, r.body, tt.wantStatus)
			}
			if tt.wantCode != 0 && (r.msg == nil || r.msg.Error == nil || r.msg.Error.Code != tt.wantCode) {
				t.Errorf("body %s, want a JSON-RPC error with code %d", r.body, tt.wantCode)
			}
			if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
			}
			assertServes(t, url)
		})
	}
}

func TestHTTPGuardConfigured(t *testing.T) {
	ts := serve(t, newServer(t), &warden.HTTPOptions{
		AllowedHosts:   []string{"mcp.example.com"},
		AllowedOrigins: []string{"https://app.example.com/"},
	})
	call, statelessHeaders := statelessCall("create_order", validOrder)
	tests := []struct {
		name       string
		edit       func(*http.Request)
		wantStatus int
	}{
		{"an allowed host", host("mcp.example.com"), http.StatusOK},
		{"an allowed host with a port", host("MCP.example.com:8443"), http.StatusOK},
		{"an allowed origin", both(host("mcp.example.com"), header("Origin", "https://app.example.com")), http.StatusOK},
		{"loopback is not implied", nil, http.StatusForbidden},
		{"another host", host("other.example.com"), http.StatusForbidden},
		{"another origin", both(host("mcp.example.com"), header("Origin", "https://evil.example.com")), http.StatusForbidden},
		{"a loopback origin to a public host", both(host("mcp.example.com"), header("Origin", "http://localhost:3000")), http.StatusForbidden},
		{"the right origin over plain http", both(host("mcp.example.com"), header("Origin", "http://app.example.com")), http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, ts.URL+"/mcp", call, func(r *http.Request) {
				statelessHeaders(r)
				if tt.edit != nil {
					tt.edit(r)
				}
			})
			if r.status != tt.wantStatus {
				t.Errorf("HTTP %d %s, want %d", r.status, r.body, tt.wantStatus)
			}
		})
	}
}

func TestHTTPDefaultBodyCap(t *testing.T) {
	ts := serve(t, newServer(t), nil)
	body, edit := statelessCall("create_order", map[string]any{"sku": strings.Repeat("A", warden.DefaultMaxBodyBytes), "quantity": 1})
	if r := post(t, ts.URL+"/mcp", body, edit); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over %d bytes: HTTP %d, want 413", warden.DefaultMaxBodyBytes, r.status)
	}
	assertServes(t, ts.URL+"/mcp")
}

func TestHTTPToolFailures(t *testing.T) {
	ts := serve(t, newServer(t), nil)
	url := ts.URL + "/mcp"
	tests := []struct {
		name     string
		tool     string
		args     any
		wantCode pipeline.Code
	}{
		{"a panicking handler", "explode", map[string]any{}, pipeline.Internal},
		{"a handler past its deadline", "wait_forever", map[string]any{}, pipeline.Timeout},
		{"a missing argument", "create_order", map[string]any{"sku": "SKU-123"}, pipeline.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, edit := statelessCall(tt.tool, tt.args)
			r := post(t, url, body, edit)
			if strings.Contains(string(r.body), "hunter2") || strings.Contains(string(r.body), "goroutine ") {
				t.Errorf("the response reveals the failure's details: %s", r.body)
			}
			if code := refusalOf(t, r.toolResult(t)).Code; code != tt.wantCode {
				t.Errorf("error_code = %s, want %s", code, tt.wantCode)
			}
			assertServes(t, url)
		})
	}
	t.Run("an unknown tool", func(t *testing.T) {
		body, edit := statelessCall("drop_database", map[string]any{})
		r := post(t, url, body, edit)
		if r.msg == nil || r.msg.Error == nil || r.msg.Error.Code != jsonrpc.CodeInvalidParams {
			t.Errorf("HTTP %d %s, want a JSON-RPC invalid-params error", r.status, r.body)
		}
		assertServes(t, url)
	})
}

// Both protocol generations are served at the one URL.
func TestHTTPProtocolVersions(t *testing.T) {
	ts := serve(t, newServer(t), nil)
	url := ts.URL + "/mcp"
	tests := []struct {
		name        string
		version     string // what the client asks for; "" for the SDK's default
		want        string
		wantSession bool
	}{
		{"sdk client default", "", stateless, false},
		{"sdk client " + stateless, stateless, stateless, false},
		{"sdk client " + legacy, legacy, legacy, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := mcp.NewClient(&mcp.Implementation{Name: "sdk-client", Version: "1.0.0"}, nil)
			cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: url, DisableStandaloneSSE: true},
				&mcp.ClientSessionOptions{ProtocolVersion: tt.version})
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			if got := cs.InitializeResult().ProtocolVersion; got != tt.want {
				t.Errorf("negotiated %s, want %s", got, tt.want)
			}
			if hasSession := cs.ID() != ""; hasSession != tt.wantSession {
				t.Errorf("session id %q; want a session: %v", cs.ID(), tt.wantSession)
			}
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "create_order", Arguments: validOrder})
			if err != nil || res.IsError {
				t.Fatalf("CallTool = %v, %v", res, err)
			}
			res, err = cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "create_order", Arguments: map[string]any{"sku": "nope", "quantity": 1}})
			if err != nil {
				t.Fatal(err)
			}
			if code := refusalOf(t, res).Code; code != pipeline.InvalidArgument {
				t.Errorf("error_code = %s, want %s", code, pipeline.InvalidArgument)
			}
		})
	}

	t.Run("raw session", func(t *testing.T) {
		init := post(t, url, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"`+legacy+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
		if init.status != http.StatusOK || init.sessionID == "" {
			t.Fatalf("initialize: HTTP %d, session %q, %s", init.status, init.sessionID, init.body)
		}
		inSession := func(id string) func(*http.Request) {
			return both(header("Mcp-Session-Id", id), header("Mcp-Protocol-Version", legacy))
		}
		if r := post(t, url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, inSession(init.sessionID)); r.status != http.StatusAccepted {
			t.Fatalf("notifications/initialized: HTTP %d %s", r.status, r.body)
		}
		call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"create_order","arguments":{"sku":"SKU-123","quantity":3}}}`
		if res := post(t, url, call, inSession(init.sessionID)).toolResult(t); res.IsError {
			t.Errorf("tools/call in the session: %s", textOf(res))
		}
		if r := post(t, url, call, inSession("not-a-session")); r.status != http.StatusNotFound {
			t.Errorf("tools/call with an unknown session: HTTP %d %s, want 404", r.status, r.body)
		}
		if r := post(t, url, `{"jsonrpc":"2.0","id":3,"method":`, inSession(init.sessionID)); r.status != http.StatusBadRequest || r.msg == nil || r.msg.Error == nil || r.msg.Error.Code != jsonrpc.CodeParseError {
			t.Errorf("malformed JSON in the session: HTTP %d %s, want a parse error", r.status, r.body)
		}
		if res := post(t, url, call, inSession(init.sessionID)).toolResult(t); res.IsError {
			t.Errorf("tools/call after a malformed message: %s", textOf(res))
		}
	})
}

func TestHTTPHealth(t *testing.T) {
	notReady := errors.New("source crm: connection refused")
	tests := []struct {
		name       string
		path       string
		ready      func() error
		wantStatus int
	}{
		{"healthz", "/healthz", nil, http.StatusOK},
		{"healthz while not ready", "/healthz", func() error { return notReady }, http.StatusOK},
		{"readyz with no check", "/readyz", nil, http.StatusOK},
		{"readyz ready", "/readyz", func() error { return nil }, http.StatusOK},
		{"readyz not ready", "/readyz", func() error { return notReady }, http.StatusServiceUnavailable},
		{"no legacy SSE unless enabled", "/sse", nil, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := serve(t, newServer(t), &warden.HTTPOptions{Ready: tt.ready})
			resp, err := http.Get(ts.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("GET %s: HTTP %d, want %d", tt.path, resp.StatusCode, tt.wantStatus)
			}
		})
	}
}

// A session ends DefaultSessionMaxAge after its initialize when no age is
// configured, busy or idle: sessions never live forever. Sitting idle past
// the idle timeout does not end it (its SDK state is made anew).
func TestHTTPSessionMaxAgeDefault(t *testing.T) {
	if d := warden.DefaultSessionMaxAge; d <= 0 || d > 24*time.Hour {
		t.Fatalf("DefaultSessionMaxAge = %s, want a finite age", d)
	}
	synctest.Test(t, func(t *testing.T) {
		h := newServer(t).HTTPHandler(nil) // nothing configured
		send := func(sessionID, body string) *response {
			req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/mcp", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if sessionID != "" {
				req.Header.Set("Mcp-Session-Id", sessionID)
				req.Header.Set("Mcp-Protocol-Version", legacy)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			return parseResponse(t, rec.Code, rec.Header(), rec.Body.Bytes())
		}
		init := send("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"`+legacy+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
		if init.sessionID == "" {
			t.Fatalf("initialize: HTTP %d %s", init.status, init.body)
		}
		send(init.sessionID, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
		ping := `{"jsonrpc":"2.0","id":2,"method":"ping"}`

		time.Sleep(warden.DefaultSessionIdleTimeout + time.Minute)
		synctest.Wait()
		list := `{"jsonrpc":"2.0","id":3,"method":"logging/setLevel","params":{"level":"debug"}}`
		if r := send(init.sessionID, list); r.status != http.StatusOK || r.msg == nil || r.msg.Error != nil {
			t.Fatalf("a request the SDK serves, after the session sat idle past the idle timeout: HTTP %d %s", r.status, r.body)
		}
		time.Sleep(warden.DefaultSessionMaxAge - warden.DefaultSessionIdleTimeout - 2*time.Minute)
		if r := send(init.sessionID, ping); r.status != http.StatusOK {
			t.Fatalf("a ping just before the session's end: HTTP %d %s", r.status, r.body)
		}
		time.Sleep(2 * time.Minute)
		if r := send(init.sessionID, ping); r.status != http.StatusNotFound {
			t.Errorf("a ping after the session's end: HTTP %d %s, want 404", r.status, r.body)
		}
	})
}

func header(k, v string) func(*http.Request) {
	return func(r *http.Request) {
		if v == "" {
			r.Header.Del(k)
			return
		}
		r.Header.Set(k, v)
	}
}

func host(h string) func(*http.Request) { return func(r *http.Request) { r.Host = h } }

func both(fs ...func(*http.Request)) func(*http.Request) {
	return func(r *http.Request) {
		for _, f := range fs {
			f(r)
		}
	}
}
