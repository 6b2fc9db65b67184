package warden

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/yosida95/uritemplate/v3"

	"github.com/wardenmcp/warden/pipeline"
)

// The registry holds the live catalog: every target, its chained handler
// (built once, when the target is registered) and what clients are shown.
// Targets can be added, replaced and removed while the server serves;
// connected clients are told, and lists stay filtered per principal.
//
// Names are unique per method: one tool, one resource or resource
// template, one prompt of each name. Go code registers with the Add*
// methods, which panic on programmer error; data (a configuration, an
// upstream server's catalog) registers with Add and Replace, which return
// errors.

// entry is one registered target.
type entry struct {
	target  *pipeline.Target
	handler pipeline.Handler // the target's handler, chained with the stages
	tmpl    *uritemplate.Template
	// mirrorsHeaders says a tool's arguments are mirrored in Mcp-Param-*
	// headers (x-mcp-header), which the SDK checks: its calls are the SDK's.
	mirrorsHeaders bool

	// What the protocol SDK lists; exactly one is set.
	tool     *mcp.Tool
	resource *mcp.Resource
	template *mcp.ResourceTemplate
	prompt   *mcp.Prompt
}

func (e *entry) spec() *pipeline.Spec { return e.target.Spec }

// listKey is the key an entry has among those the SDK lists: tools and
// prompts by name, resources by URI, templates by URI template.
func (e *entry) listKey() string {
	switch {
	case e.tool != nil:
		return "tool:" + e.tool.Name
	case e.resource != nil:
		return "resource:" + e.resource.URI
	case e.template != nil:
		return "template:" + e.template.URITemplate
	}
	return "prompt:" + e.prompt.Name
}

type nameKey struct {
	method pipeline.Method
	name   string
}

// ErrExists is returned by Add for a target whose method and name are taken.
var ErrExists = errors.New("a target of that name is already registered")

// Add registers t. It returns an error if t is not valid, or if a target
// of the same method and name is already registered (wrapping ErrExists,
// and naming the registered target's source).
func (s *Server) Add(t *pipeline.Target) error { return s.register(t, false) }

// Replace registers t, replacing the registered target of the same method
// and name, if any. Calls already running finish on the old target; new
// calls get the new one.
func (s *Server) Replace(t *pipeline.Target) error { return s.register(t, true) }

// Remove removes the target of method m and the given name, and reports
// whether there was one. Calls already running finish; new calls are
// refused as calls to an unknown target.
func (s *Server) Remove(m pipeline.Method, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.names[nameKey{m, name}]
	if e == nil {
		return false
	}
	s.unlink(e)
	switch {
	case e.tool != nil:
		s.mcp.RemoveTools(e.tool.Name)
	case e.resource != nil:
		s.mcp.RemoveResources(e.resource.URI)
	case e.template != nil:
		s.mcp.RemoveResourceTemplates(e.template.URITemplate)
	default:
		s.mcp.RemovePrompts(e.prompt.Name)
	}
	return true
}

// unlink removes e from the indexes; s.mu is held.
func (s *Server) unlink(e *entry) {
	delete(s.names, nameKey{e.spec().Method, e.spec().Name})
	delete(s.entries, e.listKey())
	switch {
	case e.tool != nil:
		s.tools = slices.DeleteFunc(s.tools, func(t *mcp.Tool) bool { return t == e.tool })
	case e.resource != nil:
		s.resources = slices.DeleteFunc(s.resources, func(r *mcp.Resource) bool { return r == e.resource })
	case e.template != nil:
		s.templates = slices.DeleteFunc(s.templates, func(t *mcp.ResourceTemplate) bool { return t == e.template })
	default:
		s.prompts = slices.DeleteFunc(s.prompts, func(p *mcp.Prompt) bool { return p == e.prompt })
	}
}

