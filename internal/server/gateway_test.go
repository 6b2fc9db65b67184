package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/pipeline"
)

// seenRequest is what a test upstream recorded of one HTTP request.
type seenRequest struct {
	method string // the JSON-RPC method, or ""
	header http.Header
}

// testUpstream is an MCP server, made with the go-sdk, served over
// Streamable HTTP on loopback, that records every request's headers.
type testUpstream struct {
	srv *mcp.Server
	ts  *httptest.Server

	mu      sync.Mutex
	seen    []seenRequest
	garbage bool // answer every request with a body that is not JSON-RPC

	hanging   chan struct{} // a hang call started
	cancelled chan struct{} // a hang call was cancelled
	// released, once closed, ends the hang calls the upstream was not
	// told to cancel: a stateless go-sdk server is never told, and would
	// have them outlive the test.
	released chan struct{}
	release  func() // closes released, once
}

type echoIn struct {
	Text string `json:"text" jsonschema:"the text to echo"`
}

func newTestUpstream(t *testing.T) *testUpstream { return newTestUpstreamWith(t, nil) }

// newTestUpstreamWith serves the test upstream with the SDK's opts
// (Stateless: true speaks only 2026-07-28).
func newTestUpstreamWith(t *testing.T, opts *mcp.StreamableHTTPOptions) *testUpstream {
	t.Helper()
	u := &testUpstream{srv: mcp.NewServer(&mcp.Implementation{Name: "upstream", Version: "1"}, nil),
		hanging: make(chan struct{}, 10), cancelled: make(chan struct{}, 10), released: make(chan struct{})}
	mcp.AddTool(u.srv, &mcp.Tool{Name: "echo", Description: "Echo the text.", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(ctx context.Context, req *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
			if tok := req.Params.GetProgressToken(); tok != nil {
				req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: 1, Total: 2, Message: "halfway"})
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "echo: " + in.Text}}}, nil, nil
		})
	mcp.AddTool(u.srv, &mcp.Tool{Name: "wipe", Description: "Wipe everything."},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "wiped"}}}, nil, nil
		})
	mcp.AddTool(u.srv, &mcp.Tool{Name: "hang", Description: "Never answer.", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			u.hanging <- struct{}{}
			select {
			case <-ctx.Done():
				u.cancelled <- struct{}{}
				return nil, nil, ctx.Err()
			case <-u.released:
				return nil, nil, errors.New("released")
			}
		})
	// ask asks its caller's name in band (multi round-trip, 2026-07-28).
	mcp.AddTool(u.srv, &mcp.Tool{Name: "ask", Description: "Greet the caller by name.", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			if ans, ok := req.Params.InputResponses["name"].(*mcp.ElicitResult); ok && req.Params.RequestState == "asked-name" {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("hello %v", ans.Content["name"])}}}, nil, nil
			}
			return &mcp.CallToolResult{RequestState: "asked-name", InputRequests: mcp.InputRequestMap{"name": &mcp.ElicitParams{
				Message: "What is your name?", RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}},
			}}}, nil, nil
		})
	// ask_leaky asks in band with a question that leaks a token and hides
	// text.
	mcp.AddTool(u.srv, &mcp.Tool{Name: "ask_leaky", Description: "Ask, leaking a token.", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			if req.Params.RequestState == "asked" {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "thanks"}}}, nil, nil
			}
			return &mcp.CallToolResult{RequestState: "asked", InputRequests: mcp.InputRequestMap{"ok": &mcp.ElicitParams{
				Message: "Use " + leakedToken + "\u200b?", RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{}},
			}}}, nil, nil
		})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return u.srv }, opts)
	u.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var msg struct{ Method string }
		json.Unmarshal(body, &msg)
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{msg.Method, r.Header.Clone()})
		garbage := u.garbage
		u.mu.Unlock()
		if garbage && msg.Method == "tools/call" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, "<html>this is not JSON-RPC</html>")
			return
		}
		h.ServeHTTP(w, r)
	}))
	u.release = sync.OnceFunc(func() { close(u.released) })
	t.Cleanup(func() {
		u.release()
		u.ts.Close()
	})
	return u
}

func (u *testUpstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.seen)
}

func (u *testUpstream) setGarbage(v bool) {
	u.mu.Lock()
	u.garbage = v
	u.mu.Unlock()
}

func gatewayConfig(url, extra string) string {
	return fmt.Sprintf(`
server:
  name: gateway-test
upstreams:
  up:
    url: %s
    scope: up.use
    risk_from_annotations: true
    timeout: 2s
    tools:
      echo: {cache_ttl: 1m, mode: read}
%s`, url, extra)
}

