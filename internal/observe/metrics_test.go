package observe

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/pipeline"
)

var echoSpec = &pipeline.Spec{Method: pipeline.CallTool, Name: "echo", Scope: "echo"}

func newCall(spec *pipeline.Spec, target string) *pipeline.Call {
	return &pipeline.Call{
		Spec:      spec,
		Target:    target,
		Principal: &pipeline.Principal{ID: "alice@example.com", Tenant: "acme", AuthMethod: "api_key"},
		TraceID:   "4bf92f3577b34da6a3ce929d0e0e4736",
		Start:     time.Now(),
	}
}

// answer returns a handler that answers every call with res and err.
func answer(res *pipeline.Result, err error) pipeline.Handler {
	return func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return res, err }
}

func TestMetricsStageCounts(t *testing.T) {
	ok := &pipeline.Result{Tool: &pipeline.ToolResult{}}
	tests := []struct {
		name         string
		res          *pipeline.Result
		err          error
		decision     string
		code         string
		rateLimited  float64
		wantOriginal bool
	}{
		{"allowed", ok, nil, "allow", "", 0, true},
		{"tool answered with an error", &pipeline.Result{Tool: &pipeline.ToolResult{IsError: true}}, nil, "error", "", 0, true},
		{"permission denied", nil, pipeline.Errorf(pipeline.PermissionDenied, "", "no"), "refuse", "PERMISSION_DENIED", 0, true},
		{"invalid argument", nil, pipeline.Errorf(pipeline.InvalidArgument, "", "bad"), "refuse", "INVALID_ARGUMENT", 0, true},
		{"rate limited", nil, pipeline.Errorf(pipeline.RateLimited, "", "slow down").WithRetryAfter(time.Second), "refuse", "RATE_LIMITED", 1, true},
		{"approval required", nil, pipeline.Errorf(pipeline.ApprovalRequired, "", "ask"), "refuse", "APPROVAL_REQUIRED", 0, true},
		{"timeout", nil, pipeline.Errorf(pipeline.Timeout, "", "slow"), "error", "TIMEOUT", 0, true},
		{"audit unavailable", nil, pipeline.Errorf(pipeline.AuditUnavailable, "", "down"), "error", "AUDIT_UNAVAILABLE", 0, true},
		{"wrapped refusal", nil, errors.Join(errors.New("context"), pipeline.Errorf(pipeline.PermissionDenied, "", "no")), "refuse", "PERMISSION_DENIED", 0, true},
		{"internal failure", nil, errors.New("connection refused to db.internal:5432"), "error", "INTERNAL", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMetrics()
			h := m.Stage(answer(tt.res, tt.err))
			res, err := h(context.Background(), newCall(echoSpec, "echo"))
			if res != tt.res || err != tt.err {
				t.Fatalf("stage changed the answer: got (%v, %v), want (%v, %v)", res, err, tt.res, tt.err)
			}
			if got := testutil.ToFloat64(m.calls.WithLabelValues("tools/call", "echo", tt.decision, tt.code)); got != 1 {
				t.Errorf("warden_calls_total{decision=%q,error_code=%q} = %v, want 1", tt.decision, tt.code, got)
			}
			if n := testutil.CollectAndCount(m.calls); n != 1 {
				t.Errorf("warden_calls_total has %d series, want 1", n)
			}
			if got := testutil.ToFloat64(m.rateLimited.WithLabelValues("tools/call", "echo")); got != tt.rateLimited {
				t.Errorf("warden_rate_limited_total = %v, want %v", got, tt.rateLimited)
			}
			if got := histogram(t, m, "warden_call_duration_seconds").GetSampleCount(); got != 1 {
				t.Errorf("warden_call_duration_seconds count = %d, want 1", got)
			}
		})
	}
}

func TestMetricsStageObservesDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMetrics()
		h := m.Stage(func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
			time.Sleep(30 * time.Millisecond) // fake time: exactly 30ms pass
			return &pipeline.Result{}, nil
		})
		for range 2 {
			h(context.Background(), newCall(echoSpec, "echo"))
		}
		hist := histogram(t, m, "warden_call_duration_seconds")
		if got := hist.GetSampleSum(); got != 0.06 {
			t.Errorf("sum = %v, want 0.06", got)
		}
		for _, b := range hist.GetBucket() {
			want := uint64(0)
			if b.GetUpperBound() >= 0.03 {
				want = 2
			}
			if b.GetCumulativeCount() != want {
				t.Errorf("bucket le=%v has %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
			}
		}
	})
}

