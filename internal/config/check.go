package config

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/wardenmcp/warden/internal/validate"
)

var (
	snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	uriScheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*://`)
	// scopeName allows the usual forms (crm.read, crm:write, orders_admin)
	// and no wildcards: a scope grants exactly what names it.
	scopeName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_.:/-]{0,127}$`)
)

// Bindings are the principal attributes a parameter may be bound to.
var Bindings = []string{"tenant", "user"}

func (c *checker) check(cfg *Config) {
	c.checkServer(&cfg.Server)
	c.checkToolVerbs(cfg.Server.ToolVerbs)
	for _, name := range SortedKeys(cfg.Sources) {
		if cfg.Sources[name].Kind() == "" {
			c.errorf([]string{"sources", name, "kind"}, "required: the kind of source (sqlite, postgres, file)")
		}
		if name == FileSource && cfg.Server.ResourcesDir != "" {
			c.errorf([]string{"sources", name}, "the name %q is taken by the files below server.resources_dir; name this source otherwise", FileSource)
		}
	}
	for _, name := range SortedKeys(cfg.Tools) {
		c.checkTool(cfg, name, cfg.Tools[name])
	}
	for _, name := range SortedKeys(cfg.Resources) {
		c.checkResource(cfg, name, cfg.Resources[name])
	}
	for _, name := range SortedKeys(cfg.Prompts) {
		c.checkPrompt(name, cfg.Prompts[name])
	}
	c.checkAuth(cfg)
	c.checkUpstreams(cfg)
	c.checkRateLimits(&cfg.RateLimit)
	c.checkInstances(&cfg.Server)
	if s := cfg.Idempotency.Store; s != "state" && s != "memory" && s != "redis" {
		c.errorf([]string{"idempotency", "store"}, "must be state (Warden's state database), memory or redis")
	}
	if s := cfg.Cache.Store; s != "memory" && s != "redis" {
		c.errorf([]string{"cache", "store"}, "must be memory or redis")
	}
	for key, sh := range map[string]*Shared{"idempotency": &cfg.Idempotency.Shared, "cache": &cfg.Cache} {
		switch {
		case sh.Store == "redis" && sh.RedisURL == "":
			c.errorf([]string{key, "redis_url"}, "required with store: redis (or set server.redis.url)")
		}
	}
	for _, tier := range SortedKeys(cfg.RiskPolicies) {
		if !slices.Contains(RiskTiers, tier) {
			c.errorf([]string{"risk_policies", tier}, "not a risk tier (%s)", strings.Join(RiskTiers, ", "))
		}
		rp := cfg.RiskPolicies[tier]
		if a := rp.Approval; a != nil {
			c.checkApproval([]string{"risk_policies", tier, "approval"}, a)
		}
		c.checkRequire([]string{"risk_policies", tier, "require"}, rp.Require, rp.Approval != nil)
	}
	if f := cfg.Approvals.WebhookFormat; f != "json" && f != "slack" {
		c.errorf([]string{"approvals", "webhook_format"}, "must be json or slack")
	}
	if cfg.Approvals.Retention < 0 {
		c.errorf([]string{"approvals", "retention"}, "must not be negative")
	}
	if cfg.Console.SessionTTL < 0 {
		c.errorf([]string{"console", "session_ttl"}, "must not be negative")
	}
	if o := cfg.Console.OIDC; o != nil {
		op := []string{"console", "oidc"}
		for key, v := range map[string]string{"issuer": o.Issuer, "redirect_url": o.RedirectURL} {
			if u, err := url.Parse(v); v == "" || err != nil || (u.Scheme != "https" && !isLoopbackURL(u)) {
				c.errorf(append(op, key), "required: an https URL (plain http only on this machine)")
			}
		}
		if u, err := url.Parse(o.RedirectURL); err == nil && !strings.HasSuffix(u.Path, "/console/oidc/callback") {
			c.errorf(append(op, "redirect_url"), "must be this console's callback, https://HOST/console/oidc/callback")
		}
		if o.ClientID == "" {
			c.errorf(append(op, "client_id"), "required: the console's client id at the provider")
		}
		if len(o.ConsoleGroups) == 0 {
			c.errorf(append(op, "console_groups"), "required: the groups whose members may sign in")
		}
	}
	if cfg.Idempotency.TTL < 0 {
		c.errorf([]string{"idempotency", "ttl"}, "must not be negative")
	}
	if a := cfg.Audit; a.Secret != "" && len(a.Secret) < MinAuditSecret {
		c.errorf([]string{"audit", "secret"}, "must be at least %d bytes", MinAuditSecret)
	} else if a.Secret == "" && cfg.Server.State.Postgres != "" {
		c.errorf([]string{"audit", "secret"}, "required with server.state.postgres: every instance must share it (use ${VAR})")
	}
	switch cfg.Audit.Durability {
	case "", DurabilityFsync, DurabilityOS:
	default:
		c.errorf([]string{"audit", "durability"}, "%q: want %s (synced to disk before a call is answered; the default) or %s (handed to the operating system: survives a crash of Warden, not of the machine)",
			cfg.Audit.Durability, DurabilityFsync, DurabilityOS)
	}
	if g := cfg.Server.ShutdownGrace; g < 0 || g > MaxTimeout {
		c.errorf([]string{"server", "shutdown_grace"}, "must be between 0 (the default, 10s) and %s", MaxTimeout)
	}
	if o := cfg.Audit.OrphanAfter; o != 0 && (o < time.Second || o > time.Hour) {
		c.errorf([]string{"audit", "orphan_after"}, "must be between 1s and 1h (default 1m)")
	}
}

func (c *checker) checkScope(path []string, scope string) {
	switch {
	case scope == "":
		c.errorf(path, "required: the scope a caller needs (no scope, no call)")
	case strings.Contains(scope, "*"):
		c.errorf(path, "wildcards are not allowed: name the exact scope")
	case !scopeName.MatchString(scope):
		c.errorf(path, "%q is not a scope name (letters, digits and . : / _ -)", scope)
	}
}

func (c *checker) checkPrincipal(path []string, p *Principal) {
	if len(p.Scopes) == 0 {
		c.errorf(append(path, "scopes"), "required: list exactly the scopes this principal has")
	}
	for i, sc := range p.Scopes {
		c.checkScope(append(slices.Clone(path), "scopes", fmt.Sprint(i)), sc)
	}
}

func (c *checker) checkAuth(cfg *Config) {
	a := &cfg.Auth
	p := []string{"auth"}
	if cfg.Server.State.SQLite != "" && cfg.Server.State.Postgres != "" {
		c.errorf([]string{"server", "state"}, "set sqlite or postgres, not both")
	}
	if ttl := a.APIKeys.Cache(); ttl < 0 || ttl > MaxAPIKeyCacheTTL {
		c.errorf(append(slices.Clone(p), "api_keys", "cache_ttl"), "must be between 0 (ask the state store on every call) and %s (default %s): a revocation made by another process bites within it", MaxAPIKeyCacheTTL, DefaultAPIKeyCacheTTL)
	}
	c.checkState(&cfg.Server.State)
	if t := cfg.Server.HTTP.TLS; t != nil && (t.Cert == "" || t.Key == "") {
		c.errorf([]string{"server", "http", "tls"}, "cert and key are both required")
	}
	if j := a.JWT; j != nil {
		jp := append(slices.Clone(p), "jwt")
		if j.Issuer == "" {
			c.errorf(append(jp, "issuer"), "required")
		}
		if j.Audience == "" {
			c.errorf(append(jp, "audience"), "required: this server's canonical resource URI, such as https://mcp.example.com/mcp")
		}
		if (j.JWKSURL == "") == (j.JWKSFile == "") {
			c.errorf(jp, "set exactly one of jwks_url and jwks_file")
		}
		if u, err := url.Parse(j.JWKSURL); j.JWKSURL != "" && (err != nil || (u.Scheme != "https" && !isLoopbackURL(u))) {
			c.errorf(append(jp, "jwks_url"), "must be an https URL (plain http only on this machine): the keys decide whom Warden trusts")
		}
		for i, alg := range j.Algorithms {
			if !slices.Contains(AsymmetricAlgorithms, alg) {
				c.errorf(append(slices.Clone(jp), "algorithms", fmt.Sprint(i)), "%q is not allowed; choose from %s", alg, strings.Join(AsymmetricAlgorithms, ", "))
			}
		}
		if j.MaxTokenLifetime < 0 || j.MaxTokenLifetime > 24*time.Hour {
			c.errorf(append(jp, "max_token_lifetime"), "must be between 0 and 24h")
		}
		if j.ClockSkew < 0 || j.ClockSkew > 5*time.Minute {
			c.errorf(append(jp, "clock_skew"), "must be between 0 and 5m")
		}
	}
	if m := a.MTLS; m != nil {
		mp := append(slices.Clone(p), "mtls")
		if t := cfg.Server.HTTP.TLS; t == nil || t.ClientCA == "" {
			c.errorf(mp, "mutual TLS needs server.http.tls with cert, key and client_ca")
		}
		if len(m.Principals) == 0 {
			c.errorf(append(mp, "principals"), "required: map each client certificate subject to a principal")
		}
		for i := range m.Principals {
			cp := &m.Principals[i]
			pp := append(slices.Clone(mp), "principals", fmt.Sprint(i))
			if cp.Subject == "" {
				c.errorf(append(pp, "subject"), "required")
			}
			c.checkPrincipal(pp, &cp.Principal)
		}
	}
	if a.Anonymous != nil {
		c.checkPrincipal(append(slices.Clone(p), "anonymous"), a.Anonymous)
	}
	if a.Stdio != nil {
		c.checkPrincipal(append(slices.Clone(p), "stdio"), a.Stdio)
	}
}

func isLoopbackURL(u *url.URL) bool {
	if u.Scheme != "http" {
		return false
	}
	h := u.Hostname()
	ip := net.ParseIP(h)
	return h == "localhost" || (ip != nil && ip.IsLoopback())
}

// SecureURL refuses a URL that is not https, or plain http on this
// machine: whoever can rewrite what Warden fetches over plain HTTP (keys,
// a provider's answers) can sign in as anyone.
func SecureURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "https" && !isLoopbackURL(u) {
		return fmt.Errorf("%s: use an https URL (plain http only on this machine)", u.Redacted())
	}
	return nil
}

func (c *checker) checkOutput(path []string, o *Output) {
	if o == nil {
		return
	}
	if o.Redact != "" && o.Redact != "redact" && o.Redact != "block" {
		c.errorf(append(path, "redact"), "must be redact or block")
	}
	if o.Injection != "" && o.Injection != "flag" && o.Injection != "block" {
		c.errorf(append(path, "injection"), "must be flag or block")
	}
	if o.MaxBytes < 0 {
		c.errorf(append(path, "max_bytes"), "must not be negative")
	}
}

// checkRequire checks a require value; approval is only possible where an
// approval is configured (or may be, on the tool, when hasApproval).
func (c *checker) checkRequire(path []string, require string, hasApproval bool) {
	switch {
	case require == "":
	case !slices.Contains(Requirements, require):
		c.errorf(path, "must be one of %s", strings.Join(Requirements, ", "))
	case require == RequireApproval && !hasApproval:
		c.errorf(path, "approval needs approvers: set approval.groups beside it")
	}
}

func (c *checker) checkApproval(path []string, a *Approval) {
	if len(a.Groups) == 0 {
		c.errorf(append(path, "groups"), "required: the groups whose members may approve")
	}
	if a.Needed < 0 || a.Needed > 10 {
		c.errorf(append(path, "needed"), "must be between 1 and 10")
	}
	if a.TTL < 0 {
		c.errorf(append(path, "ttl"), "must not be negative")
	}
}

func (c *checker) checkLimit(path []string, l *Limit) {
	if _, _, err := l.Per(); err != nil {
		c.errorf(append(path, "rate"), "%v", err)
	}
	if l.Burst < 1 {
		c.errorf(append(path, "burst"), "must be at least 1")
	}
}

func (c *checker) checkRateLimits(r *RateLimits) {
	p := []string{"rate_limits"}
	switch r.Store {
	case "memory":
	case "redis":
		if r.RedisURL == "" {
			c.errorf(append(p, "redis_url"), "required with store: redis (or set server.redis.url)")
		}
	default:
		c.errorf(append(p, "store"), "must be memory or redis")
	}
	if r.OnStoreError != "refuse" && r.OnStoreError != "local" {
		c.errorf(append(p, "on_store_error"), "must be refuse or local")
	}
	for key, l := range map[string]*Limit{"per_principal": r.PerPrincipal, "per_tool": r.PerTool, "per_principal_tool": r.PerPrincipalTool} {
		c.checkLimit(append(slices.Clone(p), key), l)
	}
	if r.MaxConcurrentPerPrincipal < 1 {
		c.errorf(append(p, "max_concurrent_per_principal"), "must be at least 1")
	}
}

func (c *checker) checkServer(s *Server) {
	p := []string{"server"}
	if s.DefaultTimeout < 0 || s.DefaultTimeout > MaxTimeout {
		c.errorf(append(p, "default_timeout"), "must be between 0 and %s", MaxTimeout)
	}
	if rt := s.Runtime; rt.MemoryLimitMiB < -1 {
		c.errorf(append(p, "runtime", "memory_limit_mib"), "must be a number of MiB, or -1 for no limit")
	}
	if rt := s.Runtime; rt.GCPercent < MinGCPercent || rt.GCPercent > MaxGCPercent {
		c.errorf(append(p, "runtime", "gc_percent"), "must be between %d and %d", MinGCPercent, MaxGCPercent)
	}
	h := s.HTTP
	host, _, err := net.SplitHostPort(h.Addr)
	if err != nil {
		c.errorf(append(p, "http", "addr"), "%q is not host:port", h.Addr)
	} else if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" && len(h.AllowedHosts) == 0 {
		c.errorf(append(p, "http", "allowed_hosts"),
			"required when binding to a non-loopback address (%s): list the host names clients use, so that DNS rebinding is refused", h.Addr)
	}
	if h.MaxBodyBytes < 0 {
		c.errorf(append(p, "http", "max_body_bytes"), "must not be negative")
	}
	if h.SessionIdleTimeout < 0 {
		c.errorf(append(p, "http", "session_idle_timeout"), "must not be negative")
	}
	if h.SessionMaxAge < 0 {
		c.errorf(append(p, "http", "session_max_age"), "must not be negative")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"read_header_timeout", h.ReadHeaderTimeout}, {"body_timeout", h.BodyTimeout}, {"idle_timeout", h.IdleTimeout}} {
		if d.v < 0 || d.v > MaxTimeout {
			c.errorf(append(p, "http", d.key), "must be between 0 (the default) and %s", MaxTimeout)
		}
	}
	if h.MaxHeaderBytes < 0 || h.MaxHeaderBytes > 1<<20 {
		c.errorf(append(p, "http", "max_header_bytes"), "must be between 0 (the default, %d) and %d", DefaultMaxHeaderBytes, 1<<20)
	}
	if h.MaxConnections < 0 {
		c.errorf(append(p, "http", "max_connections"), "must not be negative")
	}
	if h.MaxConnectionsPerClient < 0 {
		c.errorf(append(p, "http", "max_connections_per_client"), "must not be negative")
	} else if h.MaxConnectionsPerClient > h.MaxConnections && h.MaxConnections > 0 {
		c.errorf(append(p, "http", "max_connections_per_client"), "%d is more than max_connections (%d)", h.MaxConnectionsPerClient, h.MaxConnections)
	}
}

func (c *checker) checkTool(cfg *Config, name string, t *Tool) {
	p := []string{"tools", name}
	if t == nil {
		c.errorf(p, "empty tool declaration")
		return
	}
	if !snakeCase.MatchString(name) {
		c.errorf(p, "tool names are snake_case (lower-case words joined by _), like get_customer")
	} else {
		c.checkToolName(cfg, p, name)
	}
	if strings.TrimSpace(t.Description) == "" {
		c.errorf(append(p, "description"), "required: tell the model what the tool does and when to use it")
	}
	c.checkScope(append(p, "scope"), t.Scope)
	c.checkSourceRef(cfg, append(p, "source"), t.Source)
	if t.RateLimit != nil {
		c.checkLimit(append(p, "rate_limit"), t.RateLimit)
	}
	c.checkOutput(append(p, "output"), t.Output)
	if !slices.Contains(RiskTiers, t.Risk) {
		c.errorf(append(p, "risk"), "must be one of %s", strings.Join(RiskTiers, ", "))
	} else if t.Mode == "write" && t.Risk == "read" {
		c.errorf(append(p, "risk"), "a write tool cannot be of the read tier")
	}
	if t.Approval != nil {
		c.checkApproval(append(p, "approval"), t.Approval)
	}
	if t.Require != "" {
		c.checkRequire(append(p, "require"), t.Require, true)
	}
	switch r := cfg.Rule(name); {
	case r.Require == RequireApproval && r.Approval == nil:
		c.errorf(append(p, "require"), "approval needs approvers: set approval.groups on the tool or its tier (%s)", t.Risk)
	case (r.Require == RequireDryRun || r.Approval != nil && r.Approval.DryRun) && t.Mode != "write":
		c.errorf(append(p, "require"), "only write tools have a dry run")
	}
	if t.CacheTTL < 0 || (t.CacheTTL > 0 && t.Mode == "write") {
		c.errorf(append(p, "cache_ttl"), "only read tools are cached, for a positive duration")
	}
	if t.Mode != "read" && t.Mode != "write" {
		c.errorf(append(p, "mode"), "must be read or write, not %q", t.Mode)
	}
	if t.Timeout <= 0 || t.Timeout > MaxTimeout {
		c.errorf(append(p, "timeout"), "must be more than 0 and at most %s", MaxTimeout)
	}
}

func (c *checker) checkSourceRef(cfg *Config, path []string, name string) {
	if name == "" {
		c.errorf(path, "required: the name of a source declared under sources")
	} else if _, ok := cfg.Sources[name]; !ok {
		c.errorf(path, "no source named %q (declared: %s)", name, strings.Join(SortedKeys(cfg.Sources), ", "))
	}
}

func (c *checker) checkParams(path []string, params map[string]Param, promptArgs bool) {
	for _, name := range SortedKeys(params) {
		pp := append(slices.Clone(path), name)
		if !snakeCase.MatchString(name) {
			c.errorf(pp, "parameter names are snake_case")
		}
		prm := params[name]
		if strings.TrimSpace(prm.Description) == "" {
			c.errorf(append(pp, "description"), "required: tell the model what the value means and what form it takes")
		}
		if promptArgs && prm.Type != "string" {
			c.errorf(append(pp, "type"), "prompt arguments are strings; must be string")
			continue
		}
		if prm.Bind != "" {
			switch {
			case promptArgs:
				c.errorf(append(pp, "bind"), "prompt arguments cannot be bound")
			case !slices.Contains(Bindings, prm.Bind):
				c.errorf(append(pp, "bind"), "must be one of %s", strings.Join(Bindings, ", "))
			case prm.Type != "string":
				c.errorf(append(pp, "type"), "a bound parameter is a string")
			case prm.Default != nil || prm.Required || len(prm.Enum) > 0:
				c.errorf(append(pp, "bind"), "a bound parameter takes its value from the caller's identity only: remove default, required and enum")
			}
			continue
		}
		if _, err := ParamSchema(prm); err != nil {
			c.errorf(append(pp, err.field), "%s", err.msg)
		}
	}
}

func (c *checker) checkResource(cfg *Config, name string, r *Resource) {
	p := []string{"resources", name}
	if r == nil {
		c.errorf(p, "empty resource declaration")
		return
	}
	if !snakeCase.MatchString(name) {
		c.errorf(p, "resource names are snake_case")
	}
	if strings.TrimSpace(r.Description) == "" {
		c.errorf(append(p, "description"), "required")
	}
	c.checkScope(append(p, "scope"), r.Scope)
	c.checkOutput(append(p, "output"), r.Output)
	switch {
	case r.URI != "" && r.URITemplate != "":
		c.errorf(p, "set either uri (one resource) or uri_template (a family of resources), not both")
	case r.URI != "":
		if !uriScheme.MatchString(r.URI) {
			c.errorf(append(p, "uri"), "must be an absolute URI such as crm://schema")
		}
	case r.URITemplate != "":
		if !uriScheme.MatchString(r.URITemplate) {
			c.errorf(append(p, "uri_template"), "must be an absolute URI template such as crm://customers/{customer_id}")
		}
	default:
		c.errorf(p, "set uri (one resource) or uri_template (a family of resources)")
	}
	if r.Source == "" {
		if cfg.Server.ResourcesDir == "" {
			c.errorf([]string{"server", "resources_dir"}, "required when file resources are declared (resources.%s)", name)
		}
	} else {
		c.checkSourceRef(cfg, append(p, "source"), r.Source)
	}
	if r.Timeout <= 0 || r.Timeout > MaxTimeout {
		c.errorf(append(p, "timeout"), "must be more than 0 and at most %s", MaxTimeout)
	}
}

func (c *checker) checkPrompt(name string, pr *Prompt) {
	p := []string{"prompts", name}
	if pr == nil {
		c.errorf(p, "empty prompt declaration")
		return
	}
	if !snakeCase.MatchString(name) {
		c.errorf(p, "prompt names are snake_case")
	}
	if strings.TrimSpace(pr.Description) == "" {
		c.errorf(append(p, "description"), "required")
	}
	c.checkScope(append(p, "scope"), pr.Scope)
	c.checkParams(append(p, "arguments"), pr.Arguments, true)
	if len(pr.Messages) == 0 {
		c.errorf(append(p, "messages"), "required: at least one message")
	}
	sample := map[string]any{}
	for a := range pr.Arguments {
		sample[a] = "x"
	}
	for i, m := range pr.Messages {
		mp := append(slices.Clone(p), "messages", fmt.Sprint(i))
		if m.Role != "user" && m.Role != "assistant" {
			c.errorf(append(mp, "role"), "must be user or assistant")
		}
		tmpl, err := template.New(name).Option("missingkey=error").Parse(m.Text)
		if err != nil {
			c.errorf(append(mp, "text"), "invalid template: %v", err)
			continue
		}
		if err := tmpl.Execute(new(strings.Builder), sample); err != nil {
			c.errorf(append(mp, "text"), "the template uses something other than the declared arguments: %v", err)
		}
	}
}

// paramError locates a problem inside one parameter declaration.
type paramError struct{ field, msg string }

// ParamSchema returns the JSON Schema for one declared parameter.
func ParamSchema(p Param) (*jsonschema.Schema, *paramError) {
	s := &jsonschema.Schema{Type: p.Type, Description: p.Description}
	switch p.Type {
	case "string":
		if p.Minimum != nil || p.Maximum != nil {
			return nil, &paramError{"type", "minimum and maximum apply to numbers; use min_length and max_length for strings"}
		}
		if p.Pattern != "" {
			if _, err := regexp.Compile(p.Pattern); err != nil {
				return nil, &paramError{"pattern", fmt.Sprintf("invalid regular expression: %v", err)}
			}
			s.Pattern = p.Pattern
		}
		if p.Format != "" {
			if _, ok := validate.Formats[p.Format]; !ok {
				return nil, &paramError{"format", fmt.Sprintf("unsupported format %q (supported: %s)", p.Format, strings.Join(SortedKeys(validate.Formats), ", "))}
			}
			s.Format = p.Format
		}
		s.MinLength, s.MaxLength = p.MinLength, p.MaxLength
		if s.MaxLength == nil && len(p.Enum) == 0 {
			// An unbounded string is an unbounded cost; cap it unless the
			// declaration says otherwise.
			s.MaxLength = jsonschema.Ptr(DefaultMaxStringBytes)
		}
	case "integer", "number":
		if p.Pattern != "" || p.Format != "" || p.MinLength != nil || p.MaxLength != nil {
			return nil, &paramError{"type", "pattern, format, min_length and max_length apply to strings"}
		}
		s.Minimum, s.Maximum = p.Minimum, p.Maximum
		if p.Minimum != nil && p.Maximum != nil && *p.Minimum > *p.Maximum {
			return nil, &paramError{"minimum", "is greater than maximum"}
		}
	case "boolean":
		if p.Pattern != "" || p.Format != "" || p.MinLength != nil || p.MaxLength != nil || p.Minimum != nil || p.Maximum != nil {
			return nil, &paramError{"type", "a boolean takes no bounds, pattern or format"}
		}
	default:
		return nil, &paramError{"type", fmt.Sprintf("must be string, integer, number or boolean, not %q", p.Type)}
	}
	s.Enum = p.Enum
	if p.Default != nil {
		raw, err := json.Marshal(p.Default)
		if err != nil {
			return nil, &paramError{"default", err.Error()}
		}
		s.Default = raw
	}
	// Resolving validates the default and the enum against the type.
	if _, err := s.Resolve(&jsonschema.ResolveOptions{ValidateDefaults: true}); err != nil {
		return nil, &paramError{"default", err.Error()}
	}
	for _, v := range p.Enum {
		if err := mustResolve(&jsonschema.Schema{Type: p.Type}).Validate(v); err != nil {
			return nil, &paramError{"enum", fmt.Sprintf("value %v is not a %s", v, p.Type)}
		}
	}
	return s, nil
}

func mustResolve(s *jsonschema.Schema) *jsonschema.Resolved {
	rs, err := s.Resolve(nil)
	if err != nil {
		panic(err)
	}
	return rs
}

// Bound returns the bound parameters of a set: parameter name → the
// principal attribute it is bound to.
func Bound(params map[string]Param) map[string]string {
	var b map[string]string
	for name, p := range params {
		if p.Bind != "" {
			if b == nil {
				b = map[string]string{}
			}
			b[name] = p.Bind
		}
	}
	return b
}

// ObjectSchema returns the strict object schema the model sees for a set of
// parameters: every declared, unbound property, the required ones listed,
// nothing else allowed.
// It assumes the parameters passed Parse.
func ObjectSchema(params map[string]Param) *jsonschema.Schema {
	s := &jsonschema.Schema{
		Type:                 "object",
		Properties:           map[string]*jsonschema.Schema{},
		AdditionalProperties: &jsonschema.Schema{Not: &jsonschema.Schema{}},
	}
	for _, name := range SortedKeys(params) {
		if params[name].Bind != "" {
			continue // the model never sees a bound parameter
		}
		ps, _ := ParamSchema(params[name])
		s.Properties[name] = ps
		if params[name].Required {
			s.Required = append(s.Required, name)
		}
	}
	return s
}

// checkState checks the state store's ceilings: a ceiling of zero would fail
// every call, and one of minutes would let a stalled store hold them.
func (c *checker) checkState(st *State) {
	p := []string{"server", "state"}
	t := &st.Timeouts
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"keys", t.Keys}, {"audit", t.Audit}, {"suspensions", t.Suspensions}, {"approvals", t.Approvals}, {"idempotency", t.Idempotency},
		{"cache", t.Cache}, {"rate_limits", t.RateLimits}, {"shared", t.Shared}} {
		if d.v < 0 || d.v > MaxStateTimeout {
			c.errorf(append(p, "timeouts", d.key), "must be between 0 (the default) and %s", MaxStateTimeout)
		}
	}
}
