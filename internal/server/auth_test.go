package server

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/wardenmcp/warden/internal/keys"
)

// authConfig declares every way in: API keys (on by default, kept in
// state.db), JWTs from one issuer whose key set is a file, and client
// certificates over HTTPS. The tenant comes from the token's "org" claim.
const authConfig = `
server:
  name: auth-test
  state:
    sqlite: state.db
  http:
    tls:
      cert: tls/server.pem
      key: tls/server-key.pem
      client_ca: tls/client-ca.pem
sources:
  db:
    kind: sqlite
    path: test.db
tools:
  list_accounts:
    description: List the caller's accounts.
    scope: accounts.read
    source: db
    statement: SELECT id, tenant, owner FROM accounts WHERE tenant = :tenant ORDER BY id
    parameters:
      tenant: {type: string, description: The caller's tenant., bind: tenant}
  create_ticket:
    description: Open a support ticket for the caller's tenant.
    scope: tickets.write
    source: db
    mode: write
    statement: INSERT INTO tickets (tenant, subject) VALUES (:tenant, :subject)
    parameters:
      subject: {type: string, description: What the ticket is about., required: true}
      tenant: {type: string, description: The caller's tenant., bind: tenant}
auth:
  jwt:
    issuer: https://idp.example.com
    audience: https://mcp.example.com/mcp
    jwks_file: jwks.json
    claims:
      tenant: org
  mtls:
    principals:
      - subject: billing-agent
        id: billing-agent
        tenant: acme
        scopes: [accounts.read]
`

const (
	authIssuer   = "https://idp.example.com"
	authAudience = "https://mcp.example.com/mcp"
	// authMetadata is where RFC 9728 §3.1 puts the metadata of authAudience.
	authMetadata = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
	issuerKid    = "idp-2026"
)

// accountsOf is what list_accounts must return to each tenant, and nothing
// else.
var accountsOf = map[string][]string{"acme": {"ada", "grace"}, "globex": {"hank", "ivy"}}

// issuerKey is the issuer's signing key, made once per test binary: RSA
// generation is slow.
var issuerKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// authEnv is a server built from authConfig, and what a test needs to
// present credentials to it and to see what it did.
type authEnv struct {
	srv *Server
	db  *sql.DB // the source database, to count tickets
	pki *testPKI
}

func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	cfg := fixture(t, authConfig)
	dbPath := filepath.Join(cfg.Dir, "test.db")
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`
		CREATE TABLE accounts (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, owner TEXT NOT NULL);
		INSERT INTO accounts VALUES (1, 'acme', 'ada'), (2, 'globex', 'hank'), (3, 'acme', 'grace'), (4, 'globex', 'ivy');
		CREATE TABLE tickets (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, subject TEXT NOT NULL);`); err != nil {
		t.Fatal(err)
	}
	writeJWKS(t, filepath.Join(cfg.Dir, "jwks.json"))
	pki := newTestPKI(t, filepath.Join(cfg.Dir, "tls"))

	srv, err := Build(t.Context(), cfg, nil)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return &authEnv{srv: srv, db: db, pki: pki}
}

// serve serves the MCP endpoint over plain HTTP on loopback and returns
// its base URL.
func (e *authEnv) serve(t *testing.T) string {
	t.Helper()
	ts := httptest.NewServer(e.srv.HTTPHandler(e.srv.HTTPOptions()))
	t.Cleanup(ts.Close)
	return ts.URL
}

// apiKey creates an API key in the server's store and returns it.
func (e *authEnv) apiKey(t *testing.T, name, tenant string, scopes ...string) string {
	t.Helper()
	plaintext, k, hash := keys.Generate(name, tenant, scopes, nil, time.Hour)
	if err := e.srv.Keys().Create(t.Context(), k, hash); err != nil {
		t.Fatal(err)
	}
	return plaintext
}

type ticket struct{ tenant, subject string }

