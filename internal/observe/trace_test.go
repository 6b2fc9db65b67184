package observe

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/wardenmcp/warden/pipeline"
)

// recordingTracer returns a tracer that records every span in memory.
func recordingTracer(t *testing.T) (*Tracer, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tr := newTracer(TraceConfig{ServiceName: "warden-test"}, rec)
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	return tr, rec
}

func onlySpan(t *testing.T, rec *tracetest.SpanRecorder) sdktrace.ReadOnlySpan {
	t.Helper()
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans ended, want 1", len(spans))
	}
	return spans[0]
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

func TestTracerStageSpan(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		status     codes.Code
		statusDesc string
		extra      map[attribute.Key]string
	}{
		{name: "allowed", status: codes.Unset},
		{name: "refused", err: pipeline.Errorf(pipeline.PermissionDenied, "", "no"), status: codes.Unset,
			extra: map[attribute.Key]string{"warden.decision": "refuse", "warden.error_code": "PERMISSION_DENIED"}},
		{name: "timed out", err: pipeline.Errorf(pipeline.Timeout, "", "slow"), status: codes.Error, statusDesc: "TIMEOUT",
			extra: map[attribute.Key]string{"warden.decision": "error", "warden.error_code": "TIMEOUT"}},
		{name: "failed inside", err: errors.New("dial tcp db.internal: password=hunter2 rejected"), status: codes.Error, statusDesc: "INTERNAL",
			extra: map[attribute.Key]string{"warden.decision": "error", "warden.error_code": "INTERNAL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, rec := recordingTracer(t)
			c := newCall(&pipeline.Spec{Method: pipeline.CallTool, Name: "get_customer", Scope: "crm"}, "get_customer")
			c.Raw = []byte(`{"customer_id":"cust-42","api_key":"sk-live-123"}`)
			var inner trace.SpanContext
			h := tr.Stage(func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
				inner = trace.SpanContextFromContext(ctx)
				if got := traceID(ctx); got != c.TraceID {
					t.Errorf("trace id in the context = %q, want the call's %q", got, c.TraceID)
				}
				return &pipeline.Result{}, tt.err
			})
			if _, err := h(context.Background(), c); err != tt.err {
				t.Fatalf("stage changed the error: %v", err)
			}

			s := onlySpan(t, rec)
			if s.Name() != "tools/call get_customer" {
				t.Errorf("span name = %q", s.Name())
			}
			if s.SpanKind() != trace.SpanKindServer {
				t.Errorf("span kind = %v, want server", s.SpanKind())
			}
			if got := s.SpanContext().TraceID().String(); got != c.TraceID {
				t.Errorf("span trace id = %s, want the call's %s", got, c.TraceID)
			}
			if inner.SpanID() != s.SpanContext().SpanID() {
				t.Error("the handler's context does not carry the call's span")
			}
			want := map[attribute.Key]string{
				"mcp.method":                   "tools/call",
				"mcp.target":                   "get_customer",
				"warden.principal.auth_method": "api_key",
				"warden.tenant":                "acme",
			}
			for k, v := range tt.extra {
				want[k] = v
			}
			got := attrs(s)
			if len(got) != len(want) {
				t.Errorf("attributes = %v, want %v", got, want)
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("attribute %s = %q, want %q", k, got[k], v)
				}
			}
			if s.Status().Code != tt.status || s.Status().Description != tt.statusDesc {
				t.Errorf("status = %v %q, want %v %q", s.Status().Code, s.Status().Description, tt.status, tt.statusDesc)
			}
			for _, kv := range s.Attributes() {
				for _, leak := range []string{"alice", "cust-42", "sk-live", "hunter2"} {
					if strings.Contains(kv.Value.String(), leak) {
						t.Errorf("attribute %s leaks %q", kv.Key, leak)
					}
				}
			}
			if v, _ := s.Resource().Set().Value("service.name"); v.AsString() != "warden-test" {
				t.Errorf("service.name = %q, want warden-test", v.AsString())
			}
		})
	}
}

