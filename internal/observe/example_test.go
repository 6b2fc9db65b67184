package observe_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/wardenmcp/warden/internal/observe"
	"github.com/wardenmcp/warden/pipeline"
)

// The metrics and tracing stages go in front of the policy stages; Around
// marks each stage a call passes on its span.
func Example() {
	metrics := observe.NewMetrics()
	tracer, err := observe.NewTracer(context.Background(), observe.TraceConfig{}) // no endpoint: no spans
	if err != nil {
		panic(err)
	}
	defer tracer.Shutdown(context.Background())

	authorize := func(next pipeline.Handler) pipeline.Handler {
		return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			if !c.Principal.HasScope(c.Spec.Scope) {
				return nil, pipeline.Errorf(pipeline.PermissionDenied, "ask for the scope", "scope %s required", c.Spec.Scope)
			}
			return next(ctx, c)
		}
	}
	echo := func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return &pipeline.Result{}, nil }
	h := pipeline.Chain(echo, metrics.Stage, tracer.Stage, tracer.Around("authorize", authorize))

	spec := &pipeline.Spec{Method: pipeline.CallTool, Name: "echo", Scope: "echo"}
	for _, scopes := range [][]string{{"echo"}, {"echo"}, nil} {
		h(context.Background(), &pipeline.Call{Spec: spec, Target: "echo", Principal: &pipeline.Principal{ID: "alice", Scopes: scopes}})
	}

	rec := httptest.NewRecorder()
	metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "warden_calls_total{") {
			fmt.Println(sc.Text())
		}
	}
	// Output:
	// warden_calls_total{decision="allow",error_code="",method="tools/call",target="echo"} 2
	// warden_calls_total{decision="refuse",error_code="PERMISSION_DENIED",method="tools/call",target="echo"} 1
}

// Records carry the trace id of their context, and secrets never reach the
// output.
func ExampleLogHandler() {
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	log := slog.New(observe.LogHandler(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: noTime})))

	ctx := observe.WithTraceID(context.Background(), "4bf92f3577b34da6a3ce929d0e0e4736")
	log.InfoContext(ctx, "calling upstream", "tool", "get_customer", "Authorization", "Bearer eyJhbGciOi...")
	log.WarnContext(ctx, "retrying", "attempt", 2, "detail", "got 401 for bearer eyJhbGciOi...")
	// Output:
	// level=INFO msg="calling upstream" tool=get_customer Authorization=[REDACTED] trace_id=4bf92f3577b34da6a3ce929d0e0e4736
	// level=WARN msg=retrying attempt=2 detail=[REDACTED] trace_id=4bf92f3577b34da6a3ce929d0e0e4736
}