// tickets returns every ticket filed, oldest first.
func (e *authEnv) tickets(t *testing.T) []ticket {
	t.Helper()
	rows, err := e.db.Query(`SELECT tenant, subject FROM tickets ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []ticket
	for rows.Next() {
		var tk ticket
		if err := rows.Scan(&tk.tenant, &tk.subject); err != nil {
			t.Fatal(err)
		}
		out = append(out, tk)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkOutcome checks what a call did: want 200 means it ran (a ticket
// filed under tenant, or exactly tenant's accounts listed); anything else
// means nothing ran, whatever the tool.
func (e *authEnv) checkOutcome(t *testing.T, r *reply, want int, tool, subject, tenant string, before []ticket) {
	t.Helper()
	if r.status != want {
		t.Fatalf("HTTP %d, want %d: %s", r.status, want, r.body)
	}
	after := e.tickets(t)
	if want != http.StatusOK || tool != "create_ticket" {
		if len(after) != len(before) {
			t.Fatalf("tickets went from %d to %d: the call ran: %v", len(before), len(after), after[len(before):])
		}
	}
	if want != http.StatusOK {
		return
	}
	out := r.toolOutput(t)
	switch tool {
	case "create_ticket":
		wantTickets := append(slices.Clone(before), ticket{tenant, subject})
		if !slices.Equal(after, wantTickets) {
			t.Errorf("tickets = %v, want %v", after, wantTickets)
		}
		if out.RowsAffected == nil || *out.RowsAffected != 1 {
			t.Errorf("rows_affected = %v, want 1", out.RowsAffected)
		}
	case "list_accounts":
		var owners []string
		for _, row := range out.Rows {
			if row["tenant"] != tenant {
				t.Errorf("%s was shown an account of %v: %v", tenant, row["tenant"], row)
			}
			owners = append(owners, fmt.Sprint(row["owner"]))
		}
		if !slices.Equal(owners, accountsOf[tenant]) {
			t.Errorf("owners listed = %v, want %v", owners, accountsOf[tenant])
		}
	}
}

// TestAuthenticationMatrix presents every kind of credential, good and
// bad, to a server built from a configuration, in stateless 2026-07-28
// calls over HTTP. A refused call must not run: no ticket is filed.
func TestAuthenticationMatrix(t *testing.T) {
	e := newAuthEnv(t)
	base := e.serve(t)
	key := issuerKey()
	now := time.Now()
	valid := jwtClaims(now)
	validJWT := signJWT(t, jwa.RS256(), key, issuerKid, valid)

	// The classic confusion: HMAC keyed with the issuer's public key, which
	// anyone can fetch.
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: mustValue(x509.MarshalPKIXPublicKey(&key.PublicKey))})

	// The valid token's signature over claims granting more than it did.
	parts := strings.Split(signJWT(t, jwa.RS256(), key, issuerKid, jwtClaims(now, "scope", "accounts.read")), ".")
	parts[1] = base64.RawURLEncoding.EncodeToString(mustValue(json.Marshal(jwtClaims(now))))
	tampered := strings.Join(parts, ".")

	unknownKey, _, _ := keys.Generate("never-stored", "acme", []string{"tickets.write"}, nil, 0)

	invalidToken := `error="invalid_token"`
	tests := []struct {
		name   string
		token  string // sent as Authorization: Bearer; "" sends no credential
		query  bool   // send the token as ?access_token= instead
		tool   string
		status int
		// challenge lists what WWW-Authenticate must contain.
		challenge []string
		// tenant is the tenant the call runs for, if it runs.
		tenant string
	}{
		{name: "valid JWT", token: validJWT, tool: "create_ticket", status: 200, tenant: "acme"},
		{name: "JWT of another tenant", tool: "list_accounts", status: 200, tenant: "globex",
			token: signJWT(t, jwa.RS256(), key, issuerKid, jwtClaims(now, "org", "globex", "scope", "accounts.read"))},
		{name: "expired JWT", tool: "create_ticket", status: 401,
			token:     signJWT(t, jwa.RS256(), key, issuerKid, jwtClaims(now, "iat", now.Add(-15*time.Minute).Unix(), "exp", now.Add(-10*time.Minute).Unix())),
			challenge: []string{invalidToken, "has expired"}},
		{name: "JWT not yet valid", tool: "create_ticket", status: 401,
			token:     signJWT(t, jwa.RS256(), key, issuerKid, jwtClaims(now, "nbf", now.Add(10*time.Minute).Unix(), "exp", now.Add(14*time.Minute).Unix())),
			challenge: []string{invalidToken, "not valid yet"}},
		{name: "JWT from another issuer", tool: "create_ticket", status: 401,
			token:     signJWT(t, jwa.RS256(), key, issuerKid, jwtClaims(now, "iss", "https://evil.example.com")),
			challenge: []string{invalidToken, "not issued by a trusted issuer"}},
		{name: "JWT for another audience", tool: "create_ticket", status: 401,
			token:     signJWT(t, jwa.RS256(), key, issuerKid, jwtClaims(now, "aud", "https://other.example.com/mcp")),
			challenge: []string{invalidToken, "not issued for this server"}},
		{name: "JWT living longer than 15m", tool: "create_ticket", status: 401,
			token:     signJWT(t, jwa.RS256(), key, issuerKid, jwtClaims(now, "exp", now.Add(16*time.Minute).Unix())),
			challenge: []string{invalidToken, "lives longer than this server accepts"}},
		{name: "JWT with alg none", tool: "create_ticket", status: 401,
			token:     unsignedJWT(valid),
			challenge: []string{invalidToken, "the access token is invalid"}},
		{name: "JWT signed HS256 with the public key", tool: "create_ticket", status: 401,
			token:     signJWT(t, jwa.HS256(), pubPEM, issuerKid, valid),
			challenge: []string{invalidToken, "the access token is invalid"}},
		{name: "JWT naming an unknown kid", tool: "create_ticket", status: 401,
			token:     signJWT(t, jwa.RS256(), key, "idp-retired", valid),
			challenge: []string{invalidToken, "the access token is invalid"}},
		{name: "JWT with a tampered payload", tool: "create_ticket", status: 401,
			token:     tampered,
			challenge: []string{invalidToken, "the access token is invalid"}},
		{name: "JWT lacking the tool's scope", tool: "create_ticket", status: 403,
			token:     signJWT(t, jwa.RS256(), key, issuerKid, jwtClaims(now, "scope", "accounts.read")),
			challenge: []string{`error="insufficient_scope"`, `scope="tickets.write"`}},
		{name: "valid API key", tool: "create_ticket", status: 200, tenant: "acme",
			token: e.apiKey(t, "acme-bot", "acme", "accounts.read", "tickets.write")},
		{name: "unknown API key", tool: "create_ticket", status: 401,
			token:     unknownKey,
			challenge: []string{invalidToken, "the API key is not valid"}},
		{name: "API key of another tenant", tool: "list_accounts", status: 200, tenant: "globex",
			token: e.apiKey(t, "globex-bot", "globex", "accounts.read")},
		// The guard refuses this before authentication runs.
		{name: "token in the query string", tool: "create_ticket", status: 401,
			token: validJWT, query: true,
			challenge: []string{`error="invalid_request"`}},
		{name: "no credential", tool: "create_ticket", status: 401,
			challenge: []string{`Bearer resource_metadata="` + authMetadata + `"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			endpoint, token := base+"/mcp", tt.token
			if tt.query {
				endpoint += "?access_token=" + url.QueryEscape(token)
				token = ""
			}
			before := e.tickets(t)
			r := mustDo(t, http.DefaultClient, statelessCall(t, endpoint, token, tt.tool, argsFor(tt.tool, tt.name)))
			ch := r.header.Get("WWW-Authenticate")
			for _, want := range tt.challenge {
				if !strings.Contains(ch, want) {
					t.Errorf("WWW-Authenticate = %q, want it to contain %s", ch, want)
				}
			}
			if tt.status != http.StatusOK && !strings.HasPrefix(ch, "Bearer ") {
				t.Errorf("HTTP %d without a Bearer challenge: %q", r.status, ch)
			}
			e.checkOutcome(t, r, tt.status, tt.tool, tt.name, tt.tenant, before)
		})
	}
}

