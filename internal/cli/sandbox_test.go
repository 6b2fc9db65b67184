package cli

import (
	"bytes"
	"context"
	"os"
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
