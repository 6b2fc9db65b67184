package sandbox

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// Main runs the sandbox helper when this process is one, and then never
// returns: it executes the sandboxed program, or exits with an error
// reported to Warden. In any other process it returns at once. Call it
// first thing in main, and in TestMain of tests that run sandboxes (the
// test binary is the helper then).
func Main() {
	// Both marks: the name the helper is started under and its one
	// environment variable, so that an operator's stray variable alone
	// does not turn Warden into a helper.
	if len(os.Args) != 1 || os.Args[0] != helperName || os.Getenv(helperEnv) != "1" {
		return
	}
	// Capabilities and the exec that follows are per thread: stay on one.
	runtime.LockOSThread()
	err := helper()
	se, ok := err.(*SetupError)
	if !ok {
		se = &SetupError{Layer: Namespaces, Err: err.Error()}
	}
	b, _ := json.Marshal(se)
	status := os.NewFile(4, "status")
	_, _ = status.Write(b)
	os.Exit(127)
}

// System library directories, bound read-only for dynamically linked
// programs.
var libDirs = []string{"/lib", "/lib64", "/lib32", "/usr/lib", "/usr/lib64", "/usr/lib32"}

// helper builds the sandbox in order and executes the program; it returns
// only on failure.
func helper() error {
	for fd := 3; fd <= 5; fd++ {
		syscall.CloseOnExec(fd)
	}
	var h helperConfig
	cfgFile := os.NewFile(3, "config")
	if err := json.NewDecoder(cfgFile).Decode(&h); err != nil {
		return fmt.Errorf("reading the configuration: %w", err)
	}
	cfgFile.Close()
	has := func(l Layer) bool { return slices.Contains(h.Layers, l) }
	fail := func(l Layer, err error) error { return &SetupError{Layer: l, Err: err.Error()} }

	ro := readOnlyPaths(&h)
	if has(Filesystem) {
		if err := buildRoot(&h, ro); err != nil {
			return fail(Filesystem, err)
		}
	}
	if has(Network) {
		if err := loopbackUp(); err != nil {
			return fail(Network, err)
		}
		if len(h.Egress) > 0 {
			if err := listenEgress(os.NewFile(5, "egress"), h.Egress); err != nil {
				return fail(Network, err)
			}
		}
	}
	if has(Namespaces) {
		if err := syscall.Sethostname([]byte("warden-sandbox")); err != nil {
			return fail(Namespaces, err)
		}
	}
	if has(Capabilities) {
		if err := dropBoundingSet(has(NoNewPrivs)); err != nil {
			return fail(Capabilities, err)
		}
	}
	// Landlock before changing user: its rules open the paths, which only
	// root may reach when they lie below private directories.
	if has(Landlock) || has(LandlockNet) {
		if err := restrictLandlock(&h, ro, has(Filesystem), has(Landlock), has(LandlockNet)); err != nil {
			return fail(Landlock, err)
		}
	}
	if os.Getuid() == 0 {
		if err := becomeNobody(); err != nil {
			return fail(Capabilities, err)
		}
	}
	if has(Capabilities) {
		if err := dropCapabilities(); err != nil {
			return fail(Capabilities, err)
		}
	}
	if has(NoNewPrivs) {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fail(NoNewPrivs, err)
		}
	}
	if has(Seccomp) {
		if err := loadSeccomp(); err != nil {
			return fail(Seccomp, err)
		}
	}
	if err := os.Chdir(h.Dir); err != nil {
		return fail(Filesystem, fmt.Errorf("entering the working directory: %w", err))
	}
	args := h.Args
	if len(args) == 0 {
		args = []string{h.Path}
	}
	// Everything execve needs is made before the limits are set: after
	// them, the helper must not allocate.
	path, err := syscall.BytePtrFromString(h.Path)
	if err != nil {
		return fail(Filesystem, err)
	}
	argv, err := syscall.SlicePtrFromStrings(args)
	if err != nil {
		return fail(Filesystem, err)
	}
	envv, err := syscall.SlicePtrFromStrings(h.Env)
	if err != nil {
		return fail(Filesystem, err)
	}
	if has(Rlimits) {
		if err := setRlimits(h.Limits); err != nil {
			return fail(Rlimits, err)
		}
	}
	_, _, errno := syscall.RawSyscall(syscall.SYS_EXECVE,
		uintptr(unsafe.Pointer(path)), uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])))
	return fail(Filesystem, fmt.Errorf("executing %s: %w", h.Path, errno))
}

