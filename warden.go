// Package warden puts Warden's policy pipeline in front of tools, resources
// and prompts served with the official MCP Go SDK.
//
// Every target registered here — a native Go handler or one of Warden's
// declarative sources — passes through the same ordered stages (see
// stages.go) before its handler runs:
//
//	srv := warden.New(&mcp.Implementation{Name: "orders", Version: "1.0.0"}, nil)
//	srv.AddTool(&warden.Tool{
//		Name:        "get_order_status",
//		Description: "Look up the status of one order by its number.",
//		InputSchema: &jsonschema.Schema{
//			Type:     "object",
//			Required: []string{"order_id"},
//			Properties: map[string]*jsonschema.Schema{
//				"order_id": {Type: "string", Pattern: `^O-[0-9]{4,}$`, Description: "Order number, e.g. O-1001."},
//			},
//		},
//		Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
//			id := c.Args["order_id"].(string) // validated before the handler runs
//			return warden.TextResult("order " + id + " has shipped"), nil
//		},
//	})
//	err := srv.ServeStdio(ctx, os.Stdin, os.Stdout)
//
// Registration errors are programmer errors and panic with the offending
// name, as in the SDK; runtime refusals reach the client as one structured
// error shape ([pipeline.Error]).
package warden

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/authz"
	"github.com/wardenmcp/warden/pipeline"
)

// Options configure a Server. The nil value is valid and safe.
type Options struct {
	// Logger receives operational events (failures, panics). Nil discards them.
	Logger *slog.Logger
	// DefaultTimeout bounds calls to targets that declare no timeout.
	// Zero means 30 seconds.
	DefaultTimeout time.Duration
	// Instructions are shown to clients on connection.
	Instructions string
	// MCP lets an embedding program set SDK options Warden does not own
	// (completion, subscriptions). Warden overrides Instructions and Logger.
	MCP *mcp.ServerOptions
	// LocalPrincipal is the principal of requests that arrive without one
	// established by HTTP authentication: stdio, in-memory transports, and
	// HTTP when no Authenticate is configured. It is called on every such
	// request (so a revoked credential stops working at once); an error or
	// a nil principal refuses the call. Nil means there is no such
	// principal, and those requests are all refused.
	LocalPrincipal func(ctx context.Context) (*pipeline.Principal, error)
	// Policy, if set, is asked about every call after the scope check.
	Policy pipeline.Policy
	// Limiter, if set, admits every call under rate and concurrency limits.
	Limiter pipeline.Limiter
	// Audit, if set, records every call durably: its refusal, or its intent
	// before it runs and its outcome after.
	Audit pipeline.Auditor
	// Guard, if set, inspects every result before the client sees it.
	Guard pipeline.Stage
	// Suspend, if set, refuses calls of suspended principals; it runs
	// inside audit, before authorization.
	Suspend pipeline.Stage
	// Gate, if set, holds risky calls for approval (the risk gate).
	Gate pipeline.Stage
	// Idempotency and Cache, if set, may answer a call from a stored result
	// instead of running it (after its intent is audited).
	Idempotency pipeline.Stage
	Cache       pipeline.Stage
	// Metrics, if set, counts and times every call; it runs outermost.
	Metrics pipeline.Stage
	// Tracer, if set, opens a span per call and adds an event as the call
	// passes each stage.
	Tracer Tracer
}

// Tracer traces calls: Stage opens a span around each call; Around wraps a
// stage so that the span notes when the call got through it.
type Tracer interface {
	Stage(next pipeline.Handler) pipeline.Handler
	Around(name string, s pipeline.Stage) pipeline.Stage
}

