package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/keys"
)

// These tests run warden serve as separate operating-system processes, as
// an operator scaling Warden out would, and check what its callers see: a
// rate limit kept in Redis holds across every process, and a Redis that
// stops turns calls into refusals, never into unlimited calls.

const (
	// wardenHelperEnv carries, as a JSON array, the arguments of the warden
	// command line that TestHelperWardenProcess runs.
	wardenHelperEnv = "WARDEN_CLI_HELPER_ARGS"

	// The limit under test: per principal and tool, rlRate calls a minute
	// after a burst of rlBurst.
	rlRate  = 6
	rlBurst = 5

	rlServers        = 3
	rlWorkers        = 8  // per server
	rlCallsPerWorker = 25 // 3 × 8 × 25 = 600 calls, far beyond the limit

	// rlDeadline bounds every wait on a process: start, health, shutdown.
	rlDeadline = 30 * time.Second
)

// rlRedisURL returns the shared Redis to test against, or skips the test.
func rlRedisURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("WARDEN_TEST_REDIS_URL")
	if u == "" {
		t.Skip("WARDEN_TEST_REDIS_URL is not set; set it (e.g. redis://127.0.0.1:6379/0) to test rate limits shared through Redis by several warden processes")
	}
	return u
}

// TestHelperWardenProcess is not a test: it is one warden process of the
// tests below, which run the test binary again with wardenHelperEnv set.
// It serves until its standard input closes (so it never outlives the test
// that started it) or it is signalled.
func TestHelperWardenProcess(t *testing.T) {
	raw := os.Getenv(wardenHelperEnv)
	if raw == "" {
		t.Skip("a helper: runs warden in a process of its own for the multi-process rate-limit tests")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		t.Fatalf("%s: %v", wardenHelperEnv, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	if code := run(ctx, args, strings.NewReader(""), os.Stdout, os.Stderr); code != exitOK {
		t.Fatalf("warden %s: exit code %d", strings.Join(args, " "), code)
	}
}

// wardenProcess is a warden serve running in a process of its own.
type wardenProcess struct {
	endpoint string // http://127.0.0.1:PORT/mcp
	base     string // http://127.0.0.1:PORT
	log      *lockedBuffer
	exited   chan struct{} // closed when the process has exited
}

// alive reports whether the process is still running.
func (w *wardenProcess) alive() bool {
	select {
	case <-w.exited:
		return false
	default:
		return true
	}
}

// lockedBuffer collects a process's output for assertions and diagnostics.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var endpointLog = regexp.MustCompile(`msg="serving MCP over Streamable HTTP" endpoint=(\S+)`)

// startWarden runs warden serve --config cfgPath on a free loopback port in
// a new process, and returns once the process has said where it serves and
// answers /healthz. The process is stopped when the test ends.
func startWarden(t *testing.T, client *http.Client, cfgPath string) *wardenProcess {
	t.Helper()
	args, _ := json.Marshal([]string{"serve", "--config", cfgPath, "--http", "127.0.0.1:0"})
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWardenProcess$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), wardenHelperEnv+"="+string(args))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &wardenProcess{log: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout = w.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	endpoint := make(chan string, 1)
	go func() {
		defer close(w.exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(w.log, sc.Text())
			if m := endpointLog.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case endpoint <- m[1]:
				default:
				}
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		stdin.Close() // the helper shuts down gracefully when its input ends
		select {
		case <-w.exited:
		case <-time.After(rlDeadline):
			t.Errorf("warden process %d did not stop within %v of its input closing; killing it", cmd.Process.Pid, rlDeadline)
			cmd.Process.Kill()
			<-w.exited
		}
		if t.Failed() {
			t.Logf("output of warden process %d:\n%s", cmd.Process.Pid, w.log)
		}
	})

	select {
	case w.endpoint = <-endpoint:
	case <-w.exited:
		t.Fatalf("warden exited before serving:\n%s", w.log)
	case <-time.After(rlDeadline):
		t.Fatalf("warden did not report its endpoint within %v:\n%s", rlDeadline, w.log)
	}
	w.base = strings.TrimSuffix(w.endpoint, "/mcp")

	// The process logs its endpoint once it listens; /healthz proves it answers.
	deadline := time.Now().Add(rlDeadline)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if code, err := healthz(client, w.base); err == nil && code == http.StatusOK {
			return w
		} else if time.Now().After(deadline) {
			t.Fatalf("%s/healthz did not answer 200 within %v (last: %d, %v):\n%s", w.base, rlDeadline, code, err, w.log)
		}
		select {
		case <-tick.C:
		case <-w.exited:
			t.Fatalf("warden exited:\n%s", w.log)
		}
	}
}