// readOnlyPaths lists what the program may read: the executable, its ELF
// interpreter, the system library directories and the declared paths.
func readOnlyPaths(h *helperConfig) []string {
	paths := []string{h.Path}
	// A script needs its interpreter.
	if b, err := readHead(h.Path); err == nil && strings.HasPrefix(b, "#!") {
		line, _, _ := strings.Cut(b[2:], "\n")
		if fields := strings.Fields(line); len(fields) > 0 && filepath.IsAbs(fields[0]) {
			paths = append(paths, fields[0])
		}
	}
	if f, err := elf.Open(h.Path); err == nil {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				b := make([]byte, p.Filesz)
				if _, err := p.ReadAt(b, 0); err == nil {
					paths = append(paths, strings.TrimRight(string(b), "\x00"))
				}
			}
		}
		f.Close()
	}
	for _, d := range libDirs {
		if _, err := os.Stat(d); err == nil {
			paths = append(paths, d)
		}
	}
	return append(paths, h.ReadOnly...)
}

// readHead reads the start of a file.
func readHead(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, 256)
	n, _ := f.Read(b)
	return string(b[:n]), nil
}

// root builds the new root file system.
type root struct {
	dir   string
	bound []string // host paths bound so far
}

// buildRoot makes the program's whole view of the file system and moves
// into it: a read-only tmpfs holding only the given paths, the working
// directory, /tmp, three devices and /proc.
func buildRoot(h *helperConfig, ro []string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	r := &root{dir: h.Root}
	if err := unix.Mount("tmpfs", r.dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		return fmt.Errorf("mounting the new root: %w", err)
	}
	// /tmp first: declared paths below it are bound on top.
	tmp := filepath.Join(r.dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	tmpSize := "size=16m"
	if h.Limits.FileSize > 0 {
		tmpSize = fmt.Sprintf("size=%d", h.Limits.FileSize)
	}
	if err := unix.Mount("tmpfs", tmp, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,"+tmpSize); err != nil {
		return fmt.Errorf("mounting /tmp: %w", err)
	}
	// Parents first, so that a path inside one already bound is skipped.
	sorted := slices.Clone(ro)
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) < len(sorted[j]) })
	for _, p := range sorted {
		if err := r.add(p, false, 0); err != nil {
			return fmt.Errorf("binding %s: %w", p, err)
		}
	}
	for _, dev := range []string{"/dev/null", "/dev/zero", "/dev/urandom"} {
		if err := r.add(dev, dev != "/dev/urandom", 0); err != nil {
			return fmt.Errorf("binding %s: %w", dev, err)
		}
	}
	if err := r.add(h.Dir, true, 0); err != nil {
		return fmt.Errorf("binding the working directory: %w", err)
	}
	proc := filepath.Join(r.dir, "proc")
	if err := os.MkdirAll(proc, 0o555); err != nil {
		return err
	}
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	old := filepath.Join(r.dir, ".old")
	if err := os.Mkdir(old, 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(r.dir, old); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.old", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the host's file system: %w", err)
	}
	if err := os.Remove("/.old"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("making the new root read-only: %w", err)
	}
	return nil
}

