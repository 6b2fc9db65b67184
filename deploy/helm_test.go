package deploy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/wardenmcp/warden/internal/config"
)

// helm runs Helm v4 as pinned in tools/go.mod (`go tool helm`), a module of
// its own: Helm and the Kubernetes libraries stay out of Warden's go.mod.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"tool", "helm"}, args...)...)
	cmd.Dir = "tools"
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// chart is the chart's path as Helm, run in tools/, sees it.
const chart = "../helm/warden"

// render runs helm template with the values in valuesYAML and returns the
// manifests by kind.
func render(t *testing.T, valuesYAML string) (map[string]map[string]any, error) {
	t.Helper()
	vf := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(vf, []byte(valuesYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := helm(t, "template", "prod", chart, "--namespace", "mcp", "-f", vf)
	if err != nil {
		return nil, &helmError{out: out, err: err}
	}
	docs := map[string]map[string]any{}
	for _, doc := range strings.Split(out, "\n---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("rendered manifest does not parse: %v\n%s", err, doc)
		}
		if kind, _ := m["kind"].(string); kind != "" {
			if docs[kind] != nil {
				t.Fatalf("two %s manifests rendered", kind)
			}
			docs[kind] = m
		}
	}
	return docs, nil
}

type helmError struct {
	out string
	err error
}

func (e *helmError) Error() string { return e.err.Error() + ": " + e.out }

// get walks a manifest by keys (strings) and list indexes (ints).
func get(t *testing.T, v any, path ...any) any {
	t.Helper()
	for i, p := range path {
		if v == nil {
			return nil
		}
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: not a map: %v", path[:i], v)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at %v: no item %d in %v", path[:i], k, v)
			}
			v = l[k]
		}
	}
	return v
}

// prodValues is what a platform team sets: its stores' networks, one
// upstream API, and a Secret of upstream credentials.
const prodValues = `
config:
  server:
    http:
      allowed_hosts: [mcp.example.com]
networkPolicy:
  postgres: {cidrs: [10.20.0.0/24]}
  redis: {cidrs: [10.30.0.5/32], port: 6380}
  upstreams:
    - {name: crm-api, cidr: 10.40.0.0/16, ports: [443, 8443]}
existingSecret: warden-upstreams
`

