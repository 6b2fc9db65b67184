package warden_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/pipeline"
)

// TestLeanPathAnswersAsTheSDK sends the same requests to a server with the
// lean path and to one that serves everything through the SDK, and wants
// the same answer from both: the same HTTP status, the same JSON-RPC
// error code, the same result. Malformed and smuggling requests must be
// refused on the lean path exactly as the SDK refuses them.
func TestLeanPathAnswersAsTheSDK(t *testing.T) {
	lean := serve(t, withCatalog(newServer(t)), nil).URL + "/mcp"
	sdk := serve(t, withCatalog(newServer(t)), &warden.HTTPOptions{DisableLeanPath: true}).URL + "/mcp"

	call, headers := statelessCall("create_order", validOrder)
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"raw-http","version":"1"}}`
	withHeader := func(k, v string) func(*http.Request) {
		return func(r *http.Request) { headers(r); r.Header.Set(k, v) }
	}
	listHeaders := func(r *http.Request) {
		r.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		r.Header.Set("Mcp-Method", "tools/list")
	}
	without := func(k string) func(*http.Request) {
		return func(r *http.Request) { headers(r); r.Header.Del(k) }
	}
	tests := []struct {
		name string
		body string
		edit func(*http.Request)
	}{
		{"a valid call", call, headers},
		{"a string id", strings.Replace(call, `"id":1`, `"id":"call-7"`, 1), headers},
		{"invalid arguments", strings.Replace(call, `"quantity":1`, `"quantity":99`, 1), headers},
		{"an unknown argument", strings.Replace(call, `"quantity":1`, `"quantity":1,"admin":true`, 1), headers},
		{"a panicking tool", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"explode","arguments":{},` + meta + `}}`,
			withHeader("Mcp-Name", "explode")},
		{"a tool past its deadline", `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"wait_forever","arguments":{},` + meta + `}}`,
			withHeader("Mcp-Name", "wait_forever")},
		{"an unknown tool", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"nope","arguments":{},` + meta + `}}`,
			withHeader("Mcp-Name", "nope")},
		{"Mcp-Name disagrees with the body", call, withHeader("Mcp-Name", "explode")},
		{"Mcp-Method disagrees with the body", call, withHeader("Mcp-Method", "tools/list")},
		{"no Mcp-Method", call, without("Mcp-Method")},
		{"no Mcp-Name", call, without("Mcp-Name")},
		{"no _meta protocol version", strings.Replace(call, `,"io.modelcontextprotocol/protocolVersion":"2026-07-28"`, "", 1), headers},
		{"_meta names another version", strings.Replace(call, `"io.modelcontextprotocol/protocolVersion":"2026-07-28"`, `"io.modelcontextprotocol/protocolVersion":"2025-11-25"`, 1), headers},
		{"an unsupported version", strings.ReplaceAll(call, "2026-07-28", "2099-01-01"), withHeader("Mcp-Protocol-Version", "2099-01-01")},
		{"a key in other case smuggles a name", strings.Replace(call, `"name":"create_order"`, `"name":"create_order","Name":"explode"`, 1), headers},
		{"a method key in other case", strings.Replace(call, `"method":"tools/call"`, `"Method":"tools/call"`, 1), headers},
		{"no jsonrpc version", strings.Replace(call, `"jsonrpc":"2.0",`, "", 1), headers},
		{"a batch", "[" + call + "]", headers},
		{"a notification (no id)", strings.Replace(call, `"id":1,`, "", 1), headers},
		{"a null id", strings.Replace(call, `"id":1`, `"id":null`, 1), headers},
		{"arguments that are not an object", strings.Replace(call, `"arguments":{"quantity":1,"sku":"SKU-123"}`, `"arguments":[1]`, 1), headers},
		{"invalid UTF-8 in a string", strings.Replace(call, `SKU-123`, "SKU-\xff23", 1), headers},
		{"a NUL escaped in a string", strings.Replace(call, `SKU-123`, `SKU-\u00003`, 1), headers},
		{"nesting past the limit", strings.Replace(call, `"arguments":{`, `"arguments":{"deep":`+strings.Repeat("[", 1001)+strings.Repeat("]", 1001)+`,`, 1), headers},
		{"an Mcp-Param header", call, withHeader("Mcp-Param-Sku", "SKU-999")},
		{"a session id on a stateless request", call, withHeader("Mcp-Session-Id", "abc")},
		{"a client that accepts only event streams", call, withHeader("Accept", "text/event-stream")},
		{"trailing data after the message", call + `{"x":1}`, headers},
		{"a tool list", `{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{` + meta + `}}`, listHeaders},
		{"a tool list with a cursor", `{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{"cursor":"bm9wZQ",` + meta + `}}`, listHeaders},
		{"a tool list naming a tool", `{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{` + meta + `}}`, func(r *http.Request) { listHeaders(r); r.Header.Set("Mcp-Name", "explode") }},
		{"a tool list without its method header", `{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{` + meta + `}}`, func(r *http.Request) { listHeaders(r); r.Header.Del("Mcp-Method") }},
	}
	for _, m := range []string{"resources/list", "resources/templates/list", "prompts/list", "server/discover"} {
		list, h := rpc(m, "", `{`+meta+`}`)
		tests = append(tests, []struct {
			name string
			body string
			edit func(*http.Request)
		}{
			{m, list, h},
			{m + " with a cursor", strings.Replace(list, `"params":{`, `"params":{"cursor":"bm9wZQ",`, 1), h},
			{m + " with an Mcp-Name", list, func(r *http.Request) { h(r); r.Header.Set("Mcp-Name", "greet") }},
			{m + " with Mcp-Method disagreeing", list, func(r *http.Request) { h(r); r.Header.Set("Mcp-Method", "tools/list") }},
			{m + " with a string id", strings.Replace(list, `"id":1`, `"id":"l-1"`, 1), h},
			{m + " naming another version in _meta", strings.Replace(list, `protocolVersion":"2026-07-28"`, `protocolVersion":"2025-11-25"`, 1), h},
		}...)
	}
	read := func(uri string) (string, func(*http.Request)) {
		return rpc("resources/read", uri, `{"uri":"`+uri+`",`+meta+`}`)
	}
	get := func(name, args string) (string, func(*http.Request)) {
		return rpc("prompts/get", name, `{"name":"`+name+`","arguments":`+args+`,`+meta+`}`)
	}
	add := func(name, body string, edit func(*http.Request)) {
		tests = append(tests, struct {
			name string
			body string
			edit func(*http.Request)
		}{name, body, edit})
	}
	for _, tc := range []struct{ name, uri string }{
		{"a resource read", "orders://catalog"},
		{"a template read", "orders://order/O-1234"},
		{"a template variable that fails validation", "orders://order/nope"},
		{"a read the handler refuses as not found", "orders://missing/O-1234"},
		{"an unknown URI", "orders://nothing-here"},
		{"a resource the principal lacks the scope for", "orders://secret"},
	} {
		b, h := read(tc.uri)
		add(tc.name, b, h)
	}
	b, h := read("orders://catalog")
	for _, edit := range []struct{ name, from, to string }{
		{"no client capabilities", `"io.modelcontextprotocol/clientCapabilities":{},`, ``},
		{"client capabilities that are not an object", `"io.modelcontextprotocol/clientCapabilities":{}`, `"io.modelcontextprotocol/clientCapabilities":"all"`},
		{"client capabilities of the wrong shape", `"io.modelcontextprotocol/clientCapabilities":{}`, `"io.modelcontextprotocol/clientCapabilities":{"elicitation":true}`},
		{"client info that is not an object", `"io.modelcontextprotocol/clientInfo":{"name":"raw-http","version":"1"}`, `"io.modelcontextprotocol/clientInfo":7`},
	} {
		add("a call with "+edit.name, strings.Replace(call, edit.from, edit.to, 1), headers)
		add("a read with "+edit.name, strings.Replace(b, edit.from, edit.to, 1), h)
		lb, lh := rpc("prompts/list", "", `{`+strings.Replace(meta, edit.from, edit.to, 1)+`}`)
		add("a prompt list with "+edit.name, lb, lh)
	}
	add("a read whose Mcp-Name disagrees with the URI", b, func(r *http.Request) { h(r); r.Header.Set("Mcp-Name", "orders://secret") })
	add("a read without Mcp-Name", b, func(r *http.Request) { h(r); r.Header.Del("Mcp-Name") })
	add("a read with the URI key in other case", strings.Replace(b, `"uri":`, `"URI":`, 1), h)
	add("a read with a session id", b, func(r *http.Request) { h(r); r.Header.Set("Mcp-Session-Id", "abc") })
	add("a read without its _meta version", strings.Replace(b, `"io.modelcontextprotocol/protocolVersion":"2026-07-28",`, "", 1), h)
	add("a read with a null id", strings.Replace(b, `"id":1`, `"id":null`, 1), h)
	for _, tc := range []struct{ name, prompt, args string }{
		{"a prompt", "greet", `{"name":"Ada"}`},
		{"a prompt without arguments", "greet", `null`},
		{"a prompt argument that fails validation", "greet", `{"name":"ada!"}`},
		{"an unknown prompt argument", "greet", `{"name":"Ada","role":"admin"}`},
		{"a prompt argument that is not a string", "greet", `{"name":1}`},
		{"prompt arguments that are not an object", "greet", `["Ada"]`},
		{"an unknown prompt", "nope", `{}`},
		{"a prompt the principal lacks the scope for", "secret_prompt", `{}`},
		{"a prompt that asks for input", "ask", `{}`},
	} {
		b, h := get(tc.prompt, tc.args)
		add(tc.name, b, h)
	}
	b, h = get("ask", `{}`)
	add("a prompt given its input", strings.Replace(b, `"arguments":{}`, `"arguments":{},"requestState":"round-1","inputResponses":{"name":{"action":"accept","content":{"name":"Ada"}}}`, 1), h)
	b, h = get("greet", `{"name":"Ada"}`)
	add("a prompt whose Mcp-Name disagrees", b, func(r *http.Request) { h(r); r.Header.Set("Mcp-Name", "ask") })
	add("a prompt without Mcp-Name", b, func(r *http.Request) { h(r); r.Header.Del("Mcp-Name") })
	add("a prompt with a name key in other case", strings.Replace(b, `"name":"greet"`, `"name":"greet","NAME":"ask"`, 1), h)
	add("a prompt with an unsupported version", strings.ReplaceAll(b, "2026-07-28", "2099-01-01"), func(r *http.Request) { h(r); r.Header.Set("Mcp-Protocol-Version", "2099-01-01") })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := post(t, lean, tt.body, tt.edit)
			want := post(t, sdk, tt.body, tt.edit)
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

// sameResult compares two results as JSON values, leaving out the trace
// id, which is each call's own.
func sameResult(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb map[string]any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	for _, v := range []map[string]any{va, vb} {
		if m, ok := v["_meta"].(map[string]any); ok {
			delete(m, "io.wardenmcp/trace_id")
		}
	}
	return reflect.DeepEqual(va, vb)
}

// sameErrorData compares the data of two JSON-RPC errors, which carry
// Warden's refusal, as JSON values, leaving out the trace id.
func sameErrorData(t *testing.T, a, b []byte) bool {
	t.Helper()
	var ea, eb struct {
		Error struct {
			Data map[string]any `json:"data"`
		} `json:"error"`
	}
	if json.Unmarshal(sseData(a), &ea) != nil || json.Unmarshal(sseData(b), &eb) != nil {
		return false
	}
	delete(ea.Error.Data, "trace_id")
	delete(eb.Error.Data, "trace_id")
	return reflect.DeepEqual(ea.Error.Data, eb.Error.Data)
}

// sseData returns the JSON of a response body: the body, or the data of
// its one event with data if it is an event stream.
func sseData(body []byte) []byte {
	for _, line := range strings.Split(string(body), "\n") {
		if data, ok := strings.CutPrefix(line, "data: "); ok && data != "" {
			return []byte(data)
		}
	}
	return body
}

// rpc returns a stateless 2026-07-28 request of method with params, and
// the headers that go with it (Mcp-Name set to name, if not empty).
func rpc(method, name, params string) (string, func(*http.Request)) {
	body := `{"jsonrpc":"2.0","id":1,"method":"` + method + `","params":` + params + `}`
	return body, func(r *http.Request) {
		r.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		r.Header.Set("Mcp-Method", method)
		if name != "" {
			r.Header.Set("Mcp-Name", name)
		}
	}
}

// withCatalog adds to srv resources, templates and prompts, some of them
// out of the test principal's scope, for the lean path to serve.
func withCatalog(srv *warden.Server) *warden.Server {
	read := func(text string) *pipeline.Result {
		return &pipeline.Result{Resource: &pipeline.ResourceResult{Contents: []*pipeline.ResourceContents{{Text: text}}}}
	}
	srv.AddResource(&warden.Resource{URI: "orders://catalog", Name: "catalog", MIMEType: "text/plain", Scope: "orders.read", Lean: true,
		Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return read("SKU-123"), nil }})
	srv.AddResource(&warden.Resource{URI: "orders://about", Name: "about", Scope: "orders.read", Lean: true,
		Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return read("orders"), nil }})
	srv.AddResource(&warden.Resource{URI: "orders://secret", Name: "secret", Scope: "orders.admin", Lean: true,
		Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return read("secret"), nil }})
	srv.AddResourceTemplate(&warden.ResourceTemplate{URITemplate: "orders://order/{id}", Name: "order", MIMEType: "application/json", Scope: "orders.read", Lean: true,
		Input: &jsonschema.Schema{Type: "object", Required: []string{"id"}, Properties: map[string]*jsonschema.Schema{
			"id": {Type: "string", Pattern: `^O-[0-9]{4}$`},
		}},
		Handler: func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			return read(`{"id":"` + c.Args["id"].(string) + `"}`), nil
		}})
	srv.AddResourceTemplate(&warden.ResourceTemplate{URITemplate: "orders://missing/{id}", Name: "missing", Scope: "orders.read", Lean: true,
		Handler: func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			return nil, pipeline.Errorf(pipeline.NotFound, "list the orders", "there is no order %s", c.Args["id"])
		}})
	srv.AddResourceTemplate(&warden.ResourceTemplate{URITemplate: "admin://{id}", Name: "admin", Scope: "orders.admin", Lean: true,
		Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return read("admin"), nil }})
	srv.AddPrompt(&warden.Prompt{Name: "greet", Description: "Greets someone.", Scope: "orders.read", Lean: true,
		Input: &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{
			"name": {Type: "string", Pattern: `^[A-Z][a-z]+$`, Description: "Who to greet."},
		}},
		Handler: func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			name, _ := c.Args["name"].(string)
			return &pipeline.Result{Prompt: &pipeline.PromptResult{Description: "A greeting.", Messages: []*pipeline.PromptMessage{
				{Role: "user", Content: pipeline.Text("Say hello to " + name + ".")},
			}}}, nil
		}})
	srv.AddPrompt(&warden.Prompt{Name: "ask", Scope: "orders.read", Lean: true,
		Handler: func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			if answer, ok := c.Responses["name"]; ok && c.State == "round-1" {
				return &pipeline.Result{Prompt: &pipeline.PromptResult{Messages: []*pipeline.PromptMessage{
					{Role: "user", Content: pipeline.Text("The answer: " + string(answer))},
				}}}, nil
			}
			return &pipeline.Result{Prompt: &pipeline.PromptResult{
				InputRequests: map[string]*pipeline.InputRequest{"name": {Method: "elicitation/create", Params: map[string]any{
					"message": "Your name?", "requestedSchema": map[string]any{"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}},
				}}},
				RequestState: "round-1",
			}}, nil
		}})
	srv.AddPrompt(&warden.Prompt{Name: "secret_prompt", Scope: "orders.admin", Lean: true,
		Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
			return &pipeline.Result{Prompt: &pipeline.PromptResult{Messages: []*pipeline.PromptMessage{{Role: "user", Content: pipeline.Text("secret")}}}}, nil
		}})
	return srv
}

// TestLeanPathIsTaken checks that a valid stateless call is answered by
// the lean path (a JSON response), not handed to the SDK (an event
// stream), so that the comparison above compares two paths.
func TestLeanPathIsTaken(t *testing.T) {
	url := serve(t, newServer(t), nil).URL + "/mcp"
	body, headers := statelessCall("create_order", validOrder)
	r := post(t, url, body, headers)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q: the call did not take the lean path", ct)
	}
	if res := r.toolResult(t); res.IsError {
		t.Fatalf("the call failed: %+v", res.StructuredContent)
	}
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	r = post(t, url, list, func(r *http.Request) {
		r.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		r.Header.Set("Mcp-Method", "tools/list")
	})
	if ct := r.header.Get("Content-Type"); ct != "application/json" || r.msg == nil || !strings.Contains(string(r.msg.Result), `"create_order"`) {
		t.Fatalf("Content-Type %q, %s: the list did not take the lean path", ct, r.body)
	}
	srv := withCatalog(newServer(t))
	srv.AddResource(&warden.Resource{URI: "orders://protocol", Name: "protocol", Scope: "orders.read",
		Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
			return &pipeline.Result{Resource: &pipeline.ResourceResult{Contents: []*pipeline.ResourceContents{{Text: "via the SDK"}}}}, nil
		}})
	url = serve(t, srv, nil).URL + "/mcp"
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}`
	for _, tc := range []struct {
		method, name, params, want string
	}{
		{"resources/list", "", `{` + meta + `}`, `"orders://catalog"`},
		{"resources/templates/list", "", `{` + meta + `}`, `"orders://order/{id}"`},
		{"prompts/list", "", `{` + meta + `}`, `"greet"`},
		{"server/discover", "", `{` + meta + `}`, `"supportedVersions"`},
		{"resources/read", "orders://catalog", `{"uri":"orders://catalog",` + meta + `}`, `"SKU-123"`},
		{"resources/read", "orders://order/O-1234", `{"uri":"orders://order/O-1234",` + meta + `}`, `O-1234`},
		{"prompts/get", "greet", `{"name":"greet","arguments":{"name":"Ada"},` + meta + `}`, `Say hello to Ada.`},
		{"prompts/get", "ask", `{"name":"ask","requestState":"round-1","inputResponses":{"name":{"action":"accept"}},` + meta + `}`, `The answer: {\"action\":\"accept\"}`},
	} {
		body, edit := rpc(tc.method, tc.name, tc.params)
		r := post(t, url, body, edit)
		if ct := r.header.Get("Content-Type"); ct != "application/json" || r.msg == nil || !strings.Contains(string(r.msg.Result), tc.want) {
			t.Errorf("%s %s: Content-Type %q, %s: it did not take the lean path", tc.method, tc.name, ct, r.body)
		}
	}
	// A resource whose handler may use the protocol (no Lean) stays the SDK's.
	body, edit := rpc("resources/read", "orders://protocol", `{"uri":"orders://protocol",`+meta+`}`)
	if r := post(t, url, body, edit); r.header.Get("Content-Type") != "text/event-stream" || r.msg == nil || !strings.Contains(string(r.msg.Result), "via the SDK") {
		t.Errorf("Content-Type %q, %s: a resource without Lean did not go to the SDK", r.header.Get("Content-Type"), r.body)
	}
}

// TestLeanPathLeavesMirroredHeadersToTheSDK: a tool whose arguments are
// mirrored in Mcp-Param-* headers (x-mcp-header) is checked by the SDK,
// which refuses a call whose headers do not mirror them; the lean path
// must not serve such a call without that check.
func TestLeanPathLeavesMirroredHeadersToTheSDK(t *testing.T) {
	srv := newServer(t)
	srv.AddTool(&warden.Tool{
		Name: "get_weather", Description: "Weather of a region.", Scope: "orders.read", Lean: true,
		InputSchema: &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{
			"region": {Type: "string", Extra: map[string]any{"x-mcp-header": "Region"}},
		}},
		Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
			return warden.TextResult("sunny"), nil
		},
	})
	lean := serve(t, srv, nil).URL + "/mcp"
	sdk := serve(t, srv, &warden.HTTPOptions{DisableLeanPath: true}).URL + "/mcp"
	body, headers := statelessCall("get_weather", map[string]any{"region": "north"})
	got, want := post(t, lean, body, headers), post(t, sdk, body, headers)
	if got.status != want.status || (got.msg == nil) != (want.msg == nil) || got.msg != nil && (got.msg.Error == nil) != (want.msg.Error == nil) {
		t.Fatalf("lean HTTP %d %s; SDK HTTP %d %s", got.status, got.body, want.status, want.body)
	}
	if want.msg == nil || want.msg.Error == nil {
		t.Fatalf("the SDK served a call whose header does not mirror its argument: %s", want.body)
	}
}

// TestLeanPathInputRequestsAsTheSDK: an input_required result carries its
// input requests in the protocol's own encoding on both paths (a handler's
// params with empty optional fields must not reach the client as such).
func TestLeanPathInputRequestsAsTheSDK(t *testing.T) {
	type elicit struct {
		Mode            string         `json:"mode"`
		Message         string         `json:"message"`
		RequestedSchema map[string]any `json:"requestedSchema"`
	}
	srv := newServer(t)
	srv.AddTool(&warden.Tool{
		Name: "get_name", Description: "Asks for a name.", Scope: "orders.read", Lean: true,
		Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
			return &pipeline.Result{Tool: &pipeline.ToolResult{
				InputRequests: map[string]*pipeline.InputRequest{"name": {Method: "elicitation/create", Params: elicit{
					Message: "What is your name?", RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}},
				}}},
				RequestState: "round-1",
			}}, nil
		},
	})
	lean := serve(t, srv, nil).URL + "/mcp"
	sdk := serve(t, srv, &warden.HTTPOptions{DisableLeanPath: true}).URL + "/mcp"
	body, headers := statelessCall("get_name", map[string]any{})
	got, want := post(t, lean, body, headers), post(t, sdk, body, headers)
	if got.msg == nil || want.msg == nil || got.msg.Result == nil {
		t.Fatalf("lean %s; SDK %s", got.body, want.body)
	}
	var g, w struct {
		InputRequests map[string]any `json:"inputRequests"`
		RequestState  string         `json:"requestState"`
		ResultType    string         `json:"resultType"`
	}
	json.Unmarshal(got.msg.Result, &g)
	json.Unmarshal(want.msg.Result, &w)
	if !reflect.DeepEqual(g, w) || g.ResultType != "input_required" {
		t.Errorf("lean %+v\nSDK  %+v", g, w)
	}
	if strings.Contains(string(got.msg.Result), `"mode":""`) {
		t.Errorf("the lean path sent the handler's empty mode: %s", got.msg.Result)
	}
}