func healthz(client *http.Client, base string) (int, error) {
	resp, err := client.Get(base + "/healthz")
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// rlConfig writes the demo configuration with rate limits kept in the Redis
// at redisURL, tight per principal and tool and generous otherwise, into the
// demo's directory, and returns its path.
func rlConfig(t *testing.T, redisURL string) string {
	t.Helper()
	demoFile := demoConfig(t)
	src, err := os.ReadFile(demoFile)
	if err != nil {
		t.Fatal(err)
	}
	limits := fmt.Sprintf(`rate_limits:
  store: redis
  redis_url: %q
  per_principal_tool: {rate: %d/m, burst: %d}
  per_principal: {rate: 60000/m, burst: 10000}
  per_tool: {rate: 600000/m, burst: 100000}
`, redisURL, rlRate, rlBurst)
	path := filepath.Join(os.Getenv("WARDEN_DEMO_DIR"), fmt.Sprintf("warden-%s.yaml", randomHex(4)))
	if err := os.WriteFile(path, []byte(replaceTopLevel(string(src), "rate_limits", limits)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// replaceTopLevel replaces the top-level YAML block key of doc (its line and
// the indented or blank lines under it) with block, or appends block if doc
// has no such key.
func replaceTopLevel(doc, key, block string) string {
	var out []string
	skipping, replaced := false, false
	for line := range strings.SplitAfterSeq(doc, "\n") {
		top := line != "" && line[0] != ' ' && line[0] != '\t' && strings.TrimSpace(line) != ""
		switch {
		case top && strings.HasPrefix(line, key+":"):
			skipping, replaced = true, true
			out = append(out, block, "\n")
		case skipping && !top:
		default:
			skipping = false
			out = append(out, line)
		}
	}
	if !replaced {
		out = append(out, "\n", block)
	}
	return strings.Join(out, "")
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// createKey creates an API key named name, tenant acme with scope crm.read,
// in the state store of the configuration at cfgPath, and returns it.
func createKey(t *testing.T, cfgPath, name string) string {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	store, err := keys.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	plaintext, k, hash := keys.Generate(name, "acme", []string{"crm.read"}, nil, time.Hour)
	if err := store.Create(t.Context(), k, hash); err != nil {
		t.Fatal(err)
	}
	return plaintext
}

// callOutcome is what a caller saw of one tools/call.
type callOutcome struct {
	ok         bool   // a result that is not an error and holds the customer
	code       string // structuredContent.error_code of an error result
	message    string
	retryAfter int
	other      string          // anything else: transport failure, HTTP error, JSON-RPC error, odd result
	meta       json.RawMessage // the result's _meta, if any
}

func (o callOutcome) String() string {
	switch {
	case o.ok:
		return "success"
	case o.code != "":
		return fmt.Sprintf("%s (retry_after %d): %s", o.code, o.retryAfter, o.message)
	}
	return o.other
}

// callGetCustomer sends one stateless (2026-07-28) tools/call of
// get_customer for C-1002, authenticated with key, as an MCP client would.
func callGetCustomer(ctx context.Context, client *http.Client, endpoint, key string, id int) callOutcome {
	return callTool(ctx, client, endpoint, key, id, "get_customer", map[string]any{"customer_id": "C-1002"}, "Grace Hopper")
}

// callTool sends one stateless (2026-07-28) tools/call, authenticated with
// key (anonymous if key is empty), as an MCP client would. It succeeds only for a result that is not an
// error and whose structured content holds want; a refusal is reported with
// its error_code and retry_after.
func callTool(ctx context.Context, client *http.Client, endpoint, key string, id int, tool string, args map[string]any, want string) callOutcome {
	params, _ := json.Marshal(map[string]any{
		"name":      tool,
		"arguments": args,
		"_meta": map[string]any{
			"io.modelcontextprotocol/protocolVersion":    "2026-07-28",
			"io.modelcontextprotocol/clientCapabilities": map[string]any{},
			"io.modelcontextprotocol/clientInfo":         map[string]any{"name": "cli-test", "version": "1"},
		},
	})
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":%s}`, id, params)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		return callOutcome{other: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", tool)
	if key != "" { // else the call is anonymous
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return callOutcome{other: "transport: " + err.Error()}
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return callOutcome{other: "reading the response: " + err.Error()}
	}
	if resp.StatusCode != http.StatusOK {
		return callOutcome{other: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, data)}
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		data = responseEvent(data, id)
	}
	var msg struct {
		ID     int             `json:"id"`
		Error  json.RawMessage `json:"error"`
		Result *struct {
			IsError           bool            `json:"isError"`
			StructuredContent json.RawMessage `json:"structuredContent"`
			Meta              json.RawMessage `json:"_meta"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &msg); err != nil || msg.ID != id || msg.Result == nil {
		return callOutcome{other: fmt.Sprintf("not the response to request %d: %s", id, data)}
	}
	if !msg.Result.IsError {
		if !bytes.Contains(msg.Result.StructuredContent, []byte(want)) {
			return callOutcome{other: fmt.Sprintf("a result without %s: %s", want, data)}
		}
		return callOutcome{ok: true, meta: msg.Result.Meta}
	}
	var refusal struct {
		Code       string `json:"error_code"`
		Message    string `json:"message"`
		RetryAfter int    `json:"retry_after"`
	}
	if err := json.Unmarshal(msg.Result.StructuredContent, &refusal); err != nil || refusal.Code == "" {
		return callOutcome{other: fmt.Sprintf("an error result without error_code: %s", data)}
	}
	return callOutcome{code: refusal.Code, message: refusal.Message, retryAfter: refusal.RetryAfter}
}

// responseEvent returns the data of the event in an SSE body that carries
// the JSON-RPC response to request id, or the body if none does.
func responseEvent(body []byte, id int) []byte {
	for event := range bytes.SplitSeq(bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")), []byte("\n\n")) {
		var data [][]byte
		for line := range bytes.SplitSeq(event, []byte("\n")) {
			if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
				data = append(data, bytes.TrimPrefix(v, []byte(" ")))
			}
		}
		d := bytes.Join(data, []byte("\n"))
		var m struct {
			ID *int `json:"id"`
		}
		if json.Unmarshal(d, &m) == nil && m.ID != nil && *m.ID == id {
			return d
		}
	}
	return body
}

func newTestClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 2 * rlWorkers}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 10 * time.Second, Transport: tr}
}

// redisClient returns a client of the Redis at url, closed when the test ends.
func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// Three warden processes share one Redis; one API key hammers all three at
// once. Together they admit no more than the limit allows, and every other
// call is refused with RATE_LIMITED and a retry_after.
func TestRateLimitSharedByProcesses(t *testing.T) {
	url := rlRedisURL(t)
	rdb := redisClient(t, url)
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("WARDEN_TEST_REDIS_URL is set but Redis does not answer: %v", err)
	}

	// Warden keys its limits by principal, and a key's principal is its
	// name: a name of this run's own keeps earlier runs' state out.
	principal := "rl-test-" + randomHex(6)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, "warden:rl:*"+principal, 100).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("deleting the test's rate-limit keys: %v", err)
		}
	})
	cfgPath := rlConfig(t, url)
	// Several servers share their durable state in PostgreSQL: one SQLite
	// state file serves one server only.
	onShared(t, cfgPath, "")
	key := createKey(t, cfgPath, principal)

	client := newTestClient(t)
	servers := make([]*wardenProcess, rlServers)
	for i := range servers {
		servers[i] = startWarden(t, client, cfgPath)
	}

	// Elapsed time is measured on Redis's clock, which the limiter's script
	// reads: every admission happens between start and end.
	start, err := rdb.Time(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	var (
		mu        sync.Mutex
		successes = make([]int, rlServers)
		refused   = make([]int, rlServers)
		others    []string
		wg        sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for s, srv := range servers {
		for w := range rlWorkers {
			wg.Go(func() {
				for i := range rlCallsPerWorker {
					o := callGetCustomer(ctx, client, srv.endpoint, key, (s*rlWorkers+w)*rlCallsPerWorker+i+1)
					mu.Lock()
					switch {
					case o.ok:
						successes[s]++
					// A refusal's wait is at most one interval, 60/rlRate seconds.
					case o.code == "RATE_LIMITED" && o.retryAfter >= 1 && o.retryAfter <= 60/rlRate &&
						strings.Contains(o.message, "to get_customer per caller"):
						refused[s]++
					default:
						others = append(others, fmt.Sprintf("server %d: %v", s, o))
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	wall := time.Since(began)
	end, err := rdb.Time(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}

	total, admitted, refusals := rlServers*rlWorkers*rlCallsPerWorker, 0, 0
	for s := range servers {
		t.Logf("server %d (%s): %d admitted, %d refused with RATE_LIMITED", s, servers[s].endpoint, successes[s], refused[s])
		admitted += successes[s]
		refusals += refused[s]
		if successes[s]+refused[s] == 0 {
			t.Errorf("server %d answered none of its calls as expected", s)
		}
	}
	elapsed := end.Sub(start)
	// GCRA from a fresh key admits at most burst + rate × elapsed calls.
	// Elapsed is on the clock the script reads, and spans every call, so
	// the bound is exact: no allowance for clock boundaries is needed.
	limit := rlBurst + int(elapsed*rlRate/time.Minute)
	t.Logf("%d processes admitted %d of %d calls in %v (Redis clock; %v wall); the limit allows at most %d",
		rlServers, admitted, total, elapsed.Round(time.Millisecond), wall.Round(time.Millisecond), limit)
	if len(others) > 0 {
		t.Errorf("%d calls were neither admitted nor refused with RATE_LIMITED, 1 ≤ retry_after ≤ %d and the per-caller limit named; the first: %s",
			len(others), 60/rlRate, others[0])
	}
	if admitted > limit {
		t.Errorf("the processes together admitted %d calls, more than burst %d + %d/m × %v = %d", admitted, rlBurst, rlRate, elapsed, limit)
	}
	if admitted < rlBurst {
		t.Errorf("the processes together admitted %d calls, fewer than the burst of %d", admitted, rlBurst)
	}
	if admitted+refusals != total {
		t.Errorf("admitted %d + refused %d ≠ %d calls made", admitted, refusals, total)
	}
	for s, srv := range servers {
		if !srv.alive() {
			t.Errorf("server %d exited during the test", s)
		}
	}
}

// privateRedisServer runs a redis-server of the test's own on port of
// 127.0.0.1, and returns once it accepts connections, with a function that
// kills it and waits for it to exit. It is killed when the test ends.
func privateRedisServer(t *testing.T, port int) (kill func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		bin = "/usr/bin/redis-server"
		if _, err := os.Stat(bin); err != nil {
			t.Skip("redis-server is not installed; it is needed to test warden with a Redis that stops")
		}
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--logfile", "")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready, done := make(chan struct{}), make(chan struct{})
	var log lockedBuffer
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		waiting := true
		for sc.Scan() {
			fmt.Fprintln(&log, sc.Text())
			if waiting && strings.Contains(strings.ToLower(sc.Text()), "ready to accept connections") {
				close(ready)
				waiting = false
			}
		}
	}()
	var once sync.Once
	kill = func() {
		once.Do(func() {
			cmd.Process.Kill()
			<-done
			cmd.Wait()
		})
	}
	t.Cleanup(kill)
	select {
	case <-ready:
	case <-done:
		kill()
		t.Fatalf("redis-server exited:\n%s", log.String())
	case <-time.After(rlDeadline):
		kill()
		t.Fatalf("redis-server did not start within %v:\n%s", rlDeadline, log.String())
	}
	return kill
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// With Redis gone, warden refuses calls with UNAVAILABLE rather than letting
// them through unlimited or blaming the caller's rate, keeps serving, and
// admits calls again once Redis is back.
func TestRateLimitRedisStopped(t *testing.T) {
	rlRedisURL(t)
	port := freePort(t)
	kill := privateRedisServer(t, port)
	cfgPath := rlConfig(t, fmt.Sprintf("redis://127.0.0.1:%d/0", port))
	key := createKey(t, cfgPath, "rl-test-"+randomHex(6))
	client := newTestClient(t)
	srv := startWarden(t, client, cfgPath)
	ctx := t.Context()

	id := 0
	call := func() callOutcome {
		id++
		return callGetCustomer(ctx, client, srv.endpoint, key, id)
	}
	for range 2 {
		if o := call(); !o.ok {
			t.Fatalf("with Redis running, a call = %v, want success", o)
		}
	}

	kill()
	for range 5 {
		began := time.Now()
		o := call()
		if o.code != "UNAVAILABLE" || !strings.Contains(o.message, "Redis") || o.retryAfter < 1 {
			t.Fatalf("with Redis stopped, a call = %v, want UNAVAILABLE naming Redis, with a retry_after", o)
		}
		t.Logf("with Redis stopped: %v in %v", o, time.Since(began).Round(time.Millisecond))
	}
	if code, err := healthz(client, srv.base); err != nil || code != http.StatusOK || !srv.alive() {
		t.Fatalf("with Redis stopped, /healthz = %d, %v (process alive: %v); want 200", code, err, srv.alive())
	}
	if !strings.Contains(srv.log.String(), "rate limits: Redis failed") {
		t.Errorf("the operator is not told that Redis failed:\n%s", srv.log)
	}

	// Redis returns, empty; after the limiter's cooldown, a call tries it
	// again and succeeds.
	privateRedisServer(t, port)
	deadline := time.Now().Add(rlDeadline)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		o := call()
		if o.ok {
			break
		}
		if o.code != "UNAVAILABLE" {
			t.Fatalf("while Redis comes back, a call = %v, want UNAVAILABLE or success", o)
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls are still refused %v after Redis came back: %v", rlDeadline, o)
		}
		<-tick.C
	}
	t.Logf("calls admitted again after %d calls in all", id)
}