func (s *Server) register(t *pipeline.Target, replace bool) error {
	e, err := s.prepare(t)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := nameKey{t.Spec.Method, t.Spec.Name}
	old := s.names[key]
	if old != nil && !replace {
		return fmt.Errorf("%s %q (source %s): %w", kindName(t), t.Spec.Name, old.spec().Source, ErrExists)
	}
	// A resource URI (or template) is one target's: another of another
	// name at the same URI would silently take its place in the SDK.
	if other := s.entries[e.listKey()]; other != nil && other != old {
		return fmt.Errorf("%s %q: %s is already served by %q", kindName(t), t.Spec.Name, e.listKey(), other.spec().Name)
	}
	if old != nil {
		s.unlink(old)
		if old.listKey() != e.listKey() {
			// The replacement moved (a new URI): the old one goes.
			switch {
			case old.resource != nil:
				s.mcp.RemoveResources(old.resource.URI)
			case old.template != nil:
				s.mcp.RemoveResourceTemplates(old.template.URITemplate)
			}
		}
	}
	s.names[key] = e
	s.entries[e.listKey()] = e
	// The SDK serves the listing and dispatch; its handler finds the entry
	// at call time, so a replaced target serves new calls at once.
	switch {
	case e.tool != nil:
		s.tools = append(s.tools, e.tool)
		s.mcp.AddTool(e.tool, s.toolHandler(t.Spec.Name))
	case e.resource != nil:
		s.resources = append(s.resources, e.resource)
		s.mcp.AddResource(e.resource, s.resourceHandler(e.listKey()))
	case e.template != nil:
		s.templates = append(s.templates, e.template)
		s.mcp.AddResourceTemplate(e.template, s.resourceHandler(e.listKey()))
	default:
		s.prompts = append(s.prompts, e.prompt)
		s.mcp.AddPrompt(e.prompt, s.promptHandler(t.Spec.Name))
	}
	return nil
}

func kindName(t *pipeline.Target) string {
	switch {
	case t.Spec.Method == pipeline.CallTool:
		return "tool"
	case t.Spec.Method == pipeline.GetPrompt:
		return "prompt"
	case t.URITemplate != "":
		return "resource template"
	}
	return "resource"
}

// lookup returns the entry at a list key, or nil.
func (s *Server) lookup(key string) *entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.entries[key]
}

