package cli

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"

	"github.com/wardenmcp/warden/internal/config"
)

// restoreRuntime puts the test binary's memory limit and GC percentage
// back when the test ends.
func restoreRuntime(t *testing.T) {
	limit := debug.SetMemoryLimit(-1)
	gc := debug.SetGCPercent(-1)
	debug.SetGCPercent(gc)
	t.Cleanup(func() {
		debug.SetMemoryLimit(limit)
		debug.SetGCPercent(gc)
	})
}

func TestApplyRuntime(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	t.Run("settings", func(t *testing.T) {
		restoreRuntime(t)
		t.Setenv("GOMEMLIMIT", "")
		t.Setenv("GOGC", "")
		applyRuntime(config.Runtime{MemoryLimitMiB: 64, GCPercent: 150}, log)
		if got := debug.SetMemoryLimit(-1); got != 64<<20 {
			t.Errorf("memory limit = %d, want %d", got, 64<<20)
		}
		if got := debug.SetGCPercent(150); got != 150 {
			t.Errorf("GC percent = %d, want 150", got)
		}
	})
	t.Run("no limit", func(t *testing.T) {
		restoreRuntime(t)
		t.Setenv("GOMEMLIMIT", "")
		debug.SetMemoryLimit(64 << 20)
		applyRuntime(config.Runtime{MemoryLimitMiB: -1, GCPercent: 100}, log)
		if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
			t.Errorf("memory limit = %d, want none", got)
		}
	})
	t.Run("environment wins", func(t *testing.T) {
		restoreRuntime(t)
		// The runtime read these at start; set them as they would be.
		t.Setenv("GOMEMLIMIT", "96MiB")
		t.Setenv("GOGC", "80")
		debug.SetMemoryLimit(96 << 20)
		debug.SetGCPercent(80)
		applyRuntime(config.Runtime{MemoryLimitMiB: 256, GCPercent: 100}, log)
		if got := debug.SetMemoryLimit(-1); got != 96<<20 {
			t.Errorf("memory limit = %d, want GOMEMLIMIT's %d", got, 96<<20)
		}
		if got := debug.SetGCPercent(80); got != 80 {
			t.Errorf("GC percent = %d, want GOGC's 80", got)
		}
	})
}

// The defaults are what serve applies when the file says nothing.
func TestRuntimeDefaults(t *testing.T) {
	cfg, err := config.Load(demoConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if rt := cfg.Server.Runtime; rt.MemoryLimitMiB != config.DefaultMemoryLimitMiB || rt.GCPercent != config.DefaultGCPercent {
		t.Errorf("server.runtime = %+v, want the defaults %d MiB, %d%%", rt, config.DefaultMemoryLimitMiB, config.DefaultGCPercent)
	}
}
