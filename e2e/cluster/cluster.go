// Package cluster runs several Warden processes as one server, behind
// HAProxy, for tests: the demo CRM with its state in PostgreSQL and its
// counters in Redis, served by N instances that share nothing else, with
// HAProxy sending requests round-robin (no stickiness) to the healthy ones.
//
//	c := cluster.Start(t, cluster.Options{})
//	resp := c.Post(t, body, c.Key("acme-support"), nil) // through HAProxy
//	c.Kill(t, 1)                                          // SIGKILL instance 1
//	out := c.Warden(t, "audit", "verify")                 // the CLI, on the cluster's configuration
//
// Start skips the test unless WARDEN_TEST_CLUSTER is set (e2e/cluster/run.sh
// sets it, after installing HAProxy), and needs WARDEN_TEST_POSTGRES_URL and
// WARDEN_TEST_REDIS_URL: the cluster gets a database of its own on that
// PostgreSQL server (warden_cluster, created afresh) and a Redis database
// of its own (number 11, emptied). Each response through HAProxy names the
// instance that served it in the X-Served-By header (w0, w1, ...).
package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Options shape a cluster. The zero value is three instances of the demo.
type Options struct {
	// Instances is how many Warden processes serve; zero means 3.
	Instances int
	// Config, if set, edits the configuration every instance runs (YAML
	// text) before the instances start.
	Config func(yaml string) string
}

// Cluster is a running cluster.
type Cluster struct {
	// URL is the MCP endpoint, through HAProxy.
	URL string
	// Keys are the demo's API keys, as the node client tests read them
	// (demo-keys.json's form), and KeysFile a file holding them.
	Keys     []Key
	KeysFile string
	// Postgres is the cluster's database (a DSN); Secret its audit secret.
	Postgres string
	Secret   string
	// Dir holds the demo's data, the configurations and the logs.
	Dir string
	// Bin is the warden binary the instances run.
	Bin string

	instances []*instance
}

// Key is one of the demo's API keys.
type Key struct {
	Name   string   `json:"name"`
	Tenant string   `json:"tenant"`
	Scopes []string `json:"scopes"`
	Groups []string `json:"groups,omitempty"`
	Key    string   `json:"key"`
}

type instance struct {
	name   string
	addr   string
	config string
	cmd    *exec.Cmd
	log    *syncBuffer
	done   chan struct{}
}

// dbName and redisDB are the cluster's own PostgreSQL database and Redis
// database number.
const (
	dbName  = "warden_cluster"
	redisDB = 11
)

