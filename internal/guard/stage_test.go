package guard

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/pipeline"
)

// A block passed through already encoded is inspected like any other: it
// is replaced by its decoded form only if the guard changes it, and
// withheld if it cannot be read.
func TestStageRawBlocks(t *testing.T) {
	clean := json.RawMessage(`{"type":"text","text":"all fine","_meta":{"upstream":true}}`)
	secret := json.RawMessage(`{"type":"text","text":"card 4111 1111 1111 1111","_meta":{"upstream":true}}`)
	broken := json.RawMessage(`{"type":"text","text":`)
	h := Stage(NewRedactor(Options{}))(func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
		return &pipeline.Result{Tool: &pipeline.ToolResult{Content: []pipeline.Content{{Raw: clean}, {Raw: secret}, {Raw: broken}}}}, nil
	})
	c := &pipeline.Call{Spec: &pipeline.Spec{Method: pipeline.CallTool, Name: "t"}}
	res, err := h(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	got := res.Tool.Content
	if string(got[0].Raw) != string(clean) {
		t.Errorf("clean block = %+v, want it passed through as is", got[0])
	}
	if got[1].Raw != nil || got[1].Type != "text" || strings.Contains(got[1].Text, "4111") || got[1].Meta["upstream"] != true {
		t.Errorf("block with a card number = %+v, want it decoded and redacted", got[1])
	}
	if got[2].Raw != nil || got[2].Text != Marker("unencodable") {
		t.Errorf("broken block = %+v, want it withheld", got[2])
	}
	if res.Tool.Meta[MetaKey] == nil {
		t.Errorf("result _meta %v lacks the guard's findings", res.Tool.Meta)
	}
}
