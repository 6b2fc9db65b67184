package cli

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/internal/anomaly"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/server"
)

// explain decides as the server does: a principal the anomaly rules (or an
// operator) suspended is refused by both, with the same error.
func TestExplainRefusesASuspendedPrincipal(t *testing.T) {
	ctx := context.Background()
	cfgPath := demoConfig(t)
	code, out, errOut := runCLI(t, nil, "keys", "create", "--init", "--config", cfgPath, "--name", "suspect",
		"--scopes", "crm.read", "--tenant", "acme")
	if code != exitOK {
		t.Fatalf("keys create: exit %d\n%s", code, errOut)
	}
	key := strings.TrimSpace(out)
	explain := func(asJSON bool) (int, string) {
		t.Helper()
		args := []string{"explain", "--config", cfgPath, "--key", key, "--tool", "get_customer", "--args", `{"customer_id":"C-1001"}`}
		if asJSON {
			args = append(args, "--json")
		}
		code, out, errOut := runCLI(t, nil, args...)
		return code, out + errOut
	}
	if code, out := explain(false); code != exitOK || !strings.HasPrefix(out, "ALLOWED") {
		t.Fatalf("before the suspension: exit %d\n%s", code, out)
	}

	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	store, err := anomaly.OpenStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = store.Suspend(ctx, "suspect", "too many refusals")
	store.Close()
	if err != nil {
		t.Fatal(err)
	}

	// What the server does with the call.
	srv, err := server.Build(ctx, cfg, &server.Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.HTTPHandler(srv.HTTPOptions()))
	served := callTool(ctx, ts.Client(), ts.URL+"/mcp", key, 1, "get_customer", map[string]any{"customer_id": "C-1001"}, "Ada Lovelace")
	ts.Close()
	srv.Close()
	if served.ok || served.code == "" {
		t.Fatalf("the server did not refuse the suspended principal: %v", served)
	}

	code, out = explain(false)
	if code != exitFailure || !strings.HasPrefix(out, "REFUSED: get_customer") || !strings.Contains(out, "suspended") {
		t.Errorf("explain for a suspended principal (exit %d), want REFUSED saying why:\n%s", code, out)
	}
	code, out = explain(true)
	var ex struct {
		Allowed bool `json:"allowed"`
		Refusal *struct {
			Code    string `json:"error_code"`
			Message string `json:"message"`
		} `json:"refusal"`
	}
	if err := json.Unmarshal([]byte(out), &ex); err != nil {
		t.Fatalf("explain --json: %v\n%s", err, out)
	}
	if code != exitFailure || ex.Allowed || ex.Refusal == nil || ex.Refusal.Code != served.code || ex.Refusal.Message != served.message {
		t.Errorf("explain --json (exit %d) says %s, want the server's refusal %s: %s", code, out, served.code, served.message)
	}
}
