// Package server builds a Warden server from a configuration: it opens the
// sources, has each source's kind turn the declarations that name it into
// targets, and registers every target with the pipeline (package warden).
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"text/template"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/internal/approval"
	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/connlimit"
	"github.com/wardenmcp/warden/internal/console"
	"github.com/wardenmcp/warden/internal/keys"
	"github.com/wardenmcp/warden/internal/observe"
	"github.com/wardenmcp/warden/internal/pin"
	"github.com/wardenmcp/warden/internal/relay"
	"github.com/wardenmcp/warden/internal/source"
	_ "github.com/wardenmcp/warden/internal/source/command" // command
	_ "github.com/wardenmcp/warden/internal/source/file"    // file
	_ "github.com/wardenmcp/warden/internal/source/http"    // http
	_ "github.com/wardenmcp/warden/internal/source/sql"     // sqlite, postgres
	"github.com/wardenmcp/warden/internal/source/upstream"
	"github.com/wardenmcp/warden/pipeline"
)

// Server is a configured Warden server and the connections it owns.
type Server struct {
	*warden.Server
	Config *config.Config

	sources map[string]source.Source
	// upstreams are the MCP servers served through the gateway, and pins
	// the store of their pinned definitions (nil without upstreams).
	upstreams map[string]*upstream.Upstream
	pins      pin.Store
	closers   []io.Closer // the key store, the audit writer, ...
	// declared says where each target was declared, by method and name,
	// so that a clash names both declarations.
	declared map[pipeline.Method]map[string]string

	authn    warden.Authenticator
	metadata *oauthex.ProtectedResourceMetadata
	keys     keys.Store // nil if API keys are disabled

	log       *slog.Logger
	approvals approval.Store // nil if no tool needs approval
	console   http.Handler   // nil if the console is disabled

	auditStore  audit.Store
	auditSecret []byte
	relay       *relay.Redis // the session relay, if configured
	auditWriter *audit.Writer
	metrics     *observe.Metrics
	// shared are the stores instances share (see buildShared).
	shared shared
	// readyChecks are the readiness checks of stores calls need beyond
	// the sources and the audit log (Redis), each Named.
	readyChecks []func(context.Context) error
}

// Version and Commit are the version of Warden and the commit it was built
// from, stamped by the build (scripts/build.sh, with -ldflags -X).
var (
	Version = "dev"
	Commit  = ""
)

// Options are what Build needs beyond the configuration.
type Options struct {
	// Logger receives operational events; nil discards them.
	Logger *slog.Logger
	// Local is the principal of requests that arrive without HTTP
	// authentication (in-memory transports, tests); nil refuses them.
	Local func(ctx context.Context) (*pipeline.Principal, error)
	// Stdio serves one local client over standard input and output: its
	// principal is APIKey's (checked on every call, so revocation bites at
	// once) or else the configuration's auth.stdio principal.
	Stdio  bool
	APIKey string
}