func TestHelmLint(t *testing.T) {
	vf := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(vf, []byte(prodValues), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := helm(t, "lint", "--strict", chart, "-f", vf); err != nil {
		t.Fatalf("helm lint --strict: %v\n%s", err, out)
	}
}

// TestHelmChartSecurity renders the chart as a platform team would and
// checks what a cluster's admission rules and auditors look for.
func TestHelmChartSecurity(t *testing.T) {
	docs, err := render(t, prodValues)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"Deployment", "ConfigMap", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount"} {
		if docs[kind] == nil {
			t.Errorf("no %s rendered", kind)
		}
	}
	if docs["Deployment"] == nil {
		t.FailNow()
	}
	pod := get(t, docs["Deployment"], "spec", "template", "spec")
	if get(t, pod, "automountServiceAccountToken") != false {
		t.Error("the pod mounts a service-account token; Warden talks to no Kubernetes API")
	}
	if get(t, pod, "securityContext", "runAsNonRoot") != true || get(t, pod, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("pod securityContext = %v, want runAsNonRoot and RuntimeDefault seccomp", get(t, pod, "securityContext"))
	}
	c := get(t, pod, "containers", 0)
	sc := get(t, c, "securityContext")
	for _, want := range []struct {
		path []any
		val  any
	}{
		{[]any{"runAsNonRoot"}, true},
		{[]any{"readOnlyRootFilesystem"}, true},
		{[]any{"allowPrivilegeEscalation"}, false},
		{[]any{"privileged"}, false},
		{[]any{"seccompProfile", "type"}, "RuntimeDefault"},
		{[]any{"capabilities", "drop", 0}, "ALL"},
	} {
		if got := get(t, sc, want.path...); got != want.val {
			t.Errorf("container securityContext %v = %v, want %v", want.path, got, want.val)
		}
	}
	if add := get(t, sc, "capabilities", "add"); add != nil {
		t.Errorf("capabilities added: %v", add)
	}
	for _, k := range []string{"requests", "limits"} {
		for _, r := range []string{"cpu", "memory"} {
			if get(t, c, "resources", k, r) == nil {
				t.Errorf("no resources.%s.%s", k, r)
			}
		}
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got := get(t, c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path = %v, want %s", probe, got, path)
		}
		// Warden refuses a Host it was not told about, probes included.
		if got := get(t, c, probe, "httpGet", "httpHeaders", 0); get(t, got, "name") != "Host" || get(t, got, "value") != "mcp.example.com" {
			t.Errorf("%s Host header = %v, want mcp.example.com", probe, got)
		}
	}
	args := get(t, c, "args").([]any)
	if !slices.Equal(args[:5], []any{"serve", "--config", "/etc/warden/warden.yaml", "--http", ":8080"}) {
		t.Errorf("args = %v", args)
	}
	// The root filesystem is read-only: /tmp and the audit spool are
	// emptyDirs.
	mounts := map[any]any{}
	for _, m := range get(t, c, "volumeMounts").([]any) {
		mounts[get(t, m, "mountPath")] = get(t, m, "name")
	}
	if mounts["/tmp"] != "tmp" || mounts["/etc/warden"] != "config" || mounts["/var/lib/warden/spool"] != "spool" {
		t.Errorf("volume mounts = %v, want /tmp, /etc/warden and the spool", mounts)
	}

	// Secrets come from Secret references, never as values in the manifests.
	env := map[any]any{}
	for _, e := range get(t, c, "env").([]any) {
		if get(t, e, "value") != nil {
			t.Errorf("env %v has a literal value", get(t, e, "name"))
		}
		env[get(t, e, "name")] = get(t, e, "valueFrom", "secretKeyRef", "key")
	}
	for name, key := range map[string]string{"WARDEN_POSTGRES_DSN": "postgres-dsn", "WARDEN_REDIS_URL": "redis-url", "WARDEN_AUDIT_SECRET": "audit-secret"} {
		if env[name] != key {
			t.Errorf("env %s from secret key %v, want %s", name, env[name], key)
		}
	}
	if got := get(t, c, "envFrom", 0, "secretRef", "name"); got != "warden-upstreams" {
		t.Errorf("envFrom secret = %v, want warden-upstreams", got)
	}

	// The ConfigMap is a configuration Warden loads, with its secrets given
	// from the environment.
	t.Setenv("WARDEN_POSTGRES_DSN", "postgres://warden@db:5432/warden")
	t.Setenv("WARDEN_REDIS_URL", "redis://cache:6380/0")
	t.Setenv("WARDEN_AUDIT_SECRET", "0123456789abcdef0123456789abcdef")
	file := get(t, docs["ConfigMap"], "data", "warden.yaml").(string)
	cfg, err := config.Parse([]byte(file), "warden.yaml", t.TempDir())
	if err != nil {
		t.Fatalf("the chart's configuration does not load: %v\n%s", err, file)
	}
	if cfg.Server.State.Postgres != "postgres://warden@db:5432/warden" || cfg.RateLimit.RedisURL != "redis://cache:6380/0" {
		t.Errorf("state from the environment: postgres %q, redis %q", cfg.Server.State.Postgres, cfg.RateLimit.RedisURL)
	}

	if got := get(t, docs["HorizontalPodAutoscaler"], "spec", "minReplicas"); got != uint64(2) {
		t.Errorf("HPA minReplicas = %v (%T), want 2", got, got)
	}
	if got := get(t, docs["PodDisruptionBudget"], "spec", "maxUnavailable"); got != uint64(1) {
		t.Errorf("PDB maxUnavailable = %v, want 1", got)
	}

	// Egress reaches DNS, the stores and the declared upstream, nothing else.
	np := get(t, docs["NetworkPolicy"], "spec")
	if types := get(t, np, "policyTypes").([]any); !slices.Contains(types, any("Egress")) {
		t.Fatalf("policyTypes = %v: egress is not limited", types)
	}
	var allowed []string
	for _, rule := range get(t, np, "egress").([]any) {
		to, _ := get(t, rule, "to").([]any)
		if len(to) == 0 {
			t.Errorf("an egress rule with no 'to' allows every destination: %v", rule)
		}
		var peers []string
		for _, p := range to {
			if cidr := get(t, p, "ipBlock", "cidr"); cidr != nil {
				peers = append(peers, cidr.(string))
			} else {
				peers = append(peers, "dns-pods")
			}
		}
		for _, p := range get(t, rule, "ports").([]any) {
			for _, peer := range peers {
				allowed = append(allowed, peer+":"+strings.TrimSuffix(strings.TrimPrefix(yamlString(get(t, p, "port")), "'"), "'"))
			}
		}
	}
	slices.Sort(allowed)
	allowed = slices.Compact(allowed)
	want := []string{"10.20.0.0/24:5432", "10.30.0.5/32:6380", "10.40.0.0/16:443", "10.40.0.0/16:8443", "dns-pods:53"}
	if !slices.Equal(allowed, want) {
		t.Errorf("egress allows %v, want exactly %v", allowed, want)
	}
}