func TestTracerAroundAddsAnEventPerStagePassed(t *testing.T) {
	tr, rec := recordingTracer(t)
	pass := func(next pipeline.Handler) pipeline.Handler { return next }
	refuse := func(pipeline.Handler) pipeline.Handler {
		return answer(nil, pipeline.Errorf(pipeline.InvalidArgument, "", "bad"))
	}
	h := pipeline.Chain(answer(&pipeline.Result{}, nil),
		tr.Stage,
		tr.Around("audit", pass),
		tr.Around("authorize", pass),
		tr.Around("validate", refuse),
		tr.Around("execute", pass),
	)
	h(context.Background(), newCall(echoSpec, "echo"))

	var events []string
	for _, e := range onlySpan(t, rec).Events() {
		events = append(events, e.Name)
	}
	if want := []string{"audit", "authorize"}; !slices.Equal(events, want) {
		t.Errorf("events = %q, want %q: one per stage the call got through", events, want)
	}
	if got := attrs(onlySpan(t, rec))["warden.error_code"]; got != "INVALID_ARGUMENT" {
		t.Errorf("warden.error_code = %q", got)
	}
}

func TestTracerTraceIDs(t *testing.T) {
	const callID = "4bf92f3577b34da6a3ce929d0e0e4736"
	other := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    mustTraceID(t, "0af7651916cd43dd8448eb211c80319c"),
		SpanID:     trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	})
	same := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    mustTraceID(t, callID),
		SpanID:     trace.SpanID{8, 7, 6, 5, 4, 3, 2, 1},
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	})
	tests := []struct {
		name     string
		callID   string
		outer    trace.SpanContext
		wantID   string // "" means any valid id other than callID
		parent   trace.SpanID
		linked   bool
		attrSeen bool // the span records the call's unusable id
	}{
		{name: "the call's id", callID: callID, wantID: callID},
		{name: "child of a span of the same trace", callID: callID, outer: same, wantID: callID, parent: same.SpanID()},
		{name: "a span of another trace is linked", callID: callID, outer: other, wantID: callID, linked: true},
		{name: "an id that is not hex", callID: "not-a-trace-id", attrSeen: true},
		{name: "an all-zero id", callID: strings.Repeat("0", 32), attrSeen: true},
		{name: "upper-case hex", callID: strings.ToUpper(callID), attrSeen: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, rec := recordingTracer(t)
			ctx := context.Background()
			if tt.outer.IsValid() {
				ctx = trace.ContextWithRemoteSpanContext(ctx, tt.outer)
			}
			c := newCall(echoSpec, "echo")
			c.TraceID = tt.callID
			tr.Stage(answer(&pipeline.Result{}, nil))(ctx, c)

			s := onlySpan(t, rec)
			got := s.SpanContext().TraceID()
			switch {
			case tt.wantID != "" && got.String() != tt.wantID:
				t.Errorf("trace id = %s, want %s", got, tt.wantID)
			case tt.wantID == "" && (!got.IsValid() || got.String() == callID):
				t.Errorf("trace id = %s, want a fresh random one", got)
			}
			if s.Parent().SpanID() != tt.parent {
				t.Errorf("parent span = %s, want %s", s.Parent().SpanID(), tt.parent)
			}
			if linked := len(s.Links()) == 1 && s.Links()[0].SpanContext.Equal(tt.outer); linked != tt.linked {
				t.Errorf("links = %v, want a link to the outer span: %v", s.Links(), tt.linked)
			}
			if seen := attrs(s)["warden.trace_id"] == tt.callID; seen != tt.attrSeen {
				t.Errorf("warden.trace_id = %q, want it set: %v", attrs(s)["warden.trace_id"], tt.attrSeen)
			}
		})
	}
}

