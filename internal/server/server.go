// Package server builds a Warden server from a configuration: it opens the
// sources, prepares every statement once, and registers each declared tool,
// resource and prompt with the pipeline (package warden).
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"github.com/yosida95/uritemplate/v3"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/internal/approval"
	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/console"
	"github.com/wardenmcp/warden/internal/keys"
	"github.com/wardenmcp/warden/internal/observe"
	"github.com/wardenmcp/warden/internal/source"
	_ "github.com/wardenmcp/warden/internal/source/sql" // sqlite, postgres
	"github.com/wardenmcp/warden/pipeline"
)

// Server is a configured Warden server and the connections it owns.
type Server struct {
	*warden.Server
	Config *config.Config

	sources map[string]source.Source
	root    *os.Root    // server.resources_dir; nil if not configured
	closers []io.Closer // roots opened below root, the key store, ...

	authn    warden.Authenticator
	metadata *oauthex.ProtectedResourceMetadata
	keys     keys.Store // nil if API keys are disabled

	log       *slog.Logger
	approvals approval.Store // nil if no tool needs approval
	console   http.Handler   // nil if the console is disabled

	auditStore  audit.Store
	auditSecret []byte
	auditWriter *audit.Writer
	metrics     *observe.Metrics
}

// Version is the version of Warden, set by the build (see cmd/warden).
var Version = "dev"

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
	s := &Server{Config: cfg, sources: map[string]source.Source{}, log: log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	sec, err := s.buildSecurity(ctx, opts, log)
	if err != nil {
		return nil, err
	}
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
		if s.root, err = os.OpenRoot(cfg.Resolve(dir)); err != nil {
			probs.Add([]string{"server", "resources_dir"}, "%v", err)
		}
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	for _, name := range config.SortedKeys(cfg.Tools) {
		s.addTool(ctx, probs, name, cfg.Tools[name])
	}
	for _, name := range config.SortedKeys(cfg.Resources) {
		s.addResource(ctx, probs, name, cfg.Resources[name])
	}
	for _, name := range config.SortedKeys(cfg.Prompts) {
		s.addPrompt(name, cfg.Prompts[name])
	}
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
	return nil
}

// ready is the /readyz check: every source answers, and the audit log
// is taking records (the server cannot take calls otherwise).
func (s *Server) ready() func() error {
	checks := []func(context.Context) error{s.Ready}
	if s.auditWriter != nil {
		checks = append(checks, observe.AuditReady(s.auditWriter.Stats))
	}
	return observe.Ready(checks...)
}

// Close releases the sources.
func (s *Server) Close() error {
	var errs []error
	for _, src := range s.sources {
		errs = append(errs, src.Close())
	}
	for _, c := range s.closers {
		errs = append(errs, c.Close())
	}
	if s.root != nil {
		errs = append(errs, s.root.Close())
	}
	return errors.Join(errs...)
}

// HTTPOptions returns the transport settings of the configuration.
func (s *Server) HTTPOptions() *warden.HTTPOptions {
	h := s.Config.Server.HTTP
	o := &warden.HTTPOptions{
		AllowedHosts:       h.AllowedHosts,
		AllowedOrigins:     h.AllowedOrigins,
		MaxBodyBytes:       h.MaxBodyBytes,
		SessionIdleTimeout: h.SessionIdleTimeout,
		LegacySSE:          h.LegacySSE,
		Ready:              s.ready(),
		Metrics:            s.metrics.Handler(),
		Authenticate:       s.authn,
		ResourceMetadata:   s.metadata,
		Mounts:             map[string]http.Handler{},
		APIs:               map[string]warden.API{},
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
		Tools:       tools,
		Record:      record,
		SessionTTL:  cfg.Console.SessionTTL,
		Logger:      s.log,
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

func (s *Server) addTool(ctx context.Context, probs *config.Problems, name string, t *config.Tool) {
	src := s.sources[t.Source]
	op := &source.Operation{
		Name:      name,
		Statement: t.Statement,
		Mode:      mode(t.Mode),
		MaxRows:   t.MaxRows,
		Params:    config.SortedKeys(t.Parameters),
		Columns:   t.Columns,
		Sample:    source.Sample(t.Parameters),
	}
	st, err := src.Prepare(ctx, op)
	if err != nil {
		probs.Add([]string{"tools", name, "statement"}, "%v", err)
		return
	}
	dr, _ := st.(source.DryRunner)
	if op.Mode != pipeline.Write {
		dr = nil
	}
	if r := s.Config.Rule(name); dr == nil && (r.Require == config.RequireDryRun || r.Approval != nil && r.Approval.DryRun) {
		probs.Add([]string{"tools", name, "require"}, "the %s source cannot dry-run this statement", s.Config.Sources[t.Source].Kind())
		return
	}
	tool := &warden.Tool{
		Name:         name,
		Title:        t.Title,
		Description:  strings.TrimSpace(t.Description),
		Version:      t.Version,
		Mode:         op.Mode,
		Source:       s.Config.Sources[t.Source].Kind(),
		InputSchema:  config.ObjectSchema(t.Parameters),
		OutputSchema: outputSchema(st.Columns(), op.Mode == pipeline.Write, dr != nil),
		Timeout:      t.Timeout,
		Scope:        t.Scope,
		Bound:        config.Bound(t.Parameters),
		Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			rows, err := st.Run(ctx, c.Args)
			if err != nil {
				return nil, err
			}
			return toolResult(rows, op.Mode == pipeline.Write), nil
		},
	}
	if dr != nil {
		tool.DryRun = func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			eff, err := dr.DryRun(ctx, c.Args)
			if err != nil {
				return nil, err
			}
			return dryRunResult(eff), nil
		}
	}
	s.AddTool(tool)
}

