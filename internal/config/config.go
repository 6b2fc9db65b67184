// Package config loads Warden's one YAML file into a single canonical
// structure and validates it whole.
//
// Everything a later stage relies on is checked here, before anything runs:
// unknown keys and wrong types are refused, references between sections must
// resolve, and the tool-design rules hold (snake_case names that start with a
// verb, a description on every tool and parameter, strict schemas). Every
// error names the file, line and path of the offending value, and all errors
// are reported at once.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Config is the whole configuration.
type Config struct {
	Server      Server               `yaml:"server"`
	Sources     map[string]RawSource `yaml:"sources"`
	Tools       map[string]*Tool     `yaml:"tools"`
	Resources   map[string]*Resource `yaml:"resources"`
	Prompts     map[string]*Prompt   `yaml:"prompts"`
	Auth        Auth                 `yaml:"auth"`
	Audit       Audit                `yaml:"audit"`
	Anomalies   Anomalies            `yaml:"anomalies"`
	Guard       Guard                `yaml:"guard"`
	Idempotency Idempotency          `yaml:"idempotency"`
	// RiskPolicies says what each risk tier requires (high, critical).
	RiskPolicies map[string]RiskPolicy `yaml:"risk_policies"`
	Approvals    Approvals             `yaml:"approvals"`
	Console      Console               `yaml:"console"`
	Cache        Shared                `yaml:"cache"`
	Policies     Policies              `yaml:"policies"`
	RateLimit    RateLimits            `yaml:"rate_limits"`
	// Upstreams are existing MCP servers served through the pipeline.
	Upstreams map[string]*Upstream `yaml:"upstreams"`

	// File is the path the configuration was read from ("" if it came from
	// memory); Dir is the directory relative paths are resolved against.
	File string `yaml:"-"`
	Dir  string `yaml:"-"`

	loc *checker
}

// Server holds settings for the server as a whole.
type Server struct {
	Name           string        `yaml:"name"`
	Version        string        `yaml:"version"`
	Instructions   string        `yaml:"instructions"`
	DefaultTimeout time.Duration `yaml:"default_timeout"`
	// ShutdownGrace bounds a shutdown (SIGTERM, Ctrl-C): calls in flight
	// finish and stores close within it, or the process exits without
	// waiting for them. Default 10s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// ResourcesDir is the directory file resources are read from; nothing
	// outside it can be read.
	ResourcesDir string  `yaml:"resources_dir"`
	HTTP         HTTP    `yaml:"http"`
	State        State   `yaml:"state"`
	Tracing      Tracing `yaml:"tracing"`
	// Redis and TrustedProxies serve several instances (see instances.go).
	Redis          Redis    `yaml:"redis"`
	TrustedProxies []string `yaml:"trusted_proxies"`
	Runtime        Runtime  `yaml:"runtime"`
	// ToolVerbs are words tool names may start with, beside Verbs.
	ToolVerbs []string `yaml:"tool_verbs"`
}

// Runtime holds the Go runtime's memory settings, applied when the server
// starts. The GOMEMLIMIT and GOGC environment variables, when set, win.
type Runtime struct {
	// MemoryLimitMiB is the runtime's soft memory limit in MiB
	// (debug.SetMemoryLimit): near it the collector runs more often and
	// returns freed memory to the system sooner. 0 means the default,
	// DefaultMemoryLimitMiB; -1 turns the limit off.
	MemoryLimitMiB int `yaml:"memory_limit_mib"`
	// GCPercent is GOGC: how far the heap grows past the memory still in
	// use before the next collection, in percent. 0 means the default,
	// DefaultGCPercent.
	GCPercent int `yaml:"gc_percent"`
}

// Tracing exports OpenTelemetry traces over OTLP/HTTP.
type Tracing struct {
	OTLPEndpoint string  `yaml:"otlp_endpoint"`
	ServiceName  string  `yaml:"service_name"`
	SampleRatio  float64 `yaml:"sample_ratio"`
}

