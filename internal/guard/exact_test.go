package guard

import (
	"strings"
	"testing"
)

func TestAddSecretRedactsExactEchoes(t *testing.T) {
	const secret = "s3cr3t-0f-the-api-Zq9"
	AddSecret(secret)
	AddSecret(secret) // twice is harmless
	AddSecret("ab")   // too short: ignored

	r := NewRedactor(Options{})
	text, findings := r.Text(`{"headers":{"authorization":"Bearer ` + secret + `","x":"` + secret + `"},"tab":"ab"}`)
	if strings.Contains(text, secret) {
		t.Fatalf("secret left in %s", text)
	}
	if !strings.Contains(text, `"tab":"ab"`) {
		t.Errorf("a short registered value changed ordinary text: %s", text)
	}
	if len(findings) == 0 {
		t.Fatal("no findings")
	}

	v, _ := r.Value(map[string]any{"echo": []any{"prefix" + secret + "suffix"}}, nil)
	got := v.(map[string]any)["echo"].([]any)[0].(string)
	if got != "prefix"+Marker(ConfiguredSecret)+"suffix" {
		t.Errorf("Value: got %q", got)
	}
}

func TestRemoveSecret(t *testing.T) {
	const old = "expired-access-token-7Yq"
	AddSecret(old)
	RemoveSecret(old)
	if got, _ := NewRedactor(Options{}).Text("x " + old); got != "x "+old {
		t.Errorf("a removed secret is still redacted: %q", got)
	}
}
