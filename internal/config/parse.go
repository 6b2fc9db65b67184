package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Error is one problem with a configuration file, located by line and by
// path (tools.get_customer.parameters.customer_id.pattern).
type Error struct {
	File string
	Line int
	Path string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Parse decodes and validates a configuration. file names it in errors;
// dir is where relative paths are resolved from.
func Parse(data []byte, file, dir string) (*Config, error) {
	if file == "" {
		file = "<config>"
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, yamlError(file, nil, err)
	}
	if err := checkDurations(file, f); err != nil {
		return nil, err
	}
	cfg := &Config{File: file, Dir: dir}
	c := &checker{file: file, ast: f}
	// The document is decoded from a second parse of it, from which each
	// declaration's kind-specific keys are moved into its Settings; f stays
	// whole, to locate errors.
	g, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, yamlError(file, nil, err)
	}
	var settings map[string]map[string]*Settings
	if len(g.Docs) > 0 && g.Docs[0].Body != nil {
		settings = c.splitSettings(g.Docs[0].Body)
		if err := yaml.NodeToValue(g.Docs[0].Body, cfg, yaml.Strict(), yaml.DisallowUnknownField()); err != nil {
			return nil, yamlError(file, f, err)
		}
	}
	for name, t := range cfg.Tools {
		if t != nil {
			t.Settings = settings["tools"][name]
		}
	}
	for name, r := range cfg.Resources {
		if r != nil {
			r.Settings = settings["resources"][name]
		}
	}
	cfg.loc = c
	c.expandEnv(cfg)
	cfg.applyDefaults()
	cfg.applyInstanceDefaults()
	c.check(cfg)
	if err := c.result(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// result returns the errors recorded so far, in file order, or nil.
func (c *checker) result() error {
	if len(c.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(c.errs, func(a, b *Error) int { return a.Line - b.Line })
	errs := c.errs
	c.errs = nil
	return errs
}

// Problems collects located errors about a configuration found after it was
// parsed, by the code that builds sources and targets from it.
type Problems struct{ c *checker }

// Problems returns a collector for errors found while building from cfg.
func (cfg *Config) Problems() *Problems {
	if cfg.loc == nil {
		cfg.loc = &checker{file: cfg.File}
	}
	return &Problems{cfg.loc}
}

// Add records an error at path (keys from the document root).
func (p *Problems) Add(path []string, format string, args ...any) { p.c.errorf(path, format, args...) }

// Err returns every error recorded, located and in file order, or nil.
func (p *Problems) Err() error { return p.c.result() }

// yamlError locates a decoding error. A type error is restated in the
// file's own terms: the path of the value and the kind of value expected.
func yamlError(file string, f *ast.File, err error) error {
	var ye yaml.Error
	if !errors.As(err, &ye) {
		return Errors{{File: file, Msg: err.Error()}}
	}
	e := &Error{File: file, Msg: ye.GetMessage()}
	tok := ye.GetToken()
	if tok != nil && tok.Position != nil {
		e.Line = tok.Position.Line
	}
	var te *yaml.TypeError
	if errors.As(err, &te) && f != nil && tok != nil {
		for _, doc := range f.Docs {
			if path, ok := pathTo(doc.Body, tok.Position, nil); ok {
				e.Path = strings.Join(path, ".")
				break
			}
		}
		e.Msg = "expected " + kindOf(te.DstType)
	}
	return Errors{e}
}

// durationKeys are the keys whose values are durations.
var durationKeys = []string{"timeout", "default_timeout", "session_idle_timeout", "session_max_age", "max_token_lifetime", "clock_skew", "ttl", "cache_ttl"}

// checkDurations locates malformed durations, which the decoder reports
// without a position.
func checkDurations(file string, f *ast.File) error {
	var errs Errors
	var walk func(n ast.Node, path []string)
	walk = func(n ast.Node, path []string) {
		switch n := n.(type) {
		case *ast.MappingNode:
			for _, mv := range n.Values {
				walk(mv, path)
			}
		case *ast.MappingValueNode:
			key := n.Key.GetToken().Value
			p := append(slices.Clone(path), key)
			if sv, ok := n.Value.(*ast.StringNode); ok && slices.Contains(durationKeys, key) {
				if _, err := time.ParseDuration(sv.Value); err != nil {
					errs = append(errs, &Error{File: file, Line: sv.GetToken().Position.Line, Path: strings.Join(p, "."),
						Msg: fmt.Sprintf("%q is not a duration; write one such as 500ms, 5s or 2m", sv.Value)})
				}
			}
			walk(n.Value, p)
		case *ast.SequenceNode:
			for i, v := range n.Values {
				walk(v, append(slices.Clone(path), strconv.Itoa(i)))
			}
		}
	}
	for _, doc := range f.Docs {
		walk(doc.Body, nil)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// pathTo finds the keys leading to the node at pos.
func pathTo(n ast.Node, pos *token.Position, path []string) ([]string, bool) {
	at := func(n ast.Node) bool {
		t := n.GetToken()
		return t != nil && t.Position != nil && t.Position.Offset == pos.Offset
	}
	switch n := n.(type) {
	case *ast.MappingNode:
		for _, mv := range n.Values {
			if p, ok := pathTo(mv, pos, path); ok {
				return p, true
			}
		}
	case *ast.MappingValueNode:
		p := append(slices.Clone(path), n.Key.GetToken().Value)
		if at(n.Value) {
			return p, true
		}
		return pathTo(n.Value, pos, p)
	case *ast.SequenceNode:
		for i, v := range n.Values {
			p := append(slices.Clone(path), strconv.Itoa(i))
			if at(v) {
				return p, true
			}
			if p, ok := pathTo(v, pos, p); ok {
				return p, true
			}
		}
	}
	return nil, false
}

// kindOf names a Go type the way the configuration reference does.
func kindOf(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "a duration such as 5s or 2m"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Map, reflect.Struct:
		return "a mapping of keys to values"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Pointer:
		return kindOf(t.Elem())
	}
	return t.String()
}

// checker accumulates located errors.
type checker struct {
	file string
	ast  *ast.File
	errs Errors
}

// errorf records an error at path, a list of keys from the document root.
func (c *checker) errorf(path []string, format string, args ...any) {
	c.errs = append(c.errs, &Error{
		File: c.file,
		Line: c.line(path),
		Path: strings.Join(path, "."),
		Msg:  fmt.Sprintf(format, args...),
	})
}

// line finds the line of the deepest node along path that exists, so that
// an error about a missing key points at its parent.
func (c *checker) line(path []string) int {
	for n := len(path); n > 0; n-- {
		b := (&yaml.PathBuilder{}).Root()
		for _, k := range path[:n] {
			b = b.Child(k)
		}
		if c.ast == nil {
			return 0
		}
		node, err := b.Build().FilterFile(c.ast)
		if err == nil && node != nil {
			if tok := node.GetToken(); tok != nil && tok.Position != nil {
				return tok.Position.Line
			}
		}
	}
	return 0
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${VAR} in the settings where deployments need it:
// source settings (paths, DSNs), the resources directory, the state store
// and the Redis URL. Statements and
// descriptions are never expanded. An unset variable is an error, not "".
func (c *checker) expandEnv(cfg *Config) {
	expand := func(path []string, s string) string {
		return envRef.ReplaceAllStringFunc(s, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			v, ok := os.LookupEnv(name)
			if !ok {
				c.errorf(path, "environment variable %s is not set", name)
			}
			return v
		})
	}
	cfg.Server.ResourcesDir = expand([]string{"server", "resources_dir"}, cfg.Server.ResourcesDir)
	cfg.Server.State.SQLite = expand([]string{"server", "state", "sqlite"}, cfg.Server.State.SQLite)
	cfg.Server.State.Postgres = expand([]string{"server", "state", "postgres"}, cfg.Server.State.Postgres)
	cfg.RateLimit.RedisURL = expand([]string{"rate_limits", "redis_url"}, cfg.RateLimit.RedisURL)
	cfg.Server.Redis.URL = expand([]string{"server", "redis", "url"}, cfg.Server.Redis.URL)
	cfg.Audit.Secret = expand([]string{"audit", "secret"}, cfg.Audit.Secret)
	cfg.Audit.Sink = expand([]string{"audit", "sink"}, cfg.Audit.Sink)
	cfg.Audit.Spool = expand([]string{"audit", "spool"}, cfg.Audit.Spool)
	cfg.Anomalies.WebhookURL = expand([]string{"anomalies", "webhook_url"}, cfg.Anomalies.WebhookURL)
	cfg.Idempotency.RedisURL = expand([]string{"idempotency", "redis_url"}, cfg.Idempotency.RedisURL)
	cfg.Cache.RedisURL = expand([]string{"cache", "redis_url"}, cfg.Cache.RedisURL)
	cfg.Approvals.WebhookURL = expand([]string{"approvals", "webhook_url"}, cfg.Approvals.WebhookURL)
	if o := cfg.Console.OIDC; o != nil {
		o.ClientSecret = expand([]string{"console", "oidc", "client_secret"}, o.ClientSecret)
	}
	for name, src := range cfg.Sources {
		for k, v := range src {
			if s, ok := v.(string); ok {
				src[k] = expand([]string{"sources", name, k}, s)
			}
		}
	}
	c.expandUpstreams(cfg, expand)
}

func (cfg *Config) applyDefaults() {
	defer cfg.upstreamDefaults() // after the server's default timeout
	s := &cfg.Server
	if s.Name == "" {
		s.Name = DefaultServerName
	}
	if s.Version == "" {
		s.Version = DefaultVersion
	}
	if s.DefaultTimeout == 0 {
		s.DefaultTimeout = DefaultTimeout
	}
	if s.ShutdownGrace == 0 {
		s.ShutdownGrace = DefaultShutdownGrace
	}
	if s.HTTP.Addr == "" {
		s.HTTP.Addr = DefaultAddr
	}
	if s.Runtime.MemoryLimitMiB == 0 {
		s.Runtime.MemoryLimitMiB = DefaultMemoryLimitMiB
	}
	if s.Runtime.GCPercent == 0 {
		s.Runtime.GCPercent = DefaultGCPercent
	}
	h := &s.HTTP
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&h.ReadHeaderTimeout, DefaultReadHeaderTimeout}, {&h.BodyTimeout, DefaultBodyTimeout}, {&h.IdleTimeout, DefaultIdleTimeout}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, d := range []struct {
		v   *int
		def int
	}{
		{&h.MaxHeaderBytes, DefaultMaxHeaderBytes}, {&h.MaxConnections, DefaultMaxConnections}, {&h.MaxConnectionsPerClient, DefaultMaxConnectionsPerClient},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if s.State.SQLite == "" && s.State.Postgres == "" {
		s.State.SQLite = DefaultStateFile
	}
	st := &s.State.Timeouts
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&st.Keys, DefaultKeysTimeout}, {&st.Audit, DefaultAuditTimeout}, {&st.Suspensions, DefaultSuspensionsTimeout},
		{&st.Approvals, DefaultApprovalsTimeout}, {&st.Idempotency, DefaultIdempotencyTimeout},
		{&st.Cache, DefaultCacheTimeout}, {&st.RateLimits, DefaultRateLimitsTimeout},
		{&st.Shared, DefaultSharedTimeout},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if j := cfg.Auth.JWT; j != nil {
		if len(j.Algorithms) == 0 {
			j.Algorithms = DefaultAlgorithms
		}
		if j.MaxTokenLifetime == 0 {
			j.MaxTokenLifetime = DefaultMaxTokenLifetime
		}
		if j.ClockSkew == 0 {
			j.ClockSkew = DefaultClockSkew
		}
		if j.Claims.User == "" {
			j.Claims.User = "sub"
		}
		if j.Claims.Tenant == "" {
			j.Claims.Tenant = "tenant"
		}
		if j.Claims.Groups == "" {
			j.Claims.Groups = "groups"
		}
		if len(j.AuthorizationServers) == 0 && j.Issuer != "" {
			j.AuthorizationServers = []string{j.Issuer}
		}
	}
	if a := cfg.Auth.Anonymous; a != nil && a.ID == "" {
		a.ID = "anonymous"
	}
	if a := cfg.Auth.Stdio; a != nil && a.ID == "" {
		a.ID = "stdio"
	}
	rl := &cfg.RateLimit
	if rl.Store == "" {
		rl.Store = "memory"
	}
	if rl.OnStoreError == "" {
		rl.OnStoreError = "refuse"
	}
	for _, l := range []struct {
		p   **Limit
		def Limit
	}{{&rl.PerPrincipal, DefaultPerPrincipal}, {&rl.PerTool, DefaultPerTool}, {&rl.PerPrincipalTool, DefaultPerPrincipalTool}} {
		if *l.p == nil {
			d := l.def
			*l.p = &d
		}
	}
	if rl.MaxConcurrentPerPrincipal == 0 {
		rl.MaxConcurrentPerPrincipal = DefaultMaxConcurrentPerPrincipal
	}
	if cfg.Idempotency.Store == "" {
		cfg.Idempotency.Store = "state"
	}
	if cfg.Cache.Store == "" {
		cfg.Cache.Store = "memory"
	}
	if cfg.Approvals.WebhookFormat == "" {
		cfg.Approvals.WebhookFormat = "json"
	}
	if cfg.Approvals.Retention == 0 {
		cfg.Approvals.Retention = DefaultApprovalRetention
	}
	if o := cfg.Console.OIDC; o != nil {
		if o.Claims.User == "" {
			o.Claims.User = "sub"
		}
		if o.Claims.Groups == "" {
			o.Claims.Groups = "groups"
		}
	}
	if cfg.Console.SessionTTL == 0 {
		cfg.Console.SessionTTL = DefaultConsoleSessionTTL
	}
	if cfg.Idempotency.TTL == 0 {
		cfg.Idempotency.TTL = DefaultIdempotencyTTL
	}
	for _, t := range cfg.Tools {
		if t == nil {
			continue
		}
		if t.Mode == "" {
			t.Mode = "read"
		}
		if t.Version == "" {
			t.Version = DefaultVersion
		}
		if t.Timeout == 0 {
			t.Timeout = s.DefaultTimeout
		}
		if t.Risk == "" {
			t.Risk = t.Mode
		}
	}
	for _, r := range cfg.Resources {
		if r == nil {
			continue
		}
		if r.Version == "" {
			r.Version = DefaultVersion
		}
		if r.Timeout == 0 {
			r.Timeout = s.DefaultTimeout
		}
	}
	for _, p := range cfg.Prompts {
		if p != nil && p.Version == "" {
			p.Version = DefaultVersion
		}
	}
}

// SortedKeys returns a map's keys in order, so that everything derived from
// the configuration (registration, listings, errors) is deterministic.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
