// Package policy evaluates optional Cedar policies for the authorize stage:
// rules that scopes cannot express, such as "support agents may call
// search_orders only for open or pending orders".
//
// A policy file is plain Cedar (https://docs.cedarpolicy.com). With one
// configured, a call that has passed the scope check proceeds only if at
// least one permit policy applies and no forbid policy applies: default
// deny, and forbid beats permit.
//
//	// Support agents may search orders, but only open or pending ones.
//	@id("support-search-open-orders")
//	@suggestion("set status to open or pending")
//	permit (
//	    principal in Warden::Group::"support",
//	    action == Warden::Action::"call_tool",
//	    resource == Warden::Tool::"search_orders"
//	) when {
//	    context.arguments has status &&
//	    ["open", "pending"].contains(context.arguments.status)
//	};
//
//	// Anyone may read resources and get prompts.
//	@id("resources-and-prompts")
//	permit (
//	    principal,
//	    action in [Warden::Action::"read_resource", Warden::Action::"get_prompt"],
//	    resource
//	);
//
//	// No writes outside office hours (UTC), whoever asks.
//	@id("office-hours-writes")
//	@suggestion("retry on a weekday between 08:00 and 18:00 UTC")
//	forbid (principal, action == Warden::Action::"call_tool", resource)
//	when { resource.risk_tier == "write" }
//	unless {
//	    context.time.hour >= 8 && context.time.hour < 18 &&
//	    !(["Saturday", "Sunday"].contains(context.time.weekday))
//	};
//
//	// An argument naming a tenant must name the caller's own.
//	@id("own-tenant")
//	forbid (principal, action, resource)
//	when { context.arguments has tenant_id && context.arguments.tenant_id != principal.tenant };
//
// # Entities
//
// The principal is Warden::Principal::"<id>", with attributes tenant
// (String), scopes (Set of String) and auth_method (String), and a parent
// Warden::Group::"<group>" for each of its groups, so that
// `principal in Warden::Group::"support"` tests membership.
//
// The action is Warden::Action::"call_tool", "read_resource" or
// "get_prompt".
//
// The resource is Warden::Tool::"<name>", Warden::Resource::"<name>" or
// Warden::Prompt::"<name>" (for a resource template, the template's name;
// the requested URI's variables are in context.arguments), with attributes
// name, version, mode ("read" or "write"), risk_tier ("read" for read-mode
// targets, "write" for write-mode ones), source (the source kind, "sqlite",
// "http", ...) and read_only (Bool).
//
// The context is a record of:
//   - arguments: the call's arguments as the client sent them (authorize
//     runs before validation, so schema defaults and bound parameters are
//     not there), decoded as validation decodes them. Numbers become a
//     Long when integral, else a decimal when four decimal places hold
//     them exactly, else a String of their shortest text ("3.14159");
//     objects become records, arrays sets, and nulls are left out, so
//     `has` is false for a null argument.
//   - time: hour (Long, 0–23), weekday (String, "Monday"…"Sunday"), iso
//     (String, RFC 3339) and now (datetime), all in UTC at the call's start,
//     to the second.
//   - client: name and version, as the client reported them (unverified).
//   - tenant: the tenant the call acts for — the principal's, which Warden
//     also binds into tenant-bound parameters.
//
// Cedar strings have no ordering and `in` is for entity hierarchies: test a
// string against a list with `[...].contains(x)`, and compare times with
// context.time.hour or context.time.now.
//
// # Policy ids and annotations
//
// A policy is named by its @id("...") annotation, or else policy<n>, its
// zero-based place in the file, as the Cedar CLI names them. Refusals name
// the policies that decided. A policy's @suggestion("...") annotation
// tells the caller what to change: a forbid's, when it refuses a call; a
// permit's, when nothing permits a call that its scope (principal,
// action, resource) matches but its conditions do not.
//
// # Evaluation errors
//
// Cedar skips a policy whose evaluation fails (reading an attribute that is
// missing, comparing a String with a Long). A permit that fails therefore
// does not permit. A forbid that fails is treated here as applying: a rule
// meant to refuse must not let calls through because an argument was
// missing or had an unexpected type. Guard optional attributes with `has`.
package policy

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cedar-policy/cedar-go"

	"github.com/wardenmcp/warden/pipeline"
)

// Cedar is a parsed Cedar policy set. It is safe for concurrent use.
type Cedar struct {
	all     list // every policy, in file order
	permits list // the permit policies, for Explain
	// hints holds the scope alone (no when or unless) of each permit
	// with a @suggestion: when nothing permits a call, a hint whose scope
	// matches says what the caller could change.
	hints list
	// uses is the context fields and principal attributes that some
	// policy names: the others are not built, which spares decoding the
	// arguments of every call when no policy reads them.
	uses fields
	// resources caches the resource entity of each target, which is fixed
	// at load time; see [Cedar.target].
	resources sync.Map // *pipeline.Spec → *target
	// second caches context.time for the latest second seen: calls in
	// the same second share it.
	second atomic.Pointer[second]
}

