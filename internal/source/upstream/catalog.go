package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/pipeline"
)

// Definition kinds, as the pins name them.
const (
	KindTool         = "tool"
	KindResource     = "resource"
	KindTemplate     = "resource_template"
	KindPrompt       = "prompt"
	KindInstructions = "instructions"
)

// key is a registered target's method and Warden name.
type key struct {
	method pipeline.Method
	name   string
}

// served is what was registered for a key, to tell a change.
type served struct {
	sig    string
	ref    string // the upstream's own name (a resource's URI, a template's URI template)
	hidden bool   // quarantined: not listed, refused
}

// item is one definition of a listing.
type item struct {
	def      Definition
	tool     *mcp.Tool
	resource *mcp.Resource
	template *mcp.ResourceTemplate
	prompt   *mcp.Prompt
}

// toolName is the MCP rule for tool and prompt names.
var toolName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// list fetches everything the upstream serves, of the kinds it declares.
func (u *Upstream) list(ctx context.Context, sess *mcp.ClientSession) ([]item, error) {
	var items []item
	add := func(kind, name string, v any, it item) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		it.def = Definition{Kind: kind, Name: name, Body: b}
		items = append(items, it)
		return nil
	}
	caps := &mcp.ServerCapabilities{}
	init := sess.InitializeResult()
	if init != nil && init.Capabilities != nil {
		caps = init.Capabilities
	}
	if caps.Tools != nil {
		for t, err := range sess.Tools(ctx, nil) {
			if err != nil {
				return nil, err
			}
			if err := add(KindTool, t.Name, t, item{tool: t}); err != nil {
				return nil, err
			}
		}
	}
	if caps.Resources != nil {
		for r, err := range sess.Resources(ctx, nil) {
			if err != nil {
				return nil, err
			}
			if err := add(KindResource, r.URI, r, item{resource: r}); err != nil {
				return nil, err
			}
		}
		for r, err := range sess.ResourceTemplates(ctx, nil) {
			if notFound(err) {
				break // a server with resources need not have templates
			}
			if err != nil {
				return nil, err
			}
			if err := add(KindTemplate, r.URITemplate, r, item{template: r}); err != nil {
				return nil, err
			}
		}
	}
	if caps.Prompts != nil {
		for p, err := range sess.Prompts(ctx, nil) {
			if err != nil {
				return nil, err
			}
			if err := add(KindPrompt, p.Name, p, item{prompt: p}); err != nil {
				return nil, err
			}
		}
	}
	if init != nil && init.Instructions != "" {
		if err := add(KindInstructions, "", init.Instructions, item{}); err != nil {
			return nil, err
		}
	}
	return items, nil
}

// notFound reports whether err says the upstream has no such method.
func notFound(err error) bool {
	var rpc *jsonrpc.Error
	return errors.As(err, &rpc) && rpc.Code == jsonrpc.CodeMethodNotFound
}

// sync lists the upstream, checks the listing against the pins, and brings
// the catalog in line with it. A listing that fails leaves the catalog as
// it was.
func (u *Upstream) sync(ctx context.Context, c *conn) {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	items, err := u.list(ctx, c.sess)
	if err != nil {
		u.log.Warn("listing the upstream failed; its catalog is unchanged", "err", err)
		return
	}
	verdicts := make([]Verdict, len(items))
	for i := range verdicts {
		verdicts[i].Serve = true
	}
	if u.opts.Pins != nil {
		defs := make([]Definition, len(items))
		for i, it := range items {
			defs[i] = it.def
		}
		v, err := u.opts.Pins(ctx, u.name, u.cfg.Pinning, defs)
		if err == nil && len(v) != len(items) {
			err = fmt.Errorf("the pin check returned %d verdicts for %d definitions", len(v), len(items))
		}
		u.mu.Lock()
		u.pinErr = err
		u.mu.Unlock()
		if err != nil {
			// Fail closed: nothing of this listing is vouched for.
			u.log.Error("the upstream's definitions cannot be checked against the pins; none is served", "err", err)
			for i := range verdicts {
				verdicts[i] = Verdict{Reason: "unchecked"}
			}
		} else {
			verdicts = v
		}
	}
	want := map[key]*wanted{}
	for i, it := range items {
		if !u.included(it) {
			continue
		}
		w := u.target(it, verdicts[i])
		if w == nil {
			continue
		}
		k := key{w.t.Spec.Method, w.t.Spec.Name}
		if _, dup := want[k]; dup {
			u.log.Warn("two upstream definitions make the same target; the second is not served", "target", k.name)
			continue
		}
		want[k] = w
	}
	u.apply(want)
}