func toolNames(t *testing.T, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

func textOf(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// An upstream's tools are served under its prefix and pass the pipeline:
// scope, the upstream's schema closed to unknown arguments, risk from
// its annotations, the output guard.
func TestGatewayServesUpstreamTools(t *testing.T) {
	up := newTestUpstream(t)
	srv, err := Build(t.Context(), fixture(t, gatewayConfig(up.ts.URL, "guard: {emails: true}\nrisk_policies: {high: {require: confirmation}}")), &Options{Local: principal("ada", "acme", "up.use")})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	cs := session(t, srv)
	ctx := t.Context()

	if got, want := toolNames(t, cs), []string{"up__ask", "up__ask_leaky", "up__echo", "up__hang", "up__wipe"}; !slices.Equal(got, want) {
		t.Fatalf("tools = %v, want %v", got, want)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "up__echo", Arguments: map[string]any{"text": "hi ada@example.com"}})
	if err != nil || res.IsError {
		t.Fatalf("up__echo: %v %+v", err, res)
	}
	if got := textOf(res); !strings.HasPrefix(got, "echo: hi ") || strings.Contains(got, "ada@example.com") {
		t.Errorf("up__echo = %q, want the echo with the email redacted", got)
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "up__echo", Arguments: map[string]any{"text": "hi", "path": "/etc/passwd"}})
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, res); code != "INVALID_ARGUMENT" {
		t.Errorf("an argument the upstream does not declare: %s, want INVALID_ARGUMENT", code)
	}
	// wipe has no readOnlyHint, so it is destructive by the protocol's
	// default: high, which needs the user's confirmation here.
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "up__wipe", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, res); code != "CONFIRMATION_REQUIRED" {
		t.Errorf("a destructive upstream tool: %s, want CONFIRMATION_REQUIRED", code)
	}

	outsider := session(t, mustBuild(t, gatewayConfig(up.ts.URL, ""), principal("eve", "acme", "other.use")))
	if got := toolNames(t, outsider); len(got) != 0 {
		t.Errorf("a caller without the upstream's scope sees %v", got)
	}
	res, err = outsider.CallTool(ctx, &mcp.CallToolParams{Name: "up__echo", Arguments: map[string]any{"text": "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, res); code != "PERMISSION_DENIED" {
		t.Errorf("a caller without the upstream's scope: %s, want PERMISSION_DENIED", code)
	}
}

func mustBuild(t *testing.T, yaml string, local func(context.Context) (*pipeline.Principal, error)) *Server {
	t.Helper()
	srv, err := Build(t.Context(), fixture(t, yaml), &Options{Local: local})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// When the upstream adds a tool, Warden lists it again and its clients
// see the new tool; when the upstream removes one, so does Warden.
func TestGatewayFollowsUpstreamCatalog(t *testing.T) {
	up := newTestUpstream(t)
	srv := mustBuild(t, gatewayConfig(up.ts.URL, "    pinning: {new_targets: allow}"), principal("ada", "acme", "up.use"))
	changed := make(chan struct{}, 10)
	st, ct := mcp.NewInMemoryTransports()
	if _, err := srv.MCP().Connect(t.Context(), st, nil); err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { changed <- struct{}{} },
	}).Connect(t.Context(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })

	mcp.AddTool(up.srv, &mcp.Tool{Name: "added", Description: "Added later.", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "new"}}}, nil, nil
		})
	waitFor(t, "the added tool to be listed", func() bool { return slices.Contains(toolNames(t, cs), "up__added") })
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Error("the client was not told the tool list changed")
	}
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "up__added"})
	if err != nil || res.IsError || textOf(res) != "new" {
		t.Fatalf("up__added: %v %+v", err, res)
	}
	up.srv.RemoveTools("wipe")
	waitFor(t, "the removed tool to go", func() bool { return !slices.Contains(toolNames(t, cs), "up__wipe") })
}

// waitFor polls cond until it holds, or fails the test after 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An upstream that hangs, answers garbage or is gone gives UNAVAILABLE
// with retry_after, within the call's timeout; /readyz names it. So it is
// whether the go-sdk client calls it (a session) or Warden does itself (a
// stateless upstream, a call with nothing to relay).
func TestGatewayUpstreamFailures(t *testing.T) {
	t.Run("session", func(t *testing.T) { testGatewayUpstreamFailures(t, nil) })
	t.Run("stateless", func(t *testing.T) { testGatewayUpstreamFailures(t, &mcp.StreamableHTTPOptions{Stateless: true}) })
}

