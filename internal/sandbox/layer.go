package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	seccomp "github.com/elastic/go-seccomp-bpf"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// Layer is one kind of isolation the sandbox can apply.
type Layer string

// The layers, in the order the helper applies them.
const (
	Namespaces   Layer = "namespaces"   // new user, PID, mount, network, IPC and UTS namespaces
	Filesystem   Layer = "filesystem"   // pivot_root into a view of the declared paths only
	Network      Layer = "network"      // an empty network namespace; egress only to declared host:port
	Cgroup       Layer = "cgroup"       // memory and pids limits in a cgroup of the call's own
	Rlimits      Layer = "rlimits"      // CPU, address space, file size, open files, processes
	Capabilities Layer = "capabilities" // every capability dropped, bounding set included
	NoNewPrivs   Layer = "no_new_privs" // setuid binaries and file capabilities grant nothing
	Landlock     Layer = "landlock"     // filesystem access rules for the same view
	LandlockNet  Layer = "landlock_net" // TCP bind and connect rules (Landlock ABI 4 or later)
	Seccomp      Layer = "seccomp"      // a filter refusing ptrace, mount, kexec, bpf, namespaces, ...
	Timeout      Layer = "timeout"      // a wall-clock limit that kills the whole process tree
)

// Layers lists every layer, in the order they are applied.
var Layers = []Layer{Namespaces, Filesystem, Network, Cgroup, Rlimits, Capabilities, NoNewPrivs, Landlock, LandlockNet, Seccomp, Timeout}

// needs says which layers a layer cannot work without: the filesystem view
// and the empty network live in namespaces.
var needs = map[Layer]Layer{Filesystem: Namespaces, Network: Namespaces}

// ParseLayer parses a layer's name.
func ParseLayer(s string) (Layer, error) {
	for _, l := range Layers {
		if string(l) == s {
			return l, nil
		}
	}
	names := make([]string, len(Layers))
	for i, l := range Layers {
		names[i] = string(l)
	}
	return "", fmt.Errorf("unknown sandbox layer %q (layers: %s)", s, strings.Join(names, ", "))
}

// Support is what the host offers: for each layer, whether it works here
// and, when it does not, why.
type Support struct {
	// Missing maps each unsupported layer to the reason.
	Missing map[Layer]string
	// Detail says, for some supported layers, which variant is used
	// ("Landlock ABI 7", "cgroup v1").
	Detail map[Layer]string
}

// Has reports whether the host supports l.
func (s *Support) Has(l Layer) bool { _, missing := s.Missing[l]; return !missing }

// Supported lists the layers the host supports, in order.
func (s *Support) Supported() []Layer {
	var out []Layer
	for _, l := range Layers {
		if s.Has(l) {
			out = append(out, l)
		}
	}
	return out
}

// Check probes which layers this host supports. It is cheap enough to call
// at load time; it starts no process.
func Check() *Support {
	s := &Support{Missing: map[Layer]string{}, Detail: map[Layer]string{}}
	if runtime.GOOS != "linux" {
		for _, l := range Layers {
			if l != Timeout {
				s.Missing[l] = "needs Linux"
			}
		}
		return s
	}
	if n, err := readInt("/proc/sys/user/max_user_namespaces"); err != nil || n == 0 {
		s.Missing[Namespaces] = "user namespaces are disabled (user.max_user_namespaces is 0)"
	} else if os.Geteuid() != 0 {
		// Mapping the sandbox's user to nobody takes root.
		s.Missing[Namespaces] = "Warden does not run as root, which mapping the sandbox's user to nobody needs"
	}
	for l, dep := range needs {
		if !s.Has(dep) {
			s.Missing[l] = "needs " + string(dep)
		}
	}
	if cg, err := findCgroups(); err != nil {
		s.Missing[Cgroup] = err.Error()
	} else {
		s.Detail[Cgroup] = cg.String()
	}
	abi, err := ll.LandlockGetABIVersion()
	switch {
	case err != nil || abi < 1:
		s.Missing[Landlock] = "Landlock is not enabled in this kernel"
		s.Missing[LandlockNet] = "Landlock is not enabled in this kernel"
	case abi < 4:
		s.Detail[Landlock] = "ABI " + strconv.Itoa(abi)
		s.Missing[LandlockNet] = "needs Landlock ABI 4, the kernel has " + strconv.Itoa(abi)
	default:
		s.Detail[Landlock] = "ABI " + strconv.Itoa(abi)
		s.Detail[LandlockNet] = "ABI " + strconv.Itoa(abi)
	}
	if !seccomp.Supported() {
		s.Missing[Seccomp] = "seccomp filters are not supported by this kernel"
	}
	return s
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// Resolve decides which layers a tool gets: every layer the host supports,
// always. required lists the layers the tool cannot run without; empty
// means every layer the host supports. A required layer the host lacks is
// an error unless bestEffort, when the tool runs without it and skipped
// lists it.
func (s *Support) Resolve(required []Layer, bestEffort bool) (layers []Layer, skipped []Layer, err error) {
	var missing []string
	for _, l := range required {
		if !s.Has(l) {
			skipped = append(skipped, l)
			missing = append(missing, fmt.Sprintf("%s (%s)", l, s.Missing[l]))
		}
	}
	if len(missing) > 0 && !bestEffort {
		return nil, nil, fmt.Errorf("required sandbox layers missing on this host: %s; run `warden sandbox check`, or declare best_effort", strings.Join(missing, ", "))
	}
	return s.Supported(), skipped, nil
}

// cgroupRoot is where cgroup file systems are mounted.
var cgroupRoot = "/sys/fs/cgroup"

// cgroups are the directories a call's cgroups are made below: one per
// controller (memory, pids), which for cgroup v2 is the same directory.
type cgroups struct {
	v2     bool
	memory string
	pids   string
}

func (c *cgroups) String() string {
	if c.v2 {
		return "cgroup v2 (memory, pids)"
	}
	return "cgroup v1 (memory, pids)"
}

// findCgroups finds writable memory and pids cgroups to place calls in,
// below Warden's own.
func findCgroups() (*cgroups, error) {
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("cannot read /proc/self/cgroup: %v", err)
	}
	paths := map[string]string{} // controller, or "" for v2, to path
	for line := range strings.Lines(string(own)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			paths[""] = parts[2]
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			paths[c] = parts[2]
		}
	}
	if ctrl, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		have := strings.Fields(string(ctrl))
		if !slices.Contains(have, "memory") || !slices.Contains(have, "pids") {
			return nil, fmt.Errorf("the cgroup v2 hierarchy lacks the memory or pids controller")
		}
		dir := filepath.Join(cgroupRoot, paths[""])
		if err := probeDir(dir); err != nil {
			return nil, err
		}
		return &cgroups{v2: true, memory: dir, pids: dir}, nil
	}
	c := &cgroups{}
	for _, ctl := range []string{"memory", "pids"} {
		p, ok := paths[ctl]
		if !ok {
			return nil, fmt.Errorf("no cgroup v2 hierarchy and no cgroup v1 %s controller", ctl)
		}
		dir := filepath.Join(cgroupRoot, ctl, p)
		if err := probeDir(dir); err != nil {
			return nil, err
		}
		if ctl == "memory" {
			c.memory = dir
		} else {
			c.pids = dir
		}
	}
	return c, nil
}

// probeDir checks that a cgroup can be made below dir.
func probeDir(dir string) error {
	probe, err := os.MkdirTemp(dir, "warden-probe-")
	if err != nil {
		return fmt.Errorf("cannot create cgroups below %s: %v", dir, err)
	}
	return os.Remove(probe)
}
