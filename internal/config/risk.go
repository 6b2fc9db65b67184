package config

import (
	"fmt"
	"strings"
)

// Rule is what a call to one tool needs before it runs, resolved from the
// tool's own settings and its tier's policy.
type Rule struct {
	Require  string    // one of Requirements
	Approval *Approval // set when Require is approval, or confirmation with a fallback
	// Ref names where the rule comes from, for approvers and the audit log:
	// "tools.NAME" or "risk_policies.TIER".
	Ref string
}

// String says what the rule requires, for people: "approval by 1 of
// finance (risk_policies.high)".
func (r Rule) String() string {
	switch r.Require {
	case RequireApproval:
		return fmt.Sprintf("approval by %d of %s (%s)", max(r.Approval.Needed, 1), strings.Join(r.Approval.Groups, " or "), r.Ref)
	case RequireConfirmation:
		s := "the caller's own confirmation"
		if r.Approval != nil {
			s += fmt.Sprintf(", or approval by %d of %s if the client cannot be asked", max(r.Approval.Needed, 1), strings.Join(r.Approval.Groups, " or "))
		}
		return s + " (" + r.Ref + ")"
	case RequireDryRun:
		return "dry runs only (" + r.Ref + ")"
	}
	return "nothing"
}

// Rule resolves what a call to tool name needs: the tool's require and
// approval settings, each falling back to its tier's. A tool with neither,
// in a tier without a policy, runs directly.
func (cfg *Config) Rule(name string) Rule {
	t := cfg.Tools[name]
	if t == nil {
		return Rule{Require: RequireNone}
	}
	return cfg.RuleOf("tools."+name, t.Risk, t.Require, t.Approval)
}

// RuleOf resolves what a call needs from a target's own require and
// approval settings (declared at ref), each falling back to its tier's.
func (cfg *Config) RuleOf(ref, risk, require string, approval *Approval) Rule {
	tier := cfg.RiskPolicies[risk]
	r := Rule{Require: require, Approval: approval, Ref: ref}
	if r.Approval == nil {
		r.Approval = tier.Approval
	}
	if r.Require == "" && approval == nil {
		r.Require = tier.Require
		r.Ref = "risk_policies." + risk
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
