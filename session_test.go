package warden_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/redis/go-redis/v9"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/internal/relay"
	"github.com/wardenmcp/warden/pipeline"
)

// openSession initializes a 2025-11-25 session at url and returns its id.
func openSession(t *testing.T, url string, edit func(*http.Request)) string {
	t.Helper()
	r := post(t, url, initialize, edit)
	if r.status != http.StatusOK || r.sessionID == "" {
		t.Fatalf("initialize: HTTP %d %s", r.status, r.body)
	}
	if n := post(t, url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, inSession(r.sessionID, edit)); n.status != http.StatusAccepted {
		t.Fatalf("notifications/initialized: HTTP %d %s", n.status, n.body)
	}
	return r.sessionID
}

// inSession sets a session's headers on a request, after edit's.
func inSession(id string, edit func(*http.Request)) func(*http.Request) {
	return func(r *http.Request) {
		if edit != nil {
			edit(r)
		}
		r.Header.Set("Mcp-Session-Id", id)
		r.Header.Set("Mcp-Protocol-Version", legacy)
	}
}

// TestSessionAnswersAsTheSDK opens a 2025-11-25 session on a server with
// the lean path and on one that serves everything through the SDK, sends
// the same requests in both, and wants the same answers: status, JSON-RPC
// error code and data, result.
func TestSessionAnswersAsTheSDK(t *testing.T) {
	lean := serve(t, withCatalog(newServer(t)), nil).URL + "/mcp"
	sdk := serve(t, withCatalog(newServer(t)), &warden.HTTPOptions{DisableLeanPath: true}).URL + "/mcp"
	leanID, sdkID := openSession(t, lean, nil), openSession(t, sdk, nil)

	req := func(method, params string) string {
		return `{"jsonrpc":"2.0","id":7,"method":"` + method + `","params":` + params + `}`
	}
	call := func(name, args string) string { return req("tools/call", `{"name":"`+name+`","arguments":`+args+`}`) }
	tests := []struct{ name, body string }{
		{"a valid call", call("create_order", `{"sku":"SKU-123","quantity":1}`)},
		{"a string id", strings.Replace(call("create_order", `{"sku":"SKU-123","quantity":1}`), `"id":7`, `"id":"c-7"`, 1)},
		{"invalid arguments", call("create_order", `{"sku":"SKU-123","quantity":99}`)},
		{"an unknown argument", call("create_order", `{"sku":"SKU-123","quantity":1,"admin":true}`)},
		{"arguments that are not an object", call("create_order", `[1]`)},
		{"a panicking tool", call("explode", `{}`)},
		{"a tool past its deadline", call("wait_forever", `{}`)},
		{"an unknown tool", call("nope", `{}`)},
		{"a key in other case smuggles a name", strings.Replace(call("create_order", `{"sku":"SKU-123","quantity":1}`), `"name":"create_order"`, `"name":"create_order","Name":"explode"`, 1)},
		{"the stateless protocol's _meta", req("tools/call", `{"name":"create_order","arguments":{"sku":"SKU-123","quantity":1},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}`)},
		{"invalid UTF-8", strings.Replace(call("create_order", `{"sku":"SKU-123","quantity":1}`), "SKU-123", "SKU-\xff23", 1)},
		{"nesting past the limit", call("create_order", `{"deep":`+strings.Repeat("[", 1001)+strings.Repeat("]", 1001)+`}`)},
		{"a null id", strings.Replace(call("create_order", `{"sku":"SKU-123","quantity":1}`), `"id":7`, `"id":null`, 1)},
		{"a batch", "[" + call("create_order", `{"sku":"SKU-123","quantity":1}`) + "]"},
		{"a ping", `{"jsonrpc":"2.0","id":8,"method":"ping"}`},
		{"a tool list", req("tools/list", `{}`)},
		{"a tool list with a cursor", req("tools/list", `{"cursor":"bm9wZQ"}`)},
		{"a resource list", req("resources/list", `{}`)},
		{"a template list", req("resources/templates/list", `{}`)},
		{"a prompt list", req("prompts/list", `{}`)},
		{"a resource read", req("resources/read", `{"uri":"orders://catalog"}`)},
		{"a template read", req("resources/read", `{"uri":"orders://order/O-1234"}`)},
		{"a template variable that fails validation", req("resources/read", `{"uri":"orders://order/nope"}`)},
		{"a read the handler refuses as not found", req("resources/read", `{"uri":"orders://missing/O-1234"}`)},
		{"an unknown URI", req("resources/read", `{"uri":"orders://nothing-here"}`)},
		{"a resource the principal lacks the scope for", req("resources/read", `{"uri":"orders://secret"}`)},
		{"a prompt", req("prompts/get", `{"name":"greet","arguments":{"name":"Ada"}}`)},
		{"a prompt argument that fails validation", req("prompts/get", `{"name":"greet","arguments":{"name":"ada!"}}`)},
		{"an unknown prompt", req("prompts/get", `{"name":"nope","arguments":{}}`)},
		{"a prompt the principal lacks the scope for", req("prompts/get", `{"name":"secret_prompt","arguments":{}}`)},
		{"a second initialize", initialize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := post(t, lean, tt.body, inSession(leanID, nil))
			want := post(t, sdk, tt.body, inSession(sdkID, nil))
			if got.status != want.status {
				t.Fatalf("HTTP %d %s on the lean path, %d %s through the SDK", got.status, got.body, want.status, want.body)
			}
			if (got.msg == nil) != (want.msg == nil) {
				t.Fatalf("lean %s; SDK %s", got.body, want.body)
			}
			if got.msg == nil {
				return
			}
			if (got.msg.Error == nil) != (want.msg.Error == nil) || got.msg.Error != nil && got.msg.Error.Code != want.msg.Error.Code {
				t.Fatalf("lean error %+v; SDK error %+v", got.msg.Error, want.msg.Error)
			}
			if got.msg.Error != nil && !sameErrorData(t, got.body, want.body) {
				t.Errorf("errors differ:\nlean %s\nSDK  %s", got.body, want.body)
			}
			if string(got.msg.ID) != string(want.msg.ID) {
				t.Errorf("lean id %s; SDK id %s", got.msg.ID, want.msg.ID)
			}
			if !sameResult(t, got.msg.Result, want.msg.Result) {
				t.Errorf("results differ:\nlean %s\nSDK  %s", got.msg.Result, want.msg.Result)
			}
		})
	}
}

