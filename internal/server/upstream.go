package server

import (
	"context"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/source/upstream"
)

// openUpstreams connects to every upstream MCP server the configuration
// declares and registers its targets, through the same spec-building as
// declared tools. An upstream that cannot be reached yet is no problem:
// its targets come when it does, and /readyz names it meanwhile.
func (s *Server) openUpstreams(ctx context.Context, probs *config.Problems, sec *security) {
	for _, name := range config.SortedKeys(s.Config.Upstreams) {
		u, err := upstream.Open(ctx, name, s.Config.Upstreams[name], upstream.Options{
			Catalog:  s.Server,
			ToolSpec: specOf,
			Rule:     s.Config.RuleOf,
			Check:    sec.check,
			Logger:   s.log,
		})
		if err != nil {
			probs.Add([]string{"upstreams", name}, "%v", err)
			continue
		}
		s.upstreams[name] = u
	}
}

// upstreamRules are the rules upstream tools may turn out to have: those
// of every tier (a tool's tier comes with its listing), and those of the
// tools the configuration overrides.
func upstreamRules(cfg *config.Config) []config.Rule {
	if len(cfg.Upstreams) == 0 {
		return nil
	}
	var rules []config.Rule
	for _, tier := range config.RiskTiers {
		rules = append(rules, cfg.RuleOf("", tier, "", nil))
	}
	for _, u := range cfg.Upstreams {
		for _, t := range u.Tools {
			if t == nil {
				continue
			}
			for _, tier := range config.RiskTiers {
				rules = append(rules, cfg.RuleOf("", tier, t.Require, t.Approval))
			}
		}
	}
	return rules
}
