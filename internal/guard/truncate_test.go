package guard

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	marker := TruncationMarker(100)
	tests := []struct {
		name, in string
		limit    int
		want     string
		cut      bool
	}{
		{"under the cap", "short", 100, "short", false},
		{"at the cap", strings.Repeat("a", 100), 100, strings.Repeat("a", 100), false},
		{"over the cap", strings.Repeat("a", 200), 100, strings.Repeat("a", 100-len(marker)) + marker, true},
		// "é" is two bytes; a cut through one backs up to its start.
		{"on a rune boundary", strings.Repeat("é", 100), 100, strings.Repeat("é", (100-len(marker))/2) + marker, true},
		{"a cap below the marker", strings.Repeat("a", 20), 10, TruncationMarker(10), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, cut := Truncate(tt.in, tt.limit)
			if got != tt.want || cut != tt.cut {
				t.Errorf("Truncate = %q, %v; want %q, %v", got, cut, tt.want, tt.cut)
			}
			if !utf8.ValidString(got) {
				t.Error("invalid UTF-8")
			}
			if cut && tt.limit >= len(marker) && len(got) > tt.limit {
				t.Errorf("%d bytes, over the cap of %d", len(got), tt.limit)
			}
		})
	}
	if !strings.Contains(marker, "truncated by Warden") || !strings.Contains(marker, "100 bytes") {
		t.Errorf("marker %q does not say what happened", marker)
	}
}
