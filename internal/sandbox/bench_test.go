package sandbox_test

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/sandbox"
)

// The cost of starting a program in the sandbox, against a plain exec of
// the same program (/bin/true): p50 and p99 of one start-to-exit, and
// calls per second with 8 running at once. BENCHMARKS.md has the numbers.

func BenchmarkStartPlain(b *testing.B) {
	bench(b, func() error { return exec.Command("/bin/true").Run() })
}

func BenchmarkStartSandboxed(b *testing.B) {
	layers := benchLayers(b)
	bench(b, func() error { return sandboxedTrue(b, layers) })
}

func BenchmarkConcurrent8Plain(b *testing.B) {
	concurrent(b, func() error { return exec.Command("/bin/true").Run() })
}

func BenchmarkConcurrent8Sandboxed(b *testing.B) {
	layers := benchLayers(b)
	concurrent(b, func() error { return sandboxedTrue(b, layers) })
}

func benchLayers(b *testing.B) []sandbox.Layer {
	s := sandbox.Check()
	if !s.Has(sandbox.Namespaces) {
		b.Skipf("no user namespaces here: %s", s.Missing[sandbox.Namespaces])
	}
	if os.Getenv("BENCH_NO_CGROUP") != "" {
		return slices.DeleteFunc(s.Supported(), func(l sandbox.Layer) bool { return l == sandbox.Cgroup })
	}
	return s.Supported()
}

func sandboxedTrue(b *testing.B, layers []sandbox.Layer) error {
	dir, err := os.MkdirTemp("", "bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cmd, err := sandbox.Command(&sandbox.Config{Path: "/bin/true", Dir: dir, Limits: sandbox.DefaultLimits, Layers: layers})
	if err != nil {
		return err
	}
	return cmd.Run(context.Background())
}

// bench runs f b.N times and reports the p50 and p99 of its duration.
func bench(b *testing.B, f func() error) {
	d := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
}

// concurrent runs f b.N times from 8 goroutines and reports calls per
// second.
func concurrent(b *testing.B, f func() error) {
	var wg sync.WaitGroup
	work := make(chan struct{})
	start := time.Now()
	for range 8 {
		wg.Go(func() {
			for range work {
				if err := f(); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
}