// prepare checks t and computes everything its calls need: the resolved
// input schema, what clients are shown, the chained handler.
func (s *Server) prepare(t *pipeline.Target) (*entry, error) {
	if t == nil || t.Spec == nil {
		return nil, errors.New("a target needs a spec")
	}
	// The registry keeps copies: a refused target leaves the caller's as
	// it was, and a registered one cannot be changed behind its back.
	spec := *t.Spec
	target := *t
	target.Spec = &spec
	t = &target
	sp := t.Spec
	fail := func(format string, args ...any) (*entry, error) {
		return nil, fmt.Errorf("%s %q: %s", kindName(t), sp.Name, fmt.Sprintf(format, args...))
	}
	if sp.Name == "" {
		return fail("a name is required")
	}
	if t.Handler == nil {
		return fail("a handler is required")
	}
	if sp.Scope == "" || containsWildcard(sp.Scope) {
		return fail("a scope is required, without wildcards (no scope, no call)")
	}
	if sp.Source == "" {
		sp.Source = "native"
	}
	if g := sp.Gate; g != nil && (g.Require == pipeline.RequireDryRun || g.DryRun) && t.DryRun == nil {
		return fail("its risk policy needs a dry run, and it has none")
	}
	// A control the target asks for and this server does not run would be
	// silently skipped: refuse the target instead.
	switch {
	case sp.Gate != nil && !s.enforces.gate:
		return fail("it has a risk policy, and this server runs no risk gate (Options.Gate)")
	case sp.RateLimit != nil && !s.enforces.limits:
		return fail("it has a rate limit, and this server runs no limiter (Options.Limiter)")
	case !reflect.ValueOf(sp.Output).IsZero() && !s.enforces.output:
		return fail("it has an output policy, and this server runs no output guard (Options.Guard)")
	}
	e := &entry{target: t}
	var in *jsonschema.Schema
	switch sp.Method {
	case pipeline.CallTool:
		if !toolName.MatchString(sp.Name) {
			return fail("invalid tool name")
		}
		var err error
		if in, err = toolInput(t); err != nil {
			return fail("%v", err)
		}
		ann := AnnotationsFor(sp.Mode)
		if a := t.Annotations; a != nil {
			ann = &mcp.ToolAnnotations{Title: a.Title, ReadOnlyHint: a.ReadOnlyHint, DestructiveHint: a.DestructiveHint,
				IdempotentHint: a.IdempotentHint, OpenWorldHint: a.OpenWorldHint}
		}
		e.mirrorsHeaders = pipeline.MirrorsHeaders(in)
		e.tool = &mcp.Tool{
			Name:         sp.Name,
			Title:        t.Title,
			Description:  t.Description,
			InputSchema:  in,
			Annotations:  ann,
			OutputSchema: nilIfEmpty(withRefusal(t.OutputSchema)),
		}
		if sp.Version != "" {
			e.tool.Meta = mcp.Meta{"io.wardenmcp/version": sp.Version}
		}
	case pipeline.ReadResource:
		switch {
		case t.URI != "" && t.URITemplate != "":
			return fail("a URI or a URI template, not both")
		case t.URI != "":
			if _, err := url.Parse(t.URI); err != nil {
				return fail("invalid URI: %v", err)
			}
			e.resource = &mcp.Resource{URI: t.URI, Name: sp.Name, Title: t.Title, Description: t.Description, MIMEType: t.MIMEType}
		case t.URITemplate == "":
			return fail("a URI or a URI template is required")
		default:
			tmpl, err := uritemplate.New(t.URITemplate)
			if err != nil {
				return fail("a valid URI template is required (%v)", err)
			}
			e.tmpl = tmpl
			e.template = &mcp.ResourceTemplate{URITemplate: t.URITemplate, Name: sp.Name, Title: t.Title, Description: t.Description, MIMEType: t.MIMEType}
			in = t.InputSchema
			if in == nil {
				in = &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{}, AdditionalProperties: &jsonschema.Schema{Not: &jsonschema.Schema{}}}
				for _, v := range tmpl.Varnames() {
					in.Properties[v] = &jsonschema.Schema{Type: "string"}
					in.Required = append(in.Required, v)
				}
			}
		}
	case pipeline.GetPrompt:
		if !toolName.MatchString(sp.Name) {
			return fail("invalid prompt name")
		}
		e.prompt = &mcp.Prompt{Name: sp.Name, Title: t.Title, Description: t.Description}
		if in = t.InputSchema; in != nil {
			if in.AdditionalProperties == nil {
				in = in.CloneSchemas()
				in.AdditionalProperties = &jsonschema.Schema{Not: &jsonschema.Schema{}}
			}
			for _, name := range sortedProps(in) {
				e.prompt.Arguments = append(e.prompt.Arguments, &mcp.PromptArgument{
					Name:        name,
					Description: in.Properties[name].Description,
					Required:    slices.Contains(in.Required, name),
				})
			}
		}
	default:
		return fail("unknown method %d", sp.Method)
	}
	if in != nil {
		rs, err := in.Resolve(&jsonschema.ResolveOptions{ValidateDefaults: true})
		if err != nil {
			return fail("invalid input schema: %v", err)
		}
		sp.Input = rs
	}
	run := t.Handler
	if dry := t.DryRun; dry != nil {
		sp.DryRun = true
		run = func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			if c.DryRun {
				return dry(ctx, c)
			}
			return t.Handler(ctx, c)
		}
	}
	e.handler = pipeline.Chain(run, s.stages...)
	return e, nil
}

// toolInput returns a tool's input schema as clients see it: an object,
// closed to unknown arguments unless it says otherwise, with Warden's
// dry-run argument if the tool has a dry run.
func toolInput(t *pipeline.Target) (*jsonschema.Schema, error) {
	in := t.InputSchema
	if in == nil {
		in = &jsonschema.Schema{Type: "object"}
	}
	if in.Type != "object" {
		return nil, errors.New(`input schema must have type "object"`)
	}
	if in.AdditionalProperties == nil {
		in = in.CloneSchemas()
		in.AdditionalProperties = &jsonschema.Schema{Not: &jsonschema.Schema{}}
	}
	if t.DryRun == nil {
		return in, nil
	}
	if t.Spec.Mode != pipeline.Write {
		return nil, errors.New("only write tools have a dry run")
	}
	if _, taken := in.Properties[pipeline.DryRunArg]; taken {
		return nil, fmt.Errorf("the argument %q is Warden's", pipeline.DryRunArg)
	}
	in = in.CloneSchemas()
	if in.Properties == nil {
		in.Properties = map[string]*jsonschema.Schema{}
	}
	in.Properties[pipeline.DryRunArg] = &jsonschema.Schema{
		Type:        "boolean",
		Description: "Set to true to see what this call would change, without changing anything.",
	}
	return in, nil
}

