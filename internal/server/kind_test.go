package server

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/audit"
	_ "github.com/wardenmcp/warden/internal/source/kindtest/echo" // echo
	"github.com/wardenmcp/warden/pipeline"
)

// echoConfig declares a tool of the echo kind, which this package knows
// only through the blank import above.
const echoConfig = `
server:
  name: test
sources:
  e: {kind: echo}
tools:
  echo_note:
    description: Repeat a note.
    scope: notes.read
    source: e
    prefix: "note: "
    parameters:
      text: {type: string, description: The note., required: true}
guard: {emails: true}
`

// A kind added with nothing but its folder and a blank import serves
// tools that pass the whole pipeline: scope, strict validation, the output
// guard and the audit log.
func TestNewKindPassesThePipeline(t *testing.T) {
	ctx := context.Background()
	var who atomic.Pointer[pipeline.Principal]
	who.Store(&pipeline.Principal{ID: "agent", Tenant: "acme", Scopes: []string{"notes.read"}, AuthMethod: "local"})
	srv, err := Build(ctx, fixture(t, echoConfig), &Options{Local: func(context.Context) (*pipeline.Principal, error) { return who.Load(), nil }})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	cs := session(t, srv)

	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo_note", Arguments: map[string]any{"text": "hello"}})
	if err != nil || res.IsError {
		t.Fatalf("echo_note: %v %+v", err, res)
	}
	if got, want := res.Content[0].(*mcp.TextContent).Text, `note: {"text":"hello"}`; got != want {
		t.Errorf("echo_note = %q, want %q", got, want)
	}

	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo_note", Arguments: map[string]any{"text": "hello", "shoe_size": 42}})
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, res); code != "INVALID_ARGUMENT" {
		t.Errorf("an unknown argument: %s, want INVALID_ARGUMENT", code)
	}

	secrets := []string{"AKIAIOSFODNN7EXAMPLE", "ada@example.com"}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo_note", Arguments: map[string]any{"text": "key " + secrets[0] + ", write to " + secrets[1]}})
	if err != nil || res.IsError {
		t.Fatalf("echo_note with secrets: %v %+v", err, res)
	}
	seen := res.Content[0].(*mcp.TextContent).Text + lineOf(res.StructuredContent)
	for _, s := range secrets {
		if strings.Contains(seen, s) {
			t.Errorf("the model sees %q: %s", s, seen)
		}
	}
	if !strings.Contains(seen, "[REDACTED:") || !strings.HasPrefix(seen, "note: ") {
		t.Errorf("the result is not the echo, redacted: %s", seen)
	}

	who.Store(&pipeline.Principal{ID: "outsider", Tenant: "acme", Scopes: []string{"docs.read"}, AuthMethod: "local"})
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo_note", Arguments: map[string]any{"text": "hello"}})
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, res); code != "PERMISSION_DENIED" {
		t.Errorf("a caller without notes.read: %s, want PERMISSION_DENIED", code)
	}

	var got []string
	for _, r := range auditRecords(t, srv) {
		if r.Target != "echo_note" {
			continue
		}
		if r.Source != "echo" || r.Method != "tools/call" || r.TraceID == "" {
			t.Errorf("record lacks what was called: %+v", r)
		}
		got = append(got, r.Principal+"/"+string(r.Phase)+"/"+r.ErrorCode)
	}
	// echo_note reads: a call that runs leaves one record, its outcome.
	want := []string{
		"agent/" + string(audit.Outcome) + "/",
		"agent/" + string(audit.Refusal) + "/INVALID_ARGUMENT",
		"agent/" + string(audit.Outcome) + "/",
		"outsider/" + string(audit.Refusal) + "/PERMISSION_DENIED",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("audit records of echo_note = %v, want %v", got, want)
	}
}

// What is wrong with the kind's own keys is reported by the kind, located
// in the file like every other configuration error.
func TestNewKindSettingsErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "unknown key",
			yaml: strings.Replace(echoConfig, `    prefix: "note: "`, `    prefx: "note: "`, 1),
			want: []string{"warden.yaml:11:", "prefx"},
		},
		{
			name: "wrong type",
			yaml: strings.Replace(echoConfig, `    prefix: "note: "`, `    prefix: [note]`, 1),
			want: []string{"warden.yaml:11:", "tools.echo_note.prefix"},
		},
		{
			name: "bad parameter",
			yaml: strings.Replace(echoConfig, "{type: string,", "{type: text,", 1),
			want: []string{"warden.yaml:13:", "tools.echo_note.parameters.text"},
		},
		{
			name: "resource",
			yaml: echoConfig + `resources:
  notes_index:
    description: The notes.
    scope: notes.read
    uri: notes://index
    source: e
`,
			want: []string{"resources.notes_index.source", "serves tools, not resources"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := Build(context.Background(), fixture(t, tt.yaml), nil)
			if err == nil {
				srv.Close()
				t.Fatal("built")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}
