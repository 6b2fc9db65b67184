package audit

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/pipeline"
)

// TestResultBytes holds resultBytes to the length of encoding/json's
// encoding, for the shapes it measures itself and for those it encodes.
func TestResultBytes(t *testing.T) {
	odd := "ctl \x01\x1f\b\f\t\r\n \u2028 \u2029 <&> \"q\" \\ \xff é ☃ \x7f end"
	var decoded any
	d := json.NewDecoder(strings.NewReader(`{"rows":[{"id":"C-1001","n":12.5,"big":1e300,"tiny":1e-9,"neg":-0.000001,"ok":true,"none":null,"odd":"<a&b>"}],"row_count":1,"truncated":false}`))
	d.UseNumber()
	if err := d.Decode(&decoded); err != nil {
		t.Fatal(err)
	}
	var floats any
	if err := json.Unmarshal([]byte(`{"a":[1,2.5,1e21,1e20,1e-7,0.000001,-3,0,123456789012345678]}`), &floats); err != nil {
		t.Fatal(err)
	}
	tests := []*pipeline.Result{
		{Tool: &pipeline.ToolResult{}},
		{Tool: &pipeline.ToolResult{Content: []pipeline.Content{pipeline.Text(odd), pipeline.Text("")}, IsError: true, RequestState: odd}},
		{Tool: &pipeline.ToolResult{Content: []pipeline.Content{pipeline.Text("x")}, StructuredContent: decoded,
			Meta: map[string]any{"io.wardenmcp/guard": map[string]any{"redacted": []any{"email"}, "n": json.Number("3")}}}},
		{Tool: &pipeline.ToolResult{StructuredContent: floats}},
		{Tool: &pipeline.ToolResult{StructuredContent: map[string]any{"i": 3, "j": int64(-4), "nil": []any(nil), "m": map[string]any(nil), "e": json.Number("")}}},
		// Shapes it encodes to measure.
		{Tool: &pipeline.ToolResult{StructuredContent: json.RawMessage(` { "a" : "<" } `)}},
		{Tool: &pipeline.ToolResult{Content: []pipeline.Content{{Type: "image", MIMEType: "image/png", Data: []byte{1, 2, 3}}}}},
		{Tool: &pipeline.ToolResult{StructuredContent: struct{ A int }{1}}},
		{Tool: &pipeline.ToolResult{Content: []pipeline.Content{{Type: "text", Text: "t", Annotations: &pipeline.Annotations{Priority: 1}}}}},
		{Resource: &pipeline.ResourceResult{Contents: []*pipeline.ResourceContents{{URI: "crm://x", Text: odd}}}},
		{Prompt: &pipeline.PromptResult{Messages: []*pipeline.PromptMessage{{Role: "user", Content: pipeline.Text(odd)}}}},
	}
	for i, res := range tests {
		if got, want := resultBytes(res), encodedSize(t, res); got != want {
			t.Errorf("result %d: resultBytes = %d, want %d", i, got, want)
		}
	}
	if n := resultBytes(&pipeline.Result{Tool: &pipeline.ToolResult{StructuredContent: math.NaN()}}); n != 0 {
		t.Errorf("a result that does not encode: resultBytes = %d, want 0", n)
	}
	if n := resultBytes(&pipeline.Result{Tool: &pipeline.ToolResult{StructuredContent: json.Number("1x")}}); n != 0 {
		t.Errorf("a result with an invalid number: resultBytes = %d, want 0", n)
	}

	// Random decoded values.
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		res := &pipeline.Result{Tool: &pipeline.ToolResult{Content: []pipeline.Content{pipeline.Text(randomString(r))}, StructuredContent: randomValue(r, 3)}}
		if got, want := resultBytes(res), encodedSize(t, res); got != want {
			b, _ := json.Marshal(res.Tool)
			t.Fatalf("random result %d: resultBytes = %d, want %d: %s", i, got, want, b)
		}
	}
}

func encodedSize(t *testing.T, res *pipeline.Result) int64 {
	t.Helper()
	var v any = res.Tool
	switch {
	case res.Resource != nil:
		v = res.Resource
	case res.Prompt != nil:
		v = res.Prompt
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(b))
}

func randomString(r *rand.Rand) string {
	const alphabet = "ab<>&\"\\\n\t\x01\x7f é☃\u2028"
	rs := []rune(alphabet)
	b := []byte{}
	for range r.IntN(12) {
		if r.IntN(20) == 0 {
			b = append(b, 0xff)
			continue
		}
		b = append(b, string(rs[r.IntN(len(rs))])...)
	}
	return string(b)
}

func randomValue(r *rand.Rand, depth int) any {
	k := r.IntN(9)
	if depth == 0 {
		k = r.IntN(6)
	}
	switch k {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return randomString(r)
	case 3:
		return math.Float64frombits(r.Uint64()&^(0x7ff<<52) | uint64(r.IntN(0x7fe))<<52)
	case 4:
		return json.Number([]string{"0", "-1.5e-7", "12345678901234567890", "1E+2"}[r.IntN(4)])
	case 5:
		return float64(r.IntN(2000) - 1000)
	case 6, 7:
		m := map[string]any{}
		for range r.IntN(4) {
			m[randomString(r)] = randomValue(r, depth-1)
		}
		return m
	}
	l := make([]any, r.IntN(4))
	for i := range l {
		l[i] = randomValue(r, depth-1)
	}
	return l
}