func testGatewayUpstreamFailures(t *testing.T, opts *mcp.StreamableHTTPOptions) {
	up := newTestUpstreamWith(t, opts)
	srv := mustBuild(t, gatewayConfig(up.ts.URL, ""), principal("ada", "acme", "up.use"))
	cs := session(t, srv)
	ctx := t.Context()
	if err := srv.Ready(ctx); err != nil {
		t.Fatalf("Ready with the upstream up: %v", err)
	}
	refusal := func(name string) pipeline.Error {
		t.Helper()
		start := time.Now()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: map[string]any{}})
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("%s answered after %s, beyond its 2s timeout", name, took)
		}
		var e pipeline.Error
		if !res.IsError {
			t.Fatalf("%s succeeded: %+v", name, res)
		}
		remarshal(t, res.StructuredContent, &e)
		return e
	}
	if e := refusal("up__hang"); e.Code != pipeline.Unavailable || e.RetryAfter == 0 {
		t.Errorf("a hanging upstream: %+v, want UNAVAILABLE with retry_after", e)
	}
	up.setGarbage(true)
	if e := refusal("up__wipe"); e.Code != pipeline.Unavailable || e.RetryAfter == 0 {
		t.Errorf("an upstream answering garbage: %+v, want UNAVAILABLE with retry_after", e)
	}
	up.setGarbage(false)
	up.release()
	up.ts.CloseClientConnections()
	up.ts.Close()
	if e := refusal("up__wipe"); e.Code != pipeline.Unavailable || e.RetryAfter == 0 {
		t.Errorf("an upstream that is gone: %+v, want UNAVAILABLE with retry_after", e)
	}
	waitFor(t, "readiness to name the upstream", func() bool {
		err := srv.Ready(ctx)
		return err != nil && strings.Contains(err.Error(), "upstream up")
	})
	if v := metricValue(t, srv, `warden_upstream_up{upstream="up"}`); v != 0 {
		t.Errorf("warden_upstream_up = %v for an upstream that is gone, want 0", v)
	}
}

// Closing the server ends everything the upstream started.
func TestGatewayCloseLeaksNothing(t *testing.T) {
	up := newTestUpstream(t)
	before := runtime.NumGoroutine()
	srv, err := Build(t.Context(), fixture(t, gatewayConfig(up.ts.URL, "")), &Options{Local: principal("ada", "acme", "up.use")})
	if err != nil {
		t.Fatal(err)
	}
	cs := session(t, srv)
	if res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "up__echo", Arguments: map[string]any{"text": "x"}}); err != nil || res.IsError {
		t.Fatalf("up__echo: %v %+v", err, res)
	}
	cs.Close()
	srv.Close()
	up.ts.CloseClientConnections()
	waitFor(t, fmt.Sprintf("goroutines to end (%d before)", before), func() bool { return runtime.NumGoroutine() <= before })
}

// An upstream that asks for input in band (multi round-trip) has its
// question reach the user, naming the upstream, and the answer go back —
// to a client of either protocol generation.
func TestGatewayRelaysInBandElicitation(t *testing.T) {
	up := newTestUpstreamWith(t, &mcp.StreamableHTTPOptions{Stateless: true})
	srv := mustBuild(t, gatewayConfig(up.ts.URL, ""), principal("ada", "acme", "up.use"))
	for _, version := range []string{"2026-07-28", "2025-11-25"} {
		var asked string
		cs := connectWith(t, srv, &mcp.ClientOptions{
			ElicitationHandler: func(_ context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
				asked = r.Params.Message
				return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "Ada"}}, nil
			},
		}, version)
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "up__ask", Arguments: map[string]any{}})
		if err != nil || res.IsError {
			t.Fatalf("%s: up__ask: %v %+v", version, err, res)
		}
		if asked != "[up] What is your name?" {
			t.Errorf("%s: the user was asked %q, want the upstream's question naming it", version, asked)
		}
		if got := textOf(res); got != "hello Ada" {
			t.Errorf("%s: up__ask = %q, want the upstream's answer to the user's", version, got)
		}
		// The attack: a question that leaks a secret or hides text.
		if res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "up__ask_leaky", Arguments: map[string]any{}}); err != nil || res.IsError {
			t.Fatalf("%s: up__ask_leaky: %v %+v", version, err, res)
		}
		if strings.Contains(asked, leakedToken) || strings.Contains(asked, "\u200b") || !strings.Contains(asked, "[REDACTED:github_token]") {
			t.Errorf("%s: the user was asked %q, want the token redacted and the hidden text gone", version, asked)
		}
	}
}

// A client that cancels its call has the call cancelled upstream too.
func TestGatewayRelaysCancellation(t *testing.T) {
	up := newTestUpstream(t)
	// A minute to time out: only the client's cancellation ends it sooner.
	srv := mustBuild(t, gatewayConfig(up.ts.URL, "      hang: {timeout: 1m}"), principal("ada", "acme", "up.use"))
	cs := connectWith(t, srv, nil, "2025-11-25")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "up__hang", Arguments: map[string]any{}})
		done <- err
	}()
	select {
	case <-up.hanging:
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not reach the upstream")
	}
	cancel()
	select {
	case <-up.cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream's call was not cancelled")
	}
	<-done
}