// Server is an MCP server whose every tool, resource and prompt is served
// through Warden's pipeline.
type Server struct {
	mcp  *mcp.Server
	impl *mcp.Implementation
	// implJSON is impl encoded, as the lean path stamps it on results.
	implJSON json.RawMessage
	log      *slog.Logger
	stages   []pipeline.Stage
	decide   pipeline.Handler // the decision stages alone, for Explain

	local  func(ctx context.Context) (*pipeline.Principal, error)
	policy pipeline.Policy
	audit  pipeline.Auditor
	// sdkCacheable says the embedding program sets cache hints of its own
	// (ServerOptions.SetCacheable), which only the SDK applies: lists and
	// reads are then the SDK's. pageSize is the SDK's list page size.
	sdkCacheable bool
	pageSize     int
	// leanDiscover says server/discover may be answered on the lean path:
	// the embedding program left alone every SDK option that shapes it.
	leanDiscover bool
	caps         *mcp.ServerCapabilities
	instructions string
	// versions are the protocol versions the SDK server supports, newest
	// first.
	versions []string

	// enforces says which of a target's own controls this server's stages
	// can keep: a target that asks for one it cannot is refused.
	enforces struct{ gate, limits, output bool }

	mu      sync.RWMutex // guards the registry below; targets come and go while serving
	names   map[nameKey]*entry
	entries map[string]*entry // by list key: tool:NAME, resource:URI, template:URI_TEMPLATE, prompt:NAME
	// What clients are shown, in registration order.
	tools     []*mcp.Tool
	resources []*mcp.Resource
	templates []*mcp.ResourceTemplate
	prompts   []*mcp.Prompt
}

