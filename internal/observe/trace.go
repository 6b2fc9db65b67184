package observe

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/wardenmcp/warden/pipeline"
)

// TraceConfig configures tracing. The zero value is valid: no traces.
type TraceConfig struct {
	// OTLPEndpoint is the URL of an OTLP/HTTP collector, such as
	// "https://collector.example:4318"; a URL with no path gets the
	// standard /v1/traces. Only the scheme says whether the export is
	// encrypted: use https unless the collector is on the same host or
	// network. Empty means no traces are kept, at almost no cost per call.
	OTLPEndpoint string
	// Headers are sent with every export: a collector's API key, say.
	// OTEL_EXPORTER_OTLP_HEADERS in the environment adds to them.
	Headers map[string]string
	// ServiceName names the service in the traces. Default "warden".
	ServiceName string
	// SampleRatio is the fraction of calls traced, decided by trace id so
	// that every instance keeps the same calls. Zero means all of them.
	SampleRatio float64
}

// Tracer starts a span per call and exports it over OTLP, or, when no
// endpoint is configured, does nothing but put each call's trace id in its
// context for the logs. A nil *Tracer is the no-op tracer. Its methods are
// safe for concurrent use.
type Tracer struct {
	provider *sdktrace.TracerProvider // nil for the no-op tracer
	tracer   trace.Tracer
	names    sync.Map // *pipeline.Spec → span name, built once per target
}

var serverKind = trace.WithSpanKind(trace.SpanKindServer)

// tracerName is the instrumentation scope of Warden's spans.
const tracerName = "github.com/wardenmcp/warden"

// NewTracer returns a tracer that exports to cfg.OTLPEndpoint, or the no-op
// tracer if that is empty. Export happens in the background, in batches;
// Shutdown flushes what is left. Spans that cannot be exported (the
// collector is down, the queue is full) are dropped: tracing never holds up
// or fails a call.
func NewTracer(ctx context.Context, cfg TraceConfig) (*Tracer, error) {
	if cfg.OTLPEndpoint == "" {
		return &Tracer{}, nil
	}
	if err := checkRatio(cfg.SampleRatio); err != nil {
		return nil, err
	}
	endpoint, err := otlpURL(cfg.OTLPEndpoint)
	if err != nil {
		return nil, err
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(endpoint)}
	if len(cfg.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: starting the OTLP exporter for %s: %w", endpoint, err)
	}
	return newTracer(cfg, sdktrace.NewBatchSpanProcessor(exp)), nil
}