// TestAPIKeyRevocationBitesAtOnce revokes a key through the store between
// two calls: the next call is refused and runs nothing.
func TestAPIKeyRevocationBitesAtOnce(t *testing.T) {
	e := newAuthEnv(t)
	endpoint := e.serve(t) + "/mcp"
	key := e.apiKey(t, "short-lived", "acme", "tickets.write")

	before := e.tickets(t)
	r := mustDo(t, http.DefaultClient, statelessCall(t, endpoint, key, "create_ticket", map[string]any{"subject": "before revocation"}))
	e.checkOutcome(t, r, http.StatusOK, "create_ticket", "before revocation", "acme", before)

	if _, err := e.srv.Keys().Revoke(t.Context(), "short-lived"); err != nil {
		t.Fatal(err)
	}
	before = e.tickets(t)
	r = mustDo(t, http.DefaultClient, statelessCall(t, endpoint, key, "create_ticket", map[string]any{"subject": "after revocation"}))
	e.checkOutcome(t, r, http.StatusUnauthorized, "create_ticket", "after revocation", "", before)
	if ch := r.header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate = %q, want invalid_token", ch)
	}
}

// TestSessionStaysWithItsPrincipal opens a 2025-11-25 session with one API
// key: another valid key cannot use it, and revoking the owner's key shuts
// the owner out of the session at the next request.
func TestSessionStaysWithItsPrincipal(t *testing.T) {
	e := newAuthEnv(t)
	endpoint := e.serve(t) + "/mcp"
	alice := e.apiKey(t, "alice", "acme", "tickets.write")
	bob := e.apiKey(t, "bob", "acme", "tickets.write")

	r := mustDo(t, http.DefaultClient, rpcRequest(t, endpoint, alice, "", "",
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"auth-test","version":"1"}}}`))
	if r.status != http.StatusOK || r.sessionID == "" {
		t.Fatalf("initialize: HTTP %d %s", r.status, r.body)
	}
	sid := r.sessionID
	if r := mustDo(t, http.DefaultClient, rpcRequest(t, endpoint, alice, sid, "2025-11-25", `{"jsonrpc":"2.0","method":"notifications/initialized"}`)); r.status != http.StatusAccepted {
		t.Fatalf("notifications/initialized: HTTP %d %s", r.status, r.body)
	}
	call := func(id int, subject string) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"create_ticket","arguments":{"subject":%q}}}`, id, subject)
	}

	// The steps run in order, in the one session.
	steps := []struct {
		name   string
		token  string
		revoke bool // revoke alice's key first
		status int
	}{
		{"another principal's valid key", bob, false, http.StatusForbidden},
		{"the owner's key", alice, false, http.StatusOK},
		{"the owner's key, revoked", alice, true, http.StatusUnauthorized},
	}
	for i, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			if step.revoke {
				if _, err := e.srv.Keys().Revoke(t.Context(), "alice"); err != nil {
					t.Fatal(err)
				}
			}
			before := e.tickets(t)
			r := mustDo(t, http.DefaultClient, rpcRequest(t, endpoint, step.token, sid, "2025-11-25", call(i+2, step.name)))
			e.checkOutcome(t, r, step.status, "create_ticket", step.name, "acme", before)
		})
	}
}

