package audit

import (
	"context"
	"testing"
)

func BenchmarkWriterSQLite(b *testing.B)   { benchmarkWriter(b, openTestSQLite(b)) }
func BenchmarkWriterPostgres(b *testing.B) { benchmarkWriter(b, openTestPostgres(b)) }

// benchmarkWriter writes from 32 goroutines per CPU, as a loaded server
// would, each Write returning only once its batch is durable.
func benchmarkWriter(b *testing.B, s Store) {
	w := newWriter(b, s, "bench", WriterOptions{})
	tmpl := call(1)
	tmpl.Phase, tmpl.Status, tmpl.ResultBytes, tmpl.ResultTokens, tmpl.Rows = Outcome, StatusOK, 1834, 459, 3
	tmpl.ArgsHash = ArgsHash(ArgsKey(secret), tmpl.Args)
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := *tmpl
			if err := w.Write(context.Background(), &r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	st := w.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(st.Records)/float64(max(st.Batches, 1)), "records/batch")
	b.ReportMetric(0, "ns/op")
}
