package config

import (
	"strings"
	"testing"
	"time"
)

func TestUpstreamDefaults(t *testing.T) {
	t.Setenv("GW_NPM", "/opt/npm")
	cfg, err := Parse([]byte(`
upstreams:
  everything:
    command: ${GW_NPM}/node
    args: ["${GW_NPM}/server.js", stdio]
    read_only: [data]
    scope: demo.use
  remote:
    url: https://mcp.example.com/mcp
    scope: remote.use
    prefix: ""
`), "warden.yaml", "/etc/warden")
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Upstreams["everything"]
	if e.Transport != TransportStdio || e.Command != "/opt/npm/node" || e.Args[0] != "/opt/npm/server.js" || e.ReadOnly[0] != "/etc/warden/data" {
		t.Errorf("stdio upstream = %+v", e)
	}
	if e.Timeout != DefaultTimeout || e.ListTTL != DefaultListTTL || e.Sampling != "refuse" || e.Pinning.NewTargets != "quarantine" || e.Pinning.Poisoned != "quarantine" {
		t.Errorf("defaults = %+v", e)
	}
	if got := e.UpstreamPrefix("everything"); got != "everything__" {
		t.Errorf("prefix = %q", got)
	}
	r := cfg.Upstreams["remote"]
	if r.Transport != TransportStreamable || r.UpstreamPrefix("remote") != "" || r.Timeout != 10*time.Second {
		t.Errorf("http upstream = %+v", r)
	}
}

func TestUpstreamErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"no scope", `{up: {url: "https://x.example.com/mcp"}}`, "upstreams.up.scope: required"},
		{"both", `{up: {url: "https://x.example.com/mcp", command: /bin/true, transport: stdio, scope: a.b}}`, "upstreams.up.url: a stdio upstream has a command"},
		{"plain http", `{up: {url: "http://x.example.com/mcp", scope: a.b}}`, "upstreams.up.url"},
		{"transport", `{up: {url: "https://x.example.com/mcp", transport: websocket, scope: a.b}}`, "upstreams.up.transport"},
		{"name", `{Up-Stream: {url: "https://x.example.com/mcp", scope: a.b}}`, "upstreams.Up-Stream: upstream names"},
		{"two credentials", `{up: {url: "https://x.example.com/mcp", scope: a.b, auth: {bearer: "${env:A}", header: {name: X-Key, value: "${env:B}"}}}}`, "set exactly one"},
		{"stdio credentials", `{up: {command: /bin/true, scope: a.b, auth: {bearer: "${env:A}"}}}`, "upstreams.up.auth"},
		{"exchange audience", `{up: {url: "https://x.example.com/mcp", scope: a.b, auth: {token_exchange: {token_url: "https://idp.example.com/token", client_id: w}}}}`, "audience: required"},
		{"cached write", `{up: {url: "https://x.example.com/mcp", scope: a.b, tools: {t: {cache_ttl: 1m}}}}`, "cache_ttl: only tools declared mode: read"},
		{"wildcard scope", `{up: {url: "https://x.example.com/mcp", scope: "a.*"}}`, "wildcards"},
		{"sampling", `{up: {url: "https://x.example.com/mcp", scope: a.b, sampling: maybe}}`, "sampling: must be refuse or allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte("upstreams: "+tt.yaml+"\n"), "warden.yaml", "/etc/warden")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