var _ pipeline.Policy = (*Cedar)(nil)

// statement is one policy with what Warden reads from its annotations.
type statement struct {
	id         cedar.PolicyID
	policy     *cedar.Policy
	suggestion string
	forbid     bool
}

// list is policies in file order, so that diagnostics come out in a
// stable, readable order (a cedar.PolicySet iterates a map).
type list []statement

func (l list) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	return func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, s := range l {
			if !yield(s.id, s.policy) {
				return
			}
		}
	}
}

func (l list) find(id cedar.PolicyID) *statement {
	for i := range l {
		if l[i].id == id {
			return &l[i]
		}
	}
	return nil
}

// Load reads and parses the Cedar policy file at path.
func Load(path string) (*Cedar, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading Cedar policies: %w", err)
	}
	return Parse(path, src)
}

// Parse parses Cedar policies; name is the file name used in positions
// and errors.
func Parse(name string, src []byte) (*Cedar, error) {
	policies, err := cedar.NewPolicyListFromBytes(name, src)
	if err != nil {
		// The parser reports positions as "<input>:line:column".
		msg := strings.TrimPrefix(err.Error(), "parser error: ")
		msg = strings.Replace(msg, "<input>", name, 1)
		return nil, fmt.Errorf("loading Cedar policies: %s", msg)
	}
	c := &Cedar{}
	seen := make(map[cedar.PolicyID]string, len(policies))
	for i, p := range policies {
		at := position(p.Position())
		s := statement{id: cedar.PolicyID("policy" + strconv.Itoa(i)), policy: p, forbid: p.Effect() == cedar.Forbid}
		ann := p.Annotations()
		if id, ok := ann["id"]; ok {
			if id == "" {
				return nil, fmt.Errorf("loading Cedar policies: %s: @id is empty", at)
			}
			s.id = cedar.PolicyID(id)
		}
		s.suggestion = string(ann["suggestion"])
		if prev, dup := seen[s.id]; dup {
			return nil, fmt.Errorf("loading Cedar policies: %s: policy id %q is already used at %s; ids must be unique", at, s.id, prev)
		}
		seen[s.id] = at
		c.uses |= mentions(p)
		c.all = append(c.all, s)
		if !s.forbid {
			c.permits = append(c.permits, s)
			if s.suggestion != "" {
				scope := *p.AST()
				scope.Conditions = nil
				c.hints = append(c.hints, statement{id: s.id, policy: cedar.NewPolicyFromAST(&scope), suggestion: s.suggestion})
			}
		}
	}
	if len(c.permits) == 0 {
		what := "no policies"
		if len(c.all) > 0 {
			what = "no permit policy"
		}
		return nil, fmt.Errorf("loading Cedar policies: %s has %s; with Cedar configured every call is denied unless a permit policy applies, so this would refuse every call: add a permit policy or remove the Cedar file from the configuration", name, what)
	}
	return c, nil
}

func position(p cedar.Position) string {
	return p.Filename + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Column)
}

// decision is the outcome of evaluating the policies for one request.
type decision struct {
	forbids      []cedar.DiagnosticReason // forbids that apply
	forbidErrors []cedar.DiagnosticError  // forbids that failed: they refuse too
	permits      []cedar.DiagnosticReason // permits that apply
	permitErrors []cedar.DiagnosticError  // permits that failed: they do not permit
}

func (d *decision) allowed() bool {
	return len(d.forbids) == 0 && len(d.forbidErrors) == 0 && len(d.permits) > 0
}

// decide evaluates every policy. Cedar's own decision (a permit applies
// and no forbid does) is kept, with one change: a forbid that fails to
// evaluate refuses. When a forbid decides, d.permits is empty: Cedar
// reports only the policies that determined its decision.
func (c *Cedar) decide(ents cedar.EntityGetter, req cedar.Request) decision {
	var d decision
	allow, diag := cedar.Authorize(c.all, ents, req)
	if allow == cedar.Allow {
		d.permits = diag.Reasons
	} else {
		d.forbids = diag.Reasons
	}
	for _, e := range diag.Errors {
		if s := c.all.find(e.PolicyID); s == nil || s.forbid {
			d.forbidErrors = append(d.forbidErrors, e)
		} else {
			d.permitErrors = append(d.permitErrors, e)
		}
	}
	return d
}

