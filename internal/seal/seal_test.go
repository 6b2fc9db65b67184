package seal

import (
	"bytes"
	"strings"
	"testing"
)

func TestSealOpens(t *testing.T) {
	box := New([]byte("secret"), "purpose a")
	tok := box.Seal([]byte(`{"p":"alice"}`))
	if strings.Contains(tok, "alice") {
		t.Errorf("the token shows what it carries: %s", tok)
	}
	if got, ok := box.Open(tok); !ok || !bytes.Equal(got, []byte(`{"p":"alice"}`)) {
		t.Fatalf("open: %q %v", got, ok)
	}
}

// The attacks: a token altered in one character, one sealed for another
// purpose or under another secret, and a second spelling of a good one.
func TestForgeriesDoNotOpen(t *testing.T) {
	box := New([]byte("secret"), "purpose a")
	tok := box.Seal([]byte(`{"p":"alice"}`))
	flip := []byte(tok)
	if flip[len(flip)/2] == 'A' {
		flip[len(flip)/2] = 'B'
	} else {
		flip[len(flip)/2] = 'A'
	}
	for name, forged := range map[string]string{
		"altered":         string(flip),
		"other purpose":   New([]byte("secret"), "purpose b").Seal([]byte(`{"p":"alice"}`)),
		"other secret":    New([]byte("other"), "purpose a").Seal([]byte(`{"p":"alice"}`)),
		"padded spelling": tok + "=",
		"empty":           "",
		"not base64":      "!!!",
	} {
		if _, ok := box.Open(forged); ok {
			t.Errorf("%s: opened", name)
		}
	}
}

func FuzzOpen(f *testing.F) {
	box := New([]byte("secret"), "purpose a")
	f.Add(box.Seal([]byte("x")))
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		box.Open(s) // never panics
	})
}
