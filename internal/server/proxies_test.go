package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
)

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}
	tests := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"no proxy, no header", "203.0.113.5:4000", nil, "203.0.113.5:4000"},
		{"an untrusted peer's header is ignored", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5:4000"},
		{"a trusted proxy's client", "10.1.2.3:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"the rightmost untrusted hop, not what the client wrote", "10.1.2.3:4000", []string{"1.2.3.4, 198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"hops over several headers", "10.1.2.3:4000", []string{"1.2.3.4", "198.51.100.1, 192.0.2.1"}, "198.51.100.1"},
		{"an IPv4-mapped address", "[::ffff:10.1.2.3]:4000", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"garbage is not believed", "10.1.2.3:4000", []string{"198.51.100.1, not-an-ip"}, "10.1.2.3:4000"},
		{"a trusted proxy without a header", "10.1.2.3:4000", nil, "10.1.2.3:4000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientAddr(r, trusted); got != tt.want {
				t.Errorf("clientAddr = %q, want %q", got, tt.want)
			}
		})
	}
}

// consoleServer serves a console with an API key store, behind the
// server's own http.Server handler, on a loopback port.
func consoleServer(t *testing.T, trusted string) (*Server, string) {
	t.Helper()
	yaml := "server:\n  state: {sqlite: state.db}\n"
	if trusted != "" {
		yaml += "  trusted_proxies: [" + trusted + "]\n"
	}
	yaml += "console: {enabled: true}\n"
	cfg, err := config.Parse([]byte(yaml), "warden.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Build(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	hs := httptest.NewServer(srv.HTTPServer(srv.HTTPHandler(srv.HTTPOptions()), srv.log).Handler)
	t.Cleanup(hs.Close)
	return srv, hs.URL
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// failSignIn posts a wrong key to the console's sign-in form, as a client
// at forwardedFor says it is (no header if empty), and returns the status.
func failSignIn(t *testing.T, base, forwardedFor string) int {
	t.Helper()
	resp, err := http.Get(base + "/console/signin")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfInput.FindSubmatch(body)
	if m == nil || len(resp.Cookies()) == 0 {
		t.Fatalf("the sign-in page has no form token or cookie (HTTP %d)", resp.StatusCode)
	}
	form := url.Values{"csrf": {string(m[1])}, "api_key": {"wdn_" + strings.Repeat("B", 43)}}
	req, _ := http.NewRequest(http.MethodPost, base+"/console/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(resp.Cookies()[0])
	if forwardedFor != "" {
		req.Header.Set("X-Forwarded-For", forwardedFor)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// refuseMCP sends an MCP request without credentials, as a client at
// forwardedFor says it is; the server refuses and audits it.
func refuseMCP(t *testing.T, base, forwardedFor string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("X-Forwarded-For", forwardedFor)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("an MCP request without credentials: HTTP %d, want 401", resp.StatusCode)
	}
}

// mcpAddrs are the remote addresses of audited MCP requests.
func mcpAddrs(t *testing.T, srv *Server) []string {
	var out []string
	for _, r := range auditRecords(t, srv) {
		if strings.HasSuffix(r.Method, "/mcp") {
			out = append(out, r.RemoteAddr)
		}
	}
	return out
}

// signinAddrs are the remote addresses of the audited sign-in refusals.
func signinAddrs(t *testing.T, srv *Server) []string {
	var out []string
	for _, r := range auditRecords(t, srv) {
		if r.Method == "console/signin" && r.Phase == audit.Refusal {
			out = append(out, r.RemoteAddr)
		}
	}
	return out
}

// The attack: a client not behind a trusted proxy sends a new
// X-Forwarded-For with every failed sign-in, to escape the limit and to
// put a false address in the audit log. Neither works.
func TestForwardedForSpoofingIgnored(t *testing.T) {
	srv, base := consoleServer(t, "")
	for i := range 10 {
		if got := failSignIn(t, base, "203.0.113."+string(rune('1'+i%9))); got != http.StatusSeeOther {
			t.Fatalf("failed sign-in %d: HTTP %d, want a refusal (303)", i+1, got)
		}
	}
	if got := failSignIn(t, base, "198.51.100.77"); got != http.StatusTooManyRequests {
		t.Fatalf("after 10 failures, a sign-in claiming another address: HTTP %d, want 429", got)
	}
	refuseMCP(t, base, "198.51.100.77")
	if n := len(mcpAddrs(t, srv)); n != 1 {
		t.Fatalf("%d audited MCP refusals, want 1", n)
	}
	for _, a := range append(signinAddrs(t, srv), mcpAddrs(t, srv)...) {
		if !strings.HasPrefix(a, "127.0.0.1:") {
			t.Errorf("a refusal is audited from %q, want the real peer 127.0.0.1", a)
		}
	}
}

// Behind a trusted proxy the forwarded address is the client's: each
// client has its own limit, a client cannot escape its own by prepending
// addresses, and the audit log records it.
func TestForwardedForBehindTrustedProxy(t *testing.T) {
	srv, base := consoleServer(t, "127.0.0.1/32")
	for i := range 10 {
		if got := failSignIn(t, base, "203.0.113.1"); got != http.StatusSeeOther {
			t.Fatalf("failed sign-in %d: HTTP %d, want a refusal (303)", i+1, got)
		}
	}
	if got := failSignIn(t, base, "198.51.100.77, 203.0.113.1"); got != http.StatusTooManyRequests {
		t.Fatalf("the limited client, prepending another address: HTTP %d, want 429", got)
	}
	if got := failSignIn(t, base, "203.0.113.2"); got != http.StatusSeeOther {
		t.Fatalf("another client behind the proxy: HTTP %d, want its own limit (a 303 refusal)", got)
	}
	addrs := signinAddrs(t, srv)
	if len(addrs) != 11 || addrs[0] != "203.0.113.1" || addrs[10] != "203.0.113.2" {
		t.Errorf("refused sign-ins are audited from %q, want 10 × 203.0.113.1 then 203.0.113.2", addrs)
	}
	refuseMCP(t, base, "203.0.113.9")
	if addrs := mcpAddrs(t, srv); len(addrs) != 1 || addrs[0] != "203.0.113.9" {
		t.Errorf("a refused MCP request is audited from %q, want 203.0.113.9", addrs)
	}
}