// included applies the include and exclude lists.
func (u *Upstream) included(it item) bool {
	var name string
	switch {
	case it.tool != nil:
		name = it.tool.Name
	case it.resource != nil:
		name = it.resource.Name
	case it.template != nil:
		name = it.template.Name
	case it.prompt != nil:
		name = it.prompt.Name
	default:
		return false // instructions are pinned, not served
	}
	if len(u.cfg.Include) > 0 && !slices.Contains(u.cfg.Include, name) {
		return false
	}
	return !slices.Contains(u.cfg.Exclude, name)
}

// apply registers want in place of what was served.
func (u *Upstream) apply(want map[key]*wanted) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, k := range sortedKeys(want) {
		w := want[k]
		if old := u.served[k]; old != nil && old.sig == w.sig {
			continue
		}
		if u.opts.Check != nil {
			if err := u.opts.Check(w.t.Spec); err != nil {
				u.log.Warn("upstream target not served", "target", k.name, "err", err)
				continue
			}
		}
		var err error
		if u.served[k] == nil {
			err = u.opts.Catalog.Add(w.t)
		} else {
			err = u.opts.Catalog.Replace(w.t)
		}
		if err != nil {
			u.log.Warn("upstream target not served", "target", k.name, "err", err)
			continue
		}
		if w.t.Hidden {
			u.log.Warn("upstream target quarantined: not listed, its calls refused", "target", k.name, "reason", w.reason)
		}
		u.served[k] = &served{sig: w.sig, ref: w.ref, hidden: w.t.Hidden}
	}
	for k := range u.served {
		if _, ok := want[k]; !ok {
			u.opts.Catalog.Remove(k.method, k.name)
			delete(u.served, k)
		}
	}
}

// wanted is a target a listing makes, with what tells it from another
// version of itself.
type wanted struct {
	t      *pipeline.Target
	sig    string
	ref    string // the upstream's own name
	reason string // why it is hidden, or ""
}

func sortedKeys(m map[key]*wanted) []key {
	keys := make([]key, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.method != b.method {
			return int(a.method) - int(b.method)
		}
		return strings.Compare(a.name, b.name)
	})
	return keys
}

// version is a short hash of a definition: a target's version, so that an
// approval or confirmation given for one definition is not used for
// another.
func version(body []byte) string {
	h := sha256.Sum256(body)
	return hex.EncodeToString(h[:6])
}

// target makes the Warden target of one definition, or nil (logged) if
// it cannot be served.
func (u *Upstream) target(it item, v Verdict) *wanted {
	var t *pipeline.Target
	switch {
	case it.tool != nil:
		t = u.toolTarget(it.tool)
	case it.resource != nil:
		r := it.resource
		t = &pipeline.Target{Spec: u.spec(pipeline.ReadResource, u.prefix()+r.Name), URI: r.URI,
			Title: r.Title, Description: r.Description, MIMEType: r.MIMEType, Handler: u.readResource}
	case it.template != nil:
		r := it.template
		t = &pipeline.Target{Spec: u.spec(pipeline.ReadResource, u.prefix()+r.Name), URITemplate: r.URITemplate,
			Title: r.Title, Description: r.Description, MIMEType: r.MIMEType, Handler: u.readResource}
	case it.prompt != nil:
		t = u.promptTarget(it.prompt)
	}
	if t == nil {
		return nil
	}
	t.Spec.Version = version(it.def.Body)
	t.Protocol, t.Lean = true, u.lean
	w := &wanted{t: t, sig: t.Spec.Version, ref: it.def.Name}
	if !v.Serve {
		w.reason = v.Reason
		w.sig += "\x00" + v.Reason
		quarantine(t, u.name, it.def.Name, v.Reason)
	}
	return w
}

func (u *Upstream) prefix() string { return u.cfg.UpstreamPrefix(u.name) }

// spec is the spec of a resource or prompt of the upstream.
func (u *Upstream) spec(m pipeline.Method, name string) *pipeline.Spec {
	return &pipeline.Spec{Method: m, Name: name, Scope: u.cfg.Scope, Timeout: u.cfg.Timeout, Source: Kind,
		Output: pipeline.Output{Prompts: true}}
}

// quarantine hides t and has it refuse every call: its definition is not
// vouched for. Its arguments are not checked against a schema that is
// not trusted either; the refusal comes first.
func quarantine(t *pipeline.Target, upstream, name, reason string) {
	t.Hidden = true
	if t.Spec.Method != pipeline.ReadResource {
		t.InputSchema = &jsonschema.Schema{Type: "object", AdditionalProperties: &jsonschema.Schema{}}
		t.OutputSchema = nil
	}
	t.Spec.CacheTTL = 0
	t.Spec.Gate = nil // refused at once, not held for approval
	code, why := pipeline.ToolChanged, "its definition changed since it was approved"
	switch reason {
	case "new":
		why = "it is new on the upstream and waits for approval"
	case "poisoned":
		why = "its definition looks poisoned (instructions to the model, hidden text, requests for credentials)"
	case "rejected":
		why = "an operator rejected its current definition"
	case "unchecked":
		code, why = pipeline.Unavailable, "its definition cannot be checked against the pins"
	}
	err := pipeline.Errorf(code, "ask the operator to review it (warden upstreams diff "+upstream+")",
		"%s of the upstream server %s is quarantined: %s", name, upstream, why)
	t.Handler = func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return nil, err }
}

