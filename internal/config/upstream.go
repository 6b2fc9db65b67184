package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Upstream is one existing MCP server Warden serves through its pipeline
// (gateway mode): over stdio, started by Warden inside its sandbox, or over
// HTTP. Its tools, resources, resource templates and prompts become Warden
// targets named Prefix + their own name.
type Upstream struct {
	// Transport is stdio, streamable or sse; the default follows from
	// Command (stdio) or URL (streamable).
	Transport string `yaml:"transport"`

	// Over stdio: the program (an absolute path, or relative to the
	// configuration file), its arguments and its whole environment (values
	// may be secret references, ${env:NAME} or ${file:/path}). It runs in
	// the sandbox, seeing only ReadOnly and reaching only Egress.
	Command  string            `yaml:"command"`
	Args     []string          `yaml:"args"`
	Env      map[string]string `yaml:"env"`
	ReadOnly []string          `yaml:"read_only"`
	Egress   []string          `yaml:"egress"`
	Sandbox  UpstreamSandbox   `yaml:"sandbox"`

	// Over HTTP: the MCP endpoint.
	URL string `yaml:"url"`
	// ProtocolVersion pins the protocol version Warden asks for; empty
	// asks for the latest and falls back to what the upstream speaks.
	ProtocolVersion string `yaml:"protocol_version"`

	// Auth is how Warden authenticates itself to the upstream. The
	// client's own credential is never forwarded.
	Auth *UpstreamAuth `yaml:"auth"`

	// Prefix is put before every upstream name; nil means NAME__.
	Prefix *string `yaml:"prefix"`
	// Include, if set, serves only the upstream names listed; Exclude
	// never serves those listed. Names are tool and prompt names, resource
	// names and resource template names, as the upstream lists them.
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`

	// Scope is the scope every target of the upstream needs, unless a tool
	// overrides it. Required.
	Scope string `yaml:"scope"`
	// RiskFromAnnotations derives a tool's mode and tier from the
	// upstream's annotations: readOnlyHint → read, destructiveHint (the
	// protocol's default for a tool that is not read-only) → high, else
	// write. Without it every tool is a write tool of the write tier
	// unless declared otherwise under tools.
	RiskFromAnnotations bool `yaml:"risk_from_annotations"`
	// OpenSchema accepts arguments the upstream's input schema does not
	// declare; by default they are refused.
	OpenSchema bool `yaml:"open_schema"`
	// Timeout bounds each call; default server.default_timeout.
	Timeout time.Duration `yaml:"timeout"`
	// ListTTL is how often Warden lists the upstream again even without a
	// list_changed notification; default 5 minutes.
	ListTTL time.Duration `yaml:"list_ttl"`
	// Tools overrides settings of single tools, by the upstream's name.
	Tools map[string]*UpstreamTool `yaml:"tools"`
	// Pinning is what happens to definitions that change or look poisoned.
	Pinning Pinning `yaml:"pinning"`
	// Sampling is refuse (the default) or allow: whether the upstream may
	// ask the client's model for a completion.
	Sampling string `yaml:"sampling"`
	// Logging is the lowest level of the upstream's log notifications that
	// are forwarded to clients (debug, info, notice, warning, error); empty
	// forwards none.
	Logging string `yaml:"logging"`
}

// UpstreamSandbox is the sandbox of a stdio upstream.
type UpstreamSandbox struct {
	// Require lists the layers the upstream needs; empty means every layer
	// the host supports.
	Require    []string `yaml:"require"`
	BestEffort bool     `yaml:"best_effort"`
	// Memory caps the process's memory (address space and cgroup), as
	// "4GiB"; default 4GiB, as JavaScript runtimes reserve much address
	// space. Processes caps its processes and threads; default 64.
	Memory    string `yaml:"memory"`
	Processes int    `yaml:"processes"`
}

// UpstreamTool overrides what Warden makes of one upstream tool.
type UpstreamTool struct {
	// Name renames the tool; the prefix is not added to a new name.
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	Scope       string `yaml:"scope"`
	Mode        string `yaml:"mode"`
	Risk        string `yaml:"risk"`
	Require     string `yaml:"require"`
	// Approval overrides the approval its tier requires.
	Approval  *Approval     `yaml:"approval"`
	RateLimit *Limit        `yaml:"rate_limit"`
	Output    *Output       `yaml:"output"`
	CacheTTL  time.Duration `yaml:"cache_ttl"`
	Timeout   time.Duration `yaml:"timeout"`
	// OpenSchema overrides the upstream's open_schema for this tool.
	OpenSchema *bool `yaml:"open_schema"`
}

// UpstreamAuth is Warden's own credential at an upstream: at most one of
// Bearer, Header, ClientCredentials and TokenExchange.
type UpstreamAuth struct {
	// Bearer is a secret reference sent as Authorization: Bearer.
	Bearer string `yaml:"bearer"`
	// Header sends a secret reference as the named header.
	Header *UpstreamHeader `yaml:"header"`
	// ClientCredentials gets a token with OAuth 2.0 client credentials.
	ClientCredentials *OAuthClient `yaml:"client_credentials"`
	// TokenExchange exchanges each caller's verified JWT (RFC 8693) for a
	// token with the upstream's audience; Warden's own requests (listing)
	// use client credentials of the same client.
	TokenExchange *OAuthClient `yaml:"token_exchange"`
}

// UpstreamHeader is a header holding a secret.
type UpstreamHeader struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// OAuthClient is Warden's client at an authorization server.
type OAuthClient struct {
	TokenURL     string   `yaml:"token_url"`
	ClientID     string   `yaml:"client_id"`
	ClientSecret string   `yaml:"client_secret"` // a secret reference
	Scopes       []string `yaml:"scopes"`
	Audience     string   `yaml:"audience"`
}

// Pinning is an upstream's pinning policy.
type Pinning struct {
	// NewTargets is allow or quarantine (the default): what happens to a
	// target first seen on an upstream that already has pins.
	NewTargets string `yaml:"new_targets"`
	// Poisoned is quarantine (the default) or flag.
	Poisoned string `yaml:"poisoned"`
	// MaxDescription is the largest description, in bytes, that is not a
	// finding; default 2048.
	MaxDescription int `yaml:"max_description"`
}

// Upstream transports.
const (
	TransportStdio      = "stdio"
	TransportStreamable = "streamable"
	TransportSSE        = "sse"
)

// Defaults of upstreams.
const (
	DefaultListTTL = 5 * time.Minute
)

// upstreamName: an upstream's name is a prefix of target names.
var upstreamName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// targetName is the MCP rule for tool and prompt names.
var targetName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// UpstreamPrefix is the prefix of the upstream name's targets.
func (u *Upstream) UpstreamPrefix(name string) string {
	if u.Prefix != nil {
		return *u.Prefix
	}
	return name + "__"
}

func (cfg *Config) upstreamDefaults() {
	for _, u := range cfg.Upstreams {
		if u == nil {
			continue
		}
		if u.Transport == "" {
			u.Transport = TransportStreamable
			if u.Command != "" {
				u.Transport = TransportStdio
			}
		}
		if u.Timeout == 0 {
			u.Timeout = cfg.Server.DefaultTimeout
		}
		if u.ListTTL == 0 {
			u.ListTTL = DefaultListTTL
		}
		if u.Sampling == "" {
			u.Sampling = "refuse"
		}
		if u.Pinning.NewTargets == "" {
			u.Pinning.NewTargets = "quarantine"
		}
		if u.Pinning.Poisoned == "" {
			u.Pinning.Poisoned = "quarantine"
		}
		if u.Command != "" && !filepath.IsAbs(u.Command) {
			u.Command = cfg.Resolve(u.Command)
		}
		for i, p := range u.ReadOnly {
			u.ReadOnly[i] = cfg.Resolve(p)
		}
	}
}

// LogLevels are the levels of MCP log notifications, lowest first.
var LogLevels = []string{"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}

func (c *checker) checkUpstreams(cfg *Config) {
	for _, name := range SortedKeys(cfg.Upstreams) {
		p := []string{"upstreams", name}
		u := cfg.Upstreams[name]
		if u == nil {
			c.errorf(p, "empty upstream declaration")
			continue
		}
		if !upstreamName.MatchString(name) {
			c.errorf(p, "upstream names are short snake_case (a-z, 0-9, _; at most 32), as they prefix target names")
		}
		switch u.Transport {
		case TransportStdio:
			if u.Command == "" {
				c.errorf(append(p, "command"), "required with transport: stdio")
			}
			if u.URL != "" {
				c.errorf(append(p, "url"), "a stdio upstream has a command, not a URL")
			}
		case TransportStreamable, TransportSSE:
			if u.Command != "" || len(u.Args) > 0 || len(u.Env) > 0 || len(u.ReadOnly) > 0 || len(u.Egress) > 0 {
				c.errorf(append(p, "command"), "command, args, env, read_only and egress are for stdio upstreams")
			}
			if err := SecureURL(u.URL); err != nil {
				c.errorf(append(p, "url"), "required: %v", err)
			}
		default:
			c.errorf(append(p, "transport"), "must be stdio, streamable or sse")
		}
		if u.Transport == TransportStdio && u.Auth != nil {
			c.errorf(append(p, "auth"), "a stdio upstream is Warden's own child: give it credentials in env")
		}
		c.checkScope(append(p, "scope"), u.Scope)
		if pre := u.UpstreamPrefix(name); pre != "" && !targetName.MatchString(pre) {
			c.errorf(append(p, "prefix"), "may hold only letters, digits, _, . and -")
		}
		if u.Timeout <= 0 || u.Timeout > MaxTimeout {
			c.errorf(append(p, "timeout"), "must be more than 0 and at most %s", MaxTimeout)
		}
		if u.ListTTL < time.Second {
			c.errorf(append(p, "list_ttl"), "must be at least 1s")
		}
		if u.Sampling != "refuse" && u.Sampling != "allow" {
			c.errorf(append(p, "sampling"), "must be refuse or allow")
		}
		if u.Logging != "" && !slices.Contains(LogLevels, u.Logging) {
			c.errorf(append(p, "logging"), "must be one of %s", strings.Join(LogLevels, ", "))
		}
		if v := u.Pinning.NewTargets; v != "allow" && v != "quarantine" {
			c.errorf(append(p, "pinning", "new_targets"), "must be allow or quarantine")
		}
		if v := u.Pinning.Poisoned; v != "flag" && v != "quarantine" {
			c.errorf(append(p, "pinning", "poisoned"), "must be flag or quarantine")
		}
		if u.Pinning.MaxDescription < 0 {
			c.errorf(append(p, "pinning", "max_description"), "must not be negative")
		}
		for _, inc := range u.Include {
			if slices.Contains(u.Exclude, inc) {
				c.errorf(append(p, "exclude"), "%q is both included and excluded", inc)
			}
		}
		if a := u.Auth; a != nil {
			c.checkUpstreamAuth(append(p, "auth"), a)
		}
		for _, tn := range SortedKeys(u.Tools) {
			c.checkUpstreamTool(append(p, "tools", tn), u.Tools[tn])
		}
	}
}

func (c *checker) checkUpstreamAuth(p []string, a *UpstreamAuth) {
	n := 0
	for _, set := range []bool{a.Bearer != "", a.Header != nil, a.ClientCredentials != nil, a.TokenExchange != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		c.errorf(p, "set exactly one of bearer, header, client_credentials and token_exchange")
	}
	if h := a.Header; h != nil && (h.Name == "" || h.Value == "") {
		c.errorf(append(p, "header"), "needs a name and a value (a secret reference)")
	}
	for key, o := range map[string]*OAuthClient{"client_credentials": a.ClientCredentials, "token_exchange": a.TokenExchange} {
		if o == nil {
			continue
		}
		if err := SecureURL(o.TokenURL); err != nil {
			c.errorf(append(p, key, "token_url"), "required: %v", err)
		}
		if o.ClientID == "" {
			c.errorf(append(p, key, "client_id"), "required")
		}
		if key == "token_exchange" && o.Audience == "" {
			c.errorf(append(p, key, "audience"), "required: the audience of the tokens the upstream accepts")
		}
	}
}

func (c *checker) checkUpstreamTool(p []string, t *UpstreamTool) {
	if t == nil {
		return
	}
	if t.Name != "" && !targetName.MatchString(t.Name) {
		c.errorf(append(p, "name"), "tool names hold 1 to 128 letters, digits, _, . and -")
	}
	if t.Scope != "" {
		c.checkScope(append(p, "scope"), t.Scope)
	}
	if t.Mode != "" && t.Mode != "read" && t.Mode != "write" {
		c.errorf(append(p, "mode"), "must be read or write, not %q", t.Mode)
	}
	if t.Risk != "" && !slices.Contains(RiskTiers, t.Risk) {
		c.errorf(append(p, "risk"), "must be one of %s", strings.Join(RiskTiers, ", "))
	}
	if t.Mode == "write" && t.Risk == "read" {
		c.errorf(append(p, "risk"), "a write tool cannot be of the read tier")
	}
	if t.Approval != nil {
		c.checkApproval(append(p, "approval"), t.Approval)
	}
	if t.Require != "" {
		c.checkRequire(append(p, "require"), t.Require, true)
		if t.Require == RequireDryRun {
			c.errorf(append(p, "require"), "upstream tools have no dry run")
		}
	}
	if t.RateLimit != nil {
		c.checkLimit(append(p, "rate_limit"), t.RateLimit)
	}
	c.checkOutput(append(p, "output"), t.Output)
	if t.CacheTTL < 0 || (t.CacheTTL > 0 && t.Mode != "read") {
		c.errorf(append(p, "cache_ttl"), "only tools declared mode: read are cached, for a positive duration")
	}
	if t.Timeout < 0 || t.Timeout > MaxTimeout {
		c.errorf(append(p, "timeout"), "must be at most %s", MaxTimeout)
	}
}

// expandUpstreams expands ${VAR} where deployments need it: an upstream's
// URL, command, arguments and read-only paths. (Its env values are
// secret references, resolved when it starts.)
func (c *checker) expandUpstreams(cfg *Config, expand func(path []string, s string) string) {
	for name, u := range cfg.Upstreams {
		if u == nil {
			continue
		}
		p := []string{"upstreams", name}
		u.URL = expand(append(p, "url"), u.URL)
		u.Command = expand(append(p, "command"), u.Command)
		for i := range u.Args {
			u.Args[i] = expand(append(p, "args", fmt.Sprint(i)), u.Args[i])
		}
		for i := range u.ReadOnly {
			u.ReadOnly[i] = expand(append(p, "read_only", fmt.Sprint(i)), u.ReadOnly[i])
		}
	}
}