// Start starts a cluster and stops it when the test ends.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if os.Getenv("WARDEN_TEST_CLUSTER") == "" {
		t.Skip("WARDEN_TEST_CLUSTER is not set: the cluster tests run from e2e/cluster/run.sh, which installs HAProxy")
	}
	pgURL, redisURL := os.Getenv("WARDEN_TEST_POSTGRES_URL"), os.Getenv("WARDEN_TEST_REDIS_URL")
	if pgURL == "" || redisURL == "" {
		t.Skip("WARDEN_TEST_POSTGRES_URL and WARDEN_TEST_REDIS_URL must both be set for the cluster tests")
	}
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy is not installed (apt-get install haproxy; e2e/cluster/run.sh does)")
	}
	if o.Instances <= 0 {
		o.Instances = 3
	}
	c := &Cluster{Dir: t.TempDir(), Secret: "cluster-audit-secret-0123456789abcdef-shared"}
	c.Bin = os.Getenv("WARDEN_BIN")
	if c.Bin == "" {
		c.Bin = filepath.Join(c.Dir, "warden")
		build := exec.Command("go", "build", "-o", c.Bin, "./cmd/warden")
		build.Dir = repoRoot(t)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building warden: %v\n%s", err, out)
		}
	}
	c.Postgres = freshDatabase(t, pgURL)
	redisCluster := freshRedis(t, redisURL)

	demo := filepath.Join(c.Dir, "demo")
	c.prepareDemo(t, demo)
	cfg := c.config(t, redisCluster)
	if o.Config != nil {
		cfg = o.Config(cfg)
	}

	var backends []string
	for i := range o.Instances {
		in := &instance{name: fmt.Sprintf("w%d", i), addr: freeAddr(t), log: &syncBuffer{}, done: make(chan struct{})}
		in.config = filepath.Join(c.Dir, in.name+".yaml")
		// Each instance writes its own audit chain, named for it.
		if err := os.WriteFile(in.config, []byte(cfg+"\naudit:\n  secret: "+c.Secret+"\n  instance: "+in.name+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c.instances = append(c.instances, in)
		backends = append(backends, fmt.Sprintf("    server %s %s check inter 300ms fall 1 rise 2", in.name, in.addr))
	}
	c.createKeys(t, demo)
	for _, in := range c.instances {
		c.startInstance(t, in, demo)
	}

	front := freeAddr(t)
	hcfg := filepath.Join(c.Dir, "haproxy.cfg")
	conf := fmt.Sprintf(haproxyConfig, front, strings.Join(backends, "\n"))
	if err := os.WriteFile(hcfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	hp := exec.Command(haproxy, "-db", "-f", hcfg)
	hlog := &syncBuffer{}
	hp.Stdout, hp.Stderr = hlog, hlog
	if err := hp.Start(); err != nil {
		t.Fatalf("starting haproxy: %v", err)
	}
	hdone := make(chan struct{})
	go func() { hp.Wait(); close(hdone) }()
	t.Cleanup(func() {
		hp.Process.Signal(syscall.SIGTERM)
		select {
		case <-hdone:
		case <-time.After(5 * time.Second):
			hp.Process.Kill()
			<-hdone
		}
		if t.Failed() {
			t.Logf("haproxy log:\n%s", hlog.String())
		}
	})
	c.URL = "http://" + front + "/mcp"
	waitFor(t, 15*time.Second, "HAProxy to serve", func() error {
		resp, err := http.Get("http://" + front + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	})
	return c
}

// haproxyConfig is HAProxy's configuration: round-robin over the instances,
// no stickiness, instances checked on /healthz, and a request that could
// not be sent to its instance (the connection refused) sent to another. A
// request an instance took and then died on is not resent — it may have
// run: the client sees 502 and decides whether to retry.
const haproxyConfig = `global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    option redispatch
    retries 3
    retry-on conn-failure

frontend mcp
    bind %s
    default_backend warden

backend warden
    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host 127.0.0.1
    http-response set-header X-Served-By %%s
%s
`

// Key returns the demo API key named name.
func (c *Cluster) Key(name string) string {
	for _, k := range c.Keys {
		if k.Name == name {
			return k.Key
		}
	}
	panic("cluster: the demo has no API key named " + name)
}

// Instances reports how many instances the cluster started with.
func (c *Cluster) Instances() int { return len(c.instances) }

// Kill sends SIGKILL to instance i and waits until it is gone.
func (c *Cluster) Kill(t testing.TB, i int) {
	t.Helper()
	in := c.instances[i]
	in.cmd.Process.Signal(syscall.SIGKILL)
	<-in.done
}

// Warden runs the warden CLI with args on instance 0's configuration (the
// cluster's: instances differ only in their audit chain's name) and
// returns its output; it fails the test if the command fails.
func (c *Cluster) Warden(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.warden(c.instances[0].config, args...)
	if err != nil {
		t.Fatalf("warden %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *Cluster) warden(config string, args ...string) (string, error) {
	args = append(args[:len(args):len(args)], "--config", config)
	cmd := exec.Command(c.Bin, args...)
	cmd.Env = append(os.Environ(), "WARDEN_DEMO_DIR="+filepath.Join(c.Dir, "demo"))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		return out.String() + errOut.String(), err
	}
	return out.String(), nil
}

// Response is an MCP response through HAProxy.
type Response struct {
	Status    int
	Header    http.Header
	Body      []byte
	ServedBy  string
	SessionID string
}

// Post posts an MCP request body through HAProxy with the API key given
// (none if empty), and the further headers of edit.
func (c *Cluster) Post(t testing.TB, body, key string, edit func(*http.Request)) (*Response, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.URL, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if edit != nil {
		edit(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b,
		ServedBy: resp.Header.Get("X-Served-By"), SessionID: resp.Header.Get("Mcp-Session-Id")}, nil
}

// JSON returns the JSON-RPC message of r: its body, or its event
// stream's first message.
func (r *Response) JSON() []byte {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(bytes.NewReader(r.Body))
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				return []byte(d)
			}
		}
	}
	return r.Body
}

// prepareDemo creates the demo's data in dir (the CRM database, its
// resources and its keys' names) by running warden demo once.
func (c *Cluster) prepareDemo(t testing.TB, dir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin, "demo", "--dir", dir, "--http", "127.0.0.1:0", "--quiet-keys")
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errLog := &syncBuffer{}
	cmd.Stderr = errLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	served := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "serving the CRM at") {
			served = true
			break
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	go io.Copy(io.Discard, stdout)
	cmd.Wait()
	if !served {
		t.Fatalf("warden demo --dir did not set up the demo:\n%s", errLog.String())
	}
}

// config returns the demo's configuration for the cluster: state in
// PostgreSQL; short-lived shared state (server.redis: confirmations, the
// session relay, ...), rate limits and the cache in Redis; and generous
// default limits (a test of limits sets its own on search_orders).
func (c *Cluster) config(t testing.TB, redisURL string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "demo", "warden.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	replace := func(old, new string) {
		if !strings.Contains(cfg, old) {
			t.Fatalf("the demo configuration no longer holds %q: update e2e/cluster", old)
		}
		cfg = strings.Replace(cfg, old, new, 1)
	}
	replace("    sqlite: ${WARDEN_DEMO_DIR}/state.db", "    postgres: "+quoteYAML(c.Postgres))
	replace("  http:\n    addr: 127.0.0.1:8080\n", "  http:\n    addr: 127.0.0.1:8080\n  redis:\n    url: "+quoteYAML(redisURL)+"\n")
	replace("rate_limits:\n  per_principal_tool: {rate: 60/m, burst: 20}",
		"rate_limits:\n  store: redis\n  redis_url: "+quoteYAML(redisURL)+"\n  per_principal: {rate: 100000/m, burst: 10000}\n  per_principal_tool: {rate: 100000/m, burst: 10000}")
	replace("  search_orders:\n", fmt.Sprintf("  search_orders:\n    rate_limit: {rate: %d/m, burst: %d}\n", SearchOrdersPerMinute, SearchOrdersBurst))
	cfg += "\ncache:\n  store: redis\n  redis_url: " + quoteYAML(redisURL) + "\n"
	return cfg
}