// New returns a Server. impl names the server to clients.
func New(impl *mcp.Implementation, opts *Options) *Server {
	if opts == nil {
		opts = &Options{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	mo := mcp.ServerOptions{}
	if opts.MCP != nil {
		mo = *opts.MCP
	}
	mo.Instructions = opts.Instructions
	mo.Logger = log
	if mo.Capabilities == nil {
		// Tools come and go while serving (the registry), so the server
		// says its tool list may change even while it has none: a 2026-07-28
		// client listens for list_changed only when told it may come. The
		// SDK's default logging capability is kept.
		mo.Capabilities = &mcp.ServerCapabilities{
			//lint:ignore SA1019 the SDK's default capability, kept while the protocol still carries logging
			Logging: &mcp.LoggingCapabilities{},
			Tools:   &mcp.ToolCapabilities{ListChanged: true},
		}
	}
	// What a caller sees depends on who it is (lists are filtered, rows are
	// bound to its tenant), so no intermediary may share a cached answer
	// between callers: only server/discover stays public.
	setCacheable := mo.SetCacheable
	mo.SetCacheable = func(ctx context.Context, req mcp.Request, c *mcp.Cacheable) {
		if setCacheable != nil {
			setCacheable(ctx, req, c)
		}
		if _, discover := req.(*mcp.ServerRequest[*mcp.DiscoverParams]); !discover {
			c.CacheScope = "private"
		}
	}
	s := &Server{
		mcp:     mcp.NewServer(impl, &mo),
		impl:    impl,
		log:     log,
		local:   opts.LocalPrincipal,
		policy:  opts.Policy,
		audit:   opts.Audit,
		names:   map[nameKey]*entry{},
		entries: map[string]*entry{},
	}
	s.implJSON, _ = json.Marshal(impl)
	s.sdkCacheable = setCacheable != nil
	s.caps = mo.Capabilities
	//lint:ignore SA1019 a program that still sets the SDK's old switches gets the SDK's own discover answer
	s.leanDiscover = setCacheable == nil && !mo.HasTools && !mo.HasPrompts && !mo.HasResources && mo.SubscribeHandler == nil &&
		mo.CompletionHandler == nil && len(mo.SupportedProtocolVersions) == 0
	s.instructions = mo.Instructions
	s.versions = mcp.SupportedProtocolVersions()
	if v := mo.SupportedProtocolVersions; len(v) > 0 {
		s.versions = slices.DeleteFunc(s.versions, func(x string) bool { return !slices.Contains(v, x) })
	}
	s.pageSize = mcp.DefaultPageSize
	if mo.PageSize > 0 {
		s.pageSize = mo.PageSize
	}
	s.stages = stages(opts, log)
	s.enforces.gate, s.enforces.limits, s.enforces.output = opts.Gate != nil, opts.Limiter != nil, opts.Guard != nil
	s.decide = decisionChain(opts)
	s.mcp.AddReceivingMiddleware(s.filterLists, s.auditRelays)
	return s
}

// MCP returns the underlying SDK server, to connect transports to.
func (s *Server) MCP() *mcp.Server { return s.mcp }

// Tools returns the tools registered so far, as clients see them.
func (s *Server) Tools() []*mcp.Tool {
	return locked(&s.mu, func() []*mcp.Tool { return slices.Clone(s.tools) })
}

// Resources returns the fixed resources registered so far.
func (s *Server) Resources() []*mcp.Resource {
	return locked(&s.mu, func() []*mcp.Resource { return slices.Clone(s.resources) })
}

// ResourceTemplates returns the resource templates registered so far.
func (s *Server) ResourceTemplates() []*mcp.ResourceTemplate {
	return locked(&s.mu, func() []*mcp.ResourceTemplate { return slices.Clone(s.templates) })
}

// Prompts returns the prompts registered so far.
func (s *Server) Prompts() []*mcp.Prompt {
	return locked(&s.mu, func() []*mcp.Prompt { return slices.Clone(s.prompts) })
}

func locked[T any](mu *sync.RWMutex, f func() T) T {
	mu.RLock()
	defer mu.RUnlock()
	return f()
}

// Tool declares a tool and the handler that serves it.
type Tool struct {
	Name        string
	Title       string
	Description string
	Version     string
	Mode        pipeline.Mode
	// Source names the kind of source behind the tool; "native" if empty.
	Source string
	// InputSchema must be of type "object". If it does not say otherwise,
	// Warden makes it strict: additionalProperties is set to false.
	InputSchema  *jsonschema.Schema
	OutputSchema *jsonschema.Schema
	// Annotations default to hints derived from Mode.
	Annotations *mcp.ToolAnnotations
	Timeout     time.Duration
	// Scope is the scope a caller needs; required.
	Scope string
	// Bound lists parameters filled from the principal ("tenant", "user");
	// they must not appear in InputSchema.
	Bound   map[string]string
	Handler pipeline.Handler
	// Lean says the handler never calls Request(ctx): its stateless
	// 2026-07-28 calls may then be served without the protocol SDK, which
	// is faster. Leave it false for handlers that use protocol features
	// (progress, logging, sampling, the request's headers) or that ask the
	// client for input in their result: on a 2025-11-25 session or stdio,
	// a lean call that asks is handed to the SDK and its handler runs again.
	Lean bool
	// DryRun, for write tools, shows what a call would change without
	// changing anything. When set, the tool takes the boolean argument
	// pipeline.DryRunArg, and calls with it set run DryRun instead of
	// Handler; risk policies may also require a dry run.
	DryRun pipeline.Handler
}

var toolName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// AddTool registers a tool, replacing any of the same name. It panics if
// the declaration is invalid.
func (s *Server) AddTool(t *Tool) {
	if t.Handler == nil {
		panic(fmt.Sprintf("warden: AddTool %q: nil handler", t.Name))
	}
	mustScope("AddTool", t.Name, t.Scope)
	var ann *pipeline.ToolAnnotations
	if a := t.Annotations; a != nil {
		ann = &pipeline.ToolAnnotations{Title: a.Title, ReadOnlyHint: a.ReadOnlyHint, DestructiveHint: a.DestructiveHint,
			IdempotentHint: a.IdempotentHint, OpenWorldHint: a.OpenWorldHint}
	}
	s.mustRegister("AddTool", &pipeline.Target{
		Spec: &pipeline.Spec{
			Method:  pipeline.CallTool,
			Name:    t.Name,
			Version: t.Version,
			Mode:    t.Mode,
			Source:  orDefault(t.Source, "native"),
			Timeout: t.Timeout,
			Scope:   t.Scope,
			Bound:   t.Bound,
		},
		Title:        t.Title,
		Description:  t.Description,
		InputSchema:  t.InputSchema,
		OutputSchema: t.OutputSchema,
		Annotations:  ann,
		Handler:      t.Handler,
		DryRun:       t.DryRun,
		Protocol:     !t.Lean,
	})
}

// mustRegister registers t for the Go method fn, panicking on error.
func (s *Server) mustRegister(fn string, t *pipeline.Target) {
	if err := s.Replace(t); err != nil {
		panic(fmt.Sprintf("warden: %s: %v", fn, err))
	}
}

// AnnotationsFor returns the tool hints that follow from a mode: a read tool
// is read-only and idempotent; a write tool may be destructive. Warden's
// sources are closed-world.
func AnnotationsFor(m pipeline.Mode) *mcp.ToolAnnotations {
	f := false
	if m == pipeline.Write {
		t := true
		return &mcp.ToolAnnotations{ReadOnlyHint: false, DestructiveHint: &t, IdempotentHint: false, OpenWorldHint: &f}
	}
	return &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true, OpenWorldHint: &f}
}

// Resource declares a resource at a fixed URI.
type Resource struct {
	URI, Name, Title, Description, MIMEType string
	Version                                 string
	Source                                  string
	Timeout                                 time.Duration
	Scope                                   string // required
	Handler                                 pipeline.Handler
	// Lean says the handler never calls Request(ctx), as for Tool.
	Lean bool
}

// AddResource registers a resource, replacing any of the same name. It
// panics if the declaration is invalid.
func (s *Server) AddResource(r *Resource) {
	if r.URI == "" || r.Name == "" || r.Handler == nil {
		panic(fmt.Sprintf("warden: AddResource %q: URI, name and handler are required", r.Name))
	}
	mustScope("AddResource", r.Name, r.Scope)
	s.mustRegister("AddResource", &pipeline.Target{
		Spec:  &pipeline.Spec{Method: pipeline.ReadResource, Name: r.Name, Version: r.Version, Source: orDefault(r.Source, "native"), Timeout: r.Timeout, Scope: r.Scope},
		URI:   r.URI,
		Title: r.Title, Description: r.Description, MIMEType: r.MIMEType,
		Handler:  r.Handler,
		Protocol: !r.Lean,
	})
}

// ResourceTemplate declares a family of resources by URI template
// (RFC 6570). The template's variables become the call's arguments.
type ResourceTemplate struct {
	URITemplate, Name, Title, Description, MIMEType string
	Version                                         string
	Source                                          string
	Timeout                                         time.Duration
	Scope                                           string // required
	// Input constrains the variables; if nil, every variable is a required
	// string.
	Input *jsonschema.Schema
	// Bound lists parameters filled from the principal, as for tools.
	Bound   map[string]string
	Handler pipeline.Handler
	// Lean says the handler never calls Request(ctx), as for Tool.
	Lean bool
}

// AddResourceTemplate registers a resource template, replacing any of the
// same name. It panics if the declaration is invalid.
func (s *Server) AddResourceTemplate(rt *ResourceTemplate) {
	if rt.Name == "" || rt.Handler == nil {
		panic(fmt.Sprintf("warden: AddResourceTemplate %q: a valid URI template, name and handler are required", rt.Name))
	}
	mustScope("AddResourceTemplate", rt.Name, rt.Scope)
	s.mustRegister("AddResourceTemplate", &pipeline.Target{
		Spec:        &pipeline.Spec{Method: pipeline.ReadResource, Name: rt.Name, Version: rt.Version, Source: orDefault(rt.Source, "native"), Timeout: rt.Timeout, Scope: rt.Scope, Bound: rt.Bound},
		URITemplate: rt.URITemplate,
		Title:       rt.Title, Description: rt.Description, MIMEType: rt.MIMEType,
		InputSchema: rt.Input,
		Handler:     rt.Handler,
		Protocol:    !rt.Lean,
	})
}

// Prompt declares a prompt template.
type Prompt struct {
	Name, Title, Description string
	Version                  string
	// Input constrains the arguments: an object whose properties are the
	// prompt's arguments (prompt arguments are strings on the wire).
	Input   *jsonschema.Schema
	Timeout time.Duration
	Scope   string // required
	Handler pipeline.Handler
	// Lean says the handler never calls Request(ctx), as for Tool.
	Lean bool
}

// AddPrompt registers a prompt, replacing any of the same name. It panics
// if the declaration is invalid.
func (s *Server) AddPrompt(p *Prompt) {
	if p.Name == "" || p.Handler == nil {
		panic(fmt.Sprintf("warden: AddPrompt %q: name and handler are required", p.Name))
	}
	mustScope("AddPrompt", p.Name, p.Scope)
	s.mustRegister("AddPrompt", &pipeline.Target{
		Spec:        &pipeline.Spec{Method: pipeline.GetPrompt, Name: p.Name, Version: p.Version, Source: "prompt", Timeout: p.Timeout, Scope: p.Scope},
		Title:       p.Title,
		Description: p.Description,
		InputSchema: p.Input,
		Handler:     p.Handler,
		Protocol:    !p.Lean,
	})
}

// requestInfo is implemented by every server-side SDK request.
type requestInfo interface {
	ProtocolVersion() string
	ClientInfo() *mcp.Implementation
	ClientCapabilities() *mcp.ClientCapabilities
}

func (s *Server) newCall(ctx context.Context, spec *pipeline.Spec, target string, req mcp.Request, meta mcp.Meta) *pipeline.Call {
	c := &pipeline.Call{
		Spec:    spec,
		Target:  target,
		Meta:    meta,
		TraceID: newTraceID(),
		Start:   time.Now(),
	}
	if sess := req.GetSession(); sess != nil {
		c.SessionID = sessionRef(sess.ID())
	}
	c.Principal = s.principal(ctx, req)
	c.RemoteAddr = remoteAddr(req)
	if ri, ok := req.(requestInfo); ok {
		c.ProtocolVersion = ri.ProtocolVersion()
		if ci := ri.ClientInfo(); ci != nil {
			c.ClientName, c.ClientVersion = ci.Name, ci.Version
		}
	}
	return c
}

// input notes on c what the client can give and gave in answer to a
// previous round's input requests (MCP multi round-trip).
func (s *Server) input(c *pipeline.Call, req requestInfo, rs mcp.InputResponseMap, state string) {
	if caps := req.ClientCapabilities(); caps != nil && caps.Elicitation != nil {
		c.CanElicit = true
	}
	c.State = state
	c.Responses = responses(s.log, rs)
}

// principal returns who makes req: the principal HTTP authentication
// established (carried by the SDK in its token info, or in Warden's own
// context value), or else the local principal. Nil means nobody verified,
// and the authorize stage refuses the call.
func (s *Server) principal(ctx context.Context, req mcp.Request) *pipeline.Principal {
	if extra := req.GetExtra(); extra != nil && extra.TokenInfo != nil {
		p, _ := extra.TokenInfo.Extra[principalKey].(*pipeline.Principal)
		return p // a TokenInfo without a principal is not Warden's: nobody
	}
	return s.principalFrom(ctx)
}

// Visible returns the target that key names if the caller of req may see
// it, as lists show it: registered, not hidden (quarantined), and within
// the caller's scopes; else nil. key is "prompt:NAME", "resource:URI" or
// "template:URI_TEMPLATE". It authorizes what names a target without
// calling it: completion and resource subscriptions.
func (s *Server) Visible(ctx context.Context, req mcp.Request, key string) *pipeline.Target {
	e := s.lookup(key)
	if e == nil || e.target.Hidden || !s.principal(ctx, req).HasScope(e.spec().Scope) {
		return nil
	}
	return e.target
}

// Permits asks the authorization policy, if any, whether the caller of req
// may use t as a call naming target with args would be allowed to:
// completion and resource subscriptions, which Visible admits but which
// run no call through the pipeline, are judged by it too, so that a policy
// that forbids a prompt or resource to a caller also forbids completing
// its arguments and following its changes. A policy that cannot decide
// refuses.
func (s *Server) Permits(ctx context.Context, req mcp.Request, t *pipeline.Target, target string, args map[string]any) error {
	if s.policy == nil {
		return nil
	}
	c := s.newCall(ctx, t.Spec, target, req, nil)
	if args == nil {
		args = map[string]any{}
	}
	c.Args = args
	if err := authz.Policy(ctx, s.policy, c); err != nil {
		return s.protocolError(c, err)
	}
	return nil
}

// remoteAddr is the client's address, as HTTP authentication noted it.
func remoteAddr(req mcp.Request) string {
	if extra := req.GetExtra(); extra != nil && extra.TokenInfo != nil {
		a, _ := extra.TokenInfo.Extra[remoteAddrKey].(string)
		return a
	}
	return ""
}

// auditRelays records each completion, subscription and unsubscription
// (the gateway relays them to upstreams): who asked, about what, and
// whether it was refused. One that cannot be recorded is refused.
func (s *Server) auditRelays(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		var target string
		switch r := req.(type) {
		case *mcp.CompleteRequest:
			if ref := r.Params.Ref; ref != nil {
				target = ref.Name + ref.URI
			}
		case *mcp.SubscribeRequest:
			target = r.Params.URI
		case *mcp.UnsubscribeRequest:
			target = r.Params.URI
		default:
			return next(ctx, method, req)
		}
		res, err := next(ctx, method, req)
		if s.audit == nil {
			return res, err
		}
		ev := &pipeline.Event{Method: method, Target: target, Principal: s.principal(ctx, req), TraceID: newTraceID(), RemoteAddr: remoteAddr(req)}
		if sess := req.GetSession(); sess != nil {
			ev.SessionID = sessionRef(sess.ID())
		}
		if err != nil {
			// Refused here (no such target for this caller), or failed upstream.
			ev.Code, ev.Reason = pipeline.Unavailable, err.Error()
			if je, ok := errors.AsType[*jsonrpc.Error](err); ok {
				var refusal pipeline.Error // a refusal of the pipeline's (Permits)
				switch {
				case json.Unmarshal(je.Data, &refusal) == nil && refusal.Code != "":
					ev.Code = refusal.Code
				case je.Code == jsonrpc.CodeInvalidParams:
					ev.Code = pipeline.NotFound
				}
			}
		}
		if aerr := s.audit.Event(ctx, ev); aerr != nil && err == nil {
			s.log.Error("audit: request not recorded; refusing it", "method", method, "err", aerr)
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the request was not answered because it could not be recorded in the audit log"}
		}
		return res, err
	}
}

