// Package execute is the innermost pipeline stage: it runs the target's
// handler under a deadline and turns a timeout or a panic into a clean
// refusal instead of a hung or crashed server.
package execute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/wardenmcp/warden/pipeline"
)

var errPanicked = errors.New("the handler panicked")

// DefaultTimeout bounds a call whose target declares no timeout of its own.
const DefaultTimeout = 30 * time.Second

// Stage returns the execute stage. A target's Spec.Timeout wins over
// defaultTimeout; a zero defaultTimeout means [DefaultTimeout].
func Stage(defaultTimeout time.Duration, log *slog.Logger) pipeline.Stage {
	if defaultTimeout <= 0 {
		defaultTimeout = DefaultTimeout
	}
	return func(next pipeline.Handler) pipeline.Handler {
		return func(ctx context.Context, c *pipeline.Call) (res *pipeline.Result, err error) {
			timeout := c.Spec.Timeout
			if timeout <= 0 {
				timeout = defaultTimeout
			}
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			defer func() {
				if r := recover(); r != nil {
					log.Error("handler panicked", "target", c.Target, "trace_id", c.TraceID, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
					// The panic value stays in the log: the client gets the
					// generic internal error, with the trace id to quote.
					res, err = nil, pipeline.AsError(errPanicked)
				}
			}()
			res, err = next(ctx, c)
			if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				var perr *pipeline.Error
				if !errors.As(err, &perr) || perr.Code == pipeline.Internal {
					return nil, pipeline.Errorf(pipeline.Timeout, "narrow the request (fewer rows, tighter filters) or retry later",
						"%s did not finish within %s", c.Spec.Name, timeout)
				}
			}
			return res, err
		}
	}
}
