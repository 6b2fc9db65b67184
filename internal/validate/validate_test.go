package validate

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/wardenmcp/warden/pipeline"
)

func spec(t *testing.T) *pipeline.Spec {
	t.Helper()
	s := &jsonschema.Schema{
		Type:     "object",
		Required: []string{"customer_id"},
		Properties: map[string]*jsonschema.Schema{
			"customer_id": {Type: "string", Pattern: `^C-[0-9]{4}$`, Description: "Customer id, such as C-1001."},
			"status":      {Type: "string", Enum: []any{"open", "closed"}},
			"limit":       {Type: "integer", Minimum: jsonschema.Ptr(1.0), Maximum: jsonschema.Ptr(50.0), Default: json.RawMessage("10")},
			"since":       {Type: "string", Format: "date"},
			"email":       {Type: "string", Format: "email"},
			"note":        {Type: "string", MaxLength: jsonschema.Ptr(10)},
		},
		AdditionalProperties: &jsonschema.Schema{Not: &jsonschema.Schema{}},
	}
	rs, err := s.Resolve(&jsonschema.ResolveOptions{ValidateDefaults: true})
	if err != nil {
		t.Fatal(err)
	}
	return &pipeline.Spec{Name: "search_orders", Input: rs}
}

func TestCall(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		wantErr string // substring of the message; "" means valid
	}{
		{"valid", `{"customer_id":"C-1001"}`, ""},
		{"valid with everything", `{"customer_id":"C-1001","status":"open","limit":5,"since":"2024-01-31","email":"a@example.com"}`, ""},
		{"no arguments at all", ``, `missing required argument "customer_id"`},
		{"null arguments", `null`, `missing required argument "customer_id"`},
		{"not an object", `["C-1001"]`, "must be a JSON object"},
		{"unknown field", `{"customer_id":"C-1001","tenant_id":"globex"}`, `unknown argument "tenant_id"`},
		{"wrong type", `{"customer_id":1001}`, `argument "customer_id" must be a string, not the number 1001`},
		{"null", `{"customer_id":"C-1001","status":null}`, `argument "status" must be a string, not null`},
		{"pattern", `{"customer_id":"' OR 1=1 --"}`, `argument "customer_id" does not have the required form (pattern ^C-[0-9]{4}$)`},
		{"enum", `{"customer_id":"C-1001","status":"deleted"}`, `argument "status" must be one of: open, closed`},
		{"below minimum", `{"customer_id":"C-1001","limit":0}`, `argument "limit" must be at least 1`},
		{"above maximum", `{"customer_id":"C-1001","limit":51}`, `argument "limit" must be at most 50`},
		{"not an integer", `{"customer_id":"C-1001","limit":2.5}`, `argument "limit" must be an integer, not a fractional number`},
		{"bad date", `{"customer_id":"C-1001","since":"31/01/2024"}`, `argument "since" is not a valid 2006-01-02 value`},
		{"bad email", `{"customer_id":"C-1001","email":"Ada <a@example.com>"}`, `argument "email" is not a plain email address`},
		{"too long", `{"customer_id":"C-1001","note":"more than ten characters"}`, `argument "note" must be at most 10 characters long`},
		{"NUL byte", `{"customer_id":"C-1001","note":"a\u0000b"}`, `NUL`},
		{"malformed JSON", `{"customer_id":`, "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &pipeline.Call{Spec: spec(t), Raw: json.RawMessage(tt.raw)}
			err := Call(c)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Call: %v", err)
				}
				if c.Args["limit"] == nil {
					t.Errorf("default for limit not applied: %v", c.Args)
				}
				return
			}
			var perr *pipeline.Error
			if !errors.As(err, &perr) || perr.Code != pipeline.InvalidArgument {
				t.Fatalf("err = %v, want INVALID_ARGUMENT", err)
			}
			if !strings.Contains(perr.Message, tt.wantErr) {
				t.Errorf("message %q does not mention %q", perr.Message, tt.wantErr)
			}
			if c.Args != nil {
				t.Errorf("Args set on a refused call: %v", c.Args)
			}
		})
	}
}

func TestArgumentCaps(t *testing.T) {
	deep := strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1)
	long := "[" + strings.TrimSuffix(strings.Repeat("1,", MaxArrayLength+1), ",") + "]"
	big := `{"customer_id":"C-1001","note":"` + strings.Repeat("x", MaxArgumentBytes) + `"}`
	for name, raw := range map[string]string{
		"too deep":  `{"customer_id":"C-1001","nested":` + deep + `}`,
		"too long":  `{"customer_id":"C-1001","list":` + long + `}`,
		"too large": big,
	} {
		t.Run(name, func(t *testing.T) {
			c := &pipeline.Call{Spec: spec(t), Raw: json.RawMessage(raw)}
			var perr *pipeline.Error
			if err := Call(c); !errors.As(err, &perr) || perr.Code != pipeline.InvalidArgument {
				t.Fatalf("err = %v, want INVALID_ARGUMENT", err)
			}
		})
	}
}

func TestNoInputSchemaTakesNoArguments(t *testing.T) {
	c := &pipeline.Call{Spec: &pipeline.Spec{Name: "list_everything"}, Raw: json.RawMessage(`{"x":1}`)}
	if err := Call(c); err == nil {
		t.Fatal("arguments accepted by a target that declares none")
	}
}

func TestInvalidUTF8FromDecodedArguments(t *testing.T) {
	// Resource-template variables and prompt arguments arrive decoded.
	c := &pipeline.Call{Spec: spec(t), Args: map[string]any{"customer_id": "C-1001", "note": "a\xffb"}}
	if err := Call(c); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("err = %v, want a UTF-8 refusal", err)
	}
}
