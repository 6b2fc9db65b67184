package anomaly

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/pipeline"
)

// BenchmarkObserve is what watching the audit stream costs per record, for
// the records most calls make (a read's outcome, matching no rule) and for
// those every rule counts.
func BenchmarkObserve(b *testing.B) {
	rules := Rules{MaxRows: 1000, MaxDestructivePerMinute: 100, MaxRefusalsPerMinute: 100}
	cases := []struct {
		name string
		rec  func(p string) *audit.Record
	}{
		{"read outcome", func(p string) *audit.Record { return result(p, 10) }},
		{"write intent", writeIntent},
		{"refusal", refusal},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			d, err := New(context.Background(), rules, newMemStore(), slog.New(slog.DiscardHandler), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			recs := make([]*audit.Record, 256)
			for i := range recs {
				recs[i] = bc.rec(fmt.Sprint("principal-", i))
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1)) * 31
				for pb.Next() {
					d.Observe(recs[i%len(recs)])
					i++
				}
			})
		})
	}
}

// BenchmarkStage is what enforcing suspensions costs per call: answered by
// the negative cache, and by the SQLite state store when the cache has
// expired.
func BenchmarkStage(b *testing.B) {
	ctx := context.Background()
	cfg := &config.Config{Dir: b.TempDir()}
	store, err := OpenStore(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	tool := func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return nil, nil }
	cases := []struct {
		name string
		now  func() time.Time
	}{
		{"cached", time.Now},
		{"sqlite lookup", expiringClock()},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			d, err := newDetector(ctx, Rules{}, store, slog.New(slog.DiscardHandler), nil, options{now: bc.now, retry: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			h := d.Stage(tool)
			calls := make([]*pipeline.Call, 256)
			for i := range calls {
				calls[i] = &pipeline.Call{Target: "t", Principal: &pipeline.Principal{ID: fmt.Sprint("principal-", i)}}
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1)) * 31
				for pb.Next() {
					if _, err := h(ctx, calls[i%len(calls)]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		})
	}
}

// expiringClock moves on by more than the negative cache's lifetime each
// time it is read, so that every call asks the store.
func expiringClock() func() time.Time {
	var ticks atomic.Int64
	return func() time.Time { return t0.Add(time.Duration(ticks.Add(1)) * 2 * negativeTTL) }
}