// filterLists removes from list results what the caller may not use, so a
// caller never learns of a tool it cannot call.
func (s *Server) filterLists(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (res mcp.Result, err error) {
		res, err = next(ctx, method, req)
		if err != nil {
			return res, err
		}
		var p *pipeline.Principal
		switch method {
		case "tools/list", "resources/list", "resources/templates/list", "prompts/list":
			p = s.principal(ctx, req)
		default:
			return res, nil
		}
		count := 0
		defer func() {
			if s.audit == nil || err != nil {
				return
			}
			ev := &pipeline.Event{Method: method, Principal: p, Count: count, TraceID: newTraceID(), RemoteAddr: remoteAddr(req)}
			if sess := req.GetSession(); sess != nil {
				ev.SessionID = sessionRef(sess.ID())
			}
			if aerr := s.audit.Event(ctx, ev); aerr != nil {
				s.log.Error("audit: list not recorded; refusing it", "method", method, "err", aerr)
				res, err = nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the request was not answered because it could not be recorded in the audit log"}
			}
		}()
		allowed := func(key string) bool {
			e := s.lookup(key)
			return e != nil && !e.target.Hidden && p.HasScope(e.spec().Scope)
		}
		switch r := res.(type) {
		case *mcp.ListToolsResult:
			r.Tools = keep(r.Tools, func(t *mcp.Tool) bool { return allowed("tool:" + t.Name) })
			count = len(r.Tools)
		case *mcp.ListResourcesResult:
			r.Resources = keep(r.Resources, func(x *mcp.Resource) bool { return allowed("resource:" + x.URI) })
			count = len(r.Resources)
		case *mcp.ListResourceTemplatesResult:
			r.ResourceTemplates = keep(r.ResourceTemplates, func(x *mcp.ResourceTemplate) bool { return allowed("template:" + x.URITemplate) })
			count = len(r.ResourceTemplates)
		case *mcp.ListPromptsResult:
			r.Prompts = keep(r.Prompts, func(x *mcp.Prompt) bool { return allowed("prompt:" + x.Name) })
			count = len(r.Prompts)
		}
		return res, nil
	}
}

