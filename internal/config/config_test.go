package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// base is a valid configuration that each case below breaks in one way.
const base = `
server:
  name: test
sources:
  crm:
    kind: sqlite
    path: crm.db
tools:
  get_customer:
    description: Look up one customer.
    scope: crm.read
    source: crm
    statement: SELECT id FROM customers WHERE id = :customer_id
    parameters:
      customer_id:
        type: string
        description: Customer id.
        pattern: ^C-[0-9]{4}$
        required: true
`

func TestParseValid(t *testing.T) {
	cfg, err := Parse([]byte(base), "warden.yaml", "/etc/warden")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	tool := cfg.Tools["get_customer"]
	if tool.Mode != "read" || tool.Version != DefaultVersion || tool.Timeout != DefaultTimeout {
		t.Errorf("defaults not applied: %+v", tool)
	}
	if st := cfg.Server.State.Timeouts; st != (StateTimeouts{Keys: DefaultKeysTimeout, Audit: DefaultAuditTimeout,
		Suspensions: DefaultSuspensionsTimeout, Approvals: DefaultApprovalsTimeout, Idempotency: DefaultIdempotencyTimeout,
		Cache: DefaultCacheTimeout, RateLimits: DefaultRateLimitsTimeout, Shared: DefaultSharedTimeout}) {
		t.Errorf("state timeouts = %+v, want the defaults", st)
	}
	if cfg.Server.HTTP.Addr != DefaultAddr {
		t.Errorf("addr = %q, want %q", cfg.Server.HTTP.Addr, DefaultAddr)
	}
	if got := cfg.Resolve("crm.db"); got != "/etc/warden/crm.db" {
		t.Errorf("Resolve = %q", got)
	}
}