// newTracer returns a tracer whose spans go to sp. cfg must be valid.
func newTracer(cfg TraceConfig, sp sdktrace.SpanProcessor) *Tracer {
	name := cfg.ServiceName
	if name == "" {
		name = "warden"
	}
	ratio := cfg.SampleRatio
	if ratio == 0 {
		ratio = 1
	}
	// resource.Default carries the SDK's version and OTEL_RESOURCE_ATTRIBUTES;
	// the configured name wins over OTEL_SERVICE_NAME.
	service := resource.NewSchemaless(attribute.String("service.name", name))
	res, err := resource.Merge(resource.Default(), service)
	if err != nil { // only conflicting schema URLs fail, and service has none
		res = service
	}
	p := sdktrace.NewTracerProvider(
		sdktrace.WithSpanProcessor(sp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithIDGenerator(callIDs{}),
	)
	return &Tracer{provider: p, tracer: p.Tracer(tracerName)}
}

func checkRatio(r float64) error {
	if math.IsNaN(r) || r < 0 || r > 1 {
		return fmt.Errorf("tracing: sample ratio %v: want a fraction between 0 and 1", r)
	}
	return nil
}

// otlpURL checks an endpoint up front: the exporter would silently fall
// back to localhost on a URL it cannot parse.
func otlpURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("tracing: OTLP endpoint: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", fmt.Errorf("tracing: OTLP endpoint %q: want an http or https URL, such as https://collector:4318", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("tracing: OTLP endpoint %q has no host", s)
	}
	if u.User != nil {
		return "", fmt.Errorf("tracing: OTLP endpoint %s: credentials in the URL would be logged; put them in the headers", u.Redacted())
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// Shutdown exports the spans still queued and stops the tracer, within
// ctx's deadline. Calls that end afterwards are not traced.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: flushing spans: %w", err)
	}
	return nil
}

// Stage puts the call's trace id in its context, for logs, and starts a
// span for the call named "<method> <target>" (say "tools/call
// get_customer"), with the call's trace id as the span's trace id, so that
// the id the client is shown, the audit record, the logs and the trace all
// agree. The span has the method, target, tenant and authentication method
// as attributes — never the principal's id, the arguments or a credential —
// and ends with the call.
//
// A call that failed gets an error status with its error code; a refusal
// (a control said no: permission, arguments, rate, approval) is the
// caller's doing, not the server's, so, like an HTTP 4xx on a server span,
// it keeps an unset status and carries the code as warden.error_code.
//
// If ctx already carries a span of the same trace (the transport continued
// a client's traceparent into the call's trace id), the call's span is its
// child; a span of another trace is linked instead, so that the call's
// trace id still names the trace.
//
// Put Stage inside Metrics.Stage and outside every stage it should time.
func (t *Tracer) Stage(next pipeline.Handler) pipeline.Handler {
	if t == nil || t.tracer == nil {
		return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			return next(context.WithValue(ctx, traceIDKey{}, &c.TraceID), c)
		}
	}
	return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		ctx = context.WithValue(ctx, traceIDKey{}, &c.TraceID)
		name := t.spanName(c)
		tid, badID := trace.TraceIDFromHex(c.TraceID)
		var span trace.Span
		if outer := trace.SpanContextFromContext(ctx); outer.IsValid() && outer.TraceID() != tid {
			ctx, span = t.tracer.Start(ctx, name, serverKind, trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: outer}))
		} else {
			ctx, span = t.tracer.Start(ctx, name, serverKind)
		}
		defer span.End()
		// Attributes only for spans that are kept: an unsampled call costs
		// no more than the span's start and end.
		if span.IsRecording() {
			method, target := names(c)
			kv := make([]attribute.KeyValue, 2, 5)
			kv[0], kv[1] = attribute.String("mcp.method", method), attribute.String("mcp.target", target)
			if p := c.Principal; p != nil {
				kv = append(kv, attribute.String("warden.principal.auth_method", p.AuthMethod))
				if p.Tenant != "" {
					kv = append(kv, attribute.String("warden.tenant", p.Tenant))
				}
			}
			if badID != nil {
				// The span has a random trace id; keep the call's, to search by.
				kv = append(kv, attribute.String("warden.trace_id", c.TraceID))
			}
			span.SetAttributes(kv...)
		}

		res, err := next(ctx, c)
		if decision, code := outcome(res, err); decision != decisionAllow && span.IsRecording() {
			span.SetAttributes(attribute.String("warden.decision", decision), attribute.String("warden.error_code", string(code)))
			if decision == decisionError {
				span.SetStatus(codes.Error, string(code))
			}
		}
		return res, err
	}
}

// spanName returns "<method> <target>" for c's target.
func (t *Tracer) spanName(c *pipeline.Call) string {
	if c.Spec == nil {
		method, target := names(c)
		return method + " " + target
	}
	if name, ok := t.names.Load(c.Spec); ok {
		return name.(string)
	}
	method, target := names(c)
	name, _ := t.names.LoadOrStore(c.Spec, method+" "+target)
	return name.(string)
}

// Around wraps stage s so that a call that gets through it adds an event
// named name to the call's span: the span then shows how far the call got
// and, from one event to the next, how long each stage took. A call s
// refuses adds no event; its span's warden.error_code says why. With the
// no-op tracer Around returns s itself, so it costs nothing.
//
// Around is for the stages inside Stage; it is how the pipeline's one list
// of stages (stages.go) can trace every stage without any stage knowing.
func (t *Tracer) Around(name string, s pipeline.Stage) pipeline.Stage {
	if t == nil || t.tracer == nil {
		return s
	}
	return func(next pipeline.Handler) pipeline.Handler {
		return s(func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			trace.SpanFromContext(ctx).AddEvent(name)
			return next(ctx, c)
		})
	}
}

// callIDs makes the trace id of a new trace the call's trace id, when the
// context carries one that is a valid W3C trace id, and a random one
// otherwise. Span ids are random.
type callIDs struct{}

func (callIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	tid, err := trace.TraceIDFromHex(traceID(ctx))
	if err != nil { // not 32 lowercase hex digits, or all zeros
		tid = randomTraceID()
	}
	return tid, randomSpanID()
}

func (callIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return randomSpanID() }

// Span and trace ids need to be unique, not secret: math/rand/v2's
// generator is enough, as it is for the SDK's own generator.
func randomTraceID() (id trace.TraceID) {
	for !id.IsValid() {
		binary.LittleEndian.PutUint64(id[:8], rand.Uint64())
		binary.LittleEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func randomSpanID() (id trace.SpanID) {
	for !id.IsValid() {
		binary.LittleEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

var _ sdktrace.IDGenerator = callIDs{}
