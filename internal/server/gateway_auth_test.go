package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// headerTransport adds headers to every request a client makes.
type headerTransport map[string]string

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// gatewayJWT is the JWT part of a gateway test's configuration.
const gatewayJWT = `
auth:
  jwt:
    issuer: https://idp.example.com
    audience: https://mcp.example.com/mcp
    jwks_file: jwks.json
`

// jwtGateway builds a gateway whose callers sign in with JWTs, serves it
// over HTTP, and connects a client presenting a JWT of alice's and a
// header of its own. It returns the client and the token.
func jwtGateway(t *testing.T, yaml string) (*mcp.ClientSession, string) {
	t.Helper()
	cfg := fixture(t, yaml)
	writeJWKS(t, filepath.Join(cfg.Dir, "jwks.json"))
	srv, err := Build(t.Context(), cfg, nil)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	ts := httptest.NewServer(srv.HTTPHandler(srv.HTTPOptions()))
	t.Cleanup(ts.Close)
	jwt := signJWT(t, jwa.RS256(), issuerKey(), issuerKid, jwtClaims(time.Now(), "scope", "up.use"))
	hc := &http.Client{Transport: headerTransport{"Authorization": "Bearer " + jwt, "X-Api-Key": "client-own-key"}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(t.Context(),
		&mcp.StreamableClientTransport{Endpoint: ts.URL + "/mcp", HTTPClient: hc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs, jwt
}

// checkNotForwarded fails if any request the upstream received carries the
// client's token or its own header.
func checkNotForwarded(t *testing.T, up *testUpstream, jwt string) {
	t.Helper()
	for _, r := range up.requests() {
		if r.header.Get("X-Api-Key") != "" {
			t.Errorf("%s: the client's X-Api-Key reached the upstream", r.method)
		}
		for k, vs := range r.header {
			for _, v := range vs {
				if strings.Contains(v, jwt) {
					t.Errorf("%s: the client's token reached the upstream in %s", r.method, k)
				}
			}
		}
	}
}

// The upstream sees Warden's own credential, never the client's token
// nor any header the client sent.
func TestGatewayNeverForwardsClientCredentials(t *testing.T) {
	bothUpstreams(t, testGatewayNeverForwardsClientCredentials)
}

func testGatewayNeverForwardsClientCredentials(t *testing.T, opts *mcp.StreamableHTTPOptions) {
	up := newTestUpstreamWith(t, opts)
	t.Setenv("GATEWAY_TEST_UPSTREAM_TOKEN", "warden-static-token")
	cs, jwt := jwtGateway(t, gatewayConfig(up.ts.URL, `    auth: {bearer: "${env:GATEWAY_TEST_UPSTREAM_TOKEN}"}`)+gatewayJWT)
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "up__echo", Arguments: map[string]any{"text": "hi"}})
	if err != nil || res.IsError {
		t.Fatalf("up__echo: %v %+v", err, res)
	}
	calls := 0
	for _, r := range up.requests() {
		if got := r.header.Get("Authorization"); got != "Bearer warden-static-token" {
			t.Errorf("%s: Authorization %q at the upstream, want Warden's own", r.method, got)
		}
		if r.method == "tools/call" {
			calls++
		}
	}
	if calls != 1 {
		t.Errorf("the upstream saw %d tools/call, want 1", calls)
	}
	checkNotForwarded(t, up, jwt)
}

// bothUpstreams runs test against an upstream with sessions, which the
// go-sdk client calls, and a stateless one, which Warden calls itself.
func bothUpstreams(t *testing.T, test func(*testing.T, *mcp.StreamableHTTPOptions)) {
	t.Run("session", func(t *testing.T) { test(t, nil) })
	t.Run("stateless", func(t *testing.T) { test(t, &mcp.StreamableHTTPOptions{Stateless: true}) })
}

// tokenEndpoint is an OAuth authorization server's token endpoint that
// issues Warden its own token (client credentials) and exchanges a
// caller's JWT (RFC 8693) for one of the upstream's audience.
type tokenEndpoint struct {
	ts        *httptest.Server
	mu        sync.Mutex
	exchanges []string // the subject tokens exchanged
}

func newTokenEndpoint(t *testing.T, audience string) *tokenEndpoint {
	e := &tokenEndpoint{}
	e.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok || id != "warden" || secret != "s3cret-client" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		r.ParseForm()
		token := "warden-own"
		switch r.PostForm.Get("grant_type") {
		case "client_credentials":
		case "urn:ietf:params:oauth:grant-type:token-exchange":
			if r.PostForm.Get("audience") != audience || r.PostForm.Get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt" {
				http.Error(w, `{"error":"invalid_target"}`, http.StatusBadRequest)
				return
			}
			subject := r.PostForm.Get("subject_token")
			e.mu.Lock()
			e.exchanges = append(e.exchanges, subject)
			e.mu.Unlock()
			token = "exchanged-for-user"
		default:
			http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": token, "token_type": "Bearer", "expires_in": 300,
			"issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})
	}))
	t.Cleanup(e.ts.Close)
	return e
}

// With token exchange, a call reaches the upstream with a token the
// caller's JWT was exchanged for, with the upstream's audience; Warden's
// own requests carry its client-credentials token; the JWT itself never
// reaches the upstream. A caller without a JWT is refused.
func TestGatewayTokenExchange(t *testing.T) { bothUpstreams(t, testGatewayTokenExchange) }

func testGatewayTokenExchange(t *testing.T, opts *mcp.StreamableHTTPOptions) {
	up := newTestUpstreamWith(t, opts)
	idp := newTokenEndpoint(t, "https://upstream.example.com")
	t.Setenv("GATEWAY_TEST_CLIENT_SECRET", "s3cret-client")
	auth := `    auth:
      token_exchange:
        token_url: ` + idp.ts.URL + `
        client_id: warden
        client_secret: "${env:GATEWAY_TEST_CLIENT_SECRET}"
        audience: https://upstream.example.com
`
	cs, jwt := jwtGateway(t, gatewayConfig(up.ts.URL, auth)+gatewayJWT)
	for range 2 {
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "up__echo", Arguments: map[string]any{"text": "hi"}})
		if err != nil || res.IsError {
			t.Fatalf("up__echo: %v %+v", err, res)
		}
	}
	idp.mu.Lock()
	exchanged := idp.exchanges
	idp.mu.Unlock()
	if len(exchanged) != 1 || exchanged[0] != jwt {
		t.Errorf("the token endpoint exchanged %d tokens, want the caller's JWT once (then cached)", len(exchanged))
	}
	for _, r := range up.requests() {
		want := "Bearer warden-own"
		if r.method == "tools/call" {
			want = "Bearer exchanged-for-user"
		}
		if got := r.header.Get("Authorization"); got != want {
			t.Errorf("%s: Authorization %q at the upstream, want %q", r.method, got, want)
		}
	}
	checkNotForwarded(t, up, jwt)

	// A local caller has no JWT to exchange.
	srv := mustBuild(t, gatewayConfig(up.ts.URL, auth), principal("ada", "acme", "up.use"))
	res, err := session(t, srv).CallTool(context.Background(), &mcp.CallToolParams{Name: "up__echo", Arguments: map[string]any{"text": "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, res); code != "PERMISSION_DENIED" {
		t.Errorf("a caller without a JWT: %s, want PERMISSION_DENIED", code)
	}
}
