package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; the
// kernel ABI fixes it at 100 on the architectures Go runs on under Linux.
const clockTicks = 100

// memStatus reads VmHWM (peak resident set size since the process started)
// and VmRSS (current) from /proc/PID/status, in bytes.
func memStatus(pid int) (hwm, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		key, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		switch string(key) {
		case "VmHWM":
			hwm, err = parseKB(value)
		case "VmRSS":
			rss, err = parseKB(value)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status %s: %w", pid, key, err)
		}
	}
	if hwm == 0 || rss == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status has no VmHWM/VmRSS (a kernel thread or a zombie?)", pid)
	}
	return hwm, rss, nil
}

func parseKB(v []byte) (int64, error) {
	v = bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n * 1024, err
}

// cpuTime reads the user+system CPU time a process has used so far from
// /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may contain spaces;
	// every field after the last ')' is space-separated: state is field 3,
	// utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// machineBusy reads the CPU time all processes have used so far (every
// state of /proc/stat's "cpu" line but idle and iowait). Over a run, what is
// neither the server's nor the generator's belongs to other processes: on a
// shared machine that says whether a result can be trusted.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := bytes.Fields(line)
	if len(f) < 6 || string(f[0]) != "cpu" {
		return 0, errors.New("/proc/stat: unexpected format")
	}
	var busy int64
	// user nice system idle iowait irq softirq steal; guest time is already
	// counted in user and nice.
	for i, s := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

// selfCPUTime is the generator's own user+system CPU time: on a small machine
// it competes with the server for the same cores, and a report should say how
// much.
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssSampler records the largest VmRSS seen while it runs. VmHWM alone covers
// the whole life of the server (startup and warmup included); the sampled
// maximum is the peak during the measured run.
type rssSampler struct {
	pid  int
	stop chan struct{}
	done sync.WaitGroup
	max  int64
	err  error
}

func startRSSSampler(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{pid: pid, stop: make(chan struct{})}
	s.sample()
	s.done.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sample()
			}
		}
	})
	return s
}

func (s *rssSampler) sample() {
	_, rss, err := memStatus(s.pid)
	if err != nil {
		if s.err == nil {
			s.err = err
		}
		return
	}
	s.max = max(s.max, rss)
}

// Stop ends sampling, takes a last sample, and returns the maximum seen.
func (s *rssSampler) Stop() (int64, error) {
	close(s.stop)
	s.done.Wait()
	s.sample()
	return s.max, s.err
}
