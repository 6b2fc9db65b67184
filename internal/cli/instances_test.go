package cli

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wardenmcp/warden/examples/demo"
	"github.com/wardenmcp/warden/internal/approval"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/keys"
	"github.com/wardenmcp/warden/internal/state/statetest"
)

// These tests run several warden serve processes as one server, on the
// shared PostgreSQL (a schema of the test's own) and Redis (a key prefix of
// the test's own), and address them directly in turn, as a load balancer
// without stickiness would: whatever one instance starts, another must be
// able to finish, and nothing accepted once may be accepted again through
// another.

// demoState is the demo's state line, which the tests below move to
// PostgreSQL.
const demoState = "  state:\n    sqlite: ${WARDEN_DEMO_DIR}/state.db\n"

// onShared rewrites the configuration at path to keep its durable state in
// a PostgreSQL schema of the test's own and, if redisURL is set, its
// short-lived state in Redis under a prefix of the test's own, which it
// returns. Every instance must share the audit secret.
func onShared(t *testing.T, path, redisURL string) (prefix string) {
	t.Helper()
	dsn := statetest.Postgres(t)
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(src)
	if !strings.Contains(doc, demoState) {
		t.Fatalf("%s does not keep its state where the demo does", path)
	}
	shared := fmt.Sprintf("  state:\n    postgres: %q\n", dsn)
	if redisURL != "" {
		prefix = "warden-test-" + randomHex(6) + ":"
		shared += fmt.Sprintf("  redis:\n    url: %q\n    key_prefix: %q\n", redisURL, prefix)
		t.Cleanup(func() {
			rdb := redisClient(t, redisURL)
			ctx := context.Background()
			iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
			for iter.Next(ctx) {
				rdb.Del(ctx, iter.Val())
			}
		})
	}
	doc = strings.Replace(doc, demoState, shared, 1)
	doc = replaceTopLevel(doc, "audit", fmt.Sprintf("audit:\n  secret: %q\n", randomHex(32)))
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return prefix
}