// toolOutput is the structured content of a SQL tool's result.
type toolOutput struct {
	Rows         []map[string]any `json:"rows"`
	RowCount     int              `json:"row_count"`
	Truncated    bool             `json:"truncated"`
	RowsAffected *int64           `json:"rows_affected,omitempty"`
	// DryRun is set on a dry run's result: what the call would change.
	DryRun *source.Effect `json:"dry_run,omitempty"`
}

// dryRunResult reports a dry run: nothing changed, and what would have.
func dryRunResult(eff *source.Effect) *pipeline.Result {
	out := &toolOutput{Rows: []map[string]any{}, RowsAffected: &eff.RowsAffected, DryRun: eff}
	text, _ := json.Marshal(out)
	return &pipeline.Result{Tool: &pipeline.ToolResult{
		Content: []pipeline.Content{
			pipeline.Text(fmt.Sprintf("Dry run: nothing was changed. The call would affect %d row(s).", eff.RowsAffected)),
			pipeline.Text(string(text)),
		},
		StructuredContent: out,
	}}
}

func toolResult(rows *source.Rows, write bool) *pipeline.Result {
	out := &toolOutput{Rows: rows.Rows, RowCount: len(rows.Rows), Truncated: rows.Truncated}
	if write {
		out.RowsAffected = &rows.RowsAffected
	}
	text, _ := json.Marshal(out)
	content := []pipeline.Content{pipeline.Text(string(text))}
	if rows.Truncated {
		content = append(content, pipeline.Text(fmt.Sprintf(
			"Only the first %d rows are shown; more matched. Narrow the request to see the rest.", len(rows.Rows))))
	}
	return &pipeline.Result{
		Tool:      &pipeline.ToolResult{Content: content, StructuredContent: out},
		Rows:      len(rows.Rows),
		Truncated: rows.Truncated,
	}
}

// outputSchema describes toolOutput for the given columns.
func outputSchema(cols []source.Column, write, dryRun bool) *jsonschema.Schema {
	row := &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{}}
	for _, c := range cols {
		p := &jsonschema.Schema{Description: c.Description}
		if c.Type != "any" {
			p.Types = []string{c.Type, "null"}
		}
		row.Properties[c.Name] = p
	}
	s := &jsonschema.Schema{
		Type: "object",
		Properties: map[string]*jsonschema.Schema{
			"rows":      {Type: "array", Items: row, Description: "The result rows, one object per row."},
			"row_count": {Type: "integer", Description: "How many rows are in rows."},
			"truncated": {Type: "boolean", Description: "True if more rows matched than the tool returns; narrow the request to see them."},
		},
		Required: []string{"rows", "row_count", "truncated"},
	}
	if write {
		s.Properties["rows_affected"] = &jsonschema.Schema{Type: "integer", Description: "How many rows the change touched."}
		s.Required = append(s.Required, "rows_affected")
	}
	if dryRun {
		s.Properties["dry_run"] = &jsonschema.Schema{
			Type:        "object",
			Description: "Set only on a dry run: what the call would change (rows_affected, and the touched rows before and after); nothing was changed.",
		}
	}
	return s
}

