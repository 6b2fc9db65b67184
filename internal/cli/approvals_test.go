package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/approval"
	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
)

// pendingApproval puts a request by alice, for finance to approve, in the
// demo's state database, and returns the configuration path and its id.
func pendingApproval(t *testing.T) (cfgPath, id string) {
	t.Helper()
	cfgPath = demoConfig(t)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The server made the audit key when it started; approvers record in it.
	if _, err := audit.LoadSecret(cfg); err != nil {
		t.Fatal(err)
	}
	store, err := approval.OpenStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	r := &approval.Request{
		ID: approval.NewID(), Principal: "alice", Tenant: "acme", Tool: "refund_payment", ToolVersion: "1",
		ArgsHash: "h", Args: json.RawMessage(`{"amount":100}`), Summary: "refund 100 to C-1001",
		Groups: []string{"finance"}, Needed: 1, ExpiresAt: time.Now().Add(time.Hour),
	}
	if err := store.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	return cfgPath, r.ID
}

func TestApprovalsCLI(t *testing.T) {
	cfg, id := pendingApproval(t)

	code, out, errOut := runCLI(t, nil, "approvals", "list", "--config", cfg)
	if code != exitOK || !strings.Contains(out, id) || !strings.Contains(out, "refund 100 to C-1001") || !strings.Contains(out, "0/1") {
		t.Fatalf("list: %d %q %q", code, out, errOut)
	}
	code, out, _ = runCLI(t, nil, "approvals", "show", id, "--config", cfg)
	if code != exitOK || !strings.Contains(out, `"amount": 100`) {
		t.Fatalf("show: %d %q", code, out)
	}

	refusals := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"self-approval", []string{"approve", id, "--as", "alice", "--groups", "finance"}, exitFailure, "the requester cannot decide on their own request"},
		{"outside the groups", []string{"approve", id, "--as", "sam", "--groups", "sales"}, exitFailure, "not in any of the request's approver groups"},
		{"no approver", []string{"approve", id, "--groups", "finance"}, exitUsage, "--as PRINCIPAL is required"},
		{"deny without a reason", []string{"deny", id, "--as", "bob", "--groups", "finance"}, exitUsage, "--reason is required"},
		{"unknown id", []string{"approve", "apr_nope", "--as", "bob", "--groups", "finance"}, exitFailure, "no such approval request"},
	}
	for _, tt := range refusals {
		code, _, errOut := runCLI(t, nil, append(append([]string{"approvals"}, tt.args...), "--config", cfg)...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tt.name, code, errOut, tt.code, tt.want)
		}
	}

	code, out, errOut = runCLI(t, nil, "approvals", "approve", id, "--as", "bob", "--groups", "finance,ops", "--reason", "checked", "--config", cfg)
	if code != exitOK || !strings.Contains(out, "Approved "+id) {
		t.Fatalf("approve: %d %q %q", code, out, errOut)
	}
	code, out, _ = runCLI(t, nil, "approvals", "list", "--config", cfg)
	if code != exitOK || strings.Contains(out, id) {
		t.Fatalf("list after approval still shows it as pending: %q", out)
	}
	code, out, _ = runCLI(t, nil, "approvals", "list", "--state", "approved", "--json", "--config", cfg)
	var got []approval.Request
	if err := json.Unmarshal([]byte(out), &got); code != exitOK || err != nil || len(got) != 1 || got[0].Approvals[0].Approver != "bob" {
		t.Fatalf("list --state approved --json: %d %q %v", code, out, err)
	}
}