// keep returns the elements of list for which ok holds, in a new slice.
func keep[T any](list []T, ok func(T) bool) []T {
	out := make([]T, 0, len(list))
	for _, v := range list {
		if ok(v) {
			out = append(out, v)
		}
	}
	return out
}

func containsWildcard(scope string) bool { return strings.Contains(scope, "*") }

func mustScope(fn, name, scope string) {
	if scope == "" || containsWildcard(scope) {
		panic(fmt.Sprintf("warden: %s %q: a scope is required, without wildcards (no scope, no call)", fn, name))
	}
}

func newTraceID() string {
	var b [16]byte
	var h [32]byte
	rand.Read(b[:])
	hex.Encode(h[:], b[:])
	return string(h[:])
}

// report returns the client-facing form of err, logging what the client
// must not see.
func (s *Server) report(c *pipeline.Call, err error) *pipeline.Error {
	var perr *pipeline.Error
	if !errors.As(err, &perr) {
		s.log.Error("call failed", "method", c.Spec.Method.String(), "target", c.Target, "trace_id", c.TraceID, "err", err)
	}
	return pipeline.AsError(err)
}

// errorResult renders a refusal as a tool error, in Warden's own result
// type: the model can read it and correct itself, and the structured form
// is machine-readable.
func (s *Server) errorResult(c *pipeline.Call, err error) *pipeline.ToolResult {
	e := s.report(c, err)
	text := string(e.Code) + ": " + e.Message
	if e.Suggestion != "" {
		text += "\nSuggestion: " + e.Suggestion
	}
	if e.RetryAfter > 0 {
		text += fmt.Sprintf("\nRetry after: %ds", e.RetryAfter)
	}
	return &pipeline.ToolResult{
		IsError:           true,
		Content:           []pipeline.Content{pipeline.Text(text)},
		StructuredContent: e,
		Meta:              map[string]any{"io.wardenmcp/trace_id": c.TraceID},
	}
}

