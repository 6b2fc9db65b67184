// Package sandbox runs a program isolated by kernel features, without
// Docker: Warden re-executes itself as a helper that builds the isolation
// and then executes the program in its place.
//
//	func main() {
//		sandbox.Main() // first thing: in the helper, never returns
//		...
//	}
//
//	support := sandbox.Check()
//	layers, _, err := support.Resolve(nil, false) // every layer the host has
//	cmd, err := sandbox.Command(&sandbox.Config{
//		Path:     "/usr/bin/jq",
//		Args:     []string{"jq", ".name", "/data/customers.json"},
//		Dir:      scratch, // writable, the working directory
//		ReadOnly: []string{"/data/customers.json"},
//		Limits:   sandbox.DefaultLimits,
//		Layers:   layers,
//	})
//	cmd.Stdout = &out
//	err = cmd.Run(ctx)
//
// The helper, started in new user, PID, mount, network, IPC and UTS
// namespaces, applies the layers in order and fails closed: a layer that
// cannot be applied ends the helper with an error before the program runs
// (Start returns a *SetupError). The layers:
//
//   - filesystem: pivot_root into a read-only tmpfs holding only the
//     executable, the system library directories, the declared read-only
//     paths, the working directory (writable), a private /tmp, /dev/null,
//     /dev/zero, /dev/urandom and a fresh /proc;
//   - network: the new network namespace holds only loopback. Declared
//     egress (host:port) is reached at 127.0.0.1:port inside the sandbox:
//     the helper binds that port before the program runs and hands the
//     listening socket to Warden, which forwards each connection to the
//     declared host:port and nowhere else;
//   - cgroup: memory and pids limits in a cgroup of the process's own;
//   - rlimits, capabilities (all dropped, bounding set included; the
//     program runs as the unprivileged user nobody), no_new_privs;
//   - landlock: read-only access to the same paths, read-write to the
//     working directory and /tmp; TCP connect only to the egress ports and
//     no bind;
//   - seccomp: a deny list (ptrace, mount, kexec, modules, bpf, keyctl,
//     perf_event_open, namespace changes, io_uring, ...);
//   - timeout: the whole process tree is killed at the wall-clock limit
//     (the program is the PID namespace's init: when it dies, so does
//     every process it started).
//
// A Cmd serves one-shot commands (Run) and long-lived processes with pipes
// (StdinPipe, StdoutPipe, Start, Wait) alike.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Limits bound what a sandboxed process may use. A zero field means no
// limit of that kind, except as DefaultLimits says.
type Limits struct {
	// Timeout is the wall-clock limit; zero means none (a long-lived
	// process is stopped by cancelling its context).
	Timeout time.Duration
	// CPU is the CPU time limit, rounded up to seconds.
	CPU time.Duration
	// Memory caps the address space (rlimit) and the cgroup's memory.
	Memory int64
	// FileSize caps the size of any file written.
	FileSize int64
	// OpenFiles caps open file descriptors.
	OpenFiles int
	// Processes caps processes and threads (rlimit and cgroup pids).
	Processes int
}

// DefaultLimits are safe limits for a short command.
var DefaultLimits = Limits{
	Timeout:   10 * time.Second,
	CPU:       10 * time.Second,
	Memory:    512 << 20,
	FileSize:  64 << 20,
	OpenFiles: 256,
	Processes: 64,
}

// Config is one process to run in the sandbox.
type Config struct {
	// Path is the executable, an absolute path on the host.
	Path string
	// Args is argv, Args[0] included; nil means {Path}.
	Args []string
	// Env is the program's whole environment: nothing is inherited.
	Env []string
	// Dir is a host directory, writable by the program and its working
	// directory; it is seen at the same path inside. Required.
	Dir string
	// ReadOnly lists host paths (files or directories) the program may
	// read, seen at the same paths inside.
	ReadOnly []string
	// Egress lists host:port pairs the program may connect to, each at
	// 127.0.0.1:port inside the sandbox. Ports must differ.
	Egress []string
	Limits Limits
	// Layers are the layers to apply; see Support.Resolve.
	Layers []Layer
}

// SetupError reports that the sandbox could not be built: the program did
// not run.
type SetupError struct {
	Layer Layer
	Err   string
}

func (e *SetupError) Error() string {
	return fmt.Sprintf("sandbox layer %s: %s", e.Layer, e.Err)
}

// ErrTimeout is returned by Wait when the process was killed at the
// timeout.
var ErrTimeout = errors.New("sandbox: killed at the time limit")

// sandboxUID is the user (and group) the program runs as, on the host and
// inside: nobody.
const sandboxUID = 65534

