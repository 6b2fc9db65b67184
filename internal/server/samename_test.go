package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// A tool and a resource of one name, each with its own output policy.
const sameNameConfig = `
server:
  name: test
  resources_dir: res
sources:
  e: {kind: echo}
tools:
  get_note:
    description: Repeat a note.
    scope: notes.read
    source: e
    output: {redact: block}
    parameters:
      text: {type: string, description: The note., required: true}
resources:
  get_note:
    description: Today's note.
    scope: notes.read
    uri: note://today
    file: note.txt
guard: {emails: true}
`

// Each target's output policy is its own, whatever other target shares
// its name: the tool withholds a result with an email address, the
// resource of the same name redacts it. (When policies were kept in a map
// by name, the one declared last decided for both.)
func TestSameNameKeepsItsOwnOutputPolicy(t *testing.T) {
	cfg := fixture(t, sameNameConfig)
	if err := os.WriteFile(filepath.Join(cfg.Dir, "res", "note.txt"), []byte("Call ada@example.com today."), 0o644); err != nil {
		t.Fatal(err)
	}
	cs := connectAs(t, cfg, principal("agent", "acme", "notes.read"))
	ctx := context.Background()

	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "get_note", Arguments: map[string]any{"text": "Call ada@example.com today."}})
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, res); code != "PERMISSION_DENIED" {
		t.Errorf("the tool, whose policy blocks: %s, want PERMISSION_DENIED", code)
	}
	if seen := lineOf(res); strings.Contains(seen, "ada@example.com") {
		t.Errorf("the withheld result reached the client: %s", seen)
	}

	rr, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "note://today"})
	if err != nil {
		t.Fatalf("the resource, whose policy redacts: %v", err)
	}
	text := rr.Contents[0].Text
	if strings.Contains(text, "ada@example.com") || !strings.Contains(text, "Call [REDACTED:email") {
		t.Errorf("note://today = %q, want the note with the address redacted", text)
	}
}