// toolError is errorResult for the protocol SDK.
func (s *Server) toolError(c *pipeline.Call, err error) *mcp.CallToolResult {
	r := s.errorResult(c, err)
	out, cerr := toolResult(r)
	if cerr != nil {
		// A refusal is text and a pipeline.Error, which always convert; were
		// it ever not to, the client still gets the refusal's text.
		s.log.Error("refusal not converted", "trace_id", c.TraceID, "err", cerr)
		return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: r.Content[0].Text}}}
	}
	return out
}

// protocolError renders a refusal of a resource read or prompt get, which
// have no error result, as a JSON-RPC error carrying the same shape in data.
// A handler's own *jsonrpc.Error passes through unchanged (see AddTool).
func (s *Server) protocolError(c *pipeline.Call, err error) error {
	if werr, ok := err.(*jsonrpc.Error); ok {
		return werr
	}
	e := s.report(c, err)
	code := int64(jsonrpc.CodeInternalError)
	switch e.Code {
	case pipeline.InvalidArgument:
		code = jsonrpc.CodeInvalidParams
	case pipeline.NotFound:
		// Since 2026-07-28 a missing resource is invalid params, as the SDK
		// itself answers for URIs no resource matches.
		code = jsonrpc.CodeInvalidParams
	}
	data, _ := json.Marshal(struct {
		*pipeline.Error
		URI string `json:"uri,omitempty"` // as the SDK's own resource-not-found error carries
	}{e, resourceURI(c)})
	msg := e.Message
	if e.Suggestion != "" {
		msg += " (" + e.Suggestion + ")"
	}
	return &jsonrpc.Error{Code: code, Message: msg, Data: data}
}