// helperName and helperEnv mark the helper process; Main acts on them.
const (
	helperName = "warden-sandbox"
	helperEnv  = "WARDEN_SANDBOX_HELPER"
)

// Cmd is a sandboxed process, used like exec.Cmd.
type Cmd struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer

	cfg    *Config
	cmd    *exec.Cmd
	run    string // per-process directory holding the new root
	cg     *cgroup
	fwd    *forwarder
	cancel context.CancelFunc
	timer  *time.Timer

	mu       sync.Mutex
	timedOut bool
	done     bool
}

// Command checks cfg and returns the Cmd to run it.
func Command(cfg *Config) (*Cmd, error) {
	if !filepath.IsAbs(cfg.Path) {
		return nil, fmt.Errorf("sandbox: executable %q is not an absolute path", cfg.Path)
	}
	if cfg.Dir == "" || !filepath.IsAbs(cfg.Dir) {
		return nil, fmt.Errorf("sandbox: the working directory must be an absolute path")
	}
	for _, p := range cfg.ReadOnly {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("sandbox: read-only path %q is not absolute", p)
		}
	}
	if _, err := egressPorts(cfg.Egress); err != nil {
		return nil, err
	}
	for _, l := range cfg.Layers {
		if dep, ok := needs[l]; ok && !slices.Contains(cfg.Layers, dep) {
			return nil, fmt.Errorf("sandbox: layer %s needs layer %s", l, dep)
		}
	}
	return &Cmd{cfg: cfg}, nil
}

func (c *Cmd) has(l Layer) bool { return slices.Contains(c.cfg.Layers, l) }

// StdinPipe returns a pipe to the program's standard input; call it before
// Start.
func (c *Cmd) StdinPipe() (io.WriteCloser, error) {
	c.prepare()
	return c.cmd.StdinPipe()
}

// StdoutPipe returns a pipe from the program's standard output; call it
// before Start.
func (c *Cmd) StdoutPipe() (io.ReadCloser, error) {
	c.prepare()
	return c.cmd.StdoutPipe()
}

// prepare makes the helper's exec.Cmd once.
func (c *Cmd) prepare() {
	if c.cmd != nil {
		return
	}
	c.cmd = exec.Command("/proc/self/exe")
	c.cmd.Args = []string{helperName}
	c.cmd.Env = []string{helperEnv + "=1"}
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if c.has(Namespaces) {
		attr.Cloneflags = syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS |
			syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS
		// Root inside is root outside, so that the helper can reach the
		// paths it binds; the program itself runs as nobody, which maps
		// to nobody, and gets no capability.
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: sandboxUID, HostID: sandboxUID, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: sandboxUID, HostID: sandboxUID, Size: 1}}
		attr.GidMappingsEnableSetgroups = true
	}
	c.cmd.SysProcAttr = attr
}

// Run starts the process and waits for it.
func (c *Cmd) Run(ctx context.Context) error {
	if err := c.Start(ctx); err != nil {
		return err
	}
	return c.Wait()
}