func TestNoopTracer(t *testing.T) {
	for name, tr := range map[string]*Tracer{"unconfigured": mustTracer(t, TraceConfig{}), "nil": nil} {
		t.Run(name, func(t *testing.T) {
			c := newCall(echoSpec, "echo")
			stage := func(next pipeline.Handler) pipeline.Handler { return next }
			h := tr.Stage(tr.Around("authorize", stage)(func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
				if got := traceID(ctx); got != c.TraceID {
					t.Errorf("trace id in the context = %q, want %q, for the logs", got, c.TraceID)
				}
				if trace.SpanContextFromContext(ctx).IsValid() {
					t.Error("the no-op tracer started a span")
				}
				return &pipeline.Result{}, nil
			}))
			if _, err := h(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			// One small allocation: the context that carries the trace id.
			h = tr.Stage(answer(&pipeline.Result{}, nil))
			ctx := context.Background()
			if allocs := testing.AllocsPerRun(100, func() { h(ctx, c) }); allocs > 1 {
				t.Errorf("the no-op tracer's stage allocates %v times per call, want at most 1", allocs)
			}
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNewTracerRejectsBadConfig(t *testing.T) {
	for _, cfg := range []TraceConfig{
		{OTLPEndpoint: "collector:4318"},
		{OTLPEndpoint: "grpc://collector:4317"},
		{OTLPEndpoint: "https://"},
		{OTLPEndpoint: "https://user:hunter2@collector:4318"},
		{OTLPEndpoint: "https://collector:4318", SampleRatio: 1.5},
		{OTLPEndpoint: "https://collector:4318", SampleRatio: -0.1},
	} {
		tr, err := NewTracer(context.Background(), cfg)
		if err == nil {
			tr.Shutdown(context.Background())
			t.Errorf("NewTracer(%+v) succeeded, want an error", cfg)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error reveals the password: %v", err)
		}
	}
}

// The OTLP exporter sends the call's span to a collector, here a loopback
// server that decodes what it receives.
func TestTracerExportsOverOTLP(t *testing.T) {
	type export struct {
		path, apiKey string
		req          *collectortrace.ExportTraceServiceRequest
	}
	got := make(chan export, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := &collectortrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			t.Errorf("collector: %v", err)
		}
		got <- export{r.URL.Path, r.Header.Get("X-Api-Key"), req}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	tr := mustTracer(t, TraceConfig{OTLPEndpoint: srv.URL, ServiceName: "warden-e2e", Headers: map[string]string{"X-Api-Key": "collector-key"}})
	c := newCall(echoSpec, "echo")
	tr.Stage(answer(&pipeline.Result{}, nil))(context.Background(), c)
	if err := tr.Shutdown(context.Background()); err != nil { // flushes
		t.Fatal(err)
	}

	var e export
	select {
	case e = <-got:
	default:
		t.Fatal("the collector received nothing")
	}
	if e.path != "/v1/traces" {
		t.Errorf("exported to %s, want /v1/traces", e.path)
	}
	if e.apiKey != "collector-key" {
		t.Errorf("X-Api-Key = %q, want the configured header", e.apiKey)
	}
	var names, ids, services []string
	for _, rs := range e.req.GetResourceSpans() {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				services = append(services, kv.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				names = append(names, s.GetName())
				ids = append(ids, hex.EncodeToString(s.GetTraceId()))
			}
		}
	}
	if !slices.Equal(names, []string{"tools/call echo"}) || !slices.Equal(ids, []string{c.TraceID}) {
		t.Errorf("exported spans %q with trace ids %q, want the call's", names, ids)
	}
	if !slices.Equal(services, []string{"warden-e2e"}) {
		t.Errorf("service.name = %q", services)
	}
}

func mustTracer(t *testing.T, cfg TraceConfig) *Tracer {
	t.Helper()
	tr, err := NewTracer(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func mustTraceID(t *testing.T, s string) trace.TraceID {
	t.Helper()
	id, err := trace.TraceIDFromHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
