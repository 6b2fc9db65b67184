package secret

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/internal/guard"
)

func TestSecretReferences(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	os.WriteFile(good, []byte("from-a-file-8Hq2\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600)
	t.Setenv("SECRET_TEST_SET", "from-the-env-3Kd9")
	t.Setenv("SECRET_TEST_EMPTY", "")

	for ref, want := range map[string]string{
		"${env:SECRET_TEST_SET}": "from-the-env-3Kd9",
		"${file:" + good + "}":   "from-a-file-8Hq2",
	} {
		if got, err := Required("k", ref); err != nil || got != want {
			t.Errorf("%s = %q, %v", ref, got, err)
		}
	}
	for ref, why := range map[string]string{
		"plain-value-Zz9":                             "secret reference",
		"${SECRET_TEST_SET}":                          "not a secret reference",
		"${vault:x}":                                  "unknown secret reference",
		"${env:SECRET_TEST_UNSET}":                    "is not set",
		"${env:SECRET_TEST_EMPTY}":                    "is empty",
		"${file:" + dir + "/missing}":                 "cannot read",
		"${file:" + filepath.Join(dir, "empty") + "}": "is empty",
	} {
		_, err := Required("auth.bearer", ref)
		if err == nil || !strings.Contains(err.Error(), why) || !strings.HasPrefix(err.Error(), "auth.bearer: ") {
			t.Errorf("%s: %v, want %q", ref, err, why)
		}
		if err != nil && strings.Contains(err.Error(), "plain-value-Zz9") {
			t.Errorf("the error repeats the value: %v", err)
		}
	}
}

// An echo may escape the secret: its JSON and percent-encoded spellings
// are redacted too.
func TestSecretSpellingsAreRedacted(t *testing.T) {
	t.Setenv("SECRET_TEST_ODD", `a&b<c>"d/e+f g`)
	v, err := Required("k", "${env:SECRET_TEST_ODD}")
	if err != nil {
		t.Fatal(err)
	}
	r := guard.NewRedactor(guard.Options{})
	for _, echo := range []string{v, `a\u0026b\u003cc\u003e\"d/e+f g`, "a%26b%3Cc%3E%22d%2Fe%2Bf+g", "a&b%3Cc%3E%22d%2Fe+f%20g"} {
		if got, _ := r.Text("echo: " + echo); strings.Contains(got, "d/e") || strings.Contains(got, "%2Fe") || !strings.Contains(got, "REDACTED") {
			t.Errorf("%q: %q", echo, got)
		}
	}
}

// A reference may name an empty value where the setting allows it (a
// program's environment); a literal is returned as it is.
func TestResolve(t *testing.T) {
	t.Setenv("SECRET_TEST_EMPTY", "")
	if v, ref, err := Resolve("${env:SECRET_TEST_EMPTY}"); err != nil || !ref || v != "" {
		t.Errorf("an empty variable: %q %v %v", v, ref, err)
	}
	if v, ref, err := Resolve("plain"); err != nil || ref || v != "plain" {
		t.Errorf("a literal: %q %v %v", v, ref, err)
	}
	if _, _, err := Resolve("${env:SECRET_TEST_SURELY_UNSET}"); err == nil || !strings.Contains(err.Error(), "is not set") {
		t.Errorf("an unset variable: %v", err)
	}
}
