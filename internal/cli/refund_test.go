package cli

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/examples/demo"
	"github.com/wardenmcp/warden/internal/approval"
)

// The demo's refund waits for finance: the agent's call is held, an
// approver allows exactly that call, the retry runs once, and a second
// retry refunds nothing.
func TestDemoRefundNeedsFinance(t *testing.T) {
	ctx := context.Background()
	_, cs := demoAgent(t, "", nil) // the demo's local principal, at acme
	cfgPath := demoConfigFile
	refund := func(order, id string) (code, msg string) {
		t.Helper()
		p := &mcp.CallToolParams{Name: "request_refund", Arguments: map[string]any{"order_id": order}}
		if id != "" {
			p.Meta = mcp.Meta{approval.MetaKey: id}
		}
		res, err := cs.CallTool(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if !res.IsError {
			return "", lineOf(res.StructuredContent)
		}
		m := res.StructuredContent.(map[string]any)
		return m["error_code"].(string), m["message"].(string)
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

	code, msg := refund("O-5004", "")
	id := regexp.MustCompile(`apr_[A-Za-z0-9_-]+`).FindString(msg)
	if code != "APPROVAL_REQUIRED" || id == "" {
		t.Fatalf("the first call: %s %q, want APPROVAL_REQUIRED with an approval id", code, msg)
	}
	if code, _ := refund("O-5004", id); code != "APPROVAL_REQUIRED" {
		t.Errorf("a retry before approval: %s", code)
	}
	if c, _, errOut := runCLI(t, nil, "approvals", "approve", id, "--config", cfgPath, "--as", "demo-local", "--groups", "finance"); c == exitOK || !strings.Contains(errOut, "own request") {
		t.Errorf("the requester approved its own refund (exit %d): %s", c, errOut)
	}
	if c, out, errOut := runCLI(t, nil, "approvals", "approve", id, "--config", cfgPath, "--as", "acme-finance", "--groups", "finance"); c != exitOK {
		t.Fatalf("approving (exit %d): %s%s", c, out, errOut)
	}
	if code, _ := refund("O-5001", id); code != "APPROVAL_DENIED" {
		t.Errorf("the approval used for another order: %s", code)
	}
	if code, msg := refund("O-5004", id); code != "" || !strings.Contains(msg, "refunded") {
		t.Fatalf("the approved retry: %s %s", code, msg)
	}
	if code, _ := refund("O-5004", id); code != "APPROVAL_DENIED" {
		t.Errorf("a second retry: %s", code)
	}
	if n := refunded(); n != before+1 {
		t.Errorf("refunded orders went from %d to %d, want exactly one more", before, n)
	}

	// Every step is in the audit log: the held call, the approver's decision
	// (on the CLI's own chain), the run, and the refused second retry.
	_, out, _ := runCLI(t, nil, "audit", "query", "--config", cfgPath, "--json")
	for _, want := range []string{`"error_code":"APPROVAL_REQUIRED"`, `"method":"approvals/approve"`, `"principal":"acme-finance"`,
		`"error_code":"APPROVAL_DENIED"`, `"phase":"outcome"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the audit log lacks %s", want)
		}
	}
	if c, out, _ := runCLI(t, nil, "audit", "verify", "--config", cfgPath); c != exitOK {
		t.Errorf("the audit log does not verify:\n%s", out)
	}
}
