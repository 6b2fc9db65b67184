package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/internal/keys"
)

func TestMetricsNeedTheirScope(t *testing.T) {
	cfg, _ := ticketFixture(t)
	ctx := context.Background()
	srv, err := Build(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	newKey := func(name string, scopes ...string) string {
		plain, k, hash := keys.Generate(name, "acme", scopes, nil, 0)
		if err := srv.Keys().Create(ctx, k, hash); err != nil {
			t.Fatal(err)
		}
		return plain
	}
	agent, ops := newKey("agent", "tickets.write"), newKey("ops", "warden.metrics")
	ts := httptest.NewServer(srv.HTTPHandler(srv.HTTPOptions()))
	t.Cleanup(ts.Close)

	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_ticket","arguments":{"subject":"hi"},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/mcp", strings.NewReader(body))
	for k, v := range map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
		"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "create_ticket", "Authorization": "Bearer " + agent} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	get := func(path, key string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("metrics without a key: HTTP %d", code)
	}
	if code, _ := get("/metrics", agent); code != http.StatusForbidden {
		t.Errorf("metrics with a key lacking warden.metrics: HTTP %d", code)
	}
	code, text := get("/metrics", ops)
	if code != http.StatusOK || !strings.Contains(text, `warden_calls_total{`) || !strings.Contains(text, `target="create_ticket"`) ||
		!strings.Contains(text, "warden_audit") {
		t.Errorf("metrics: HTTP %d\n%.2000s", code, text)
	}
	if strings.Contains(text, "acme") || strings.Contains(text, agent) {
		t.Error("metrics name a tenant or a key")
	}
	if code, text := get("/readyz", ""); code != http.StatusOK {
		t.Errorf("/readyz: HTTP %d %s", code, text)
	}

	// A request refused by authentication is in the audit log too.
	resp, err = http.Post(ts.URL+"/mcp", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var refused bool
	for _, r := range auditRecords(t, srv) {
		if r.Phase == "refusal" && r.Method == "POST /mcp" && strings.Contains(r.Reason, "HTTP 401") && r.RemoteAddr != "" {
			refused = true
		}
	}
	if resp.StatusCode != http.StatusUnauthorized || !refused {
		t.Errorf("an unauthenticated request (HTTP %d) is not in the audit log", resp.StatusCode)
	}

	// So is one the transport guard refuses (a DNS-rebinding Host).
	req, _ = http.NewRequest(http.MethodPost, ts.URL+"/mcp", strings.NewReader(body))
	req.Host = "attacker.example"
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	refused = false
	for _, r := range auditRecords(t, srv) {
		if r.Phase == "refusal" && strings.Contains(r.Reason, "HTTP 403") && strings.Contains(r.Reason, "attacker.example") {
			refused = true
		}
	}
	if resp.StatusCode != http.StatusForbidden || !refused {
		t.Errorf("a request with a foreign Host (HTTP %d) is not in the audit log", resp.StatusCode)
	}
}
