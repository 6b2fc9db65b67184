package guard

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func fuzzSeeds(f *testing.F) {
	f.Add(demoNote)
	f.Add("key AKIAIOSFODNN7EXAMPLE card 4111 1111 1111 1111 ssn 219-09-9999 iban GB82 WEST 1234 5698 7654 32")
	f.Add("a\u200bb\U000E0041\u202e\x1b[31mc\x1b]8;;x\x07d\ufe00\ufe01👩\u200d💻")
	f.Add("password=Zt8#qLm2Vx9!pR4w homer@acme.example +44 (0)20 7946 0958 (212) 555-0147")
	f.Add("-----BEGIN RSA PRIVATE KEY-----\nMIIE")
	f.Add("\xc2\x1b\x9b")
}

// FuzzText checks that redaction never panics, keeps valid UTF-8 valid,
// and grows the text by no more than its markers.
func FuzzText(f *testing.F) {
	fuzzSeeds(f)
	r := NewRedactor(Options{Emails: true, Phones: true})
	f.Fuzz(func(t *testing.T, s string) {
		out, findings := r.Text(s)
		budget := len(s)
		for _, x := range findings {
			budget += len(Marker(x.Kind))
		}
		if len(out) > budget {
			t.Fatalf("output %d bytes, more than the input and markers (%d)", len(out), budget)
		}
		if len(findings) == 0 && out != s {
			t.Fatalf("changed without a finding: %q", out)
		}
		if strings.Count(out, "[REDACTED:") < len(findings) {
			t.Fatalf("%d findings but fewer markers in %q", len(findings), out)
		}
		if utf8.ValidString(s) && !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 out of valid input: %q", out)
		}
	})
}

// FuzzInspect checks that inspection never panics, never lengthens the
// text, reports offsets inside it, and cleans completely: cleaning the
// clean text again changes nothing.
func FuzzInspect(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, s string) {
		clean, flags := Inspect(s)
		if len(clean) > len(s) {
			t.Fatalf("clean text is longer: %d > %d", len(clean), len(s))
		}
		for _, fl := range flags {
			if fl.Offset < 0 || fl.Offset >= len(s) {
				t.Fatalf("flag %v outside the input of %d bytes", fl, len(s))
			}
		}
		if !utf8.ValidString(s) {
			return // invalid bytes are passed on as they are
		}
		again, flags2 := Inspect(clean)
		if again != clean {
			t.Fatalf("cleaning twice changed %q to %q", clean, again)
		}
		for _, fl := range flags2 {
			if !hasInstructionFlag([]Flag{fl}) {
				t.Fatalf("clean text still has %v", fl)
			}
		}
	})
}