// TestUnauthenticatedClientsFindTheMetadata follows the challenge an MCP
// client gets without a credential to the RFC 9728 document it names.
func TestUnauthenticatedClientsFindTheMetadata(t *testing.T) {
	e := newAuthEnv(t)
	base := e.serve(t)
	r := mustDo(t, http.DefaultClient, statelessCall(t, base+"/mcp", "", "list_accounts", map[string]any{}))
	if r.status != http.StatusUnauthorized {
		t.Fatalf("HTTP %d, want 401: %s", r.status, r.body)
	}
	ch := r.header.Get("WWW-Authenticate")
	rest, ok := strings.CutPrefix(ch, `Bearer resource_metadata="`)
	if !ok {
		t.Fatalf("WWW-Authenticate = %q, want Bearer resource_metadata=...", ch)
	}
	if strings.Contains(ch, "error=") {
		t.Errorf("a request without a credential got an error code (RFC 6750 §3.1): %q", ch)
	}
	mdURL, _, _ := strings.Cut(rest, `"`)
	if mdURL != authMetadata {
		t.Errorf("resource_metadata = %q, want %q", mdURL, authMetadata)
	}

	// The document is served by this server (which sits behind
	// mcp.example.com in production), at the path the challenge names.
	u, err := url.Parse(mdURL)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(base + u.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md oauthex.ProtectedResourceMetadata
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d, %v", u.Path, resp.StatusCode, err)
	}
	if md.Resource != authAudience || !slices.Equal(md.AuthorizationServers, []string{authIssuer}) {
		t.Errorf("metadata = resource %q, authorization servers %v; want %q, [%s]", md.Resource, md.AuthorizationServers, authAudience, authIssuer)
	}
	for _, scope := range []string{"accounts.read", "tickets.write"} {
		if !slices.Contains(md.ScopesSupported, scope) {
			t.Errorf("scopes_supported = %v, missing %s", md.ScopesSupported, scope)
		}
	}
}