// add makes host path p visible at the same path in the new root,
// recreating the symbolic links on the way (/bin -> usr/bin) so that the
// program finds it by the name it knows.
func (r *root) add(p string, rw bool, depth int) error {
	if depth > 40 {
		return errors.New("too many symbolic links")
	}
	p = filepath.Clean(p)
	if !rw {
		for _, b := range r.bound {
			if p == b || strings.HasPrefix(p, b+"/") {
				return nil // already visible
			}
		}
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	for i, part := range parts {
		next := filepath.Join(cur, part)
		fi, err := os.Lstat(next)
		if err != nil {
			return err
		}
		inside := filepath.Join(r.dir, next)
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(next)
			if err != nil {
				return err
			}
			if _, err := os.Lstat(inside); errors.Is(err, os.ErrNotExist) {
				if err := os.Symlink(target, inside); err != nil {
					return err
				}
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			return r.add(filepath.Join(append([]string{target}, parts[i+1:]...)...), rw, depth+1)
		}
		if i == len(parts)-1 {
			return r.bind(next, inside, fi, rw)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", next)
		}
		if err := os.Mkdir(inside, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		cur = next
	}
	return nil
}

// bind bind-mounts src at dst, read-only unless rw, never setuid, and
// without devices unless src is one.
func (r *root) bind(src, dst string, fi os.FileInfo, rw bool) error {
	if fi.IsDir() {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
	} else if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(dst, nil, 0o644); err != nil {
			return err
		}
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(src, &st); err != nil {
		return err
	}
	// A remount in a user namespace must keep the flags the host's mount
	// has locked.
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID)
	flags |= uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME)
	if st.Flags&unix.ST_RELATIME != 0 {
		flags |= unix.MS_RELATIME
	}
	if fi.Mode()&os.ModeDevice == 0 {
		flags |= unix.MS_NODEV
	}
	if !rw || st.Flags&unix.ST_RDONLY != 0 {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		return fmt.Errorf("remounting: %w", err)
	}
	r.bound = append(r.bound, src)
	return nil
}

// loopbackUp brings up lo, the only interface of the new network
// namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// dropBoundingSet removes every capability from the bounding set, so that
// no exec can gain one back. A capability already absent is skipped: a
// Warden started without capabilities (a container, a pod, a systemd unit
// with an empty bounding set) has nothing there to drop and no right to
// call PR_CAPBSET_DROP. When one is present but cannot be dropped (Warden
// runs as an ordinary user, without CAP_SETPCAP), the guarantee still
// holds if no_new_privs follows, since then no exec grants a capability;
// without it, the layer fails.
func dropBoundingSet(noNewPrivs bool) error {
	for c := 0; c <= 63; c++ {
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			break // past the last capability
		}
		if err != nil {
			return fmt.Errorf("reading capability %d of the bounding set: %w", c, err)
		}
		if in == 0 {
			continue
		}
		err = unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EPERM) && noNewPrivs {
			continue // no exec can grant it: see above
		}
		if err != nil {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
		}
	}
	return unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
}

// becomeNobody switches to the unprivileged user the program runs as.
func becomeNobody() error {
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(sandboxUID, sandboxUID, sandboxUID); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(sandboxUID, sandboxUID, sandboxUID); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	return nil
}

// dropCapabilities clears every capability set of this thread and checks
// that they are empty.
func dropCapabilities() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	for _, d := range data {
		if d.Effective|d.Permitted|d.Inheritable != 0 {
			return errors.New("capabilities remain after dropping them")
		}
	}
	return nil
}

// landlockConfigs are the rule sets by Landlock ABI version.
var landlockConfigs = []landlock.Config{landlock.V1, landlock.V2, landlock.V3, landlock.V4, landlock.V5, landlock.V6, landlock.V7}