// HTTP holds the Streamable HTTP transport's settings.
type HTTP struct {
	Addr               string        `yaml:"addr"`
	AllowedHosts       []string      `yaml:"allowed_hosts"`
	AllowedOrigins     []string      `yaml:"allowed_origins"`
	MaxBodyBytes       int64         `yaml:"max_body_bytes"`
	SessionIdleTimeout time.Duration `yaml:"session_idle_timeout"`
	// SessionMaxAge is how long a 2025-11-25 session lives from its
	// initialize, on whichever instance it is served.
	SessionMaxAge time.Duration `yaml:"session_max_age"`
	LegacySSE     bool          `yaml:"legacy_sse"`
	TLS           *TLS          `yaml:"tls"`

	// What a slow or greedy client may hold. ReadHeaderTimeout bounds the
	// request line and headers, BodyTimeout the body once headers are in,
	// IdleTimeout a kept-alive connection between requests.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	BodyTimeout       time.Duration `yaml:"body_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`
	// MaxConnections caps open connections; MaxConnectionsPerClient caps
	// those of one client address (an IPv6 client's /64). Connections over
	// either are closed as soon as they are accepted.
	MaxConnections          int `yaml:"max_connections"`
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
}

// RawSource is a source's settings before its kind has interpreted them:
// each kind decodes and checks its own keys (see package source).
type RawSource map[string]any

// Kind returns the source's kind, or "".
func (r RawSource) Kind() string {
	k, _ := r["kind"].(string)
	return k
}

// Tool declares one tool: the settings every kind of source shares. The
// keys that belong to the tool's source (a SQL statement and its
// parameters, an HTTP operation, ...) are its Settings, which the source's
// kind decodes.
type Tool struct {
	Title       string `yaml:"title"`
	Description string `yaml:"description"`
	Version     string `yaml:"version"`
	// Scope is the scope a caller needs; required, no wildcards.
	Scope  string `yaml:"scope"`
	Source string `yaml:"source"`
	Mode   string `yaml:"mode"`
	// RateLimit overrides rate_limits.per_principal_tool for this tool.
	RateLimit *Limit `yaml:"rate_limit"`
	// Output is the output guard's policy for this tool's results.
	Output *Output `yaml:"output"`
	// CacheTTL caches a read tool's results for this long, per tenant and
	// arguments; zero (the default) does not cache.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// Risk is the tool's tier: read, write, high or critical; default read
	// or write, from its mode.
	Risk string `yaml:"risk"`
	// Require overrides what its tier requires (see RiskPolicy.Require).
	Require string `yaml:"require"`
	// Approval overrides the approval its tier requires.
	Approval *Approval     `yaml:"approval"`
	Timeout  time.Duration `yaml:"timeout"`

	// Settings are the tool's other keys, for its source's kind.
	Settings *Settings `yaml:"-"`
}

// Param is one named parameter: a JSON Schema for a scalar value.
type Param struct {
	Type        string   `yaml:"type"`
	Description string   `yaml:"description"`
	Required    bool     `yaml:"required"`
	Enum        []any    `yaml:"enum"`
	Minimum     *float64 `yaml:"minimum"`
	Maximum     *float64 `yaml:"maximum"`
	Pattern     string   `yaml:"pattern"`
	MinLength   *int     `yaml:"min_length"`
	MaxLength   *int     `yaml:"max_length"`
	Format      string   `yaml:"format"`
	Default     any      `yaml:"default"`
	// Bind fills the parameter from the caller's verified identity
	// (tenant or user) instead of from the arguments. The model never sees
	// a bound parameter, and a call that supplies one is refused.
	Bind string `yaml:"bind"`
}

// Column describes one result column.
type Column struct {
	Type        string `yaml:"type"`
	Description string `yaml:"description"`
}

