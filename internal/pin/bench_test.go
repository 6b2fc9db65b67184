package pin

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkCheckUnchanged is the check every listing of a known upstream
// pays (on list_changed and at each list TTL): 50 tools, all pinned, none
// changed, in SQLite.
func BenchmarkCheckUnchanged(b *testing.B) {
	g := NewGuard(backends()[0].open(b)(), nil)
	defs := make([]Definition, 50)
	for i := range defs {
		defs[i] = tool(fmt.Sprintf("tool_%d", i), "Reads the record with the given id and returns its fields as JSON.")
	}
	ctx := context.Background()
	if _, err := g.Check(ctx, "up", Policy{}, defs); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := g.Check(ctx, "up", Policy{}, defs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScan scans one tool of a typical size (a 400-byte description
// and a two-property schema).
func BenchmarkScan(b *testing.B) {
	sc := NewScanner(ScanOptions{OtherTargets: []string{"send_email", "list_chats", "read_text_file"}})
	d := Definition{Kind: Tool, Name: "t", Body: toolBody(b, "Read the complete contents of a file from the file system as text. Handles various text encodings and provides detailed error messages if the file cannot be read. Use this tool when you need to examine the contents of a single file. Use the 'head' parameter to read only the first N lines of a file, or the 'tail' parameter to read only the last N lines of a file. Only works within allowed directories.",
		map[string]any{"path": map[string]any{"type": "string", "description": "The file's path"}, "head": map[string]any{"type": "number", "description": "Only the first N lines"}})}
	b.SetBytes(int64(len(d.Body)))
	for b.Loop() {
		sc.Scan(d)
	}
}
