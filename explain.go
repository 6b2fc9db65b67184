package warden

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/wardenmcp/warden/internal/authz"
	"github.com/wardenmcp/warden/internal/validate"
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

// Explain decides whether p may call tool with args, by running the same
// authorization and validation the server runs on a real call — without
// executing anything — and says why. Rate limits are not consulted: they
// depend on traffic, not on the call.
func (s *Server) Explain(ctx context.Context, p *pipeline.Principal, tool string, args json.RawMessage) *Explanation {
	ex := &Explanation{}
	refuse := func(err error) *Explanation {
		ex.Refusal = pipeline.AsError(err)
		ex.Reasons = append(ex.Reasons, "refused: "+ex.Refusal.Message)
		return ex
	}
	s.mu.Lock()
	spec := s.specs["tool:"+tool]
	s.mu.Unlock()
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
	if err := authz.Scope(p, spec); err != nil {
		ex.Reasons = append(ex.Reasons, fmt.Sprintf("scope: %s requires %s, which the principal does not hold", tool, spec.Scope))
		return refuse(err)
	}
	ex.Reasons = append(ex.Reasons, fmt.Sprintf("scope: %s requires %s, which the principal holds", tool, spec.Scope))
	if err := validate.Call(c); err != nil {
		return refuse(err)
	}
	ex.Reasons = append(ex.Reasons, "arguments: valid")
	for name, attr := range spec.Bound {
		ex.Reasons = append(ex.Reasons, fmt.Sprintf("bound: %s = %q (the principal's %s)", name, c.Args[name], attr))
	}
	if s.policy != nil {
		if e, ok := s.policy.(Explainer); ok {
			_, reasons := e.Explain(ctx, c)
			for _, r := range reasons {
				ex.Reasons = append(ex.Reasons, "policy: "+r)
			}
		}
		if err := authz.Policy(ctx, s.policy, c); err != nil {
			return refuse(err)
		}
		ex.Reasons = append(ex.Reasons, "policy: permitted")
	} else {
		ex.Reasons = append(ex.Reasons, "policy: none configured; scopes decide")
	}
	ex.Allowed = true
	return ex
}
