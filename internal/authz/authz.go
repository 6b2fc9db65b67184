// Package authz holds the authorize stages: default deny. A call proceeds
// only if it has a verified principal, the principal holds the target's
// scope, and the configured policy, if any, allows it.
package authz

import (
	"context"
	"errors"

	"github.com/wardenmcp/warden/pipeline"
)

// Stage refuses a call without a verified principal holding the target's
// scope. It runs before validation, so a caller learns nothing about a
// target it may not use.
func Stage(next pipeline.Handler) pipeline.Handler {
	return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		if err := Scope(c.Principal, c.Spec); err != nil {
			return nil, err
		}
		return next(ctx, c)
	}
}

// PolicyStage asks policy about each call. It runs after validation, so the
// policy judges the arguments the handler will get — defaults applied and
// bound parameters filled in — and cannot be sidestepped by leaving out an
// argument whose default it would have refused.
func PolicyStage(policy pipeline.Policy) pipeline.Stage {
	return func(next pipeline.Handler) pipeline.Handler {
		return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			if err := Policy(ctx, policy, c); err != nil {
				return nil, err
			}
			return next(ctx, c)
		}
	}
}

// Policy asks policy about c. A policy that cannot decide refuses.
func Policy(ctx context.Context, policy pipeline.Policy, c *pipeline.Call) error {
	err := policy.Authorize(ctx, c)
	if err == nil {
		return nil
	}
	var perr *pipeline.Error
	if errors.As(err, &perr) {
		return err
	}
	return pipeline.Errorf(pipeline.PermissionDenied, "retry later; if it persists, tell the operator",
		"the authorization policy could not decide, so the call is refused")
}

// Scope refuses a principal that is missing or lacks the target's scope.
func Scope(p *pipeline.Principal, s *pipeline.Spec) error {
	if p == nil {
		return pipeline.Errorf(pipeline.PermissionDenied, "authenticate: present an API key or token",
			"the call has no verified identity")
	}
	if !p.HasScope(s.Scope) {
		return pipeline.Errorf(pipeline.PermissionDenied, "ask the operator for a credential with scope "+s.Scope,
			"%s needs the scope %s, which your credential does not have", s.Name, s.Scope)
	}
	return nil
}