// TestMutualTLS serves HTTPS with the configuration's TLS settings and
// presents client certificates: only a CA-signed certificate mapped to a
// principal gets in.
func TestMutualTLS(t *testing.T) {
	e := newAuthEnv(t)
	tc, err := e.srv.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(e.srv.HTTPHandler(e.srv.HTTPOptions()))
	ts.TLS = tc
	// A refused handshake is the point of one case; keep it out of the log.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	endpoint := ts.URL + "/mcp"

	tests := []struct {
		name string
		cert *tls.Certificate
		tool string
		// status is the HTTP status; refusedAtHandshake allows the TLS
		// handshake to fail instead.
		status             int
		refusedAtHandshake bool
	}{
		{name: "mapped certificate", cert: &e.pki.mapped, tool: "list_accounts", status: 200},
		{name: "unmapped certificate from the trusted CA", cert: &e.pki.unmapped, tool: "create_ticket", status: 403},
		{name: "mapped name from another CA", cert: &e.pki.rogue, tool: "create_ticket", status: 401, refusedAtHandshake: true},
		{name: "no certificate and no bearer", tool: "create_ticket", status: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := e.pki.client(tt.cert)
			t.Cleanup(client.CloseIdleConnections)
			before := e.tickets(t)
			r, err := do(client, statelessCall(t, endpoint, "", tt.tool, argsFor(tt.tool, tt.name)))
			if err != nil {
				if !tt.refusedAtHandshake {
					t.Fatal(err)
				}
				t.Logf("refused during the TLS handshake: %v", err)
				if got := e.tickets(t); len(got) != len(before) {
					t.Errorf("tickets went from %d to %d", len(before), len(got))
				}
				return
			}
			e.checkOutcome(t, r, tt.status, tt.tool, tt.name, "acme", before)
		})
	}

	// A mapped certificate holds only its principal's scopes: the write
	// tool is refused and runs nothing.
	client := e.pki.client(&e.pki.mapped)
	t.Cleanup(client.CloseIdleConnections)
	before := e.tickets(t)
	r := mustDo(t, client, statelessCall(t, endpoint, "", "create_ticket", map[string]any{"subject": "beyond its scopes"}))
	if res := r.toolError(t); res != "PERMISSION_DENIED" {
		t.Errorf("create_ticket with accounts.read only: %s, want PERMISSION_DENIED", res)
	}
	if got := e.tickets(t); len(got) != len(before) {
		t.Errorf("tickets went from %d to %d", len(before), len(got))
	}
}

// argsFor are the arguments of a call to tool; a ticket is filed under
// subject.
func argsFor(tool, subject string) map[string]any {
	if tool == "create_ticket" {
		return map[string]any{"subject": subject}
	}
	return map[string]any{}
}

// jwtClaims are valid claims at now for an acme user allowed both tools;
// pairs override them.
func jwtClaims(now time.Time, pairs ...any) map[string]any {
	c := map[string]any{
		"iss":   authIssuer,
		"aud":   authAudience,
		"sub":   "alice",
		"org":   "acme",
		"scope": "accounts.read tickets.write",
		"iat":   now.Unix(),
		"exp":   now.Add(5 * time.Minute).Unix(),
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		c[pairs[i].(string)] = pairs[i+1]
	}
	return c
}

// signJWT signs claims as a compact JWS with the given algorithm, key and
// key id.
func signJWT(t *testing.T, alg jwa.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	h := jws.NewHeaders()
	if err := h.Set(jws.KeyIDKey, kid); err != nil {
		t.Fatal(err)
	}
	if err := h.Set(jws.TypeKey, "JWT"); err != nil {
		t.Fatal(err)
	}
	tok, err := jws.Sign(mustValue(json.Marshal(claims)), jws.WithKey(alg, key, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

// unsignedJWT is an "alg": "none" token, which no library should make.
func unsignedJWT(claims map[string]any) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(mustValue(json.Marshal(claims))) + "."
}

// writeJWKS publishes the issuer's public key, under issuerKid.
func writeJWKS(t *testing.T, path string) {
	t.Helper()
	k, err := jwk.Import(&issuerKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Set(jwk.KeyIDKey, issuerKid); err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(k); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, mustValue(json.Marshal(set)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// testPKI is a CA that signs the server's certificate and the client
// certificates it trusts, and a rogue CA that it does not trust.
type testPKI struct {
	roots *x509.CertPool // what clients trust to verify the server
	// mapped is named in auth.mtls; unmapped is not; rogue bears the
	// mapped name but comes from the rogue CA.
	mapped, unmapped, rogue tls.Certificate
}

// newTestPKI writes the server's certificate, key and client CA into dir,
// where authConfig looks for them.
func newTestPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca, caKey := newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "Warden Test CA"}, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}, nil, nil)
	rogueCA, rogueKey := newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "Rogue CA"}, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}, nil, nil)
	server, serverKey := newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, caKey)
	client := func(cn string, parent *x509.Certificate, parentKey crypto.Signer) tls.Certificate {
		c, k := newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: cn}, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, parent, parentKey)
		return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k, Leaf: c}
	}

	writePEM(t, filepath.Join(dir, "server.pem"), "CERTIFICATE", server.Raw)
	writePEM(t, filepath.Join(dir, "server-key.pem"), "PRIVATE KEY", mustValue(x509.MarshalPKCS8PrivateKey(serverKey)))
	writePEM(t, filepath.Join(dir, "client-ca.pem"), "CERTIFICATE", ca.Raw)

	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &testPKI{
		roots:    roots,
		mapped:   client("billing-agent", ca, caKey),
		unmapped: client("intruder", ca, caKey),
		rogue:    client("billing-agent", rogueCA, rogueKey),
	}
}

