package warden_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/pipeline"
)

// TestLeanPathAnswersAsTheSDK sends the same requests to a server with the
// lean path and to one that serves everything through the SDK, and wants
// the same answer from both: the same HTTP status, the same JSON-RPC
// error code, the same result. Malformed and smuggling requests must be
// refused on the lean path exactly as the SDK refuses them.
func TestLeanPathAnswersAsTheSDK(t *testing.T) {
	lean := serve(t, newServer(t), nil).URL + "/mcp"
	sdk := serve(t, newServer(t), &warden.HTTPOptions{DisableLeanPath: true}).URL + "/mcp"

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
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
	r = post(t, url, list, func(r *http.Request) {
		r.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		r.Header.Set("Mcp-Method", "tools/list")
	})
	if ct := r.header.Get("Content-Type"); ct != "application/json" || r.msg == nil || !strings.Contains(string(r.msg.Result), `"create_order"`) {
		t.Fatalf("Content-Type %q, %s: the list did not take the lean path", ct, r.body)
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