func yamlString(v any) string {
	b, _ := yaml.Marshal(v)
	return strings.TrimSpace(string(b))
}

// TestHelmChartRefuses: values that would deploy several pods each on its
// own embedded state, or a server refusing every Host, fail to render
// with a message that says what to set.
func TestHelmChartRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, values, want string
	}{
		{"replicas on embedded SQLite", `
replicaCount: 3
autoscaling: {enabled: false}
config:
  server:
    http: {allowed_hosts: [mcp.example.com]}
    state: {sqlite: /data/warden-state.db, postgres: null}
`, "config.server.state.postgres is required with more than one replica"},
		{"autoscaling on embedded SQLite", `
replicaCount: 1
config:
  server:
    http: {allowed_hosts: [mcp.example.com]}
    state: null
`, "config.server.state.postgres is required with more than one replica"},
		{"no allowed hosts", `
config:
  server:
    http: {allowed_hosts: null}
`, "config.server.http.allowed_hosts is required"},
		{"PostgreSQL out of the NetworkPolicy's reach", `
config:
  server:
    http: {allowed_hosts: [mcp.example.com]}
networkPolicy:
  redis: {cidrs: [10.30.0.5/32]}
`, "networkPolicy.postgres.cidrs is required"},
		{"Redis out of the NetworkPolicy's reach", `
config:
  server:
    http: {allowed_hosts: [mcp.example.com]}
  rate_limits: {store: memory}
  cache: {store: memory}
  idempotency: {store: redis, redis_url: "${WARDEN_REDIS_URL}"}
networkPolicy:
  postgres: {cidrs: [10.20.0.0/24]}
`, "networkPolicy.redis.cidrs is required"},
		{"shared Redis out of the NetworkPolicy's reach", `
config:
  server:
    http: {allowed_hosts: [mcp.example.com]}
  rate_limits: {store: memory, redis_url: null}
  cache: {store: memory, redis_url: null}
networkPolicy:
  postgres: {cidrs: [10.20.0.0/24]}
`, "networkPolicy.redis.cidrs is required"},
		{"one audit chain for every replica", `
config:
  server:
    http: {allowed_hosts: [mcp.example.com]}
  audit: {instance: warden-1}
networkPolicy:
  postgres: {cidrs: [10.20.0.0/24]}
  redis: {cidrs: [10.30.0.5/32]}
`, "config.audit.instance must be unset"},
		// A misspelt value would otherwise be ignored, and its default kept.
		{"a misspelt value", `
networkPolicy:
  enable: false
`, "additional properties 'enable' not allowed"},
		// An upstream without a port would open every port of its network.
		{"an upstream without a port", `
networkPolicy:
  upstreams: [{cidr: 10.40.0.0/16}]
`, "missing property 'port'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("helm template: %v; want it refused with %q", err, tc.want)
			}
		})
	}
	// One replica on embedded SQLite is a valid deployment.
	if _, err := render(t, `
replicaCount: 1
autoscaling: {enabled: false}
podDisruptionBudget: {enabled: false}
config:
  server:
    http: {allowed_hosts: [mcp.example.com]}
    state: {sqlite: /data/warden-state.db, postgres: null}
    redis: null
  rate_limits: {store: memory, redis_url: null}
  cache: {store: memory, redis_url: null}
`); err != nil {
		t.Fatalf("one replica on SQLite: %v", err)
	}
}
