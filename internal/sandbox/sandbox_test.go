package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
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
		os.Exit(probe(p, os.Args[2:]))
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
	r := run(t, sandbox.Config{
		Path:   self,
		Args:   append([]string{"probe", what}, args...),
		Env:    []string{"WARDEN_PROBE=" + what},
		Egress: egress,
		Limits: limits,
	})
	t.Logf("probe %s %v: %s", what, args, strings.TrimSpace(r.stdout))
	return r
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

func TestCannotReadHostFiles(t *testing.T) {
	r := sh(t, `cat /etc/shadow || cat /etc/passwd || ls /root || ls /home`, sandbox.Limits{})
	if r.err == nil || strings.Contains(r.stdout, "root:") {
		t.Fatalf("read the host's files: stdout %q", r.stdout)
	}
	if p := probeIn(t, nil, "read", "/etc/shadow"); p.err == nil {
		t.Fatalf("read /etc/shadow: %s", p.stdout)
	}
}

func TestCannotSeeTheParentsEnvironment(t *testing.T) {
	t.Setenv("WARDEN_TEST_SECRET", "hunter2-parent-secret")
	r := sh(t, `env; cat /proc/*/environ; tr '\0' '\n' < /proc/1/environ`, sandbox.Limits{})
	if strings.Contains(r.stdout+r.stderr, "hunter2") {
		t.Fatalf("the parent's environment leaked: %s", r.stdout)
	}
	if !strings.Contains(r.stdout, "PATH=/usr/bin:/bin") {
		t.Fatalf("the declared environment is missing: %s", r.stdout)
	}
}

func TestCannotWriteOutsideTheScratchDirectory(t *testing.T) {
	outside := t.TempDir()
	r := sh(t, fmt.Sprintf(`echo x > %s/evil; echo x > /evil; echo x > /usr/bin/evil; echo x > /etc/evil; touch /proc/evil; echo ok > inside && cat inside`, outside), sandbox.Limits{})
	for _, p := range []string{outside + "/evil", "/evil", "/usr/bin/evil", "/etc/evil"} {
		if _, err := os.Stat(p); err == nil {
			os.Remove(p)
			t.Errorf("wrote %s", p)
		}
	}
	if strings.TrimSpace(r.stdout) != "ok" {
		t.Errorf("could not write the scratch directory: %q %s", r.stdout, r.stderr)
	}
}

func TestCannotConnectWithoutDeclaredEgress(t *testing.T) {
	// Something listens on the host at each port, so that a refusal is
	// the sandbox's doing.
	for _, addr := range []string{"127.0.0.1:5432", "127.0.0.1:6379", "169.254.169.254:80"} {
		t.Run(addr, func(t *testing.T) {
			if strings.HasPrefix(addr, "127.") {
				if l, err := net.Listen("tcp", addr); err == nil {
					defer l.Close()
				}
			}
			r := probeIn(t, nil, "connect", addr)
			if r.err == nil || strings.Contains(r.stdout, "allowed") {
				t.Fatalf("connected to %s: %s", addr, r.stdout)
			}
		})
	}
}

// listen serves a greeting on a loopback port of the host.
func listen(t *testing.T, greeting string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(greeting))
			c.Close()
		}
	}()
	return l.Addr().String()
}

func TestEgressReachesOnlyTheDeclaredPair(t *testing.T) {
	allowed := listen(t, "allowed-service")
	other := listen(t, "other-service")
	r := probeIn(t, []string{allowed}, "connect", allowed)
	if r.err != nil || !strings.Contains(r.stdout, "allowed-service") {
		t.Fatalf("the declared pair is unreachable: %v %s %s", r.err, r.stdout, r.stderr)
	}
	r = probeIn(t, []string{allowed}, "connect", other)
	if r.err == nil || strings.Contains(r.stdout, "other-service") {
		t.Fatalf("reached an undeclared port: %s", r.stdout)
	}
	_, port, _ := net.SplitHostPort(allowed)
	r = probeIn(t, []string{allowed}, "connect", "169.254.169.254:"+port)
	if r.err == nil {
		t.Fatalf("reached another host: %s", r.stdout)
	}
}