// Build opens everything cfg declares. Every problem is reported at once,
// located in the configuration file; on error nothing stays open.
func Build(ctx context.Context, cfg *config.Config, opts *Options) (_ *Server, err error) {
	if opts == nil {
		opts = &Options{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{Config: cfg, sources: map[string]source.Source{}, upstreams: map[string]*upstream.Upstream{}, declared: map[pipeline.Method]map[string]string{}, log: log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	sec, err := s.buildSecurity(ctx, opts, log)
	if err != nil {
		return nil, err
	}
	s.buildRelay()
	s.Server = warden.New(&mcp.Implementation{Name: cfg.Server.Name, Version: cfg.Server.Version}, &warden.Options{
		Logger:         log,
		DefaultTimeout: cfg.Server.DefaultTimeout,
		Instructions:   cfg.Server.Instructions,
		LocalPrincipal: sec.local,
		Policy:         sec.policy,
		Limiter:        sec.limiter,
		Audit:          sec.audit,
		Suspend:        sec.suspend,
		Guard:          sec.guard,
		Metrics:        sec.metrics.Stage,
		Gate:           sec.gate,
		Idempotency:    sec.idempotency,
		Cache:          sec.cache,
		Tracer:         sec.tracer,
		MCP:            s.relayOptions(),
	})
	probs := cfg.Problems()
	for _, name := range config.SortedKeys(cfg.Sources) {
		src, err := source.Open(ctx, name, cfg.Sources[name], cfg)
		if err != nil {
			probs.Add([]string{"sources", name}, "%v", err)
			continue
		}
		s.sources[name] = src
	}
	if dir := cfg.Server.ResourcesDir; dir != "" {
		// Resources that name no source are files below resources_dir.
		src, err := source.Open(ctx, config.FileSource, config.RawSource{"kind": "file", "dir": dir}, cfg)
		if err != nil {
			probs.Add([]string{"server", "resources_dir"}, "%v", err)
		} else {
			s.sources[config.FileSource] = src
		}
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	for _, name := range config.SortedKeys(cfg.Tools) {
		t := cfg.Tools[name]
		s.addTargets(ctx, probs, sec, []string{"tools", name}, &source.Declaration{Name: name, Spec: toolSpec(cfg, name, t), Tool: t, Settings: t.Settings, Config: cfg}, t.Source)
	}
	for _, name := range config.SortedKeys(cfg.Resources) {
		r := cfg.Resources[name]
		src := r.Source
		if src == "" {
			src = config.FileSource
		}
		s.addTargets(ctx, probs, sec, []string{"resources", name}, &source.Declaration{Name: name, Spec: resourceSpec(name, r), Resource: r, Settings: r.Settings, Config: cfg}, src)
	}
	for _, name := range config.SortedKeys(cfg.Prompts) {
		s.addPrompt(name, cfg.Prompts[name])
	}
	s.openUpstreams(ctx, probs, sec)
	if err := probs.Err(); err != nil {
		return nil, err
	}
	s.buildConsole()
	return s, nil
}

// Ready reports whether every source can be reached.
func (s *Server) Ready(ctx context.Context) error {
	for _, name := range config.SortedKeys(s.sources) {
		if err := s.sources[name].Ready(ctx); err != nil {
			return fmt.Errorf("source %s: %w", name, err)
		}
	}
	for _, name := range config.SortedKeys(s.upstreams) {
		if err := s.upstreams[name].Ready(ctx); err != nil {
			return fmt.Errorf("upstream %s: %w", name, err)
		}
	}
	return nil
}

// ready is the /readyz check: every source answers, and the audit log
// is taking records (the server cannot take calls otherwise).
//
// Each check names its dependency, which /readyz shows: a source by its
// configured name, the audit log, and each store in Redis that calls need.
func (s *Server) ready() func() error {
	var checks []func(context.Context) error
	for _, name := range config.SortedKeys(s.sources) {
		checks = append(checks, observe.Named("source "+name, s.sources[name].Ready))
	}
	for _, name := range config.SortedKeys(s.upstreams) {
		checks = append(checks, observe.Named("upstream "+name, s.upstreams[name].Ready))
	}
	if s.auditWriter != nil {
		checks = append(checks, observe.Named("audit log", observe.AuditReady(s.auditWriter.Stats)))
	}
	checks = append(checks, s.readyChecks...)
	return observe.Ready(checks...)
}

// Close releases the sources.
func (s *Server) Close() error {
	var errs []error
	for _, u := range s.upstreams {
		errs = append(errs, u.Close())
	}
	for _, src := range s.sources {
		errs = append(errs, src.Close())
	}
	for _, c := range s.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// buildRelay makes the session relay over server.redis, if configured:
// instances hand each other there a client's answer to a request one of
// them sent in the middle of a call.
func (s *Server) buildRelay() {
	if s.shared.redis == nil {
		return
	}
	r := relay.New(s.shared.redis, s.shared.prefix+"relay:")
	s.relay = r
	// Closed before the client it uses, which buildShared made.
	s.closers = append([]io.Closer{r}, s.closers...)
}

// HTTPOptions returns the transport settings of the configuration.
func (s *Server) HTTPOptions() *warden.HTTPOptions {
	h := s.Config.Server.HTTP
	o := &warden.HTTPOptions{
		AllowedHosts:       h.AllowedHosts,
		AllowedOrigins:     h.AllowedOrigins,
		MaxBodyBytes:       h.MaxBodyBytes,
		BodyTimeout:        h.BodyTimeout,
		Refused:            s.metrics.HTTPRefused,
		SessionIdleTimeout: h.SessionIdleTimeout,
		SessionMaxAge:      h.SessionMaxAge,
		// Every instance of one server shares the audit secret (it is
		// required with shared state), so every instance opens every
		// session id.
		SessionKey:       s.auditSecret,
		LegacySSE:        h.LegacySSE,
		Ready:            s.ready(),
		Metrics:          s.metrics.Handler(),
		Authenticate:     s.authn,
		ResourceMetadata: s.metadata,
		Mounts:           map[string]http.Handler{},
		APIs:             map[string]warden.API{},
	}
	if s.relay != nil {
		o.SessionRelay = s.relay
	}
	if s.console != nil {
		o.Mounts["/console/"] = s.console
	}
	if s.approvals != nil {
		api := &approval.API{Store: s.approvals, Record: s.recordDecision, Log: s.log}
		o.APIs[approval.APIPrefix] = warden.API{Scope: approval.APIScope, Handler: api.ServeHTTP}
	}
	return o
}

// Listen listens on addr under the configuration's connection caps
// (server.http.max_connections and max_connections_per_client), counting
// the connections it refuses in the metrics. TLS, if any, goes on top, so
// that a refused connection costs no handshake.
func (s *Server) Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	h := s.Config.Server.HTTP
	return connlimit.New(ln, connlimit.Options{Max: h.MaxConnections, PerClient: h.MaxConnectionsPerClient, Refused: s.metrics.HTTPRefused}), nil
}

// HTTPServer returns an http.Server for handler with the configuration's
// limits on what one request may hold: its headers' size and time, and a
// kept-alive connection's idle time. The body's time is the handler's
// (HTTPOptions.BodyTimeout), which starts once headers are in. Behind a
// proxy of server.trusted_proxies, each request's RemoteAddr is set to the
// client's address the proxy forwarded (see clientAddr).
//
// There is no ReadTimeout: it would bound headers and body together, so
// it must be sized for the largest body at the slowest client, and once a
// body is in, its deadline passing cancels the call still running.
func (s *Server) HTTPServer(handler http.Handler, log *slog.Logger) *http.Server {
	h := s.Config.Server.HTTP
	return &http.Server{
		Handler:           trustProxies(handler, s.Config.Server.TrustedProxyPrefixes()),
		ReadHeaderTimeout: h.ReadHeaderTimeout,
		IdleTimeout:       h.IdleTimeout,
		MaxHeaderBytes:    h.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// recordDecision audits an approver's decision made over HTTP.
func (s *Server) recordDecision(ctx context.Context, r *approval.Request, p *pipeline.Principal, verb, reason string) error {
	if s.auditWriter == nil {
		return nil
	}
	rec := approval.DecisionRecord(r, p.ID, p.AuthMethod, verb, reason)
	rec.Tenant = p.Tenant
	return s.auditWriter.Write(ctx, rec)
}

// buildConsole makes the web console, if the configuration enables it.
func (s *Server) buildConsole() {
	cfg := s.Config
	if !cfg.Console.Enabled {
		return
	}
	var tools []console.Tool
	for _, name := range config.SortedKeys(cfg.Tools) {
		t := cfg.Tools[name]
		ct := console.Tool{Name: name, Title: t.Title, Description: strings.TrimSpace(t.Description), Scope: t.Scope,
			Mode: t.Mode, Risk: t.Risk, Version: t.Version}
		ct.Approval = cfg.Rule(name).String()
		if l := t.RateLimit; l != nil {
			ct.RateLimit = fmt.Sprintf("%s, burst %d", l.Rate, l.Burst)
		} else if l := cfg.RateLimit.PerPrincipalTool; l != nil {
			ct.RateLimit = fmt.Sprintf("%s, burst %d (default)", l.Rate, l.Burst)
		}
		tools = append(tools, ct)
	}
	record := func(ctx context.Context, r *audit.Record) error {
		if s.auditWriter == nil {
			return errors.New("the audit log is not configured")
		}
		return s.auditWriter.Write(ctx, r)
	}
	opts := console.Options{
		Approvals:   s.approvals,
		Audit:       s.auditStore,
		AuditSecret: s.auditSecret,
		Keys:        s.keys,
		Pins:        s.pins,
		Tools:       tools,
		Record:      record,
		SessionTTL:  cfg.Console.SessionTTL,
		Logger:      s.log,
		Sessions:    s.shared.sessions,
		Failures:    s.shared.failures,
		Nonces:      s.shared.nonces,
		Secret:      consoleSecret(s.auditSecret),
	}
	if o := cfg.Console.OIDC; o != nil {
		opts.OIDC = &console.OIDC{
			Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: o.ClientSecret, RedirectURL: o.RedirectURL,
			UserClaim: o.Claims.User, TenantClaim: o.Claims.Tenant, GroupsClaim: o.Claims.Groups,
			ConsoleGroups: o.ConsoleGroups, KeyGroups: o.KeyGroups,
		}
	}
	s.console = console.New(opts)
}

func mode(m string) pipeline.Mode {
	if m == "write" {
		return pipeline.Write
	}
	return pipeline.Read
}

// toolSpec is the part of a tool's spec every kind shares: what it is,
// and its controls, resolved from the tool's settings and its tier's.
func toolSpec(cfg *config.Config, name string, t *config.Tool) *pipeline.Spec {
	return specOf(name, t, cfg.Rule(name))
}

// specOf is toolSpec with the tool's rule resolved: upstream tools, which
// are not declared under tools, resolve theirs from their own settings.
func specOf(name string, t *config.Tool, r config.Rule) *pipeline.Spec {
	sp := &pipeline.Spec{
		Method:   pipeline.CallTool,
		Name:     name,
		Version:  t.Version,
		Mode:     mode(t.Mode),
		Timeout:  t.Timeout,
		Scope:    t.Scope,
		Risk:     t.Risk,
		CacheTTL: t.CacheTTL,
		Output:   outputPolicy(t.Output),
	}
	if l := t.RateLimit; l != nil {
		// config checked the rate's form.
		n, per, _ := l.Per()
		sp.RateLimit = &pipeline.Limit{Calls: n, Per: per, Burst: l.Burst}
	}
	if r.Require != config.RequireNone {
		g := &pipeline.Gate{Require: r.Require, Ref: r.Ref}
		if a := r.Approval; a != nil {
			g.Groups, g.Needed, g.TTL, g.DryRun = a.Groups, a.Needed, a.TTL, a.DryRun
		}
		sp.Gate = g
	}
	return sp
}

// resourceSpec is the part of a resource's spec every kind shares.
func resourceSpec(name string, r *config.Resource) *pipeline.Spec {
	return &pipeline.Spec{
		Method:  pipeline.ReadResource,
		Name:    name,
		Version: r.Version,
		Timeout: r.Timeout,
		Scope:   r.Scope,
		Output:  outputPolicy(r.Output),
	}
}

// addTargets has the source named src turn d into targets, and registers
// them. A target whose name is taken is a problem naming both.
func (s *Server) addTargets(ctx context.Context, probs *config.Problems, sec *security, path []string, d *source.Declaration, src string) {
	targets := s.sources[src].Targets(ctx, d)
	for _, t := range targets {
		if err := sec.check(t.Spec); err != nil {
			probs.Add(path, "%v", err)
			continue
		}
		if err := s.Add(t); err != nil {
			if prev, ok := s.declared[t.Spec.Method][t.Spec.Name]; ok {
				err = fmt.Errorf("%s %q is already declared at %s", kindName(t.Spec.Method), t.Spec.Name, prev)
			}
			probs.Add(path, "%v", err)
			continue
		}
		if s.declared[t.Spec.Method] == nil {
			s.declared[t.Spec.Method] = map[string]string{}
		}
		s.declared[t.Spec.Method][t.Spec.Name] = strings.Join(path, ".")
	}
}

func kindName(m pipeline.Method) string {
	switch m {
	case pipeline.CallTool:
		return "a tool"
	case pipeline.GetPrompt:
		return "a prompt"
	}
	return "a resource"
}

func (s *Server) addPrompt(name string, p *config.Prompt) {
	type message struct {
		role string
		tmpl *template.Template
	}
	// Parsing cannot fail here: config checked every template.
	msgs := make([]message, len(p.Messages))
	for i, m := range p.Messages {
		msgs[i] = message{m.Role, template.Must(template.New(name).Option("missingkey=error").Parse(m.Text))}
	}
	var in *jsonschema.Schema
	if len(p.Arguments) > 0 {
		in = config.ObjectSchema(p.Arguments)
	}
	desc := strings.TrimSpace(p.Description)
	argNames := config.SortedKeys(p.Arguments)
	s.AddPrompt(&warden.Prompt{
		Name: name, Title: p.Title, Description: desc, Version: p.Version, Input: in, Scope: p.Scope,
		Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			res := &pipeline.PromptResult{Description: desc}
			data := make(map[string]any, len(argNames))
			for _, a := range argNames {
				data[a] = "" // an optional argument left out renders empty
				if v, ok := c.Args[a]; ok {
					data[a] = v
				}
			}
			for _, m := range msgs {
				var b strings.Builder
				if err := m.tmpl.Execute(&b, data); err != nil {
					return nil, err
				}
				res.Messages = append(res.Messages, &pipeline.PromptMessage{Role: m.role, Content: pipeline.Text(b.String())})
			}
			return &pipeline.Result{Prompt: res}, nil
		},
	})
}
