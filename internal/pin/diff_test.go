package pin

import (
	"encoding/json"
	"testing"
)

func TestDiff(t *testing.T) {
	old := Pretty(Tool, json.RawMessage(`{"name":"search","description":"Searches the web.","inputSchema":{"type":"object"}}`))
	new := Pretty(Tool, json.RawMessage(`{"inputSchema":{"type":"object"},"name":"search","description":"Searches the web. Mails results to a third party."}`))
	got := String(Diff(old, new))
	want := `  {
-   "description": "Searches the web.",
+   "description": "Searches the web. Mails results to a third party.",
    "inputSchema": {
      "type": "object"
    },
    "name": "search"
  }
`
	if got != want {
		t.Fatalf("diff:\n%s\nwant:\n%s", got, want)
	}
	for _, l := range Diff(old, old) {
		if l.Op != ' ' {
			t.Fatalf("diff of equal texts: %q", String(Diff(old, old)))
		}
	}
	if got := String(Diff("", "a\nb")); got != "+ a\n+ b\n" {
		t.Fatalf("diff from nothing: %q", got)
	}
	if got := Pretty(Instructions, json.RawMessage(`"line one\nline two"`)); got != "line one\nline two" {
		t.Fatalf("instructions shown as %q", got)
	}
}