// Start builds the sandbox and starts the program in it. It returns once
// the program has been executed, or with a *SetupError if a layer could
// not be applied. Cancelling ctx kills the process tree.
func (c *Cmd) Start(ctx context.Context) (err error) {
	c.prepare()
	defer func() {
		if err != nil {
			c.cleanup()
		}
	}()
	if c.Stdin != nil {
		c.cmd.Stdin = c.Stdin
	}
	if c.Stdout != nil {
		c.cmd.Stdout = c.Stdout
	}
	if c.Stderr != nil {
		c.cmd.Stderr = c.Stderr
	}

	if c.run, err = os.MkdirTemp("", "warden-sandbox-"); err != nil {
		return err
	}
	// The helper is root in its namespace: it reaches the run directory.
	root := filepath.Join(c.run, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		return err
	}
	if c.has(Namespaces) || os.Geteuid() == 0 {
		if err := os.Chown(c.cfg.Dir, sandboxUID, sandboxUID); err != nil {
			return fmt.Errorf("sandbox: giving the working directory to the sandbox user: %w", err)
		}
	}

	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer cfgR.Close()
	defer cfgW.Close()
	statR, statW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer statR.Close()
	defer statW.Close()
	c.cmd.ExtraFiles = []*os.File{cfgR, statW}
	var fdsParent *os.File
	if len(c.cfg.Egress) > 0 && c.has(Network) {
		pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		fdsParent = os.NewFile(uintptr(pair[0]), "egress")
		fdsChild := os.NewFile(uintptr(pair[1]), "egress-helper")
		defer fdsParent.Close()
		defer fdsChild.Close()
		c.cmd.ExtraFiles = append(c.cmd.ExtraFiles, fdsChild)
	}

	if c.has(Cgroup) {
		if c.cg, err = newCgroup(c.cfg.Limits); err != nil {
			return &SetupError{Layer: Cgroup, Err: err.Error()}
		}
	}
	if err := c.cmd.Start(); err != nil {
		if c.has(Namespaces) {
			return &SetupError{Layer: Namespaces, Err: err.Error()}
		}
		return err
	}
	cfgR.Close()
	statW.Close()
	pid := c.cmd.Process.Pid
	ctx, c.cancel = context.WithCancel(ctx)
	go func() {
		<-ctx.Done()
		c.kill()
	}()
	if c.cg != nil {
		// The helper waits for its configuration, so it is in the
		// cgroup before it does anything.
		if err := c.cg.add(pid); err != nil {
			c.kill()
			_ = c.cmd.Wait()
			return &SetupError{Layer: Cgroup, Err: err.Error()}
		}
	}
	h := helperConfig{Config: *c.cfg, Root: root}
	if err := json.NewEncoder(cfgW).Encode(&h); err != nil {
		c.kill()
		_ = c.cmd.Wait()
		return fmt.Errorf("sandbox: configuring the helper: %w", err)
	}
	cfgW.Close()
	if fdsParent != nil {
		c.fwd, err = receiveListeners(fdsParent, c.cfg.Egress)
		if err != nil {
			c.kill()
			_ = c.cmd.Wait()
			return &SetupError{Layer: Network, Err: err.Error()}
		}
	}
	// The status pipe closes on exec; anything written to it first is
	// the helper's failure.
	status, _ := io.ReadAll(statR)
	if len(status) > 0 {
		_ = c.cmd.Wait()
		var se SetupError
		if json.Unmarshal(status, &se) != nil {
			se = SetupError{Layer: Namespaces, Err: string(status)}
		}
		return &se
	}
	if t := c.cfg.Limits.Timeout; t > 0 && c.has(Timeout) {
		c.timer = time.AfterFunc(t, func() {
			c.mu.Lock()
			c.timedOut = true
			c.mu.Unlock()
			c.kill()
		})
	}
	return nil
}

// kill ends the whole process tree: the process group, and the PID
// namespace's init, whose death ends every process inside.
func (c *Cmd) kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done || c.cmd == nil || c.cmd.Process == nil {
		return
	}
	pid := c.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if c.cg != nil {
		c.cg.kill()
	}
}

// Wait waits for the program to exit and removes what the sandbox made. It
// returns ErrTimeout if the program was killed at the time limit, and an
// *exec.ExitError if it exited unsuccessfully.
func (c *Cmd) Wait() error {
	err := c.cmd.Wait()
	c.mu.Lock()
	c.done = true
	timedOut := c.timedOut
	c.mu.Unlock()
	c.cleanup()
	if timedOut {
		return ErrTimeout
	}
	return err
}

// ProcessState is the exited process's state, after Wait.
func (c *Cmd) ProcessState() *os.ProcessState { return c.cmd.ProcessState }

// OOMKilled reports whether the cgroup's memory limit killed a process,
// after Wait.
func (c *Cmd) OOMKilled() bool { return c.cg != nil && c.cg.oomKilled }

func (c *Cmd) cleanup() {
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.cancel != nil {
		c.cancel()
	}
	if c.fwd != nil {
		c.fwd.close()
	}
	if c.cg != nil {
		c.cg.remove()
	}
	if c.run != "" {
		_ = os.RemoveAll(c.run)
	}
}

// helperConfig is what the helper reads from its configuration pipe.
type helperConfig struct {
	Config
	Root string // an empty directory to build the new root on
}

// CheckEgress checks declared egress pairs: host:port, each port once.
func CheckEgress(egress []string) error {
	_, err := egressPorts(egress)
	return err
}

// egressPorts parses the egress pairs; two pairs may not share a port.
func egressPorts(egress []string) ([]uint16, error) {
	var ports []uint16
	for _, e := range egress {
		_, p, err := splitHostPort(e)
		if err != nil {
			return nil, err
		}
		if slices.Contains(ports, p) {
			return nil, fmt.Errorf("sandbox: egress %s: port %d is declared twice (each declared pair is reached at 127.0.0.1:port)", e, p)
		}
		ports = append(ports, p)
	}
	return ports, nil
}

func splitHostPort(hp string) (string, uint16, error) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil || host == "" {
		return "", 0, fmt.Errorf("sandbox: egress %q is not host:port", hp)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("sandbox: egress %q has no valid port", hp)
	}
	return host, uint16(n), nil
}
