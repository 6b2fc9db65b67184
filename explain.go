package warden

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/wardenmcp/warden/pipeline"
)

// Explainer is a Policy that can also say why it decides as it does.
type Explainer interface {
	Explain(ctx context.Context, c *pipeline.Call) (allowed bool, reasons []string)
}

// Explanation is a decision on a would-be call, with every reason.
type Explanation struct {
	Allowed bool            `json:"allowed"`
	Reasons []string        `json:"reasons"`
	Refusal *pipeline.Error `json:"refusal,omitempty"`
}

// Explain decides whether p may call tool with args, by running the
// decision stages the server runs on a real call — suspension,
// authorization, validation and policy — without executing anything, and
// says why. Rate limits are not consulted: they depend on traffic, not on
// the call.
func (s *Server) Explain(ctx context.Context, p *pipeline.Principal, tool string, args json.RawMessage) *Explanation {
	ex := &Explanation{}
	refuse := func(err error) *Explanation {
		ex.Refusal = pipeline.AsError(err)
		ex.Reasons = append(ex.Reasons, "refused: "+ex.Refusal.Message)
		return ex
	}
	var spec *pipeline.Spec
	if e := s.lookup("tool:" + tool); e != nil {
		spec = e.spec()
	}
	if spec == nil {
		return refuse(pipeline.Errorf(pipeline.NotFound, "list the tools", "there is no tool %q", tool))
	}
	if p == nil {
		ex.Reasons = append(ex.Reasons, "principal: none")
	} else {
		ex.Reasons = append(ex.Reasons, fmt.Sprintf("principal %q (tenant %q, groups [%s], scopes [%s], via %s)",
			p.ID, p.Tenant, strings.Join(p.Groups, " "), strings.Join(p.Scopes, " "), p.AuthMethod))
	}
	c := &pipeline.Call{Spec: spec, Target: tool, Raw: args, Principal: p, Start: time.Now()}
	tr := &decisionTrace{}
	_, err := s.decide(context.WithValue(ctx, decisionTraceKey{}, tr), c)
	// Every stage the call entered let it through, but the last one if
	// the call was refused.
	for i, stage := range tr.entered {
		refused := err != nil && i == len(tr.entered)-1
		switch stage {
		case "suspension":
			switch {
			case p == nil:
			case !refused:
				ex.Reasons = append(ex.Reasons, "suspension: the principal is not suspended")
			case pipeline.AsError(err).Code == pipeline.PermissionDenied:
				ex.Reasons = append(ex.Reasons, "suspension: the principal is suspended")
			}
		case "authorize":
			holds := "holds"
			if refused {
				holds = "does not hold"
			}
			ex.Reasons = append(ex.Reasons, fmt.Sprintf("scope: %s requires %s, which the principal %s", tool, spec.Scope, holds))
		case "validate":
			if refused {
				break
			}
			ex.Reasons = append(ex.Reasons, "arguments: valid")
			for name, attr := range spec.Bound {
				ex.Reasons = append(ex.Reasons, fmt.Sprintf("bound: %s = %q (the principal's %s)", name, c.Args[name], attr))
			}
		case "policy":
			if e, ok := s.policy.(Explainer); ok {
				_, reasons := e.Explain(ctx, c)
				for _, r := range reasons {
					ex.Reasons = append(ex.Reasons, "policy: "+r)
				}
			}
			if !refused {
				ex.Reasons = append(ex.Reasons, "policy: permitted")
			}
		}
	}
	if err != nil {
		return refuse(err)
	}
	if s.policy == nil {
		ex.Reasons = append(ex.Reasons, "policy: none configured; scopes decide")
	}
	ex.Allowed = true
	return ex
}

// decisionTrace records, for Explain, the decision stages a call entered,
// in order.
type decisionTrace struct{ entered []string }

type decisionTraceKey struct{}

// decisionChain builds, once, the chain Explain runs: the decision stages
// of a real call, each noting in the call's context's decisionTrace that
// the call reached it, and a terminal handler that runs nothing.
func decisionChain(opts *Options) pipeline.Handler {
	var st []pipeline.Stage
	for _, d := range decisionStages(opts) {
		st = append(st, func(next pipeline.Handler) pipeline.Handler {
			h := d.stage(next)
			return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
				tr := ctx.Value(decisionTraceKey{}).(*decisionTrace)
				tr.entered = append(tr.entered, d.name)
				return h(ctx, c)
			}
		})
	}
	return pipeline.Chain(func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return nil, nil }, st...)
}
