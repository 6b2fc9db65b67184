package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroup is the cgroup (one per controller on cgroup v1) a sandboxed
// process runs in.
type cgroup struct {
	v2        bool
	dirs      []string // memory, then pids (the same on v2)
	oomKilled bool
}

func newCgroup(l Limits) (*cgroup, error) {
	base, err := findCgroups()
	if err != nil {
		return nil, err
	}
	cg := &cgroup{v2: base.v2}
	parents := []string{base.memory, base.pids}
	if base.v2 {
		parents = parents[:1]
	}
	for _, p := range parents {
		d, err := os.MkdirTemp(p, "warden-")
		if err != nil {
			cg.remove()
			return nil, err
		}
		cg.dirs = append(cg.dirs, d)
	}
	memDir, pidsDir := cg.dirs[0], cg.dirs[len(cg.dirs)-1]
	var writes [][2]string
	if l.Memory > 0 {
		mem := strconv.FormatInt(l.Memory, 10)
		if base.v2 {
			writes = append(writes, [2]string{filepath.Join(memDir, "memory.max"), mem}, [2]string{filepath.Join(memDir, "memory.swap.max"), "0"})
		} else {
			writes = append(writes, [2]string{filepath.Join(memDir, "memory.limit_in_bytes"), mem})
		}
	}
	if l.Processes > 0 {
		writes = append(writes, [2]string{filepath.Join(pidsDir, "pids.max"), strconv.Itoa(l.Processes)})
	}
	for _, w := range writes {
		if err := os.WriteFile(w[0], []byte(w[1]), 0); err != nil {
			// memory.swap.max is absent without swap accounting.
			if os.IsNotExist(err) && strings.HasSuffix(w[0], "swap.max") {
				continue
			}
			cg.remove()
			return nil, fmt.Errorf("setting %s: %w", w[0], err)
		}
	}
	return cg, nil
}

// add moves pid into the cgroup.
func (cg *cgroup) add(pid int) error {
	for _, d := range cg.dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("moving the process into %s: %w", d, err)
		}
	}
	return nil
}

// kill kills every process in the cgroup, where the kernel offers it.
func (cg *cgroup) kill() {
	if cg.v2 {
		_ = os.WriteFile(filepath.Join(cg.dirs[0], "cgroup.kill"), []byte("1"), 0)
	}
}

// remove notes whether the memory limit killed a process, and removes
// the cgroup; its processes have all exited.
func (cg *cgroup) remove() {
	if len(cg.dirs) > 0 {
		name := "memory.oom_control"
		if cg.v2 {
			name = "memory.events"
		}
		if b, err := os.ReadFile(filepath.Join(cg.dirs[0], name)); err == nil {
			for line := range strings.Lines(string(b)) {
				f := strings.Fields(line)
				if len(f) == 2 && f[0] == "oom_kill" && f[1] != "0" {
					cg.oomKilled = true
				}
			}
		}
	}
	for _, d := range cg.dirs {
		_ = os.Remove(d)
	}
	cg.dirs = nil
}