// newCert makes a certificate from tmpl, signed by parent, or self-signed
// if parent is nil.
func newCert(t *testing.T, tmpl, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = mustValue(rand.Int(rand.Reader, big.NewInt(1<<62)))
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return mustValue(x509.ParseCertificate(der)), key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// client returns an HTTPS client that trusts the test CA and presents
// cert, if not nil. It presents cert even where the server's list of
// acceptable CAs does not include its issuer (Go's client would otherwise
// send nothing), as an attacker would.
func (p *testPKI) client(cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: p.roots}
	if cert != nil {
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
}

// statelessCall is a 2026-07-28 tools/call: no session; the protocol
// version and client capabilities travel in every request.
func statelessCall(t *testing.T, endpoint, token, tool string, args map[string]any) *http.Request {
	t.Helper()
	params := mustValue(json.Marshal(map[string]any{
		"name":      tool,
		"arguments": args,
		"_meta": map[string]any{
			"io.modelcontextprotocol/protocolVersion":    "2026-07-28",
			"io.modelcontextprotocol/clientCapabilities": map[string]any{},
		},
	}))
	req := rpcRequest(t, endpoint, token, "", "2026-07-28", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":`+string(params)+`}`)
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", tool)
	return req
}

// rpcRequest posts one JSON-RPC message to endpoint; token, session and
// version are sent as headers when not empty.
func rpcRequest(t *testing.T, endpoint, token, session, version, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	if version != "" {
		req.Header.Set("Mcp-Protocol-Version", version)
	}
	return req
}

// reply is what an HTTP exchange produced.
type reply struct {
	status    int
	header    http.Header
	body      []byte
	sessionID string
}

func do(c *http.Client, req *http.Request) (*reply, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &reply{status: resp.StatusCode, header: resp.Header, body: b, sessionID: resp.Header.Get("Mcp-Session-Id")}, nil
}

func mustDo(t *testing.T, c *http.Client, req *http.Request) *reply {
	t.Helper()
	r, err := do(c, req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// result decodes the tools/call result in r, a JSON body or the first
// event of a stream.
func (r *reply) result(t *testing.T) (isError bool, structured json.RawMessage) {
	t.Helper()
	data := r.body
	if strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		data = nil
		sc := bufio.NewScanner(bytes.NewReader(r.body))
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok && d != "" {
				data = []byte(d)
				break
			}
		}
	}
	var msg struct {
		Result *struct {
			IsError           bool            `json:"isError"`
			StructuredContent json.RawMessage `json:"structuredContent"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &msg); err != nil || msg.Result == nil {
		t.Fatalf("HTTP %d %s: want a tools/call result", r.status, r.body)
	}
	return msg.Result.IsError, msg.Result.StructuredContent
}

// toolOutput is the structured result of a SQL tool.
type toolOutput struct {
	Rows         []map[string]any `json:"rows"`
	RowCount     int              `json:"row_count"`
	Truncated    bool             `json:"truncated"`
	RowsAffected *int64           `json:"rows_affected,omitempty"`
}

// toolOutput decodes the result of a call that ran.
func (r *reply) toolOutput(t *testing.T) toolOutput {
	t.Helper()
	isError, sc := r.result(t)
	if isError {
		t.Fatalf("the call was refused: %s", sc)
	}
	var out toolOutput
	if err := json.Unmarshal(sc, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// toolError returns the error code of a call that was refused.
func (r *reply) toolError(t *testing.T) string {
	t.Helper()
	isError, sc := r.result(t)
	if !isError {
		t.Fatalf("the call ran: %s", sc)
	}
	var e struct {
		Code string `json:"error_code"`
	}
	if err := json.Unmarshal(sc, &e); err != nil {
		t.Fatal(err)
	}
	return e.Code
}

func mustValue[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