func TestForkBombIsStoppedByThePidsLimit(t *testing.T) {
	limits := sandbox.DefaultLimits
	limits.Processes = 16
	limits.Timeout = 20 * time.Second
	r := sh(t, `i=0; while [ $i -lt 64 ]; do sleep 30 & i=$((i+1)); done; echo started $i`, limits)
	if strings.Contains(r.stdout, "started 64") {
		t.Fatalf("started 64 processes under a limit of 16")
	}
	if r.err == nil || errors.Is(r.err, sandbox.ErrTimeout) {
		t.Fatalf("err %v, want the shell to fail to fork; stderr %s", r.err, r.stderr)
	}
	// The classic bomb ends too: killed at the time limit at worst.
	limits.Timeout = 3 * time.Second
	r = sh(t, `b() { b | b & }; b; wait`, limits)
	t.Logf("classic fork bomb: %v", r.err)
}

func TestMemoryHogIsKilled(t *testing.T) {
	limits := sandbox.DefaultLimits
	limits.Memory = 64 << 20
	r := sh(t, `x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done`, limits)
	if r.err == nil || errors.Is(r.err, sandbox.ErrTimeout) {
		t.Fatalf("err %v, want the hog to die of its memory limit", r.err)
	}
	t.Logf("memory hog: %v, %s", r.err, strings.TrimSpace(r.stderr))
}

func TestInfiniteLoopIsKilledAtTheTimeoutWithItsChildren(t *testing.T) {
	limits := sandbox.DefaultLimits
	limits.Timeout = 500 * time.Millisecond
	marker := t.TempDir()
	r := run(t, sandbox.Config{
		Path:     "/bin/sh",
		Args:     []string{"sh", "-c", `(while :; do :; done) & (sleep 1000; touch survived) & while :; do :; done`},
		ReadOnly: []string{"/usr/bin", "/bin"},
		Env:      []string{"PATH=/usr/bin:/bin"},
		Dir:      marker,
		Limits:   limits,
	})
	if !errors.Is(r.err, sandbox.ErrTimeout) {
		t.Fatalf("err %v, want ErrTimeout", r.err)
	}
	// Every process ran as the sandbox user: none is left on the host.
	out, _ := os.ReadDir("/proc")
	for _, e := range out {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) == nil && st.Uid == 65534 {
			cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if bytes.Contains(cmdline, []byte("sleep\x001000")) || bytes.HasPrefix(cmdline, []byte("sh\x00-c\x00(while")) {
				t.Fatalf("process %s survived: %q", e.Name(), cmdline)
			}
		}
	}
}

func TestCannotPtraceTheParent(t *testing.T) {
	r := probeIn(t, nil, "ptrace", strconv.Itoa(os.Getpid()))
	if r.err == nil {
		t.Fatalf("attached to the parent: %s", r.stdout)
	}
	r = probeIn(t, nil, "ptrace", "1")
	if r.err == nil {
		t.Fatalf("attached to init: %s", r.stdout)
	}
}

func TestCannotMountOrMakeNamespaces(t *testing.T) {
	for _, p := range []string{"mount", "unshare"} {
		if r := probeIn(t, nil, p); r.err == nil {
			t.Errorf("%s: %s", p, r.stdout)
		}
	}
	if r := sh(t, `mount -t tmpfs none /tmp`, sandbox.Limits{}); r.err == nil {
		t.Errorf("mount(8) succeeded")
	}
}

func TestCannotSeeHostProcesses(t *testing.T) {
	r := probeIn(t, nil, "procs")
	if r.err != nil || strings.TrimSpace(r.stdout) != "1 processes" {
		t.Fatalf("saw %q, want only itself (%v)", r.stdout, r.err)
	}
}