// A resource template's calls each request their own URI; labels use the
// template's name, so that series stay bounded by configuration.
func TestMetricsLabelByConfiguredName(t *testing.T) {
	m := NewMetrics()
	spec := &pipeline.Spec{Method: pipeline.ReadResource, Name: "customer", Scope: "crm"}
	h := m.Stage(answer(&pipeline.Result{}, nil))
	for _, uri := range []string{"crm://customers/1", "crm://customers/2", "crm://customers/3"} {
		h(context.Background(), newCall(spec, uri))
	}
	refuse := m.Stage(answer(nil, pipeline.Errorf(pipeline.NotFound, "", "no such customer")))
	refuse(context.Background(), newCall(spec, "crm://customers/4"))

	if got := testutil.ToFloat64(m.calls.WithLabelValues("resources/read", "customer", "allow", "")); got != 3 {
		t.Errorf("allowed reads of customer = %v, want 3", got)
	}
	if n := testutil.CollectAndCount(m.calls); n != 2 {
		t.Errorf("warden_calls_total has %d series, want 2 (allow and refuse of one target)", n)
	}
	body := scrape(t, m)
	for _, leak := range []string{"crm://", "alice", "acme"} {
		if strings.Contains(body, leak) {
			t.Errorf("/metrics mentions %q: a label is unbounded or identifies a caller", leak)
		}
	}
}

func TestMetricsHandlerServesText(t *testing.T) {
	m := NewMetrics()
	m.Stage(answer(&pipeline.Result{}, nil))(context.Background(), newCall(echoSpec, "echo"))
	m.Redactions("email", 2)
	m.Redactions("email", 0)
	m.AuthFailures("expired")

	body := scrape(t, m)
	for _, want := range []string{
		"# TYPE warden_calls_total counter",
		`warden_calls_total{decision="allow",error_code="",method="tools/call",target="echo"} 1`,
		"# TYPE warden_call_duration_seconds histogram",
		`warden_call_duration_seconds_count{method="tools/call",target="echo"} 1`,
		`warden_redactions_total{kind="email"} 2`,
		`warden_auth_failures_total{reason="expired"} 1`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestObserveAudit(t *testing.T) {
	m := NewMetrics()
	stats := audit.Stats{Records: 1000, Batches: 40, LastBatch: 12, MaxBatch: 256, Failed: 3, Rejected: 2, SinkErrors: 1, QueueDepth: 7, QueueSize: 4096}
	m.ObserveAudit(func() audit.Stats { return stats })
	want := `
# HELP warden_audit_batches_total Successful audit appends (group commits); records_total / batches_total is the mean batch size.
# TYPE warden_audit_batches_total counter
warden_audit_batches_total 40
# HELP warden_audit_failed_records_total Audit records whose append failed: their calls were refused.
# TYPE warden_audit_failed_records_total counter
warden_audit_failed_records_total 3
# HELP warden_audit_last_batch_size Records in the latest successful audit append.
# TYPE warden_audit_last_batch_size gauge
warden_audit_last_batch_size 12
# HELP warden_audit_max_batch_size Records in the largest successful audit append since start.
# TYPE warden_audit_max_batch_size gauge
warden_audit_max_batch_size 256
# HELP warden_audit_queue_capacity How many audit records may wait before calls are refused.
# TYPE warden_audit_queue_capacity gauge
warden_audit_queue_capacity 4096
# HELP warden_audit_queue_depth Audit records waiting to be appended.
# TYPE warden_audit_queue_depth gauge
warden_audit_queue_depth 7
# HELP warden_audit_records_total Audit records durably appended.
# TYPE warden_audit_records_total counter
warden_audit_records_total 1000
# HELP warden_audit_rejected_records_total Audit records refused because the queue was full: their calls were refused.
# TYPE warden_audit_rejected_records_total counter
warden_audit_rejected_records_total 2
# HELP warden_audit_sink_errors_total Failed writes of audit records to streaming sinks.
# TYPE warden_audit_sink_errors_total counter
warden_audit_sink_errors_total 1
`
	names := []string{"warden_audit_batches_total", "warden_audit_failed_records_total", "warden_audit_last_batch_size",
		"warden_audit_max_batch_size", "warden_audit_queue_capacity", "warden_audit_queue_depth",
		"warden_audit_records_total", "warden_audit_rejected_records_total", "warden_audit_sink_errors_total"}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	// The stats are read at scrape time.
	stats.QueueDepth = 99
	if !strings.Contains(scrape(t, m), "warden_audit_queue_depth 99") {
		t.Error("the queue depth was not read again at the second scrape")
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	h := answer(&pipeline.Result{}, nil)
	if res, err := m.Stage(h)(context.Background(), newCall(echoSpec, "echo")); res == nil || err != nil {
		t.Fatalf("nil Metrics' stage = (%v, %v)", res, err)
	}
	m.Redactions("email", 1)
	m.AuthFailures("missing")
	m.ObserveAudit(func() audit.Stats { return audit.Stats{} })
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want the text exposition format", ct)
	}
	return string(body)
}

// histogram returns the one histogram of the family name.
func histogram(t *testing.T, m *Metrics, name string) *dto.Histogram {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			if len(mf.GetMetric()) != 1 {
				t.Fatalf("%s has %d series, want 1", name, len(mf.GetMetric()))
			}
			return mf.GetMetric()[0].GetHistogram()
		}
	}
	t.Fatalf("no %s gathered", name)
	return nil
}