func resourceURI(c *pipeline.Call) string {
	if c.Spec.Method == pipeline.ReadResource {
		return c.Target
	}
	return ""
}

func sortedProps(s *jsonschema.Schema) []string {
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	slices.SortFunc(names, strings.Compare)
	return names
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// withRefusal returns a tool's output schema extended so that Warden's
// refusal shape also conforms to it. A refusal is a tool error whose
// structured content is a pipeline.Error; clients that check every result
// against the output schema (some do so even for errors) would otherwise
// reject the refusal instead of showing it. The model also learns from the
// schema what a refusal looks like.
func withRefusal(out *jsonschema.Schema) *jsonschema.Schema {
	if out == nil {
		return nil
	}
	s := out.CloneSchemas()
	if s.Properties == nil {
		s.Properties = map[string]*jsonschema.Schema{}
	}
	for name, p := range refusalProperties {
		if _, taken := s.Properties[name]; !taken {
			s.Properties[name] = p
		}
	}
	s.AnyOf = append(s.AnyOf,
		&jsonschema.Schema{Required: s.Required},
		&jsonschema.Schema{Required: []string{"error_code", "message"}})
	s.Required = nil
	return s
}

var refusalProperties = map[string]*jsonschema.Schema{
	"error_code":  {Type: "string", Description: "Set only when the call was refused or failed: why, as a code such as INVALID_ARGUMENT."},
	"message":     {Type: "string", Description: "Set only on a refusal: what was wrong."},
	"suggestion":  {Type: "string", Description: "Set only on a refusal: what to do instead."},
	"retry_after": {Type: "integer", Description: "Set only on a refusal: seconds to wait before retrying."},
	"approval_id": {Type: "string", Description: "Set only on APPROVAL_REQUIRED: the approval request to name in _meta (io.wardenmcp/approval_id) when calling again."},
}

func nilIfEmpty(s *jsonschema.Schema) any {
	if s == nil {
		return nil
	}
	return s
}
