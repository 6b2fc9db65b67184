package pin

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/wardenmcp/warden/internal/audit"
)

// Pretty is body as an operator reads it: its canonical JSON, indented,
// so that key order and spacing never show as a change; an instructions
// string is shown as its text.
func Pretty(kind Kind, body json.RawMessage) string {
	if len(body) == 0 {
		return ""
	}
	if kind == Instructions {
		var s string
		if json.Unmarshal(body, &s) == nil {
			return s
		}
	}
	c, err := audit.Canonical(body)
	if err != nil {
		return string(body)
	}
	var b bytes.Buffer
	json.Indent(&b, c, "", "  ") // c is valid JSON
	return b.String()
}

// DiffLine is one line of a diff: Op is ' ' (in both), '-' (only in the
// old text) or '+' (only in the new).
type DiffLine struct {
	Op   byte
	Text string
}

// maxDiffCells bounds the work of Diff (lines of a × lines of b); past it,
// the whole old text is shown removed and the whole new one added.
const maxDiffCells = 4 << 20

// Diff is the line diff of old and new: the longest common subsequence of
// their lines kept, the rest removed or added, removals first.
func Diff(old, new string) []DiffLine {
	a, b := lines(old), lines(new)
	if len(a)*len(b) > maxDiffCells {
		out := make([]DiffLine, 0, len(a)+len(b))
		for _, l := range a {
			out = append(out, DiffLine{'-', l})
		}
		for _, l := range b {
			out = append(out, DiffLine{'+', l})
		}
		return out
	}
	// lcs[i][j] is the length of the longest common subsequence of a[i:]
	// and b[j:].
	w := len(b) + 1
	lcs := make([]int32, (len(a)+1)*w)
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i*w+j] = lcs[(i+1)*w+j+1] + 1
			} else {
				lcs[i*w+j] = max(lcs[(i+1)*w+j], lcs[i*w+j+1])
			}
		}
	}
	var out []DiffLine
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			out = append(out, DiffLine{' ', a[i]})
			i, j = i+1, j+1
		case j == len(b) || i < len(a) && lcs[(i+1)*w+j] >= lcs[i*w+j+1]:
			out = append(out, DiffLine{'-', a[i]})
			i++
		default:
			out = append(out, DiffLine{'+', b[j]})
			j++
		}
	}
	return out
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// String is the diff as text, each line prefixed with its Op and a space.
func String(d []DiffLine) string {
	var b strings.Builder
	for _, l := range d {
		b.WriteByte(l.Op)
		b.WriteByte(' ')
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}
