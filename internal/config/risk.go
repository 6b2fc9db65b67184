package config

// Rule is what a call to one tool needs before it runs, resolved from the
// tool's own settings and its tier's policy.
type Rule struct {
	Require  string    // one of Requirements
	Approval *Approval // set when Require is approval, or confirmation with a fallback
	// Ref names where the rule comes from, for approvers and the audit log:
	// "tools.NAME" or "risk_policies.TIER".
	Ref string
}

// Rule resolves what a call to tool name needs: the tool's require and
// approval settings, each falling back to its tier's. A tool with neither,
// in a tier without a policy, runs directly.
func (cfg *Config) Rule(name string) Rule {
	t := cfg.Tools[name]
	if t == nil {
		return Rule{Require: RequireNone}
	}
	tier := cfg.RiskPolicies[t.Risk]
	r := Rule{Require: t.Require, Approval: t.Approval, Ref: "tools." + name}
	if r.Approval == nil {
		r.Approval = tier.Approval
	}
	if r.Require == "" && t.Approval == nil {
		r.Require = tier.Require
		r.Ref = "risk_policies." + t.Risk
	}
	if r.Require == "" {
		r.Require = RequireNone
		if r.Approval != nil {
			r.Require = RequireApproval
		}
	}
	if r.Require == RequireNone || r.Require == RequireDryRun {
		r.Approval = nil
	}
	return r
}
