package guard

import (
	"strconv"
	"unicode/utf8"
)

// Truncate caps text at limit bytes. Text over the cap is cut on a UTF-8
// boundary and ends with a marker that says so — "…[truncated by Warden:
// result over 65536 bytes]" — the whole fitting in limit bytes whenever limit
// is at least the marker's length. It reports whether it cut.
func Truncate(text string, limit int) (string, bool) {
	if len(text) <= limit {
		return text, false
	}
	marker := TruncationMarker(limit)
	cut := limit - len(marker)
	if cut <= 0 {
		return marker, true
	}
	// Back up to the start of a rune, so the cut never splits a character.
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut] + marker, true
}

// TruncationMarker is the marker Truncate appends for a cap of limit bytes.
func TruncationMarker(limit int) string {
	return "…[truncated by Warden: result over " + strconv.Itoa(limit) + " bytes]"
}
