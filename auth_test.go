package warden_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/pipeline"
)

// tokens is an Authenticator over a fixed table of bearer tokens.
type tokens map[string]*pipeline.Principal

func (tk tokens) Authenticate(r *http.Request) (*pipeline.Principal, time.Time, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, time.Time{}, warden.Unauthenticated("", "authentication required")
	}
	p, ok := tk[strings.TrimPrefix(h, "Bearer ")]
	if !ok {
		return nil, time.Time{}, warden.Unauthenticated("invalid_token", "the token is not valid")
	}
	c := *p
	return &c, time.Now().Add(time.Hour), nil
}

// authServer serves one tool needing orders.read, which records the
// principal and the Authorization header its handler was given.
func authServer(t *testing.T) (url string, seen chan string) {
	t.Helper()
	seen = make(chan string, 16)
	srv := warden.New(&mcp.Implementation{Name: "t", Version: "1"}, nil)
	srv.AddTool(&warden.Tool{
		Name: "list_orders", Description: "List orders.", Scope: "orders.read",
		Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			auth := ""
			if extra := warden.Request(ctx).GetExtra(); extra != nil && extra.Header != nil {
				auth = extra.Header.Get("Authorization")
			}
			seen <- c.Principal.ID + " " + auth
			return warden.TextResult("ok"), nil
		},
	})
	ts := serve(t, srv, &warden.HTTPOptions{
		Authenticate: tokens{
			"alice-token": {ID: "alice", Scopes: []string{"orders.read"}, AuthMethod: "api_key"},
			"bob-token":   {ID: "bob", Scopes: []string{"orders.read"}, AuthMethod: "api_key"},
			"carol-jwt":   {ID: "carol", Scopes: []string{"profile"}, AuthMethod: "jwt"},
			// The same id as the API key alice, by another method.
			"alice-jwt": {ID: "alice", Scopes: []string{"orders.read"}, AuthMethod: "jwt"},
		},
		ResourceMetadata: &oauthex.ProtectedResourceMetadata{
			Resource:             "https://mcp.example.com/mcp",
			AuthorizationServers: []string{"https://idp.example.com"},
		},
	})
	return ts.URL, seen
}

func bearer(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

func callList(id int) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"list_orders","arguments":{}}}`, id)
}

func TestAuthenticationIsRequired(t *testing.T) {
	base, seen := authServer(t)
	url := base + "/mcp"

	r := post(t, url, initialize, nil)
	if r.status != http.StatusUnauthorized {
		t.Fatalf("no credential: HTTP %d, want 401", r.status)
	}
	ch := r.header.Get("WWW-Authenticate")
	if !strings.HasPrefix(ch, "Bearer ") || !strings.Contains(ch, `resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"`) {
		t.Errorf("challenge = %q", ch)
	}
	if r := post(t, url, initialize, bearer("mallory")); r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("bad token: HTTP %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}

	// RFC 9728 metadata, at the path-suffixed location and the root one.
	for _, path := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		var md oauthex.ProtectedResourceMetadata
		json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || md.Resource != "https://mcp.example.com/mcp" {
			t.Errorf("%s: HTTP %d %+v", path, resp.StatusCode, md)
		}
	}

	// A verified caller gets through, and the handler never sees the
	// credential itself.
	r = post(t, url, initialize, bearer("alice-token"))
	if r.status != http.StatusOK || r.sessionID == "" {
		t.Fatalf("alice initialize: HTTP %d %s", r.status, r.body)
	}
	sid := r.sessionID
	withSession := func(token string) func(*http.Request) {
		return func(req *http.Request) {
			bearer(token)(req)
			req.Header.Set("Mcp-Session-Id", sid)
			req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		}
	}
	post(t, url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, withSession("alice-token"))
	if r := post(t, url, callList(2), withSession("alice-token")); r.status != http.StatusOK {
		t.Fatalf("alice call: HTTP %d %s", r.status, r.body)
	}
	if got := <-seen; got != "alice Bearer verified" {
		t.Errorf("the handler saw %q, want alice and no real credential", got)
	}

	// Alice's session presented with Bob's valid credentials is refused, and
	// so is another principal that merely shares the id "alice".
	for _, other := range []string{"bob-token", "alice-jwt"} {
		if r := post(t, url, callList(3), withSession(other)); r.status != http.StatusForbidden {
			t.Errorf("session replayed under %s: HTTP %d %s", other, r.status, r.body)
		}
	}
	select {
	case got := <-seen:
		t.Errorf("the tool ran for a hijacked session: %s", got)
	default:
	}
}