// copyDemo writes the demo configuration into the demo's directory, where
// the test may change it, and returns its path.
func copyDemo(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(demoConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(os.Getenv(demo.DirEnv), "warden.yaml")
	if err := os.WriteFile(path, src, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issueKey creates an API key in the state of the configuration at cfgPath.
func issueKey(t *testing.T, cfgPath, name string, scopes, groups []string) string {
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
	plaintext, k, hash := keys.Generate(name, "acme", scopes, groups, time.Hour)
	if err := store.Create(t.Context(), k, hash); err != nil {
		t.Fatal(err)
	}
	return plaintext
}

// rpcResult is the result of a tools/call as a client reads it.
type rpcResult struct {
	IsError           bool            `json:"isError"`
	StructuredContent json.RawMessage `json:"structuredContent"`
	InputRequests     json.RawMessage `json:"inputRequests"`
	RequestState      string          `json:"requestState"`
}

func (r *rpcResult) code() string {
	var e struct {
		Code string `json:"error_code"`
	}
	json.Unmarshal(r.StructuredContent, &e)
	return e.Code
}

// callRaw sends one stateless (2026-07-28) tools/call with params (name and
// arguments included) and returns its result.
func callRaw(t *testing.T, client *http.Client, endpoint, key string, id int, params map[string]any) *rpcResult {
	t.Helper()
	meta, _ := params["_meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["io.modelcontextprotocol/protocolVersion"] = "2026-07-28"
	meta["io.modelcontextprotocol/clientInfo"] = map[string]any{"name": "instances-test", "version": "1"}
	if meta["io.modelcontextprotocol/clientCapabilities"] == nil {
		meta["io.modelcontextprotocol/clientCapabilities"] = map[string]any{}
	}
	params["_meta"] = meta
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, endpoint, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", params["name"].(string))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("tools/call %s: HTTP %d: %s", params["name"], resp.StatusCode, data)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		data = responseEvent(data, id)
	}
	var msg struct {
		Result *rpcResult      `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(data, &msg); err != nil || msg.Result == nil {
		t.Fatalf("tools/call %s: not a result: %s", params["name"], data)
	}
	return msg.Result
}

// browser is a console user's browser, keeping its cookies by hand: the
// console's cookies are Secure, which a cookie jar would not send to a
// plain-HTTP test server.
type browser struct {
	t       *testing.T
	cookies map[string]string
	client  *http.Client
}

func newBrowser(t *testing.T) *browser {
	return &browser{t: t, cookies: map[string]string{}, client: &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

var csrfValue = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// do sends a request and returns the status, the Location and the body.
func (b *browser) do(method, u string, form url.Values) (int, string, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range b.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c.Value
		}
	}
	return resp.StatusCode, resp.Header.Get("Location"), string(data)
}

// post submits the form of the page at page, with its CSRF token.
func (b *browser) post(page, action string, form url.Values) (int, string, string) {
	b.t.Helper()
	status, _, body := b.do(http.MethodGet, page, nil)
	m := csrfValue.FindStringSubmatch(body)
	if m == nil {
		b.t.Fatalf("GET %s (HTTP %d): no form token", page, status)
	}
	form.Set("csrf", m[1])
	return b.do(http.MethodPost, action, form)
}

func (b *browser) signIn(base, key string) (int, string) {
	status, loc, _ := b.post(base+"/console/signin", base+"/console/signin", url.Values{"api_key": {key}})
	return status, loc
}

// Three instances, one server: a refund requested through the first is
// approved in the console by an operator who signed in through the first
// and decides through the second, retried through the third — it runs
// once — and refused on every instance when retried again. A confirmation
// answered through one instance cannot be replayed through another, and
// failed sign-ins count against one limit whichever instance they reach.
func TestInstancesServeAsOne(t *testing.T) {
	redisURL := rlRedisURL(t)
	cfgPath := copyDemo(t)
	prefix := onShared(t, cfgPath, redisURL)
	src, _ := os.ReadFile(cfgPath)
	limits := "rate_limits:\n  store: redis\n  per_principal_tool: {rate: 60/m, burst: 20}\n"
	if err := os.WriteFile(cfgPath, []byte(replaceTopLevel(string(src), "rate_limits", limits)), 0o600); err != nil {
		t.Fatal(err)
	}
	agent := issueKey(t, cfgPath, "agent-"+randomHex(4), []string{"crm.read", "crm.refunds.request", "crm.tickets.write"}, nil)
	operator := issueKey(t, cfgPath, "finance-"+randomHex(4), []string{"warden.console"}, []string{"finance"})

	client := newTestClient(t)
	inst := make([]*wardenProcess, 3)
	for i := range inst {
		inst[i] = startWarden(t, client, cfgPath)
	}
	for i, w := range inst {
		if strings.Contains(w.log.String(), "would not share") {
			t.Errorf("instance %d warns of unshared state on PostgreSQL and Redis:\n%s", i+1, w.log)
		}
	}
	refunded := func() int {
		db, err := sql.Open("sqlite", filepath.Join(os.Getenv(demo.DirEnv), "crm.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		db.QueryRow(`SELECT count(*) FROM orders WHERE status = 'refunded'`).Scan(&n)
		return n
	}
	before := refunded()
	id := 0
	refund := func(w *wardenProcess, approvalID string) *rpcResult {
		id++
		p := map[string]any{"name": "request_refund", "arguments": map[string]any{"order_id": "O-5004"}}
		if approvalID != "" {
			p["_meta"] = map[string]any{approval.MetaKey: approvalID}
		}
		return callRaw(t, client, w.endpoint, agent, id, p)
	}

	res := refund(inst[0], "")
	apr := regexp.MustCompile(`apr_[A-Za-z0-9_-]+`).FindString(string(res.StructuredContent))
	if res.code() != "APPROVAL_REQUIRED" || apr == "" {
		t.Fatalf("the refund through instance 1: %s, want APPROVAL_REQUIRED with an approval id", res.StructuredContent)
	}

	// The operator signs in through instance 1 and decides through 2.
	b := newBrowser(t)
	if status, loc := b.signIn(inst[0].base, operator); status != http.StatusSeeOther || loc != "/console/approvals" {
		t.Fatalf("signing in through instance 1: HTTP %d to %q", status, loc)
	}
	page := inst[1].base + "/console/approvals/" + apr
	status, loc, _ := b.post(page, page, url.Values{"decision": {"approve"}})
	if status != http.StatusSeeOther || loc != "/console/approvals/"+apr {
		t.Fatalf("approving through instance 2 with the session of instance 1: HTTP %d to %q", status, loc)
	}
	if _, _, body := b.do(http.MethodGet, inst[2].base+loc, nil); !strings.Contains(body, "Approved.") {
		t.Errorf("instance 3 does not show the approval's outcome to the same session")
	}

	if res := refund(inst[2], apr); res.IsError || !strings.Contains(string(res.StructuredContent), "refunded") {
		t.Fatalf("the approved retry through instance 3: %s", res.StructuredContent)
	}
	for i, w := range inst {
		if res := refund(w, apr); res.code() != "APPROVAL_DENIED" {
			t.Errorf("a second retry through instance %d: %s, want APPROVAL_DENIED", i+1, res.StructuredContent)
		}
	}
	if n := refunded(); n != before+1 {
		t.Errorf("refunded orders went from %d to %d, want exactly one more", before, n)
	}

	// A confirmation asked through instance 1 and answered through 2
	// cannot be answered again through 3, nor through 1.
	id++
	ask := callRaw(t, client, inst[0].endpoint, agent, id, map[string]any{
		"name": "update_ticket_priority", "arguments": map[string]any{"ticket_id": 3, "priority": "high"},
		"_meta": map[string]any{"io.modelcontextprotocol/clientCapabilities": map[string]any{"elicitation": map[string]any{}}},
	})
	if ask.RequestState == "" || len(ask.InputRequests) == 0 {
		t.Fatalf("update_ticket_priority through instance 1 did not ask for confirmation: %s", ask.StructuredContent)
	}
	answer := func(w *wardenProcess) *rpcResult {
		id++
		return callRaw(t, client, w.endpoint, agent, id, map[string]any{
			"name": "update_ticket_priority", "arguments": map[string]any{"ticket_id": 3, "priority": "high"},
			"requestState":   ask.RequestState,
			"inputResponses": map[string]any{approval.ConfirmID: map[string]any{"action": "accept", "content": map[string]any{"confirm": true}}},
		})
	}
	if res := answer(inst[1]); res.IsError {
		t.Fatalf("the confirmed call through instance 2: %s", res.StructuredContent)
	}
	for _, i := range []int{2, 0} {
		if res := answer(inst[i]); res.code() != "APPROVAL_DENIED" || !strings.Contains(string(res.StructuredContent), "already used") {
			t.Errorf("the confirmation replayed through instance %d: %s, want APPROVAL_DENIED, already used", i+1, res.StructuredContent)
		}
	}

	// Failed sign-ins spread over the instances share one limit.
	wrong := keys.Marker + strings.Repeat("B", 43)
	for i := range 10 {
		if status, loc := newBrowser(t).signIn(inst[i%3].base, wrong); status != http.StatusSeeOther || !strings.Contains(loc, "refused") {
			t.Fatalf("failed sign-in %d through instance %d: HTTP %d to %q, want a refusal", i+1, i%3+1, status, loc)
		}
	}
	for i, w := range inst {
		if status, _ := newBrowser(t).signIn(w.base, operator); status != http.StatusTooManyRequests {
			t.Errorf("after 10 failures across the instances, a good key through instance %d: HTTP %d, want 429", i+1, status)
		}
	}
	n, err := redisClient(t, redisURL).Keys(t.Context(), prefix+"*").Result()
	if err != nil || len(n) == 0 {
		t.Errorf("no key under the test's prefix %s in Redis (%v): the instances did not use their shared state", prefix, err)
	}

	// Every instance's chain verifies.
	if c, out, errOut := runCLI(t, nil, "audit", "verify", "--config", cfgPath); c != exitOK || strings.Count(out, "verified") < 3 {
		t.Errorf("audit verify (exit %d):\n%s%s", c, out, errOut)
	}
}

// A second server on the same SQLite state is refused, with a message
// naming the holder and what to do; the operator's reading commands still
// work beside the first.
func TestSecondServerOnSQLiteRefused(t *testing.T) {
	cfgPath := demoConfig(t)
	client := newTestClient(t)
	first := startWarden(t, client, cfgPath)

	ctx, cancel := context.WithTimeout(t.Context(), rlDeadline)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"serve", "--config", cfgPath, "--http", "127.0.0.1:0"}, strings.NewReader(""), &out, &errOut)
	if ctx.Err() != nil {
		t.Fatal("a second server on the same state file started serving")
	}
	if code == exitOK || !strings.Contains(errOut.String(), "already serves from") || !strings.Contains(errOut.String(), "server.state.postgres") {
		t.Fatalf("a second server: exit %d, stderr:\n%s", code, errOut.String())
	}
	if o := callGetCustomer(t.Context(), client, first.endpoint, createKey(t, cfgPath, "reader"), 1); !o.ok {
		t.Errorf("the first server after the second was refused: %v", o)
	}
	for _, args := range [][]string{{"audit", "verify", "--config", cfgPath}, {"audit", "query", "--config", cfgPath}} {
		if c, _, e := runCLI(t, nil, args...); c != exitOK {
			t.Errorf("warden %s beside a running server: exit %d: %s", strings.Join(args, " "), c, e)
		}
	}
}
