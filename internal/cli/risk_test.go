package cli

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/examples/demo"
	"github.com/wardenmcp/warden/internal/approval"
	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/keys"
	"github.com/wardenmcp/warden/internal/server"
)

// demoAgent connects an in-process client to the demo as its local
// principal (acme); answer, if not nil, is the client's elicitation handler
// (the user's answers), and the client advertises elicitation only then.
func demoAgent(t *testing.T, version string, answer func(*mcp.ElicitRequest) *mcp.ElicitResult) (*server.Server, *mcp.ClientSession) {
	t.Helper()
	cfg, err := config.Load(demoConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	srv, err := server.Build(ctx, cfg, &server.Options{Stdio: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	st, ct := mcp.NewInMemoryTransports()
	if _, err := srv.MCP().Connect(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	var opts mcp.ClientOptions
	if answer != nil {
		opts.ElicitationHandler = func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return answer(req), nil
		}
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, &opts).Connect(ctx, ct, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return srv, cs
}

// crm queries the demo's database directly.
func crm(t *testing.T, query string) string {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(os.Getenv(demo.DirEnv), "crm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.QueryRow(query).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func agentCall(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) (code string, out map[string]any) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	out, _ = res.StructuredContent.(map[string]any)
	if res.IsError {
		code, _ = out["error_code"].(string)
		if code == "" {
			code = "ERROR"
		}
	}
	return code, out
}

const ticket3Priority = `SELECT priority FROM support_tickets WHERE id = 3`

// update_ticket_priority asks the user, in their client, before it runs:
// by an input-required result (2026-07-28), or an elicitation/create
// request (2025-11-25).
func TestDemoConfirmation(t *testing.T) {
	for _, version := range []string{"2026-07-28", "2025-11-25"} {
		t.Run(version, func(t *testing.T) { testDemoConfirmation(t, version) })
	}
}

func testDemoConfirmation(t *testing.T, version string) {
	t.Run("confirmed", func(t *testing.T) {
		var asked string
		_, cs := demoAgent(t, version, func(req *mcp.ElicitRequest) *mcp.ElicitResult {
			asked = req.Params.Message
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"confirm": true}}
		})
		if code, out := agentCall(t, cs, "update_ticket_priority", map[string]any{"ticket_id": 3, "priority": "low"}); code != "" {
			t.Fatalf("confirmed call refused: %s %v", code, out)
		}
		if cs.InitializeResult().ProtocolVersion != version {
			t.Fatalf("negotiated %s, want %s", cs.InitializeResult().ProtocolVersion, version)
		}
		for _, want := range []string{"update_ticket_priority", "ticket_id: 3", `priority: "low"`, "Expected effect", `"high"`} {
			if !strings.Contains(asked, want) {
				t.Errorf("the user was asked %q, which does not show %s", asked, want)
			}
		}
		if p := crm(t, ticket3Priority); p != "low" {
			t.Errorf("priority = %s after a confirmed change, want low", p)
		}
	})
	t.Run("declined", func(t *testing.T) {
		_, cs := demoAgent(t, version, func(*mcp.ElicitRequest) *mcp.ElicitResult { return &mcp.ElicitResult{Action: "decline"} })
		if code, _ := agentCall(t, cs, "update_ticket_priority", map[string]any{"ticket_id": 3, "priority": "low"}); code != "APPROVAL_DENIED" {
			t.Fatalf("declined call: %s, want APPROVAL_DENIED", code)
		}
		if p := crm(t, ticket3Priority); p != "high" {
			t.Errorf("priority = %s after a declined change, want high (unchanged)", p)
		}
	})
	t.Run("client cannot ask", func(t *testing.T) {
		_, cs := demoAgent(t, version, nil)
		if code, _ := agentCall(t, cs, "update_ticket_priority", map[string]any{"ticket_id": 3, "priority": "low"}); code != "CONFIRMATION_REQUIRED" {
			t.Fatalf("call from a client without elicitation: %s, want CONFIRMATION_REQUIRED", code)
		}
		if p := crm(t, ticket3Priority); p != "high" {
			t.Errorf("priority = %s, want high (unchanged)", p)
		}
	})
}

// Dry runs change nothing: asked for by the caller, forced by the critical
// tier, and run for approvers when a refund is held.
func TestDemoDryRuns(t *testing.T) {
	srv, cs := demoAgent(t, "", nil)
	closed := `SELECT count(*) FROM support_tickets WHERE status = 'closed'`
	before := crm(t, closed)

	code, out := agentCall(t, cs, "close_ticket", map[string]any{"ticket_id": 3, "dry_run": true})
	dry, _ := out["dry_run"].(map[string]any)
	if code != "" || dry == nil || dry["rows_affected"] != 1.0 {
		t.Fatalf("close_ticket dry run: %s %v, want one row affected", code, out)
	}
	changes, _ := dry["changes"].([]any)
	if len(changes) != 1 || !strings.Contains(lineOf(changes[0]), `"status":"closed"`) || !strings.Contains(lineOf(changes[0]), `"status":"open"`) {
		t.Errorf("the dry run's changes %s do not show status open → closed", lineOf(changes))
	}
	if crm(t, closed) != before {
		t.Fatal("a dry run closed a ticket")
	}

	code, out = agentCall(t, cs, "delete_closed_tickets", map[string]any{})
	dry, _ = out["dry_run"].(map[string]any)
	if code != "" || dry == nil || dry["rows_affected"] != 2.0 {
		t.Fatalf("delete_closed_tickets: %s %v, want a dry run of 2 rows", code, out)
	}
	if crm(t, closed) != before {
		t.Fatal("a dry-run-only tool deleted tickets")
	}

	code, out = agentCall(t, cs, "request_refund", map[string]any{"order_id": "O-5004"})
	id, _ := out["approval_id"].(string)
	if code != "APPROVAL_REQUIRED" || id == "" {
		t.Fatalf("request_refund: %s %v, want APPROVAL_REQUIRED with approval_id", code, out)
	}
	store, err := approval.OpenStore(context.Background(), srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	r, err := store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(r.DryRun), `"refunded"`) || r.Risk != "high" || r.Policy != "risk_policies.high" {
		t.Errorf("the held refund shows approvers dry run %s, tier %q, policy %q", r.DryRun, r.Risk, r.Policy)
	}
	if s := crm(t, `SELECT status FROM orders WHERE id = 'O-5004'`); s == "refunded" {
		t.Fatal("the held refund's dry run refunded the order")
	}
}

// Approvers decide over HTTP with their own credentials, and the web
// console is served beside /mcp, outside the JSON-only transport guard but
// with its own.
func TestDemoApprovalsAPIAndConsoleMount(t *testing.T) {
	cfg, err := config.Load(demoConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	srv, err := server.Build(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts := httptest.NewServer(srv.HTTPHandler(srv.HTTPOptions()))
	defer ts.Close()
	key := func(name string, scopes, groups []string) string {
		plaintext, k, hash := keys.Generate(name, "acme", scopes, groups, time.Hour)
		if err := srv.Keys().Create(ctx, k, hash); err != nil {
			t.Fatal(err)
		}
		return plaintext
	}
	agent := key("agent", []string{"crm.read", "crm.refunds.request", approval.APIScope}, []string{"support"})
	approver := key("approver", []string{approval.APIScope}, []string{"finance"})
	unscoped := key("finance-reader", []string{"crm.read"}, []string{"finance"})

	held := callTool(ctx, ts.Client(), ts.URL+"/mcp", agent, 1, "request_refund", map[string]any{"order_id": "O-5004"}, "")
	id := regexp.MustCompile(`apr_[A-Za-z0-9_-]+`).FindString(held.message)
	if held.code != "APPROVAL_REQUIRED" || id == "" {
		t.Fatalf("request_refund: %v", held)
	}
	api := func(key, method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, ts.URL+approval.APIPrefix+path, strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate") + string(data)
	}
	for _, tt := range []struct {
		name, key, method, path string
		status                  int
		want                    string
	}{
		{"no credential", "", "GET", "", 401, "Bearer"},
		{"a key without the scope", unscoped, "POST", id + "/approve", 403, "insufficient_scope"},
		{"the requester approving itself", agent, "POST", id + "/approve", 403, "PERMISSION_DENIED"},
		{"the approver reads the queue", approver, "GET", "", 200, id},
		{"the approver approves", approver, "POST", id + "/approve", 200, `"state":"approved"`},
	} {
		body := ""
		if tt.method == "POST" {
			body = `{"reason": "eligible"}`
		}
		if status, out := api(tt.key, tt.method, tt.path, body); status != tt.status || !strings.Contains(out, tt.want) {
			t.Errorf("%s: %d %s, want %d with %s", tt.name, status, out, tt.status, tt.want)
		}
	}
	store, _ := srv.Audit()
	audited := false
	store.Scan(ctx, audit.Query{Principal: "approver"}, func(r *audit.Record) error {
		audited = audited || (r.Method == "approvals/approve" && r.AuthMethod == "api_key" && r.Approval == approval.Approved)
		return nil
	})
	if !audited {
		t.Error("the approval over HTTP is not in the audit log")
	}

	// The console's form posts pass the transport guard (which would refuse
	// a form body on /mcp) and meet the console's own CSRF check instead.
	resp, err := ts.Client().PostForm(ts.URL+"/console/signin", url.Values{"api_key": {approver}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("a sign-in without a CSRF token: %d, CSP %q; want the console's 403", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
}

// The audit log tells the question from the confirmed run.
func TestDemoConfirmationIsAudited(t *testing.T) {
	srv, cs := demoAgent(t, "2026-07-28", func(*mcp.ElicitRequest) *mcp.ElicitResult {
		return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"confirm": true}}
	})
	if code, out := agentCall(t, cs, "update_ticket_priority", map[string]any{"ticket_id": 3, "priority": "low"}); code != "" {
		t.Fatalf("confirmed call refused: %s %v", code, out)
	}
	store, _ := srv.Audit()
	var asked, ran []*audit.Record
	store.Scan(context.Background(), audit.Query{Target: "update_ticket_priority"}, func(r *audit.Record) error {
		switch {
		case strings.Contains(r.Reason, "confirmation asked"):
			asked = append(asked, r)
		case strings.Contains(r.Reason, "confirmed by the user") && r.Phase == audit.Outcome:
			ran = append(ran, r)
		}
		return nil
	})
	if len(asked) != 1 || asked[0].Decision != audit.Deny || asked[0].Status != audit.StatusRefused {
		t.Errorf("the question is recorded as %+v, want one held (denied, refused) record", asked)
	}
	if len(ran) != 1 || ran[0].Decision != audit.Allow || ran[0].Status != audit.StatusOK {
		t.Errorf("the confirmed run is recorded as %+v, want one allowed outcome", ran)
	}
}

// explain tells what a call needs before it runs, beside whether it may.
func TestExplainShowsTheRiskRule(t *testing.T) {
	cfgPath := demoConfig(t)
	code, out, errOut := runCLI(t, nil, "keys", "create", "--init", "--config", cfgPath, "--name", "explainer",
		"--scopes", "crm.read,crm.tickets.write,crm.refunds.request", "--tenant", "acme")
	if code != exitOK {
		t.Fatalf("keys create: exit %d\n%s", code, errOut)
	}
	key := strings.TrimSpace(out)
	for tool, want := range map[string]string{
		"request_refund":         "risk: tier high; before it runs, a call needs approval by 1 of finance (risk_policies.high)",
		"update_ticket_priority": "risk: tier write; before it runs, a call needs the caller's own confirmation (tools.update_ticket_priority)",
		"delete_closed_tickets":  "risk: tier critical; before it runs, a call needs dry runs only (risk_policies.critical)",
		"get_customer":           "risk: tier read; before it runs, a call needs nothing",
	} {
		args := map[string]string{"request_refund": `{"order_id":"O-5004"}`, "update_ticket_priority": `{"ticket_id":3,"priority":"low"}`,
			"get_customer": `{"customer_id":"C-1001"}`}[tool]
		if args == "" {
			args = "{}"
		}
		code, out, errOut := runCLI(t, nil, "explain", "--config", cfgPath, "--key", key, "--tool", tool, "--args", args)
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("explain %s (exit %d): want %q in\n%s%s", tool, code, want, out, errOut)
		}
	}
}

// The dry run the risk gate takes for approvers leaves an intent record
// that says it is a dry run: the log never shows the held refund as about
// to run.
func TestHeldCallsDryRunIsAuditedAsOne(t *testing.T) {
	srv, cs := demoAgent(t, "", nil)
	if code, _ := agentCall(t, cs, "request_refund", map[string]any{"order_id": "O-5004"}); code != "APPROVAL_REQUIRED" {
		t.Fatalf("request_refund: %s, want APPROVAL_REQUIRED", code)
	}
	store, _ := srv.Audit()
	intents := 0
	store.Scan(context.Background(), audit.Query{Target: "request_refund"}, func(r *audit.Record) error {
		if r.Phase == audit.Intent {
			intents++
			if r.Reason != "dry run" {
				t.Errorf("an intent to run request_refund (%q) while it is held", r.Reason)
			}
		}
		return nil
	})
	if intents != 1 {
		t.Errorf("%d intent records, want the one of the approvers' dry run", intents)
	}
}