func TestInsufficientScopeForOAuthClients(t *testing.T) {
	base, seen := authServer(t)
	r := post(t, base+"/mcp", callList(1), func(req *http.Request) {
		bearer("carol-jwt")(req)
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "tools/call")
		req.Header.Set("Mcp-Name", "list_orders")
	})
	if r.status != http.StatusForbidden {
		t.Fatalf("HTTP %d %s, want 403", r.status, r.body)
	}
	ch := r.header.Get("WWW-Authenticate")
	if !strings.Contains(ch, `error="insufficient_scope"`) || !strings.Contains(ch, `scope="orders.read"`) {
		t.Errorf("challenge = %q, want insufficient_scope naming orders.read", ch)
	}
	select {
	case got := <-seen:
		t.Errorf("the tool ran: %s", got)
	default:
	}

	// The same stateless call by a principal holding the scope runs.
	body := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_orders","arguments":{},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	r = post(t, base+"/mcp", body, func(req *http.Request) {
		bearer("bob-token")(req)
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "tools/call")
		req.Header.Set("Mcp-Name", "list_orders")
	})
	if res := r.toolResult(t); res.IsError {
		t.Errorf("bob's stateless call refused: %+v", res.StructuredContent)
	}

	// A list depends on who asks: no intermediary may share it.
	list := `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	r = post(t, base+"/mcp", list, func(req *http.Request) {
		bearer("bob-token")(req)
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "tools/list")
	})
	if r.msg == nil || !strings.Contains(string(r.msg.Result), `"cacheScope":"private"`) {
		t.Errorf("tools/list is not marked private: %s", r.body)
	}
	if got := <-seen; got != "bob Bearer verified" {
		t.Errorf("the handler saw %q", got)
	}
}

// TestLeanPathAuthenticated checks that a stateless call answered on the
// lean path, which skips the SDK's token info, still runs as the verified
// principal, and only as it: a call without a credential, or with one that
// lacks the tool's scope, is refused.
func TestLeanPathAuthenticated(t *testing.T) {
	srv := warden.New(&mcp.Implementation{Name: "t", Version: "1"}, nil)
	srv.AddTool(&warden.Tool{
		Name: "whoami", Description: "Who calls.", Scope: "orders.read", Lean: true,
		Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			return warden.TextResult(c.Principal.ID + " " + c.Principal.AuthMethod), nil
		},
	})
	url := serve(t, srv, &warden.HTTPOptions{Authenticate: tokens{
		"alice-token": {ID: "alice", Scopes: []string{"orders.read"}, AuthMethod: "api_key"},
		"bob-token":   {ID: "bob", Scopes: []string{"profile"}, AuthMethod: "api_key"},
	}}).URL + "/mcp"
	body, headers := statelessCall("whoami", map[string]any{})
	as := func(token string) func(*http.Request) {
		return func(r *http.Request) {
			headers(r)
			if token != "" {
				r.Header.Set("Authorization", "Bearer "+token)
			}
		}
	}
	if res := post(t, url, body, as("alice-token")).toolResult(t); res.IsError || textOf(res) != "alice api_key" {
		t.Errorf("alice's call: got %q (error %v), want it served as alice", textOf(res), res.IsError)
	}
	if r := post(t, url, body, as("")); r.status != http.StatusUnauthorized {
		t.Errorf("a call without a credential: HTTP %d %s, want 401", r.status, r.body)
	}
	if res := post(t, url, body, as("bob-token")).toolResult(t); !res.IsError || !strings.Contains(textOf(res), "PERMISSION_DENIED") {
		t.Errorf("bob's call without the scope: got %q, want PERMISSION_DENIED", textOf(res))
	}
}
