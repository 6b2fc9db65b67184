package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/internal/audit"
)

// Operator commands read Warden's state; pointed at a state store or an
// audit key that is not there (a mistyped path, the wrong directory), they
// fail and say so, and leave nothing behind — never an empty store that
// answers "no records" or a new audit key that verifies nothing.
func TestOperatorCommandsNeverCreateState(t *testing.T) {
	commands := [][]string{
		{"audit", "verify"},
		{"audit", "tail"},
		{"audit", "query", "--principal", "alice"},
		{"keys", "list"},
		{"keys", "revoke", "ci-bot"},
		{"keys", "create", "--name", "ci-bot", "--scopes", "crm.read", "--tenant", "acme"},
		{"approvals", "list"},
		{"approvals", "show", "apr_123"},
		{"approvals", "approve", "apr_123", "--as", "bob", "--groups", "finance"},
		{"approvals", "deny", "apr_123", "--as", "bob", "--groups", "finance", "--reason", "no"},
		{"suspensions", "list"},
		{"suspensions", "lift", "alice"},
	}
	for _, cmd := range commands {
		t.Run(strings.Join(cmd[:2], " "), func(t *testing.T) {
			dir := t.TempDir()
			cfgFile := filepath.Join(dir, "warden.yaml")
			if err := os.WriteFile(cfgFile, []byte("server:\n  name: ops\n  state: {sqlite: state/warden.db}\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, "state"), 0o700); err != nil {
				t.Fatal(err)
			}
			args := append(slices.Clone(cmd), "--config", cfgFile)
			code, _, errOut := runCLI(t, nil, args...)
			if code != exitFailure {
				t.Errorf("exit %d, want %d\n%s", code, exitFailure, errOut)
			}
			want := filepath.Join(dir, "state", "warden.db") + " does not exist"
			if !strings.Contains(errOut, want) || !strings.Contains(errOut, "never creates") {
				t.Errorf("the error does not say %q and that nothing is created:\n%s", want, errOut)
			}
			if cmd[0] == "keys" && !strings.Contains(errOut, "--init") {
				t.Errorf("keys does not point at --init:\n%s", errOut)
			}
			if left, _ := os.ReadDir(filepath.Join(dir, "state")); len(left) > 0 {
				t.Errorf("the command left %v behind", left)
			}
		})
	}
}

// The audit log is verified and extended with the audit key; a store
// without its key fails the commands that need the key, and none makes a
// new one.
func TestOperatorCommandsNeedTheAuditKey(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "warden.yaml")
	if err := os.WriteFile(cfgFile, []byte("server:\n  name: ops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// keys create --init makes the store, and no audit key: serve does.
	if code, _, errOut := runCLI(t, nil, "keys", "create", "--init", "--config", cfgFile, "--name", "ci-bot", "--scopes", "crm.read", "--tenant", "acme"); code != exitOK {
		t.Fatalf("keys create --init: exit %d\n%s", code, errOut)
	}
	keyFile := filepath.Join(dir, audit.SecretFile)
	for _, cmd := range [][]string{
		{"audit", "verify"},
		{"audit", "tail"},
		{"approvals", "approve", "apr_123", "--as", "bob", "--groups", "finance"},
	} {
		code, _, errOut := runCLI(t, nil, append(cmd, "--config", cfgFile)...)
		if code != exitFailure || !strings.Contains(errOut, "the audit key "+keyFile+" does not exist") {
			t.Errorf("%s: exit %d, want %d naming the missing audit key:\n%s", strings.Join(cmd, " "), code, exitFailure, errOut)
		}
		if _, err := os.Stat(keyFile); err == nil {
			t.Fatalf("%s created the audit key", strings.Join(cmd, " "))
		}
	}
	// Commands that do not touch the audit log work on the store as it is.
	for _, cmd := range [][]string{{"keys", "list"}, {"approvals", "list"}, {"suspensions", "list"}} {
		if code, _, errOut := runCLI(t, nil, append(cmd, "--config", cfgFile)...); code != exitOK {
			t.Errorf("%s: exit %d\n%s", strings.Join(cmd, " "), code, errOut)
		}
	}
}
