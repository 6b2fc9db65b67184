package audit

import (
	"context"
	"encoding/json"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/wardenmcp/warden/pipeline"
)

func BenchmarkWriterSQLite(b *testing.B)   { benchmarkWriter(b, openTestSQLite(b)) }
func BenchmarkWriterPostgres(b *testing.B) { benchmarkWriter(b, openTestPostgres(b)) }

// benchmarkWriter writes from 32 goroutines per CPU, as a loaded server
// would, each Write returning only once its batch is durable. ns/op is the
// wall time per record across all writers.
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
}

// BenchmarkAppendSQLite is the SQLite store alone appending batches of the
// sizes the writer makes at one client (an intent and its outcome) and at
// 32, with audit.durability os, so that the disk's latency stays out of
// it. cpu-ns/record, the process's CPU time (user and system: the WAL's
// writes included) per record, varies by a few percent from run to run on
// a shared machine, where ns/op varies by half: compare that.
func BenchmarkAppendSQLite(b *testing.B) {
	for _, n := range []int{2, 32} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := openSQLiteWith(b, "os")
			tmpl := call(1)
			tmpl.Phase, tmpl.Status, tmpl.ResultBytes, tmpl.ResultTokens, tmpl.Rows = Outcome, StatusOK, 1834, 459, 3
			tmpl.ArgsHash = ArgsHash(ArgsKey(secret), tmpl.Args)
			tmpl.Time = time.Now().UTC().Truncate(time.Microsecond)
			tmpl.Instance, tmpl.PrevHash, tmpl.Hash = "bench", tmpl.ArgsHash, tmpl.ArgsHash
			recs := make([]*Record, n)
			for i := range recs {
				r := *tmpl
				recs[i] = &r
			}
			seq := int64(0)
			ctx := context.Background()
			b.ReportAllocs()
			before := cpuTime()
			for b.Loop() {
				for _, r := range recs {
					seq++
					r.Seq = seq
				}
				if err := s.Append(ctx, recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime()-before).Nanoseconds())/float64(b.N*n), "cpu-ns/record")
		})
	}
}

// cpuTime is the CPU time the process has used, in user and system mode.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// nullStore keeps nothing: it lets a benchmark measure what it costs to
// build, prepare, chain and hash records, without a database.
type nullStore struct{}

func (nullStore) Append(context.Context, []*Record) error { return nil }
func (nullStore) Last(context.Context, string) (int64, string, error) {
	return 0, "", nil
}
func (nullStore) Scan(context.Context, Query, func(*Record) error) error { return nil }
func (nullStore) Close() error                                           { return nil }

// BenchmarkAuditorSQLite is one tools/call at a time through the audit
// stage on SQLite, in each durability mode: the latency the audit log adds
// to a call — two commits for a write (intent, then outcome), one for a
// read (its outcome, its only record).
func BenchmarkAuditorSQLite(b *testing.B) {
	for _, durability := range []string{"fsync", "os"} {
		for _, mode := range []pipeline.Mode{pipeline.Read, pipeline.Write} {
			b.Run(durability+"/"+mode.String(), func(b *testing.B) {
				benchmarkAuditor(b, openSQLiteWith(b, durability), mode)
			})
		}
	}
}

// BenchmarkAuditorCall is the audit stage's own cost for one tools/call
// (its records, arguments redacted and hashed), on a store that keeps
// nothing, one call at a time.
func BenchmarkAuditorCall(b *testing.B) {
	for _, mode := range []pipeline.Mode{pipeline.Read, pipeline.Write} {
		b.Run(mode.String(), func(b *testing.B) { benchmarkAuditor(b, nullStore{}, mode) })
	}
}

func benchmarkAuditor(b *testing.B, s Store, mode pipeline.Mode) {
	w := newWriter(b, s, "bench", WriterOptions{})
	a := NewAuditor(w, secret, nil)
	a.Redact = func(v any) any { return v }
	spec := &pipeline.Spec{Method: pipeline.CallTool, Name: "get_customer", Version: "1", Mode: mode, Source: "sqlite"}
	principal := &pipeline.Principal{ID: "acme-support", Tenant: "acme", AuthMethod: "api_key"}
	raw := json.RawMessage(`{"customer_id":"C-1001","include":["orders","tickets"],"limit":10}`)
	res := &pipeline.Result{Tool: &pipeline.ToolResult{
		Content:           []pipeline.Content{pipeline.Text(`{"rows":[{"id":"C-1001","name":"Ada Lovelace","tier":"platinum"}],"row_count":1}`)},
		StructuredContent: json.RawMessage(`{"rows":[{"id":"C-1001","name":"Ada Lovelace","tier":"platinum"}],"row_count":1}`),
	}, Rows: 1}
	h := pipeline.Chain(func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return res, nil }, a.Outcome, a.Intent)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c := &pipeline.Call{Spec: spec, Target: "get_customer", Raw: raw, Principal: principal,
			TraceID: "0123456789abcdef", RemoteAddr: "127.0.0.1:5555", Start: time.Now()}
		if _, err := h(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	st := w.Stats()
	b.ReportMetric(float64(st.Batches)/float64(b.N), "commits/op")
	b.ReportMetric(float64(st.Records)/float64(b.N), "records/op")
}