// restrictLandlock allows reading the read-only paths and /dev/urandom,
// writing the working directory, /dev/null and /dev/zero — and, inside the
// sandbox's own view, reading /proc and writing /tmp — and connecting over
// TCP to the egress ports only.
func restrictLandlock(h *helperConfig, ro []string, view, fs, net bool) error {
	abi, err := ll.LandlockGetABIVersion()
	if err != nil || abi < 1 {
		return errors.New("landlock is not enabled in this kernel")
	}
	if net && abi < 4 {
		return fmt.Errorf("TCP rules need Landlock ABI 4, the kernel has %d", abi)
	}
	cfg := landlockConfigs[min(abi, len(landlockConfigs))-1]
	var rules []landlock.Rule
	if fs {
		readable, writable := append(ro, "/dev/urandom"), []string{h.Dir}
		// /proc and /tmp are the sandbox's own only in its own view:
		// without it they are the host's, and stay out of reach.
		if view {
			readable, writable = append(readable, "/proc"), append(writable, "/tmp")
		}
		var dirs, files []string
		for _, p := range readable {
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			if fi.IsDir() {
				dirs = append(dirs, p)
			} else {
				files = append(files, p)
			}
		}
		rules = append(rules, landlock.RODirs(dirs...), landlock.ROFiles(files...),
			landlock.RWDirs(writable...), landlock.RWFiles("/dev/null", "/dev/zero"))
	}
	if net {
		ports, err := egressPorts(h.Egress)
		if err != nil {
			return err
		}
		for _, p := range ports {
			rules = append(rules, landlock.ConnectTCP(p))
		}
	}
	switch {
	case fs && net:
		return cfg.Restrict(rules...)
	case fs:
		return cfg.RestrictPaths(rules...)
	default:
		return cfg.RestrictNet(rules...)
	}
}

// deniedSyscalls are refused with EPERM: debugging other processes,
// changing mounts or namespaces, loading code into the kernel, kernel
// keyrings, performance counters, io_uring (which bypasses seccomp),
// and the host's clock, swap and power.
var deniedSyscalls = []string{
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount", "fspick", "fsconfig", "mount_setattr",
	"unshare", "setns",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"bpf", "perf_event_open", "userfaultfd",
	"keyctl", "add_key", "request_key",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"open_by_handle_at", "name_to_handle_at",
	"swapon", "swapoff", "reboot", "acct", "syslog", "quotactl",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
	"iopl", "ioperm", "sethostname", "setdomainname", "vhangup",
}

// namespaceFlags are the clone flags that make new namespaces.
const namespaceFlags = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

func loadSeccomp() error {
	return seccomp.LoadFilter(seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionAllow,
			Syscalls: []seccomp.SyscallGroup{
				{Action: seccomp.ActionErrno, Names: deniedSyscalls},
				{Action: seccomp.ActionErrno, NamesWithCondtions: []seccomp.NameWithConditions{{
					Name:       "clone",
					Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: namespaceFlags}},
				}}},
				// clone3 passes its flags in memory, out of a filter's
				// reach: "not implemented" makes the C library fall back
				// to clone, filtered above.
				{Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS), Names: []string{"clone3"}},
			},
		},
	})
}

// setRlimits sets the limits with raw system calls: the helper must not
// allocate once the address space is capped.
func setRlimits(l Limits) error {
	set := func(res int, v uint64) error {
		lim := unix.Rlimit{Cur: v, Max: v}
		_, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, 0, uintptr(res), uintptr(unsafe.Pointer(&lim)), 0, 0, 0)
		if errno != 0 {
			return errno
		}
		return nil
	}
	if err := set(unix.RLIMIT_CORE, 0); err != nil {
		return err
	}
	if l.CPU > 0 {
		secs := uint64((l.CPU + 999_999_999) / 1_000_000_000)
		if err := set(unix.RLIMIT_CPU, secs); err != nil {
			return err
		}
	}
	for _, r := range []struct {
		res int
		v   int64
	}{
		{unix.RLIMIT_FSIZE, l.FileSize},
		{unix.RLIMIT_NOFILE, int64(l.OpenFiles)},
		{unix.RLIMIT_NPROC, int64(l.Processes)},
		{unix.RLIMIT_AS, l.Memory},
	} {
		if r.v > 0 {
			if err := set(r.res, uint64(r.v)); err != nil {
				return err
			}
		}
	}
	return nil
}