// TestSessionIsLean checks that a session's calls are answered on the lean
// path (a JSON response, not the SDK's event stream) and that a call that
// needs the SDK still is served, by an SDK session made for it.
func TestSessionIsLean(t *testing.T) {
	srv := newServer(t)
	srv.AddTool(&warden.Tool{Name: "who", Description: "Names the client.", Scope: "orders.read",
		Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			ci := warden.Request(ctx).GetSession().(*mcp.ServerSession).InitializeParams().ClientInfo
			return warden.TextResult(ci.Name + " " + c.ClientName), nil
		}})
	url := serve(t, srv, nil).URL + "/mcp"
	id := openSession(t, url, nil)
	r := post(t, url, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"create_order","arguments":{"sku":"SKU-123","quantity":1}}}`, inSession(id, nil))
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("a lean call answered as %q, want application/json", ct)
	}
	if res := r.toolResult(t); res.IsError {
		t.Fatalf("the call failed: %s", r.body)
	}
	r = post(t, url, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"who","arguments":{}}}`, inSession(id, nil))
	if got := textOf(r.toolResult(t)); got != "t t" {
		t.Errorf("a call the SDK serves saw the client as %q, want %q", got, "t t")
	}
}

// twoInstances returns the MCP endpoints of two servers that share a
// session key (two instances of one server), and of a third with a key of
// its own, each authenticating alice and bob. relays, if given, are the
// instances' session relays.
func twoInstances(t *testing.T, relays ...warden.SessionRelay) (a, b, other string) {
	t.Helper()
	key := []byte("a secret the instances share, 32 bytes or more")
	auth := tokens{
		"alice-token": {ID: "alice", Tenant: "acme", Scopes: []string{"orders.read"}, AuthMethod: "api_key"},
		"bob-token":   {ID: "bob", Tenant: "acme", Scopes: []string{"orders.read"}, AuthMethod: "api_key"},
	}
	n := 0
	start := func(key []byte) string {
		srv := newServer(t)
		srv.AddTool(askTool())
		o := &warden.HTTPOptions{Authenticate: auth, SessionKey: key}
		if n < len(relays) {
			o.SessionRelay = relays[n]
		}
		n++
		return serve(t, srv, o).URL + "/mcp"
	}
	return start(key), start(key), start([]byte("another server's secret, also 32 bytes long"))
}