// The rate limit of search_orders in the cluster's configuration, per
// principal: a burst, then a rate per minute.
const (
	SearchOrdersBurst     = 10
	SearchOrdersPerMinute = 60
)

// createKeys creates the demo's API keys in the cluster's store, and
// writes them to KeysFile.
func (c *Cluster) createKeys(t testing.TB, demo string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(demo, "demo-keys.json"))
	if err != nil {
		t.Fatalf("the demo wrote no keys: %v", err)
	}
	var keys []Key
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		args := []string{"keys", "create", "--init", "--name", k.Name, "--tenant", k.Tenant, "--scopes", strings.Join(k.Scopes, ",")}
		if len(k.Groups) > 0 {
			args = append(args, "--groups", strings.Join(k.Groups, ","))
		}
		out, err := c.warden(c.instances[0].config, args...)
		if err != nil {
			t.Fatalf("warden keys create %s: %v\n%s", k.Name, err, out)
		}
		k.Key = strings.TrimSpace(out)
		c.Keys = append(c.Keys, k)
	}
	c.KeysFile = filepath.Join(c.Dir, "keys.json")
	b, _ = json.Marshal(c.Keys)
	if err := os.WriteFile(c.KeysFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) startInstance(t testing.TB, in *instance, demo string) {
	t.Helper()
	cmd := exec.Command(c.Bin, "serve", "--config", in.config, "--http", in.addr, "--log-format", "json")
	cmd.Env = append(os.Environ(), "WARDEN_DEMO_DIR="+demo, "XDG_DATA_HOME="+demo)
	cmd.Stdout, cmd.Stderr = in.log, in.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", in.name, err)
	}
	in.cmd = cmd
	go func() { cmd.Wait(); close(in.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-in.done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-in.done
		}
		if t.Failed() {
			t.Logf("%s log (last 8 KiB):\n%s", in.name, tail(in.log.String(), 8<<10))
		}
	})
	waitFor(t, 30*time.Second, in.name+" to be ready", func() error {
		select {
		case <-in.done:
			t.Fatalf("%s exited:\n%s", in.name, in.log.String())
		default:
		}
		resp, err := http.Get("http://" + in.addr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	})
}

// freshDatabase creates the cluster's database on the server of base,
// dropping what a previous run left, and returns its DSN.
func freshDatabase(t testing.TB, base string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connecting to PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{"DROP DATABASE IF EXISTS " + dbName + " WITH (FORCE)", "CREATE DATABASE " + dbName} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + dbName
	return u.String()
}

// freshRedis empties the cluster's Redis database and returns its URL.
func freshRedis(t testing.TB, base string) string {
	t.Helper()
	o, err := redis.ParseURL(base)
	if err != nil {
		t.Fatalf("WARDEN_TEST_REDIS_URL: %v", err)
	}
	o.DB = redisDB
	rc := redis.NewClient(o)
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rc.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("emptying Redis database %d: %v", redisDB, err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = fmt.Sprintf("/%d", redisDB)
	return u.String()
}

// Audit returns the audit records of the cluster's database that match
// where (an SQL condition on warden_audit), as maps of their columns.
func (c *Cluster) Audit(t testing.TB, columns, where string, args ...any) [][]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT "+columns+" FROM warden_audit WHERE "+where, args...)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]any
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot find the repository")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitFor(t testing.TB, limit time.Duration, what string, ok func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var err error
	for time.Now().Before(deadline) {
		if err = ok(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("waited %s for %s: %v", limit, what, err)
}

func quoteYAML(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// syncBuffer is a buffer a process writes to while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
