package warden

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"

	"github.com/wardenmcp/warden/internal/jsonenc"
	"github.com/wardenmcp/warden/pipeline"
)

// reference encodes r as the lean path did before results were appended
// by hand: encoding/json, through the response's encoder.
func reference(t *testing.T, r *leanResult) ([]byte, bool) {
	t.Helper()
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(r); err != nil {
		return nil, false
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), true
}

// checkWire checks that a result appended by hand is byte for byte what
// encoding/json writes, stamped and not, and that what encoding/json
// refuses is not appended.
func checkWire(t *testing.T, tr *pipeline.ToolResult) {
	t.Helper()
	for _, r := range []*leanResult{
		{tool: tr},
		{tool: tr, serverInfo: json.RawMessage(`{"name":"warden-test","version":"1.0.0"}`), resultType: "complete"},
		{tool: tr, serverInfo: json.RawMessage(`{"name":"w"}`), resultType: "input_required", inputRequests: json.RawMessage(`{"a":{"method":"roots/list"}}`)},
	} {
		want, wantOK := reference(t, r)
		got, ok := r.appendJSON(nil)
		if ok != wantOK || ok && !bytes.Equal(got, want) {
			t.Errorf("appended (ok %v):\n%s\nencoding/json (ok %v):\n%s", ok, got, wantOK, want)
		}
	}
}

func TestAppendToolResult(t *testing.T) {
	size := int64(42)
	for _, tr := range []*pipeline.ToolResult{
		{Content: []pipeline.Content{pipeline.Text("hello")}},
		{},
		{Content: []pipeline.Content{pipeline.Text("<b>&\"quoted\"\\ \x00\x1f\b\f\n\r\t\x7f \u2028\u2029 é 😀 \xff\xfe bad")}},
		{Content: []pipeline.Content{pipeline.Text("a"), pipeline.Text("b")}, IsError: true, RequestState: "st<>"},
		{
			Meta: map[string]any{"z": 1, "a": "x", "io.wardenmcp/trace_id": "abc", "m": map[string]any{"k": []any{1.5, true, nil}}},
			Content: []pipeline.Content{
				{Type: "text", Text: "t", Meta: map[string]any{"k": "v"}},
				{Type: "text", Text: "ann", Annotations: &pipeline.Annotations{Audience: []string{"user"}, Priority: 0.5}},
				{Type: "image", MIMEType: "image/png", Data: []byte{1, 2, 3}},
				{Type: "audio", MIMEType: "audio/wav"},
				{Type: "resource_link", URI: "file:///x", Name: "x", Size: &size},
				{Type: "resource", Resource: &pipeline.ResourceContents{URI: "file:///y", Text: "y"}},
				{Raw: json.RawMessage(`{ "type" : "text", "text" : "<raw>" }`)},
			},
		},
		{Meta: map[string]any{metaServerInfo: map[string]any{"name": "own"}}, Content: []pipeline.Content{pipeline.Text("x")}},
		{Content: []pipeline.Content{pipeline.Text("x")}, StructuredContent: map[string]any{
			"floats": []any{0.0, math.Copysign(0, -1), 1.0, 1e20, 1e21, 123456789.125, 1e-6, 1e-7, -2.5e-9, math.MaxFloat64, math.SmallestNonzeroFloat64},
			"ints":   []any{0, -1, int64(math.MaxInt64)},
			"nested": map[string]any{"b": false, "nil": nil, "empty": map[string]any{}, "list": []any{}, "nilList": []any(nil), "nilMap": map[string]any(nil)},
			"<key>":  "&",
		}},
		{Content: []pipeline.Content{pipeline.Text("x")}, StructuredContent: &pipeline.Error{Code: pipeline.RateLimited, Message: "slow <down>", Suggestion: "wait", RetryAfter: 3, ApprovalID: "ap-1"}},
		{Content: []pipeline.Content{pipeline.Text("x")}, StructuredContent: &pipeline.Error{Code: pipeline.Internal, Message: "m"}},
		{Content: []pipeline.Content{pipeline.Text("x")}, StructuredContent: (*pipeline.Error)(nil)},
		{Content: []pipeline.Content{pipeline.Text("x")}, StructuredContent: json.RawMessage(` { "a" : "<b>" } `)},
		{Content: []pipeline.Content{pipeline.Text("x")}, StructuredContent: struct {
			A string `json:"a"`
		}{"<"}},
		{Content: []pipeline.Content{pipeline.Text("x")}, StructuredContent: map[string]any{"nan": math.NaN()}},
		{Content: []pipeline.Content{pipeline.Text("x")}, StructuredContent: []any{math.Inf(1)}},
		{Content: []pipeline.Content{pipeline.Text("x")}, StructuredContent: map[string]any{"ch": make(chan int)}},
		{Content: []pipeline.Content{{Type: "text", Text: "x", Meta: map[string]any{"f": math.Inf(-1)}}}},
		{Content: []pipeline.Content{pipeline.Text("x")}, InputRequests: map[string]*pipeline.InputRequest{"q": {Method: "roots/list"}}},
	} {
		checkWire(t, tr)
	}
}

// FuzzAppendString checks the string escaping against encoding/json's.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "<>&\"\\", "\x00\x01\x1f\x7f", "\u2028\u2029", "\xff", "é😀", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := jsonenc.AppendString(nil, s, true); !bytes.Equal(got, want) {
			t.Fatalf("AppendString(%q) = %s, encoding/json %s", s, got, want)
		}
		checkWire(t, &pipeline.ToolResult{Content: []pipeline.Content{pipeline.Text(s)}, Meta: map[string]any{s: s}, StructuredContent: map[string]any{s: []any{s}}})
	})
}
