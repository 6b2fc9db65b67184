package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/keys"
)

// keysConfig writes a configuration whose state lives in a temporary
// directory, and returns its path.
func keysConfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(path, []byte("server:\n  name: keys-test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKeysLifecycle(t *testing.T) {
	cfgFile := keysConfig(t)

	code, out, errOut := runCLI(t, nil, "keys", "create", "--init", "--config", cfgFile,
		"--name", "ci-bot", "--scopes", "crm.read,crm:write", "--tenant", "acme", "--groups", "support", "--expires", "30d")
	if code != exitOK {
		t.Fatalf("create: exit %d\n%s", code, errOut)
	}
	key := strings.TrimSpace(out)
	if !strings.HasPrefix(key, keys.Marker) || strings.Contains(key, "\n") {
		t.Fatalf("create printed %q on standard output, want the key alone", out)
	}
	for _, note := range []string{"only time the key is shown", "Authorization: Bearer", "WARDEN_API_KEY=", "warden keys revoke"} {
		if !strings.Contains(errOut, note) {
			t.Errorf("create does not say %q:\n%s", note, errOut)
		}
	}

	// The printed key authenticates, with the scopes and tenant asked for.
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	store, err := keys.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	p, exp, err := keys.Authenticate(context.Background(), store, key)
	if err != nil {
		t.Fatalf("the printed key does not authenticate: %v", err)
	}
	if p.ID != "ci-bot" || p.Tenant != "acme" || strings.Join(p.Scopes, ",") != "crm.read,crm:write" || strings.Join(p.Groups, ",") != "support" || exp.IsZero() {
		t.Errorf("principal = %+v, expiry %v", p, exp)
	}

	code, out, errOut = runCLI(t, nil, "keys", "list", "--config", cfgFile)
	if code != exitOK {
		t.Fatalf("list: exit %d\n%s", code, errOut)
	}
	for _, col := range []string{"ci-bot", key[:12], "acme", "crm.read,crm:write", "support", "active"} {
		if !strings.Contains(out, col) {
			t.Errorf("list does not show %q:\n%s", col, out)
		}
	}
	if strings.Contains(out, key[12:]) {
		t.Errorf("list shows the key:\n%s", out)
	}

	code, out, errOut = runCLI(t, nil, "keys", "revoke", "--config", cfgFile, "ci-bot")
	if code != exitOK || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: exit %d\n%s%s", code, out, errOut)
	}
	if _, _, err := keys.Authenticate(context.Background(), store, key); err == nil {
		t.Errorf("the revoked key still authenticates")
	}

	code, out, _ = runCLI(t, nil, "keys", "list", "--config", cfgFile, "--json")
	var listed []listedKey
	if err := json.Unmarshal([]byte(out), &listed); code != exitOK || err != nil {
		t.Fatalf("list --json: exit %d, %v\n%s", code, err, out)
	}
	if len(listed) != 1 || listed[0].Name != "ci-bot" || listed[0].Status != "revoked" || listed[0].RevokedAt == nil || listed[0].ExpiresAt == nil {
		t.Errorf("list --json = %+v, want ci-bot revoked, with an expiry", listed)
	}
	if strings.Contains(out, key[12:]) {
		t.Errorf("list --json shows the key:\n%s", out)
	}
}

func TestKeysCommandErrors(t *testing.T) {
	cfgFile := keysConfig(t)
	if code, _, errOut := runCLI(t, nil, "keys", "create", "--init", "--config", cfgFile, "--name", "first", "--scopes", "crm.read", "--tenant", "acme"); code != exitOK {
		t.Fatalf("keys create --init: exit %d\n%s", code, errOut)
	}
	create := func(extra ...string) []string {
		return append([]string{"keys", "create", "--init", "--config", cfgFile, "--tenant", "acme"}, extra...)
	}
	tests := []struct {
		name  string
		args  []string
		code  int
		errIn string
	}{
		{"wildcard scope", create("--name", "a", "--scopes", "crm.*"), exitUsage, "wildcards are not allowed"},
		{"empty scope", create("--name", "a", "--scopes", "crm.read,"), exitUsage, "--scopes"},
		{"expiry in weeks", create("--name", "a", "--scopes", "crm.read", "--expires", "4w"), exitUsage, "30d, 12h or 90m"},
		{"negative expiry", create("--name", "a", "--scopes", "crm.read", "--expires", "-1h"), exitUsage, "at least a minute"},
		{"a key as the name", create("--name", "wdn_abc", "--scopes", "crm.read"), exitUsage, "--name"},
		{"no scopes", create("--name", "a"), exitUsage, `"scopes" not set`},
		{"no tenant", []string{"keys", "create", "--config", cfgFile, "--name", "a", "--scopes", "crm.read"}, exitUsage, `"tenant" not set`},
		{"revoke without a key", []string{"keys", "revoke", "--config", cfgFile}, exitUsage, "one key ID or name"},
		{"revoke an unknown key", []string{"keys", "revoke", "--config", cfgFile, "nobody"}, exitFailure, "warden keys list"},
		{"missing configuration", []string{"keys", "list", "--config", "no/such/file.yaml"}, exitFailure, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, nil, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.errIn) {
				t.Errorf("exit %d, want %d; stderr should contain %q\nstdout: %s\nstderr: %s", code, tt.code, tt.errIn, out, errOut)
			}
			if strings.Contains(out, keys.Marker) {
				t.Errorf("a failed command printed a key: %s", out)
			}
		})
	}

	// A second key with the name of one not revoked is refused.
	if code, _, errOut := runCLI(t, nil, create("--name", "dup", "--scopes", "crm.read")...); code != exitOK {
		t.Fatalf("create: exit %d\n%s", code, errOut)
	}
	code, out, errOut := runCLI(t, nil, create("--name", "dup", "--scopes", "crm.read")...)
	if code != exitFailure || !strings.Contains(errOut, "revoke it first") || strings.Contains(out, keys.Marker) {
		t.Errorf("duplicate name: exit %d, want %d\nstdout: %s\nstderr: %s", code, exitFailure, out, errOut)
	}
}
