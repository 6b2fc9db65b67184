package warden

import (
	"log/slog"

	"github.com/wardenmcp/warden/internal/authz"
	"github.com/wardenmcp/warden/internal/execute"
	"github.com/wardenmcp/warden/internal/ratelimit"
	"github.com/wardenmcp/warden/internal/validate"
	"github.com/wardenmcp/warden/pipeline"
)

// stages returns the pipeline every call passes through, outermost first.
// This list is Warden's security model; it is written down here and
// nowhere else. The order, from DESIGN.md:
//
//	1 audit          record intent, then outcome; refusals too
//	2 authorize      scope per target, policy, bound parameters
//	3 validate       strict schema, defaults, formats
//	4 rate limit     per principal, per target, per principal×target
//	5 risk gate      tiers, dry-run, approval
//	6 idempotency    replay a stored result for a repeated key
//	7 cache          read-only targets
//	8 execute        deadline, panic containment
//	9 output guard   size, schema, redaction, injection flags
//
// Stages are absent, not stubbed, when not configured. Audit is split around the others: its outermost part records
// every refusal and outcome, and its intent record is written once the
// call is accepted, before it is answered — by idempotent replay, the cache
// or the target itself. Authorization is split around validation:
// the scope check comes first, so a caller learns nothing of a target it may
// not use; the policy comes after, so it judges the arguments the handler
// will actually get. The policy and rate-limit stages run when configured.
func stages(opts *Options, log *slog.Logger) []pipeline.Stage {
	var st []pipeline.Stage
	add := func(name string, s pipeline.Stage) {
		if opts.Tracer != nil {
			s = opts.Tracer.Around(name, s)
		}
		st = append(st, s)
	}
	if opts.Metrics != nil {
		st = append(st, opts.Metrics) // counts and times everything below
	}
	if opts.Tracer != nil {
		st = append(st, opts.Tracer.Stage) // one span per call
	}
	if opts.Audit != nil {
		add("audit", opts.Audit.Outcome) // 1: every call's refusal or outcome
	}
	for _, d := range decisionStages(opts) {
		add(d.name, d.stage) // 2 and 3: whether the caller may make this call at all
	}
	if opts.Limiter != nil {
		add("rate_limit", ratelimit.Stage(opts.Limiter)) // 4
	}
	if opts.Gate != nil {
		add("risk_gate", opts.Gate) // 5: approval bound to the exact call
	}
	if opts.Audit != nil {
		add("audit_intent", opts.Audit.Intent) // 1, continued: durable intent, or no run
	}
	if opts.Idempotency != nil {
		add("idempotency", opts.Idempotency) // 6: a repeated key replays the stored result
	}
	if opts.Cache != nil {
		add("cache", opts.Cache) // 7: read tools, per tenant
	}
	add("execute", execute.Stage(opts.DefaultTimeout, log)) // 8
	if opts.Guard != nil {
		add("output_guard", opts.Guard) // 9: inside the deadline, on the raw result
	}
	return st
}

// namedStage is a stage with the name tracing and explain know it by.
type namedStage struct {
	name  string
	stage pipeline.Stage
}

// decisionStages returns the stages that decide whether a caller may make a
// call at all, from who it is and what it asks, outermost first. They are
// the part of stages that `warden explain` runs too (see Server.Explain),
// so that it answers as a real call would be answered.
func decisionStages(opts *Options) []namedStage {
	var st []namedStage
	if opts.Suspend != nil {
		st = append(st, namedStage{"suspension", opts.Suspend}) // 2: a suspended principal may do nothing
	}
	st = append(st,
		namedStage{"authorize", authz.Stage},   // 2: identity and scope, before anything is parsed
		namedStage{"validate", validate.Stage}, // 3: arguments, defaults, bound parameters
	)
	if opts.Policy != nil {
		st = append(st, namedStage{"policy", authz.PolicyStage(opts.Policy)}) // 2, continued: policy over the validated call
	}
	return st
}