func TestAPIKeyCacheTTL(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       time.Duration
	}{
		{"unset", "", DefaultAPIKeyCacheTTL},
		{"zero disables", "auth:\n  api_keys:\n    cache_ttl: 0s\n", 0},
		{"set", "auth:\n  api_keys:\n    cache_ttl: 250ms\n", 250 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(base+tt.yaml), "warden.yaml", "/etc/warden")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := cfg.Auth.APIKeys.Cache(); got != tt.want {
				t.Errorf("auth.api_keys.cache_ttl = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error, all required
	}{
		{
			name: "missing tool description",
			yaml: strings.Replace(base, "    description: Look up one customer.\n", "", 1),
			want: []string{"warden.yaml:10:", "tools.get_customer.description: required"},
		},
		{
			name: "name not snake_case",
			yaml: strings.Replace(base, "  get_customer:", "  getCustomer:", 1),
			want: []string{"tools.getCustomer", "snake_case"},
		},
		{
			name: "name without verb",
			yaml: strings.Replace(base, "  get_customer:", "  customer_data:", 1),
			want: []string{"tools.customer_data", "start with a verb", `"customer" is not one`},
		},
		{
			name: "broken source reference",
			yaml: strings.Replace(base, "    source: crm\n", "    source: warehouse\n", 1),
			want: []string{"warden.yaml:12:", "tools.get_customer.source", `no source named "warehouse"`},
		},
		{
			name: "negative body timeout",
			yaml: strings.Replace(base, "  name: test\n", "  name: test\n  http:\n    body_timeout: -1s\n", 1),
			want: []string{"server.http.body_timeout", "between 0"},
		},
		{
			name: "negative key-store ceiling",
			yaml: strings.Replace(base, "  name: test\n", "  name: test\n  state:\n    timeouts:\n      keys: -1s\n", 1),
			want: []string{"warden.yaml:6:", "server.state.timeouts.keys", "between 0"},
		},
		{
			name: "audit ceiling over the maximum",
			yaml: strings.Replace(base, "  name: test\n", "  name: test\n  state:\n    timeouts: {audit: 2h}\n", 1),
			want: []string{"server.state.timeouts.audit", "between 0 (the default) and 1m0s"},
		},
		{
			name: "unknown state timeout",
			yaml: strings.Replace(base, "  name: test\n", "  name: test\n  state:\n    timeouts: {sessions: 1s}\n", 1),
			want: []string{"sessions"},
		},
		{
			name: "per-client cap over the overall cap",
			yaml: strings.Replace(base, "  name: test\n", "  name: test\n  http:\n    max_connections: 10\n    max_connections_per_client: 20\n    max_header_bytes: 2000000\n", 1),
			want: []string{"server.http.max_connections_per_client: 20 is more than max_connections (10)", "server.http.max_header_bytes"},
		},
		{
			name: "API-key cache longer than a minute",
			yaml: base + "auth:\n  api_keys:\n    cache_ttl: 2m\n",
			want: []string{"auth.api_keys.cache_ttl", "between 0", "1m0s"},
		},
		{
			name: "negative API-key cache",
			yaml: base + "auth:\n  api_keys:\n    cache_ttl: -1s\n",
			want: []string{"auth.api_keys.cache_ttl", "between 0"},
		},
		{
			name: "unknown audit durability",
			yaml: base + "audit:\n  durability: eventually\n",
			want: []string{"audit.durability", `"eventually"`, "fsync", "os"},
		},
		{
			name: "bad mode",
			yaml: strings.Replace(base, "    source: crm\n", "    source: crm\n    mode: delete\n", 1),
			want: []string{"tools.get_customer.mode", "read or write"},
		},
		{
			name: "unset environment variable",
			yaml: strings.Replace(base, "path: crm.db", "path: ${WARDEN_TEST_SURELY_UNSET}/crm.db", 1),
			want: []string{"warden.yaml:7:", "sources.crm.path", "WARDEN_TEST_SURELY_UNSET is not set"},
		},
		{
			name: "malformed duration",
			yaml: strings.Replace(base, "    source: crm\n", "    source: crm\n    timeout: soon\n", 1),
			want: []string{"warden.yaml:13: tools.get_customer.timeout", `"soon" is not a duration`},
		},
		{
			name: "missing scope",
			yaml: strings.Replace(base, "    scope: crm.read\n", "", 1),
			want: []string{"tools.get_customer.scope: required", "no scope, no call"},
		},
		{
			name: "wildcard scope",
			yaml: strings.Replace(base, "scope: crm.read", "scope: crm.*", 1),
			want: []string{"tools.get_customer.scope", "wildcards are not allowed"},
		},
		{
			name: "bad rate",
			yaml: base + "rate_limits:\n  per_principal: {rate: 10/day, burst: 1}\n",
			want: []string{"rate_limits.per_principal.rate", "unit must be s, m or h"},
		},
		{
			name: "symmetric JWT algorithm",
			yaml: base + "auth:\n  jwt:\n    issuer: https://idp\n    audience: https://mcp/mcp\n    jwks_file: jwks.json\n    algorithms: [HS256]\n",
			want: []string{"auth.jwt.algorithms.0", `"HS256" is not allowed`},
		},
		{
			name: "JWKS over plain HTTP",
			yaml: base + "auth:\n  jwt:\n    issuer: https://idp\n    audience: https://mcp/mcp\n    jwks_url: http://idp.example.com/jwks.json\n",
			want: []string{"auth.jwt.jwks_url", "https"},
		},
		{
			name: "anonymous without scopes",
			yaml: base + "auth:\n  anonymous: {id: guest}\n",
			want: []string{"auth.anonymous.scopes: required"},
		},
		{
			name: "source without kind",
			yaml: strings.Replace(base, "    kind: sqlite\n", "", 1),
			want: []string{"sources.crm.kind", "required"},
		},
		{
			name: "public bind without allowed hosts",
			yaml: strings.Replace(base, "  name: test\n", "  name: test\n  http:\n    addr: 0.0.0.0:8080\n", 1),
			want: []string{"server.http.allowed_hosts", "DNS rebinding"},
		},
		{
			name: "file resource escaping the directory",
			yaml: base + "resources:\n  secrets:\n    description: x\n    uri: crm://secrets\n    file: ../../etc/passwd\nserver_extra: 1\n",
			want: []string{`unknown field "server_extra"`},
		},
		{
			name: "prompt template uses an undeclared argument",
			yaml: base + "prompts:\n  summarize_customer:\n    description: x\n    arguments:\n      customer_id: {type: string, description: id}\n    messages:\n      - role: user\n        text: 'Summarize {{.customer}}'\n",
			want: []string{"prompts.summarize_customer.messages.0.text", "declared arguments"},
		},
		{
			name: "prompt argument not a string",
			yaml: base + "prompts:\n  summarize_customer:\n    description: x\n    arguments:\n      n: {type: integer, description: id}\n    messages:\n      - role: user\n        text: hi\n",
			want: []string{"prompts.summarize_customer.arguments.n.type", "must be string"},
		},
		{
			name: "duplicate key",
			yaml: strings.Replace(base, "    source: crm\n", "    source: crm\n    source: crm\n", 1),
			want: []string{"warden.yaml:", "source"},
		},
		{
			name: "approval without approvers",
			yaml: base + "risk_policies:\n  high: {require: approval}\n",
			want: []string{"risk_policies.high.require", "approval needs approvers"},
		},
		{
			name: "unknown requirement",
			yaml: strings.Replace(base, "    scope: crm.read\n", "    scope: crm.read\n    require: prayer\n", 1),
			want: []string{"tools.get_customer.require", "must be one of none, confirmation, approval, dry_run"},
		},
		{
			name: "a dry run only for a read tool",
			yaml: strings.Replace(base, "    scope: crm.read\n", "    scope: crm.read\n    require: dry_run\n", 1),
			want: []string{"tools.get_customer.require", "only write tools have a dry run"},
		},
		{
			name: "unknown webhook format",
			yaml: base + "approvals: {webhook_format: teams}\n",
			want: []string{"approvals.webhook_format", "must be json or slack"},
		},
		{
			name: "console single sign-on",
			yaml: base + "console:\n  oidc: {issuer: 'http://idp.example.com', redirect_url: 'https://w.example.com/callback'}\n",
			want: []string{"console.oidc.issuer: required: an https URL", "console.oidc.redirect_url: must be this console's callback",
				"console.oidc.client_id: required", "console.oidc.console_groups: required"},
		},
		{
			name: "not YAML",
			yaml: "tools: [unclosed",
			want: []string{"warden.yaml:1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "warden.yaml", "/etc/warden")
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want config.Errors: %v", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestAllErrorsReportedAtOnce(t *testing.T) {
	y := strings.Replace(base, "    description: Look up one customer.\n", "", 1)
	y = strings.Replace(y, "    source: crm\n", "    source: nowhere\n", 1)
	_, err := Parse([]byte(y), "warden.yaml", "")
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
	if errs[0].Line > errs[1].Line {
		t.Errorf("errors not in file order: %v", err)
	}
}

func TestStringParametersAreCapped(t *testing.T) {
	cfg, err := Parse([]byte(base), "warden.yaml", "")
	if err != nil {
		t.Fatal(err)
	}
	var kind struct {
		Statement  string           `yaml:"statement"`
		Parameters map[string]Param `yaml:"parameters"`
	}
	if err := cfg.Tools["get_customer"].Settings.Decode(&kind); err != nil {
		t.Fatal(err)
	}
	s := ObjectSchema(kind.Parameters)
	if s.AdditionalProperties == nil || s.AdditionalProperties.Not == nil {
		t.Errorf("schema is not strict: %v", s)
	}
	if p := s.Properties["customer_id"]; p.MaxLength == nil || *p.MaxLength != DefaultMaxStringBytes {
		t.Errorf("string parameter has no default length cap: %+v", p)
	}
	if len(s.Required) != 1 || s.Required[0] != "customer_id" {
		t.Errorf("required = %v", s.Required)
	}
}
