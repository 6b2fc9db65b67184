//lint:file-ignore SA1019 the conversions of every input request kind the protocol still carries are tested here.

package warden

import (
	"encoding/json"
	"log/slog"
	"reflect"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/pipeline"
)

// The pipeline's result types must encode to the MCP wire shape, and the
// SDK boundary must hand the SDK the same result: for each result, Warden's
// own encoding and the SDK's encoding of the converted result are the same
// JSON.
func TestResultWireShape(t *testing.T) {
	size := int64(42)
	ann := &pipeline.Annotations{Audience: []string{"user"}, Priority: 0.5, LastModified: "2026-01-02T03:04:05Z"}
	tools := []struct {
		name string
		res  *pipeline.ToolResult
	}{
		{"text", &pipeline.ToolResult{Content: []pipeline.Content{pipeline.Text("hello")}}},
		{"empty text", &pipeline.ToolResult{Content: []pipeline.Content{pipeline.Text("")}}},
		{"structured, meta, error", &pipeline.ToolResult{
			Meta:              map[string]any{"io.wardenmcp/trace_id": "t1"},
			Content:           []pipeline.Content{pipeline.Text(`{"rows":[]}`)},
			StructuredContent: map[string]any{"rows": []any{}},
			IsError:           true,
		}},
		{"structured as raw JSON", &pipeline.ToolResult{
			Content:           []pipeline.Content{pipeline.Text("x")},
			StructuredContent: json.RawMessage(`{"a":[1,2,{"b":null}]}`),
		}},
		{"every kind of block", &pipeline.ToolResult{Content: []pipeline.Content{
			{Type: "text", Text: "t", Meta: map[string]any{"k": "v"}, Annotations: ann},
			{Type: "image", Data: []byte{1, 2, 3}, MIMEType: "image/png"},
			{Type: "audio", MIMEType: "audio/wav"},
			{Type: "resource_link", URI: "file:///a", Name: "a", Title: "A", Description: "the a", MIMEType: "text/plain", Size: &size},
			{Type: "resource", Resource: &pipeline.ResourceContents{URI: "test://r", MIMEType: "text/plain", Text: "embedded"}},
			{Type: "resource", Resource: &pipeline.ResourceContents{URI: "test://b", Blob: []byte{0xff, 0}, Meta: map[string]any{"m": 1.0}}},
		}}},
		{"raw block", &pipeline.ToolResult{Content: []pipeline.Content{
			{Raw: json.RawMessage(`{"type":"text","text":"from upstream","_meta":{"u":true}}`)},
			{Raw: json.RawMessage(`{"type":"resource_link","uri":"file:///x","name":"x","icons":[{"src":"https://example.com/x.png"}]}`)},
		}}},
		{"input requests", &pipeline.ToolResult{
			InputRequests: map[string]*pipeline.InputRequest{
				"ask": {Method: "elicitation/create", Params: map[string]any{
					"mode": "form", "message": "Name?",
					"requestedSchema": map[string]any{"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}},
				}},
				"roots": {Method: "roots/list", Params: map[string]any{}},
			},
			RequestState: "opaque",
		}},
	}
	for _, tt := range tools {
		t.Run("tool/"+tt.name, func(t *testing.T) {
			sdk, err := toolResult(tt.res)
			if err != nil {
				t.Fatal(err)
			}
			var ignore []string
			if tt.res.InputRequests != nil {
				// The SDK writes null content where a result asks for input.
				ignore = []string{"content"}
			}
			sameJSON(t, tt.res, sdk, ignore...)
		})
	}

	t.Run("resource", func(t *testing.T) {
		res := &pipeline.ResourceResult{
			Meta: map[string]any{"k": "v"},
			Contents: []*pipeline.ResourceContents{
				{URI: "test://t", MIMEType: "text/plain", Text: "text"},
				{URI: "test://b", MIMEType: "image/png", Blob: []byte{1, 2}},
			},
		}
		sdk, err := resourceResult(res)
		if err != nil {
			t.Fatal(err)
		}
		// The SDK adds its cache hints, which it sets itself as it answers.
		sameJSON(t, res, sdk, "ttlMs", "cacheScope")
	})
	t.Run("prompt", func(t *testing.T) {
		res := &pipeline.PromptResult{
			Description: "d",
			Messages: []*pipeline.PromptMessage{
				{Role: "user", Content: pipeline.Text("hi")},
				{Role: "assistant", Content: pipeline.Content{Type: "image", Data: []byte{9}, MIMEType: "image/png"}},
			},
		}
		sdk, err := promptResult(res)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, res, sdk)
	})
}

// A tool result without content is an empty array on the wire, never null.
func TestToolResultContentNeverNull(t *testing.T) {
	b, err := json.Marshal(&pipeline.ToolResult{})
	if err != nil || string(b) != `{"content":[]}` {
		t.Fatalf("got %s, %v; want {\"content\":[]}", b, err)
	}
}

// A stored result decodes back to the same blocks: this is how the cache
// and idempotency stages replay one.
func TestToolResultRoundTrip(t *testing.T) {
	size := int64(7)
	in := &pipeline.ToolResult{
		Meta: map[string]any{"k": "v"},
		Content: []pipeline.Content{
			pipeline.Text("t"),
			{Type: "image", Data: []byte{1, 2, 3}, MIMEType: "image/png", Annotations: &pipeline.Annotations{Audience: []string{"assistant"}}},
			{Type: "resource_link", URI: "file:///a", Name: "a", Size: &size},
			{Type: "resource", Resource: &pipeline.ResourceContents{URI: "test://r", Blob: []byte("blob")}},
		},
		StructuredContent: map[string]any{"n": 1.0},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out pipeline.ToolResult
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, &out) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", &out, in)
	}
}

func TestBoundaryRefusesUnknownShapes(t *testing.T) {
	for name, res := range map[string]*pipeline.ToolResult{
		"unknown block type":   {Content: []pipeline.Content{{Type: "hologram"}}},
		"resource without one": {Content: []pipeline.Content{{Type: "resource"}}},
		"raw block not JSON":   {Content: []pipeline.Content{{Raw: json.RawMessage(`{"type":`)}}},
		"unknown input method": {InputRequests: map[string]*pipeline.InputRequest{"x": {Method: "tools/call"}}},
	} {
		if _, err := toolResult(res); err == nil {
			t.Errorf("%s: converted without error", name)
		}
	}
}

// The client's answers reach the call as the JSON of each answer.
func TestResponses(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	if got := responses(log, nil); got != nil {
		t.Fatalf("no responses: %v; want nil", got)
	}
	got := responses(log, mcp.InputResponseMap{
		"ask":   &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "Ada"}},
		"roots": &mcp.ListRootsResult{Roots: []*mcp.Root{{URI: "file:///home"}}},
	})
	want := map[string]string{
		"ask":   `{"action":"accept","content":{"name":"Ada"}}`,
		"roots": `{"roots":[{"uri":"file:///home"}]}`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d responses, want %d", len(got), len(want))
	}
	for id, w := range want {
		if string(got[id]) != w {
			t.Errorf("response %s = %s, want %s", id, got[id], w)
		}
	}
}

// sameJSON fails unless ours and sdk encode to the same JSON value, ignoring
// the named top-level keys.
func sameJSON(t *testing.T, ours, sdk any, ignore ...string) {
	t.Helper()
	decode := func(v any) map[string]any {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b := decode(ours), decode(sdk)
	for _, k := range ignore {
		delete(a, k)
		delete(b, k)
	}
	if !reflect.DeepEqual(a, b) {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		t.Fatalf("encodings differ:\nwarden %s\n   sdk %s", ja, jb)
	}
}
