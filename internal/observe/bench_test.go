package observe

import (
	"context"
	"io"
	"log/slog"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/wardenmcp/warden/pipeline"
)

func benchCall(b *testing.B, h pipeline.Handler) {
	b.Helper()
	c := newCall(echoSpec, "echo")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := h(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMetricsStage(b *testing.B) {
	m := NewMetrics()
	b.Run("allow", func(b *testing.B) { benchCall(b, m.Stage(answer(&pipeline.Result{}, nil))) })
	b.Run("refuse", func(b *testing.B) {
		err := pipeline.Errorf(pipeline.RateLimited, "", "slow down")
		h := m.Stage(answer(nil, err))
		c := newCall(echoSpec, "echo")
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			h(ctx, c)
		}
	})
}

// discard is an exporter that drops spans, so that the benchmark measures
// the tracer and its batching, not a network.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

func BenchmarkTracerStage(b *testing.B) {
	ok := answer(&pipeline.Result{}, nil)
	pass := func(next pipeline.Handler) pipeline.Handler { return next }
	around := func(tr *Tracer) pipeline.Handler {
		return pipeline.Chain(ok, tr.Stage,
			tr.Around("audit", pass), tr.Around("authorize", pass), tr.Around("validate", pass),
			tr.Around("ratelimit", pass), tr.Around("execute", pass))
	}
	noop := &Tracer{}
	recording := func(ratio float64) *Tracer {
		return newTracer(TraceConfig{SampleRatio: ratio}, sdktrace.NewBatchSpanProcessor(discard{}))
	}
	b.Run("noop", func(b *testing.B) { benchCall(b, noop.Stage(ok)) })
	b.Run("noop/5 stages", func(b *testing.B) { benchCall(b, around(noop)) })
	b.Run("sampled", func(b *testing.B) {
		tr := recording(1)
		defer tr.Shutdown(context.Background())
		benchCall(b, tr.Stage(ok))
	})
	b.Run("sampled/5 stages", func(b *testing.B) {
		tr := recording(1)
		defer tr.Shutdown(context.Background())
		benchCall(b, around(tr))
	})
	b.Run("unsampled/5 stages", func(b *testing.B) {
		// The benchmark call's trace id falls outside a 1e-9 sample.
		tr := recording(1e-9)
		defer tr.Shutdown(context.Background())
		benchCall(b, around(tr))
	})
}

func BenchmarkLogHandler(b *testing.B) {
	log := NewLogger(io.Discard, "json", slog.LevelInfo)
	ctx := WithTraceID(context.Background(), testTraceID)
	b.Run("plain", func(b *testing.B) {
		log := slog.New(slog.NewJSONHandler(io.Discard, nil))
		b.ReportAllocs()
		for b.Loop() {
			log.InfoContext(ctx, "call failed", "method", "tools/call", "target", "echo", "trace_id", testTraceID)
		}
	})
	b.Run("trace id", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			log.InfoContext(ctx, "call failed", "method", "tools/call", "target", "echo")
		}
	})
	b.Run("redacted", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			log.InfoContext(ctx, "call failed", "method", "tools/call", "target", "echo", "authorization", "Bearer x")
		}
	})
}