func TestMissingLayerRefusesUnlessBestEffort(t *testing.T) {
	s := &sandbox.Support{Missing: map[sandbox.Layer]string{sandbox.Cgroup: "not here"}}
	if _, _, err := s.Resolve(nil, false); err != nil {
		t.Fatalf("the default requires only what the host has: %v", err)
	}
	if _, _, err := s.Resolve([]sandbox.Layer{sandbox.Cgroup, sandbox.Seccomp}, false); err == nil {
		t.Fatal("a required missing layer was accepted")
	}
	got, skipped, err := s.Resolve([]sandbox.Layer{sandbox.Cgroup, sandbox.Seccomp}, true)
	if err != nil || slices.Contains(got, sandbox.Cgroup) || !slices.Contains(got, sandbox.Seccomp) || len(skipped) != 1 {
		t.Fatalf("best effort: %v %v %v", got, skipped, err)
	}
}

func TestLayerFailureRefusesToRun(t *testing.T) {
	// A read-only path that does not exist cannot be bound: the program
	// must not run without its view.
	r, err := sandbox.Command(&sandbox.Config{
		Path: "/bin/sh", Args: []string{"sh", "-c", "echo ran"}, Dir: t.TempDir(),
		ReadOnly: []string{"/does/not/exist"}, Limits: sandbox.DefaultLimits, Layers: layers(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r.Stdout = &out
	err = r.Run(context.Background())
	var se *sandbox.SetupError
	if !errors.As(err, &se) || se.Layer != sandbox.Filesystem || out.Len() > 0 {
		t.Fatalf("err %v, stdout %q: want a filesystem SetupError and nothing run", err, out.String())
	}
}

func TestLongLivedProcessWithPipes(t *testing.T) {
	cmd, err := sandbox.Command(&sandbox.Config{
		Path: "/bin/cat", Dir: t.TempDir(), Limits: sandbox.Limits{Processes: 16}, Layers: layers(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("stderr: %s", errOut.String())
		}
	}()
	for _, msg := range []string{"one\n", "two\n"} {
		if _, err := in.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(out, buf); err != nil || string(buf) != msg {
			t.Fatalf("echoed %q, %v", buf, err)
		}
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestRunsAScriptWithItsInterpreter(t *testing.T) {
	dir := t.TempDir()
	script := dir + "/hello"
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho scripted\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := run(t, sandbox.Config{Path: script})
	if r.err != nil || r.stdout != "scripted\n" {
		t.Fatalf("err %v, stdout %q, stderr %q", r.err, r.stdout, r.stderr)
	}
}

// Without namespaces (a host without them, with best_effort), the other
// layers still hold: Landlock confines the program to the declared paths
// of the host's own file system, and it runs as nobody.
func TestLayersHoldWithoutNamespaces(t *testing.T) {
	layers(t)
	// Without a view of its own, the program reaches its directory by
	// the host's path: make one nobody can traverse to.
	dir, err := os.MkdirTemp("", "warden-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := run(t, sandbox.Config{
		Path:     "/bin/sh",
		Dir:      dir,
		Args:     []string{"sh", "-c", `id -u; cat /etc/hostname; echo x > /tmp/warden-escape-$$ && echo wrote`},
		Env:      []string{"PATH=/usr/bin:/bin"},
		ReadOnly: []string{"/usr/bin", "/bin"},
		Limits:   sandbox.DefaultLimits,
		Layers:   []sandbox.Layer{sandbox.Rlimits, sandbox.Capabilities, sandbox.NoNewPrivs, sandbox.Landlock, sandbox.LandlockNet, sandbox.Seccomp, sandbox.Timeout},
	})
	if strings.TrimSpace(r.stdout) != "65534" {
		t.Fatalf("stdout %q, want only the uid 65534 (stderr %s)", r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "Permission denied") {
		t.Fatalf("stderr %q, want Landlock's refusals", r.stderr)
	}
}
