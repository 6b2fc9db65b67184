package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/internal/sandbox"
)

// The test binary is the sandbox helper of the commands it runs.
func TestMain(m *testing.M) {
	sandbox.Main()
	os.Exit(m.Run())
}

func TestSandboxCheck(t *testing.T) {
	s := sandbox.Check()
	if !s.Has(sandbox.Namespaces) {
		t.Skipf("this host has no user namespaces: %s", s.Missing[sandbox.Namespaces])
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"sandbox", "check"}, strings.NewReader(""), &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"namespaces", "landlock", "seccomp", "a program ran in a sandbox with all of them"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log("\n" + out.String())
}

// A Warden that runs as an ordinary user, or with an empty bounding set (a
// container with every capability dropped, a hardened systemd unit), still
// builds every sandbox layer it can instead of failing on the capabilities
// it has no right to drop.
func TestSandboxCheckWithoutPrivileges(t *testing.T) {
	if os.Getenv("WARDEN_TEST_UNPRIVILEGED") == "1" {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{"sandbox", "check"}, strings.NewReader(""), &out, &errOut); code != exitOK {
			t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
		}
		if !strings.Contains(out.String(), "a program ran in a sandbox with all of them") {
			t.Fatalf("no program ran:\n%s", out.String())
		}
		return
	}
	setpriv, err := exec.LookPath("setpriv")
	if os.Getuid() != 0 || err != nil {
		t.Skip("needs root and setpriv to drop to an ordinary user")
	}
	// The test binary, where nobody may run it.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "cli.test")
	copyFile(t, self, bin)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"ordinary user", nil},
		{"empty bounding set", []string{"--bounding-set", "-all"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups"}, tc.args...)
			args = append(args, bin, "-test.run=^TestSandboxCheckWithoutPrivileges$", "-test.v")
			cmd := exec.Command(setpriv, args...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "WARDEN_TEST_UNPRIVILEGED=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sandbox check as nobody: %v\n%s", err, out)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