// Resource declares a fixed resource (URI) or a family of resources (URI
// template), served by its source — without one, by files below
// server.resources_dir. As for tools, the keys that belong to the source's
// kind are its Settings.
type Resource struct {
	Title       string  `yaml:"title"`
	Description string  `yaml:"description"`
	MIMEType    string  `yaml:"mime_type"`
	Version     string  `yaml:"version"`
	Scope       string  `yaml:"scope"`
	Output      *Output `yaml:"output"`

	URI         string        `yaml:"uri"`
	URITemplate string        `yaml:"uri_template"`
	Source      string        `yaml:"source"`
	Timeout     time.Duration `yaml:"timeout"`

	// Settings are the resource's other keys, for its source's kind.
	Settings *Settings `yaml:"-"`
}

// FileSource names the source of resources that declare none: the files
// below server.resources_dir.
const FileSource = "file"

// Prompt declares a prompt template with typed arguments.
type Prompt struct {
	Title       string           `yaml:"title"`
	Description string           `yaml:"description"`
	Version     string           `yaml:"version"`
	Scope       string           `yaml:"scope"`
	Arguments   map[string]Param `yaml:"arguments"`
	Messages    []Message        `yaml:"messages"`
}

// Message is one prompt message; Text is a Go text/template over the
// arguments (for example {{.customer_id}}).
type Message struct {
	Role string `yaml:"role"`
	Text string `yaml:"text"`
}

// Defaults applied when the file leaves a setting out.
const (
	DefaultAddr           = "127.0.0.1:8080"
	DefaultTimeout        = 10 * time.Second
	DefaultShutdownGrace  = 10 * time.Second
	DefaultMaxRows        = 100
	MaxMaxRows            = 10000
	MaxTimeout            = 5 * time.Minute
	DefaultVersion        = "1"
	DefaultServerName     = "warden"
	DefaultMaxStringBytes = 4096

	// DefaultMemoryLimitMiB and DefaultGCPercent are the Go runtime's
	// settings unless server.runtime says otherwise; the README's "Memory
	// and garbage collection" says how they were chosen.
	DefaultMemoryLimitMiB = 256
	DefaultGCPercent      = 200
	MinGCPercent          = 25
	MaxGCPercent          = 1000

	DefaultReadHeaderTimeout       = 10 * time.Second
	DefaultBodyTimeout             = 30 * time.Second
	DefaultIdleTimeout             = 2 * time.Minute
	DefaultMaxHeaderBytes          = 64 << 10
	DefaultMaxConnections          = 4096
	DefaultMaxConnectionsPerClient = 256

	// The state store's ceilings (see StateTimeouts). A key lookup or a
	// suspension check is one indexed read, well under 10 ms on a healthy
	// store: 2 s is hundreds of times that, yet short enough that a client
	// hears "unavailable" before its own timeout. An audit append commits a
	// batch of records and syncs it to disk, which takes longer under load:
	// it gets 5 s. Approvals and idempotency entries are single-row reads
	// and writes, like keys.
	DefaultKeysTimeout        = 2 * time.Second
	DefaultAuditTimeout       = 5 * time.Second
	DefaultSuspensionsTimeout = 2 * time.Second
	DefaultApprovalsTimeout   = 2 * time.Second
	DefaultIdempotencyTimeout = 2 * time.Second
	// The cache and the rate limiter are one round trip to memory or
	// Redis: well under a millisecond when healthy. A call waits at most
	// 1 s for either before it is refused.
	DefaultCacheTimeout      = time.Second
	DefaultRateLimitsTimeout = time.Second
	// A nonce, a console session or a sign-in count is one row or key,
	// like an API key.
	DefaultSharedTimeout = 2 * time.Second
	// MaxStateTimeout is the longest ceiling accepted.
	MaxStateTimeout = time.Minute
)

// Load reads and validates the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path, filepath.Dir(abs))
}

// Resolve makes a path from the configuration absolute, relative to the
// directory of the configuration file.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}