func (s *Server) addResource(ctx context.Context, probs *config.Problems, name string, r *config.Resource) {
	p := []string{"resources", name}
	switch {
	case r.URI != "":
		if _, err := s.root.Stat(r.File); err != nil {
			probs.Add(append(p, "file"), "cannot read %s inside server.resources_dir: %v", r.File, err)
			return
		}
		s.AddResource(&warden.Resource{
			URI: r.URI, Name: name, Title: r.Title, Description: strings.TrimSpace(r.Description),
			MIMEType: mimeType(r.MIMEType, r.File), Version: r.Version, Source: "file", Timeout: r.Timeout, Scope: r.Scope,
			Handler: fileHandler(s.root, func(*pipeline.Call) string { return r.File }, r.MIMEType),
		})
	case r.Directory != "":
		tmpl, err := uritemplate.New(r.URITemplate)
		if err != nil || len(tmpl.Varnames()) != 1 {
			probs.Add(append(p, "uri_template"), "a directory template has exactly one variable, such as docs://{+path}")
			return
		}
		// The template gets a root of its own, so that a path cannot reach
		// the rest of server.resources_dir either.
		dir, err := s.root.OpenRoot(r.Directory)
		if err != nil {
			probs.Add(append(p, "directory"), "%s is not a directory inside server.resources_dir", r.Directory)
			return
		}
		s.closers = append(s.closers, dir)
		v := tmpl.Varnames()[0]
		s.AddResourceTemplate(&warden.ResourceTemplate{
			URITemplate: r.URITemplate, Name: name, Title: r.Title, Description: strings.TrimSpace(r.Description),
			MIMEType: r.MIMEType, Version: r.Version, Source: "file", Timeout: r.Timeout, Scope: r.Scope,
			Input: &jsonschema.Schema{
				Type:                 "object",
				Required:             []string{v},
				Properties:           map[string]*jsonschema.Schema{v: {Type: "string", MinLength: jsonschema.Ptr(1), MaxLength: jsonschema.Ptr(1024)}},
				AdditionalProperties: &jsonschema.Schema{Not: &jsonschema.Schema{}},
			},
			Handler: fileHandler(dir, func(c *pipeline.Call) string { return c.Args[v].(string) }, r.MIMEType),
		})
	default:
		s.addSQLTemplate(ctx, probs, name, r)
	}
}

// fileHandler reads a file through root, which refuses any path that
// leaves its directory, by ".." or by symlink.
func fileHandler(root *os.Root, file func(*pipeline.Call) string, mimeOverride string) pipeline.Handler {
	return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		name := file(c)
		data, err := root.ReadFile(filepath.FromSlash(name))
		if err != nil {
			return nil, pipeline.Errorf(pipeline.NotFound, "list the resources to see what exists", "no resource at %s", c.Target)
		}
		rc := &pipeline.ResourceContents{URI: c.Target, MIMEType: mimeType(mimeOverride, name)}
		if utf8.Valid(data) {
			rc.Text = string(data)
		} else {
			rc.Blob = data
		}
		return &pipeline.Result{Resource: &pipeline.ResourceResult{Contents: []*pipeline.ResourceContents{rc}}}, nil
	}
}

func mimeType(declared, file string) string {
	if declared != "" {
		return declared
	}
	if t := mime.TypeByExtension(filepath.Ext(file)); t != "" {
		return t
	}
	return "text/plain"
}

func (s *Server) addSQLTemplate(ctx context.Context, probs *config.Problems, name string, r *config.Resource) {
	p := []string{"resources", name}
	tmpl, err := uritemplate.New(r.URITemplate)
	if err != nil {
		probs.Add(append(p, "uri_template"), "invalid URI template: %v", err)
		return
	}
	vars := slices.Sorted(slices.Values(tmpl.Varnames()))
	bound := config.Bound(r.Parameters)
	var unbound []string
	for _, name := range config.SortedKeys(r.Parameters) {
		if _, ok := bound[name]; !ok {
			unbound = append(unbound, name)
		}
	}
	if !slices.Equal(vars, unbound) {
		probs.Add(append(p, "parameters"), "declare exactly the template's variables (%s), plus any bound parameters; declared: %s",
			strings.Join(vars, ", "), strings.Join(unbound, ", "))
		return
	}
	st, err := s.sources[r.Source].Prepare(ctx, &source.Operation{
		Name: name, Statement: r.Statement, Mode: pipeline.Read, MaxRows: config.DefaultMaxRows, Params: config.SortedKeys(r.Parameters),
		Sample: source.Sample(r.Parameters),
	})
	if err != nil {
		probs.Add(append(p, "statement"), "%v", err)
		return
	}
	mt := r.MIMEType
	if mt == "" {
		mt = "application/json"
	}
	s.AddResourceTemplate(&warden.ResourceTemplate{
		URITemplate: r.URITemplate, Name: name, Title: r.Title, Description: strings.TrimSpace(r.Description),
		MIMEType: mt, Version: r.Version, Source: s.Config.Sources[r.Source].Kind(), Timeout: r.Timeout,
		Scope: r.Scope, Bound: bound,
		Input: config.ObjectSchema(r.Parameters),
		Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			rows, err := st.Run(ctx, c.Args)
			if err != nil {
				return nil, err
			}
			if len(rows.Rows) == 0 {
				return nil, pipeline.Errorf(pipeline.NotFound, "check the identifier in the URI", "no resource at %s", c.Target)
			}
			text, _ := json.Marshal(toolOutput{Rows: rows.Rows, RowCount: len(rows.Rows), Truncated: rows.Truncated})
			return &pipeline.Result{
				Resource: &pipeline.ResourceResult{Contents: []*pipeline.ResourceContents{{URI: c.Target, MIMEType: mt, Text: string(text)}}},
				Rows:     len(rows.Rows), Truncated: rows.Truncated,
			}, nil
		},
	})
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