// toolTarget makes the target of an upstream tool, with the operator's
// overrides.
func (u *Upstream) toolTarget(tool *mcp.Tool) *pipeline.Target {
	ov := u.cfg.Tools[tool.Name]
	if ov == nil {
		ov = &config.UpstreamTool{}
	}
	name := u.prefix() + tool.Name
	if ov.Name != "" {
		name = ov.Name
	}
	if !toolName.MatchString(name) {
		u.log.Warn("upstream tool not served: its name breaks the MCP rules for names", "tool", tool.Name)
		return nil
	}
	ct := &config.Tool{
		Title: tool.Title, Description: tool.Description, Scope: u.cfg.Scope,
		Mode: "write", Risk: "write", Timeout: u.cfg.Timeout,
		Require: ov.Require, Approval: ov.Approval, RateLimit: ov.RateLimit, Output: ov.Output, CacheTTL: ov.CacheTTL,
	}
	if u.cfg.RiskFromAnnotations {
		a := tool.Annotations
		switch {
		case a != nil && a.ReadOnlyHint:
			ct.Mode, ct.Risk = "read", "read"
		case a == nil || a.DestructiveHint == nil || *a.DestructiveHint:
			ct.Risk = "high" // the protocol's default for a tool that is not read-only
		}
	}
	if ov.Mode != "" {
		ct.Mode = ov.Mode
		if ov.Mode == "read" && ct.Risk == "write" {
			ct.Risk = "read"
		}
	}
	if ct.Mode == "write" && ct.Risk == "read" {
		ct.Risk = "write"
	}
	if ov.Risk != "" {
		ct.Risk = ov.Risk
	}
	if ov.Scope != "" {
		ct.Scope = ov.Scope
	}
	if ov.Timeout > 0 {
		ct.Timeout = ov.Timeout
	}
	if ov.Description != "" {
		ct.Description = ov.Description
	}
	open := u.cfg.OpenSchema
	if ov.OpenSchema != nil {
		open = *ov.OpenSchema
	}
	in, err := schemaOf(tool.InputSchema)
	if err != nil || in == nil {
		in = &jsonschema.Schema{Type: "object"}
	}
	if open {
		in.AdditionalProperties = &jsonschema.Schema{}
	} else {
		in.AdditionalProperties = &jsonschema.Schema{Not: &jsonschema.Schema{}}
	}
	out, _ := schemaOf(tool.OutputSchema)
	if out != nil && out.Type != "object" {
		out = nil
	}
	rule := u.opts.Rule("upstreams."+u.name+".tools."+tool.Name, ct.Risk, ct.Require, ct.Approval)
	spec := u.opts.ToolSpec(name, ct, rule)
	spec.Source = Kind
	return &pipeline.Target{
		Spec: spec, Title: ct.Title, Description: strings.TrimSpace(ct.Description),
		InputSchema: in, OutputSchema: out, Handler: u.callTool(tool.Name, pipeline.MirrorsHeaders(tool.InputSchema)),
	}
}

// promptTarget makes the target of an upstream prompt: its arguments are
// strings.
func (u *Upstream) promptTarget(p *mcp.Prompt) *pipeline.Target {
	name := u.prefix() + p.Name
	if !toolName.MatchString(name) {
		u.log.Warn("upstream prompt not served: its name breaks the MCP rules for names", "prompt", p.Name)
		return nil
	}
	var in *jsonschema.Schema
	if len(p.Arguments) > 0 {
		in = &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{}}
		for _, a := range p.Arguments {
			in.Properties[a.Name] = &jsonschema.Schema{Type: "string", Description: a.Description}
			if a.Required {
				in.Required = append(in.Required, a.Name)
			}
		}
	}
	return &pipeline.Target{Spec: u.spec(pipeline.GetPrompt, name), Title: p.Title, Description: p.Description,
		InputSchema: in, Handler: u.getPrompt(p.Name)}
}

// schemaOf decodes a schema an upstream sent. A dialect other than draft
// 2020-12 is dropped: Warden validates with 2020-12, which reads the
// keywords upstreams use alike.
func schemaOf(v any) (*jsonschema.Schema, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if m["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		delete(m, "$schema")
	}
	if b, err = json.Marshal(m); err != nil {
		return nil, err
	}
	s := new(jsonschema.Schema)
	if err := json.Unmarshal(b, s); err != nil {
		return nil, err
	}
	if s.Type == "" && s.Types == nil {
		s.Type = "object"
	}
	return s, nil
}