// notFound is the refusal of a call to a target that was removed after
// the protocol layer dispatched it.
func notFound(what, name string) error {
	return pipeline.Errorf(pipeline.NotFound, "list them again to see what exists", "there is no %s %q", what, name)
}

// toolHandler adapts the SDK's tool call to Warden's call path.
func (s *Server) toolHandler(name string) mcp.ToolHandler {
	key := "tool:" + name
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		e := s.lookup(key)
		if e == nil {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown tool %q", name)}
		}
		c := s.newCall(ctx, e.spec(), req.Params.Name, req, req.Params.Meta)
		c.Raw = req.Params.Arguments
		s.input(c, req, req.Params.InputResponses, req.Params.RequestState)
		res, err := e.handler(withRequest(ctx, req), c)
		// A *jsonrpc.Error returned as such (not wrapped) is the handler's
		// deliberate protocol-level answer: a refusal the protocol defines as
		// an error rather than a tool result, such as a missing client
		// capability (-32021) or tampered request state. It reaches the
		// client as is, as with the SDK's own tool handlers; any other error
		// becomes a tool error.
		if werr, ok := err.(*jsonrpc.Error); ok {
			return nil, werr
		}
		if err != nil {
			return s.toolError(c, err), nil
		}
		if res == nil || res.Tool == nil {
			s.log.Error("tool handler returned no result", "tool", name, "trace_id", c.TraceID)
			return s.toolError(c, errors.New("no result")), nil
		}
		out, err := toolResult(res.Tool)
		if err != nil {
			return s.toolError(c, fmt.Errorf("tool %s: %w", name, err)), nil
		}
		return out, nil
	}
}

// resourceHandler adapts the SDK's resource read of the resource or
// template at key to Warden's call path.
func (s *Server) resourceHandler(key string) mcp.ResourceHandler {
	return func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		e := s.lookup(key)
		if e == nil {
			return nil, mcp.ResourceNotFoundError(req.Params.URI)
		}
		c := s.newCall(ctx, e.spec(), req.Params.URI, req, req.Params.Meta)
		c.Args = map[string]any{}
		if e.tmpl != nil {
			vals := e.tmpl.Match(req.Params.URI)
			for _, name := range e.tmpl.Varnames() {
				if v := vals.Get(name); v.Valid() {
					c.Args[name] = v.String()
				}
			}
		}
		s.input(c, req, req.Params.InputResponses, req.Params.RequestState)
		res, err := e.handler(withRequest(ctx, req), c)
		if err != nil {
			return nil, s.protocolError(c, err)
		}
		if res == nil || res.Resource == nil {
			return nil, s.protocolError(c, errors.New("no result"))
		}
		out, err := resourceResult(res.Resource)
		if err != nil {
			return nil, s.protocolError(c, fmt.Errorf("resource %s: %w", req.Params.URI, err))
		}
		return out, nil
	}
}

// promptHandler adapts the SDK's prompt get to Warden's call path.
func (s *Server) promptHandler(name string) mcp.PromptHandler {
	key := "prompt:" + name
	return func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		e := s.lookup(key)
		if e == nil {
			c := &pipeline.Call{Spec: &pipeline.Spec{Method: pipeline.GetPrompt, Name: name}, Target: name}
			return nil, s.protocolError(c, notFound("prompt", name))
		}
		c := s.newCall(ctx, e.spec(), req.Params.Name, req, req.Params.Meta)
		c.Args = make(map[string]any, len(req.Params.Arguments))
		for k, v := range req.Params.Arguments {
			c.Args[k] = v
		}
		s.input(c, req, req.Params.InputResponses, req.Params.RequestState)
		res, err := e.handler(withRequest(ctx, req), c)
		if err != nil {
			return nil, s.protocolError(c, err)
		}
		if res == nil || res.Prompt == nil {
			return nil, s.protocolError(c, errors.New("no result"))
		}
		out, err := promptResult(res.Prompt)
		if err != nil {
			return nil, s.protocolError(c, fmt.Errorf("prompt %s: %w", name, err))
		}
		return out, nil
	}
}
