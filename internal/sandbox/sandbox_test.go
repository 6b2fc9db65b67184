package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/sandbox"
)

// The test binary is its own sandbox helper, and, with WARDEN_PROBE set,
// a probe run inside a sandbox that attempts one escape and prints what
// happened.
func TestMain(m *testing.M) {
	sandbox.Main()
	if p := os.Getenv("WARDEN_PROBE"); p != "" {
		os.Exit(probe(p, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// probe attempts one thing a sandboxed program must not be able to do; it
// prints "allowed" and exits 0 if it could, or the error and exits 1.
func probe(what string, args []string) int {
	var err error
	switch what {
	case "connect":
		var c net.Conn
		c, err = net.DialTimeout("tcp", args[0], 5*time.Second)
		if err == nil {
			buf := make([]byte, 64)
			n, _ := c.Read(buf)
			fmt.Printf("read %q\n", buf[:n])
			c.Close()
		}
	case "ptrace":
		pid, _ := strconv.Atoi(args[0])
		err = syscall.PtraceAttach(pid)
	case "mount":
		err = syscall.Mount("tmpfs", "/tmp", "tmpfs", 0, "")
	case "unshare":
		err = syscall.Unshare(syscall.CLONE_NEWUSER)
	case "procs":
		entries, _ := os.ReadDir("/proc")
		n := 0
		for _, e := range entries {
			if _, err := strconv.Atoi(e.Name()); err == nil {
				n++
			}
		}
		fmt.Printf("%d processes\n", n)
		return 0
	case "read":
		_, err = os.ReadFile(args[0])
	default:
		fmt.Println("unknown probe", what)
		return 2
	}
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("allowed")
	return 0
}

// layers are every layer this host has; the tests need them all but the
// cgroup, which they report when it is missing.
func layers(t *testing.T) []sandbox.Layer {
	t.Helper()
	s := sandbox.Check()
	for _, l := range []sandbox.Layer{sandbox.Namespaces, sandbox.Filesystem, sandbox.Network, sandbox.Landlock, sandbox.LandlockNet, sandbox.Seccomp} {
		if !s.Has(l) {
			t.Skipf("this host lacks the sandbox layer %s (%s); `warden sandbox check` lists what it has", l, s.Missing[l])
		}
	}
	if !s.Has(sandbox.Cgroup) {
		t.Logf("no cgroup layer here: %s", s.Missing[sandbox.Cgroup])
	}
	return s.Supported()
}

type result struct {
	stdout, stderr string
	err            error
}

// run runs cfg in a sandbox with every layer, the given limits, and a new
// scratch directory.
func run(t *testing.T, cfg sandbox.Config) result {
	t.Helper()
	if cfg.Layers == nil {
		cfg.Layers = layers(t)
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Limits == (sandbox.Limits{}) {
		cfg.Limits = sandbox.DefaultLimits
	}
	cmd, err := sandbox.Command(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run(context.Background())
	var se *sandbox.SetupError
	if errors.As(err, &se) {
		t.Fatalf("the sandbox could not be built: %v", err)
	}
	return result{out.String(), errOut.String(), err}
}

// sh runs a fixed shell script, with the usual programs visible.
func sh(t *testing.T, script string, limits sandbox.Limits) result {
	t.Helper()
	return run(t, sandbox.Config{
		Path:     "/bin/sh",
		Args:     []string{"sh", "-c", script},
		Env:      []string{"PATH=/usr/bin:/bin"},
		ReadOnly: []string{"/usr/bin", "/bin"},
		Limits:   limits,
	})
}

// probeIn runs the test binary as a probe in a sandbox.
func probeIn(t *testing.T, egress []string, what string, args ...string) result {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	limits := sandbox.DefaultLimits
	limits.Memory = 0 // the race detector reserves far more address space
	return run(t, sandbox.Config{
		Path:   self,
		Args:   append([]string{"probe", what}, args...),
		Env:    []string{"WARDEN_PROBE=" + what},
		Egress: egress,
		Limits: limits,
	})
}

func TestRunsAProgram(t *testing.T) {
	r := sh(t, `echo hello; pwd; id -u; hostname`, sandbox.Limits{})
	if r.err != nil {
		t.Fatalf("err %v, stderr %s", r.err, r.stderr)
	}
	lines := strings.Fields(r.stdout)
	if len(lines) != 4 || lines[0] != "hello" || lines[2] != "65534" || lines[3] != "warden-sandbox" {
		t.Fatalf("stdout %q, want hello, the scratch directory, user 65534, host warden-sandbox", r.stdout)
	}
}

var _ = exec.ErrNotFound