// TestLeanDiscoverAsTheSDK: server/discover answers on the lean path as
// the SDK does whatever is registered and however the server is set up,
// or leaves the answer to the SDK.
func TestLeanDiscoverAsTheSDK(t *testing.T) {
	body, edit := rpc("server/discover", "", `{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}`)
	for _, tt := range []struct {
		name string
		srv  func() *warden.Server
	}{
		{"tools only", func() *warden.Server { return newServer(t) }},
		{"tools, resources and prompts", func() *warden.Server { return withCatalog(newServer(t)) }},
		{"instructions", func() *warden.Server {
			return warden.New(&mcp.Implementation{Name: "i", Version: "1"}, &warden.Options{LocalPrincipal: reader, Instructions: "Ask for orders."})
		}},
		{"capabilities of its own", func() *warden.Server {
			srv := warden.New(&mcp.Implementation{Name: "o", Version: "1"}, &warden.Options{LocalPrincipal: reader, MCP: &mcp.ServerOptions{
				Capabilities: &mcp.ServerCapabilities{Prompts: &mcp.PromptCapabilities{}, Extensions: map[string]any{"io.example/x": map[string]any{}}},
			}})
			return withCatalog(srv)
		}},
		{"completions", func() *warden.Server {
			return warden.New(&mcp.Implementation{Name: "c", Version: "1"}, &warden.Options{LocalPrincipal: reader, MCP: &mcp.ServerOptions{
				CompletionHandler: func(context.Context, *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
					return &mcp.CompleteResult{}, nil
				},
			}})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := post(t, serve(t, tt.srv(), nil).URL+"/mcp", body, edit)
			want := post(t, serve(t, tt.srv(), &warden.HTTPOptions{DisableLeanPath: true}).URL+"/mcp", body, edit)
			if got.status != want.status || got.msg == nil || want.msg == nil || !sameResult(t, got.msg.Result, want.msg.Result) {
				t.Errorf("lean HTTP %d %s\nSDK HTTP %d %s", got.status, got.body, want.status, want.body)
			}
		})
	}
}
