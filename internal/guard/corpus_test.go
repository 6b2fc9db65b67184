package guard

import (
	"bufio"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// readCorpus returns the lines of a testdata file, without comments and
// blank lines; a line that starts with a double quote is a Go string
// literal.
func readCorpus(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		lines = append(lines, line)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func unquote(t *testing.T, s string) string {
	t.Helper()
	if !strings.HasPrefix(s, `"`) {
		return s
	}
	u, err := strconv.Unquote(s)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return u
}

// TestCorpus measures what a user would notice: how much of a corpus of
// secrets and personal data is redacted, and how much ordinary business
// data is damaged.
func TestCorpus(t *testing.T) {
	r := NewRedactor(Options{Emails: true, Phones: true})

	samples := readCorpus(t, "secrets.txt")
	if len(samples) < 40 {
		t.Fatalf("secrets.txt has %d samples, want at least 40", len(samples))
	}
	redacted := 0
	for _, line := range samples {
		kind, text, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("no tab in %q", line)
		}
		text = unquote(t, text)
		a, b := strings.Index(text, "«"), strings.Index(text, "»")
		if a < 0 || b < a {
			t.Fatalf("no «secret» in %q", line)
		}
		secret := text[a+len("«") : b]
		input := text[:a] + secret + text[b+len("»"):]
		out, findings := r.Text(input)
		found := false
		for _, f := range findings {
			found = found || f.Kind == kind
		}
		switch {
		case strings.Contains(out, secret):
			t.Logf("MISSED %s: %.80q", kind, input)
		case !found:
			t.Errorf("%s redacted under another name, %v: %.80q", kind, findings, input)
		default:
			redacted++
		}
	}

	business := readCorpus(t, "business.txt")
	if len(business) < 60 {
		t.Fatalf("business.txt has %d lines, want at least 60", len(business))
	}
	damaged := 0
	for _, line := range business {
		if out, findings := r.Text(line); out != line {
			damaged++
			t.Errorf("business line changed, %v:\n  %s\n  %s", findings, line, out)
		}
	}

	redactionRate := float64(redacted) / float64(len(samples))
	fpRate := float64(damaged) / float64(len(business))
	t.Logf("redaction: %d of %d secret/PII samples (%.1f%%); false positives: %d of %d business lines (%.1f%%)",
		redacted, len(samples), 100*redactionRate, damaged, len(business), 100*fpRate)
	if redactionRate < 0.95 {
		t.Errorf("redaction rate %.1f%%, want at least 95%%", 100*redactionRate)
	}
}

// TestInjectionCorpus checks Inspect against planted instructions and
// against ordinary notes and business data, which must get no flag.
func TestInjectionCorpus(t *testing.T) {
	injections := readCorpus(t, "injections.txt")
	caught := 0
	for _, line := range injections {
		text := unquote(t, line)
		_, flags := Inspect(text)
		if hasInstructionFlag(flags) {
			caught++
		} else {
			t.Errorf("no instruction flag for %q (flags %v)", text, flags)
		}
	}
	benign := append(readCorpus(t, "notes.txt"), readCorpus(t, "business.txt")...)
	flagged := 0
	for _, text := range benign {
		clean, flags := Inspect(text)
		if len(flags) > 0 || clean != text {
			flagged++
			t.Errorf("ordinary text flagged %v: %q", flags, text)
		}
	}
	t.Logf("injection: %d of %d planted instructions flagged; %d of %d ordinary lines flagged",
		caught, len(injections), flagged, len(benign))
}

func hasInstructionFlag(flags []Flag) bool {
	for _, f := range flags {
		if !slices.Contains(hiddenKinds[:], f.Kind) {
			return true
		}
	}
	return false
}

// TestEveryRuleHasASample keeps the corpus in step with the rules: a rule
// added or refreshed from gitleaks needs a sample in secrets.txt.
func TestEveryRuleHasASample(t *testing.T) {
	have := map[string]bool{}
	for _, line := range readCorpus(t, "secrets.txt") {
		kind, _, _ := strings.Cut(line, "\t")
		have[kind] = true
	}
	for _, r := range secretRules {
		if !have[r.kind] {
			t.Errorf("no sample of %s in testdata/secrets.txt", r.kind)
		}
	}
	for _, kind := range []string{"generic_secret", "card_number", "us_ssn", "iban", "email", "phone"} {
		if !have[kind] {
			t.Errorf("no sample of %s in testdata/secrets.txt", kind)
		}
	}
}