// Authorize allows the call if the policies permit it. A refusal is a
// PERMISSION_DENIED *pipeline.Error naming the policies that decided;
// arguments that are not a JSON object are refused with INVALID_ARGUMENT.
func (c *Cedar) Authorize(_ context.Context, call *pipeline.Call) error {
	ents, req, err := c.request(call)
	if err != nil {
		return err
	}
	d := c.decide(ents, req)
	if d.allowed() {
		return nil
	}
	return c.refusal(call, ents, req, &d)
}

func (c *Cedar) refusal(call *pipeline.Call, ents cedar.EntityGetter, req cedar.Request, d *decision) *pipeline.Error {
	what := describe(call.Spec)
	if len(d.forbids) > 0 {
		ids := make([]string, len(d.forbids))
		suggestion := ""
		for i, r := range d.forbids {
			ids[i] = strconv.Quote(string(r.PolicyID))
			if s := c.all.find(r.PolicyID); suggestion == "" && s != nil {
				suggestion = s.suggestion
			}
		}
		if suggestion == "" {
			suggestion = "ask an operator: the policy forbids this call as made"
		}
		return pipeline.Errorf(pipeline.PermissionDenied, suggestion,
			"%s is forbidden by Cedar %s %s", what, plural(len(ids), "policy", "policies"), strings.Join(ids, ", "))
	}
	if len(d.forbidErrors) > 0 {
		ids := make([]string, len(d.forbidErrors))
		for i, e := range d.forbidErrors {
			ids[i] = strconv.Quote(string(e.PolicyID))
		}
		return pipeline.Errorf(pipeline.PermissionDenied,
			"ask an operator to check the policy against this call (warden explain shows the error)",
			"%s is refused: Cedar forbid %s %s could not be evaluated for it, and a forbid that fails refuses",
			what, plural(len(ids), "policy", "policies"), strings.Join(ids, ", "))
	}
	suggestion := "ask an operator for a Cedar policy that permits this call"
	if len(c.hints) > 0 {
		if _, diag := cedar.Authorize(c.hints, ents, req); len(diag.Reasons) > 0 {
			suggestion = c.hints.find(diag.Reasons[0].PolicyID).suggestion
		}
	}
	return pipeline.Errorf(pipeline.PermissionDenied, suggestion, "%s is denied: no Cedar policy permits it", what)
}

func describe(s *pipeline.Spec) string {
	switch s.Method {
	case pipeline.ReadResource:
		return "reading resource " + s.Name
	case pipeline.GetPrompt:
		return "getting prompt " + s.Name
	}
	return "calling tool " + s.Name
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Explanation is a decision with every reason for it, for people
// (warden explain) rather than for the pipeline.
type Explanation struct {
	Allowed bool
	// Reasons name each policy that decided, with its position, then every
	// policy that failed to evaluate, with the error.
	Reasons []string
}

// Explain evaluates every policy for call and says why it is allowed or
// refused. It decides exactly as Authorize does.
func (c *Cedar) Explain(_ context.Context, call *pipeline.Call) Explanation {
	ents, req, err := c.request(call)
	if err != nil {
		msg := err.Error()
		var perr *pipeline.Error
		if errors.As(err, &perr) {
			msg = perr.Message
		}
		return Explanation{Reasons: []string{"refused before any policy ran: " + msg}}
	}
	d := c.decide(ents, req)
	x := Explanation{Allowed: d.allowed()}
	overridden := len(d.forbids) > 0 || len(d.forbidErrors) > 0
	if overridden && len(d.permits) == 0 {
		// Cedar names no permit when a forbid decides: ask the permits
		// alone which of them a forbid overrode.
		_, diag := cedar.Authorize(c.permits, ents, req)
		d.permits = diag.Reasons
	}
	add := func(format string, args ...any) { x.Reasons = append(x.Reasons, fmt.Sprintf(format, args...)) }
	for _, r := range d.forbids {
		add("forbid %q at %s applies", r.PolicyID, position(r.Position))
	}
	for _, e := range d.forbidErrors {
		add("forbid %q at %s failed, and a forbid that fails refuses: %s", e.PolicyID, position(e.Position), e.Message)
	}
	for _, r := range d.permits {
		if overridden {
			add("permit %q at %s applies, but a forbid overrides it", r.PolicyID, position(r.Position))
		} else {
			add("permit %q at %s applies", r.PolicyID, position(r.Position))
		}
	}
	if len(d.permits) == 0 {
		add("no permit policy applies, so the call is denied by default")
	}
	for _, e := range d.permitErrors {
		add("permit %q at %s failed, so it does not permit: %s", e.PolicyID, position(e.Position), e.Message)
	}
	return x
}
