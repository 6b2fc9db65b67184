package server

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/wardenmcp/warden/internal/pin"
)

// A decision made through the store the console decides with has its
// upstream listed again at once; a decision refused changes nothing and
// lists nothing.
func TestConsoleDecisionRelistsAtOnce(t *testing.T) {
	store, err := pin.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	var relisted []string
	d := &decidingStore{Store: store, decided: func(u string) { relisted = append(relisted, u) }}
	body := func(desc string) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"name": "echo", "description": desc, "inputSchema": map[string]any{"type": "object"}})
		return b
	}
	v1, v2 := body("Echo."), body("Echo, loudly.")
	check := pin.NewGuard(store, nil) // the listings' checks use the store itself
	for _, b := range []json.RawMessage{v1, v2} {
		if _, err := check.Check(t.Context(), "up", pin.Policy{}, []pin.Definition{{Upstream: "up", Kind: pin.Tool, Name: "echo", Body: b}}); err != nil {
			t.Fatal(err)
		}
	}
	if len(relisted) != 0 {
		t.Fatalf("listings' own checks relisted %v", relisted)
	}
	console := pin.NewGuard(d, nil)
	ref := pin.Ref{Upstream: "up", Kind: pin.Tool, Name: "echo"}
	if _, err := console.Approve(t.Context(), ref, "not-the-hash", "ops", "console"); !errors.Is(err, pin.ErrDecision) {
		t.Fatalf("approving a hash that is not pending: %v, want ErrDecision", err)
	}
	if len(relisted) != 0 {
		t.Fatalf("a refused decision relisted %v", relisted)
	}
	h2, _ := pin.Hash(v2)
	if _, err := console.Approve(t.Context(), ref, h2, "ops", "console"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(relisted, []string{"up"}) {
		t.Errorf("after the approval, relisted %v, want [up]", relisted)
	}
}
