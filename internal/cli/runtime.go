package cli

import (
	"log/slog"
	"math"
	"os"
	"runtime/debug"

	"github.com/wardenmcp/warden/internal/config"
)

// applyRuntime sets the Go runtime's soft memory limit and GC percentage
// from server.runtime, unless the GOMEMLIMIT or GOGC environment variable
// is set, which the runtime has already applied and which win. It logs
// the settings in effect.
func applyRuntime(rt config.Runtime, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") == "" {
		limit := int64(math.MaxInt64) // the runtime's "no limit"
		if rt.MemoryLimitMiB > 0 {
			limit = int64(rt.MemoryLimitMiB) << 20
		}
		debug.SetMemoryLimit(limit)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(rt.GCPercent)
	}
	limit := debug.SetMemoryLimit(-1)
	gc := debug.SetGCPercent(-1)
	debug.SetGCPercent(gc)
	attrs := []any{"gc_percent", gc}
	if limit == math.MaxInt64 {
		attrs = append(attrs, "memory_limit", "none")
	} else {
		attrs = append(attrs, "memory_limit_mib", limit>>20)
	}
	log.Debug("Go runtime memory settings", attrs...)
}
