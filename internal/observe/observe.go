// Package observe is how an operator sees Warden at work: Prometheus
// metrics, OpenTelemetry traces, structured logs that carry trace ids, and
// readiness. The server builds each piece once, at start-up, and puts the
// stages in front of the policy stages:
//
//	metrics := observe.NewMetrics()
//	metrics.ObserveAudit(auditWriter.Stats)
//	tracer, err := observe.NewTracer(ctx, observe.TraceConfig{OTLPEndpoint: cfg.OTLP})
//	if err != nil { ... }
//	defer tracer.Shutdown(context.Background())
//	log := observe.NewLogger(os.Stderr, "json", slog.LevelInfo)
//
//	h := pipeline.Chain(execute,
//		metrics.Stage, // outermost: it times and counts everything below
//		tracer.Stage,  // one span per call, with the call's trace id
//		tracer.Around("audit", auditStage),
//		tracer.Around("authorize", authz.Stage),
//		// ... every other stage, in the order stages.go gives
//	)
//	mux.Handle("GET /metrics", metrics.Handler())
//	httpOpts.Ready = observe.Ready(observe.AuditReady(auditWriter.Stats), db.PingContext)
//
// Nothing here labels, names or logs a principal's identity, a call's
// arguments or a credential: metrics are labelled only by values bounded by
// configuration (method, target name, decision, error code), spans carry the
// target, tenant and authentication method, and the log handler redacts
// attributes that look like secrets.
package observe

import (
	"context"
	"errors"

	"github.com/wardenmcp/warden/pipeline"
)

// traceIDKey keys the call's trace id in a context, as a *string: the
// pointer saves boxing a string on every call.
type traceIDKey struct{}

// WithTraceID returns ctx carrying the trace id id, which loggers built by
// this package add to every record logged with the context, and which the
// tracer uses as the trace id of the span it starts. Tracer.Stage does this
// for every call; WithTraceID is for work outside the pipeline.
func WithTraceID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, traceIDKey{}, &id)
}

// traceID returns the trace id WithTraceID put in ctx, or "".
func traceID(ctx context.Context) string {
	if p, _ := ctx.Value(traceIDKey{}).(*string); p != nil {
		return *p
	}
	return ""
}

// Decisions, as the decision label of warden_calls_total gives them.
const (
	decisionAllow  = "allow"  // the controls let the call through and it answered
	decisionRefuse = "refuse" // a control refused the caller
	decisionError  = "error"  // the server could not serve the call
)

// outcome classifies how a call ended: its decision and error code.
//
// A refusal is a control saying no to this caller — permission, arguments,
// rate, approval. Everything else that fails is an error of the server or
// of what it depends on, including AUDIT_UNAVAILABLE and UNAVAILABLE, which
// refuse the call only because Warden fails closed: those are what an
// operator's error-rate alert must see. A tool that ran and answered with
// an error (isError) is an error with no code.
func outcome(res *pipeline.Result, err error) (decision string, code pipeline.Code) {
	if err == nil {
		if res != nil && res.Tool != nil && res.Tool.IsError {
			return decisionError, ""
		}
		return decisionAllow, ""
	}
	var perr *pipeline.Error
	if !errors.As(err, &perr) {
		return decisionError, pipeline.Internal // what the client is shown
	}
	switch perr.Code {
	case pipeline.InvalidArgument, pipeline.PermissionDenied, pipeline.NotFound,
		pipeline.RateLimited, pipeline.ApprovalRequired, pipeline.ApprovalDenied:
		return decisionRefuse, perr.Code
	}
	return decisionError, perr.Code
}

// names returns the labels that identify a call's target: its method and
// the target's configured name. The name, not the target as requested: a
// resource template's calls each request a different URI, which as a label
// or span name would be unbounded, and may carry identifiers.
func names(c *pipeline.Call) (method, target string) {
	if c.Spec == nil {
		return "unknown", ""
	}
	return c.Spec.Method.String(), c.Spec.Name
}