// askTool asks the client a question (an elicitation round trip, which the
// SDK makes) and answers with what the client said.
func askTool() *warden.Tool {
	return &warden.Tool{Name: "ask", Description: "Asks the user for a colour.", Scope: "orders.read",
		Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			sess := warden.Request(ctx).GetSession().(*mcp.ServerSession)
			res, err := sess.Elicit(ctx, &mcp.ElicitParams{Message: "Which colour?", RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{"colour": map[string]any{"type": "string"}}}})
			if err != nil {
				return nil, err
			}
			return warden.TextResult("you said " + res.Action), nil
		}}
}

// TestSessionSurvivesAHop opens a session on one instance and uses it on
// another, and tries what an attacker holding a session id would.
func TestSessionSurvivesAHop(t *testing.T) {
	a, b, other := twoInstances(t)
	id := openSession(t, a, bearer("alice-token"))
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"create_order","arguments":{"sku":"SKU-123","quantity":1}}}`
	for _, url := range []string{a, b} {
		if res := post(t, url, call, inSession(id, bearer("alice-token"))).toolResult(t); res.IsError {
			t.Fatalf("the session's call on %s failed: %s", url, textOf(res))
		}
	}
	tampered := []byte(id)
	tampered[len(tampered)/2] ^= 1
	for _, tc := range []struct {
		name   string
		url    string
		id     string
		token  string
		status int
	}{
		{"the id presented with another credential, where it was opened", a, id, "bob-token", http.StatusForbidden},
		{"the id presented with another credential, elsewhere", b, id, "bob-token", http.StatusForbidden},
		{"the id at a server with another key", other, id, "alice-token", http.StatusNotFound},
		{"an altered id", b, string(tampered), "alice-token", http.StatusNotFound},
		{"an id that was never issued", b, "w1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "alice-token", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, tc.url, call, inSession(tc.id, bearer(tc.token)))
			if r.status != tc.status || r.msg == nil || r.msg.Error == nil {
				t.Fatalf("HTTP %d %s, want %d and a JSON-RPC error", r.status, r.body, tc.status)
			}
		})
	}
	// A call that needs the SDK is served on the other instance too.
	r := post(t, b, `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"cursor":"bm9wZQ"}}`, inSession(id, bearer("alice-token")))
	if r.status != http.StatusOK || r.msg == nil {
		t.Fatalf("a request the SDK serves, on the other instance: HTTP %d %s", r.status, r.body)
	}
	// A GET stream (server-to-client messages) opens on the other instance.
	ctx, cancel := context.WithCancel(context.Background())
	get, _ := http.NewRequestWithContext(ctx, http.MethodGet, b, nil)
	get.Header.Set("Accept", "text/event-stream")
	inSession(id, bearer("alice-token"))(get)
	resp, err := http.DefaultClient.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("GET on the other instance: HTTP %d %s, want an event stream", resp.StatusCode, ct)
	}
	cancel()
	resp.Body.Close()
	// DELETE ends it where it is sent, and is answered everywhere.
	for _, url := range []string{a, b} {
		req, _ := http.NewRequest(http.MethodDelete, url, nil)
		inSession(id, bearer("alice-token"))(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("DELETE at %s: HTTP %d, want 204", url, resp.StatusCode)
		}
	}
}

// TestSessionInitializeTooLarge refuses an initialize whose client would
// make every request of its session carry kilobytes of capabilities.
func TestSessionInitializeTooLarge(t *testing.T) {
	url := serve(t, newServer(t), nil).URL + "/mcp"
	huge := strings.Replace(initialize, `"capabilities":{}`, `"capabilities":{"experimental":{"x":"`+strings.Repeat("a", 5000)+`"}}`, 1)
	r := post(t, url, huge, nil)
	if r.status != http.StatusBadRequest || r.sessionID != "" || r.msg == nil || r.msg.Error == nil || r.msg.Error.Code != -32602 {
		t.Fatalf("HTTP %d %s (session %q), want 400 with invalid params and no session", r.status, r.body, r.sessionID)
	}
}

// TestSessionAnswerOnAnotherInstance runs a call that asks the client a
// question on one instance, sends the client's answer to another — which
// refuses it at once, rather than leave it unanswered — and then to the
// one that asked, which takes it and finishes the call.
func TestSessionAnswerOnAnotherInstance(t *testing.T) {
	a, b, _ := twoInstances(t)
	id, answer, finish := askOn(t, a)
	start := time.Now()
	elsewhere := post(t, b, answer, inSession(id, bearer("alice-token")))
	if elsewhere.status != http.StatusConflict || elsewhere.msg == nil || elsewhere.msg.Error == nil ||
		!strings.Contains(elsewhere.msg.Error.Message, "another instance") {
		t.Fatalf("the answer sent to another instance: HTTP %d %s, want 409 naming the other instance", elsewhere.status, elsewhere.body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %s: it must not wait", d)
	}
	if here := post(t, a, answer, inSession(id, bearer("alice-token"))); here.status != http.StatusAccepted {
		t.Fatalf("the answer sent to the instance that asked: HTTP %d %s, want 202", here.status, here.body)
	}
	finish()
}

// TestSessionAnswerRelayed sends the answer to another instance, with a
// session relay over Redis: it reaches the instance that asked, and the
// call finishes. Once the call has ended, an answer finds nobody waiting.
func TestSessionAnswerRelayed(t *testing.T) {
	url := os.Getenv("WARDEN_TEST_REDIS_URL")
	if url == "" {
		t.Skip("WARDEN_TEST_REDIS_URL is not set: the session relay needs Redis")
	}
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	prefix := "warden-test-hop-" + rand.Text() + ":"
	var relays []warden.SessionRelay
	for range 2 {
		c := redis.NewClient(o)
		r := relay.New(c, prefix)
		t.Cleanup(func() { r.Close(); c.Close() })
		relays = append(relays, r)
	}
	a, b, _ := twoInstances(t, relays...)
	id, answer, finish := askOn(t, a)
	if r := post(t, b, answer, inSession(id, bearer("alice-token"))); r.status != http.StatusAccepted {
		t.Fatalf("the answer sent to the other instance: HTTP %d %s, want 202 (relayed)", r.status, r.body)
	}
	finish()
	// The waiting instance stops listening as the call ends; Redis hears
	// it within moments.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := post(t, b, answer, inSession(id, bearer("alice-token")))
		if r.status == http.StatusConflict {
			break
		}
		if r.status != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("an answer after the call ended: HTTP %d %s, want 409", r.status, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// askOn opens a session at url whose client can elicit, starts a call of
// the ask tool, and returns the session, the client's answer to the
// question the call asked, and a function that waits for the call's end
// and checks it used the answer.
func askOn(t *testing.T, url string) (id, answer string, finish func()) {
	t.Helper()
	init := strings.Replace(initialize, `"capabilities":{}`, `"capabilities":{"elicitation":{}}`, 1)
	r := post(t, url, init, bearer("alice-token"))
	id = r.sessionID
	if id == "" {
		t.Fatalf("initialize: HTTP %d %s", r.status, r.body)
	}
	post(t, url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, inSession(id, bearer("alice-token")))

	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ask","arguments":{}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	inSession(id, bearer("alice-token"))(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	events := bufio.NewScanner(resp.Body)
	next := func() map[string]any {
		for events.Scan() {
			if d, ok := strings.CutPrefix(events.Text(), "data: "); ok && d != "" {
				var m map[string]any
				if err := json.Unmarshal([]byte(d), &m); err != nil {
					t.Fatalf("event %s: %v", d, err)
				}
				return m
			}
		}
		t.Fatalf("the call's stream ended: %v", events.Err())
		return nil
	}
	ask := next()
	if ask["method"] != "elicitation/create" {
		t.Fatalf("want an elicitation, got %v", ask)
	}
	askID, _ := json.Marshal(ask["id"])
	answer = `{"jsonrpc":"2.0","id":` + string(askID) + `,"result":{"action":"decline"}}`
	return id, answer, func() {
		t.Helper()
		final := next()
		b, _ := json.Marshal(final["result"])
		if !strings.Contains(string(b), "you said decline") {
			t.Errorf("the call ended with %v, want the answer it was given", final)
		}
	}
}

// TestSessionStreamResumes closes a call's event stream in the middle of
// the call (as a server may, SEP-1699): the client resumes it with
// Last-Event-ID and still gets the answer, and nobody but the session's
// owner can resume it.
func TestSessionStreamResumes(t *testing.T) {
	released := make(chan struct{})
	srv := newServer(t)
	srv.AddTool(&warden.Tool{Name: "reconnect", Description: "Closes its stream, then answers.", Scope: "orders.read",
		Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			req := warden.Request(ctx).(*mcp.CallToolRequest)
			req.Extra.CloseSSEStream(mcp.CloseSSEStreamArgs{RetryAfter: 10 * time.Millisecond})
			select {
			case <-released:
			case <-time.After(200 * time.Millisecond):
			}
			return warden.TextResult("answered after the stream closed"), nil
		}})
	auth := tokens{
		"alice-token": {ID: "alice", Tenant: "acme", Scopes: []string{"orders.read"}, AuthMethod: "api_key"},
		"bob-token":   {ID: "bob", Tenant: "acme", Scopes: []string{"orders.read"}, AuthMethod: "api_key"},
	}
	url := serve(t, srv, &warden.HTTPOptions{Authenticate: auth}).URL + "/mcp"

	client := mcp.NewClient(&mcp.Implementation{Name: "resumer", Version: "1"}, nil)
	tr := &mcp.StreamableClientTransport{Endpoint: url, DisableStandaloneSSE: true,
		HTTPClient: &http.Client{Transport: headerTransport{"Authorization": "Bearer alice-token"}}}
	cs, err := client.Connect(t.Context(), tr, &mcp.ClientSessionOptions{ProtocolVersion: legacy})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "reconnect", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("the call whose stream closed: %v, %v", res, err)
	}
	if got := textOf(res); got != "answered after the stream closed" {
		t.Errorf("answer %q", got)
	}

	// Another credential cannot read the session's stream by resuming it.
	get, _ := http.NewRequest(http.MethodGet, url, nil)
	get.Header.Set("Accept", "text/event-stream")
	get.Header.Set("Last-Event-ID", "0_0")
	inSession(cs.ID(), bearer("bob-token"))(get)
	resp, err := http.DefaultClient.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("resuming alice's stream with bob's credential: HTTP %d, want 403", resp.StatusCode)
	}
	close(released)
}

// headerTransport adds fixed headers to every request.
type headerTransport map[string]string

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestSessionStreamResumedElsewhere resumes a session's streams on an
// instance that did not send them: the standing stream starts afresh, a
// call's stream is refused at once rather than left hanging.
func TestSessionStreamResumedElsewhere(t *testing.T) {
	a, b, _ := twoInstances(t)
	id := openSession(t, a, bearer("alice-token"))
	for _, tc := range []struct {
		last   string
		status int
	}{
		{"_3", http.StatusOK},                    // the standing GET stream
		{"STREAMFROMA_2", http.StatusBadRequest}, // a call's stream
	} {
		ctx, cancel := context.WithCancel(t.Context())
		get, _ := http.NewRequestWithContext(ctx, http.MethodGet, b, nil)
		get.Header.Set("Accept", "text/event-stream")
		get.Header.Set("Last-Event-ID", tc.last)
		inSession(id, bearer("alice-token"))(get)
		resp, err := http.DefaultClient.Do(get)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.status {
			t.Errorf("Last-Event-ID %s on another instance: HTTP %d, want %d", tc.last, resp.StatusCode, tc.status)
		}
		cancel()
		resp.Body.Close()
	}
}
