// Package ratelimit is the rate-limit stage and its limiters: per
// principal, per target and per principal×target, plus a cap on each
// principal's calls in flight. Limits are kept in memory by default and in
// Redis when several Warden instances must share them; if the shared store
// cannot be reached, calls are refused (or, if configured, limited locally)
// — never let through unlimited.
package ratelimit

import (
	"context"
	"errors"
	"time"

	"github.com/wardenmcp/warden/pipeline"
)

// Stage admits each call through l, releasing its slot when it ends.
func Stage(l pipeline.Limiter) pipeline.Stage {
	return func(next pipeline.Handler) pipeline.Handler {
		return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			release, err := l.Admit(ctx, c)
			if err != nil {
				var perr *pipeline.Error
				if errors.As(err, &perr) {
					return nil, err
				}
				return nil, pipeline.Errorf(pipeline.Unavailable, "retry shortly",
					"the rate limiter is unavailable, so the call is refused").WithRetryAfter(time.Second)
			}
			defer release()
			return next(ctx, c)
		}
	}
}
