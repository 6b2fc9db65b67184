package console_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/console"
)

// The test provider's RSA keys: the one it publishes, and another.
var (
	providerKey = sync.OnceValue(func() *rsa.PrivateKey { return rsaKey() })
	otherKey    = sync.OnceValue(func() *rsa.PrivateKey { return rsaKey() })
)

func rsaKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

const (
	clientID     = "warden-console"
	clientSecret = "the console's client secret, 32+ bytes long"
	callbackPath = "/console/oidc/callback"
)

// idp is a test OpenID provider. Its /authorize signs the user in at once
// and sends the browser back with a code; its /token checks the client,
// the code and the PKCE verifier, and returns an ID token with the claims
// the test chose. Codes may be redeemed again, so that the console's own
// defence against a replayed callback is what a test sees.
type idp struct {
	t   *testing.T
	url string
	now func() time.Time

	mu  sync.Mutex
	cfg idpConfig
	// What it saw and issued.
	authorized   []url.Values // the queries of /authorize
	issued       []string     // codes and tokens: none may reach the audit log
	jwksFetches  int
	badVerifiers int // token requests whose code_verifier did not match
	grants       map[string]grant
}

type idpConfig struct {
	claims map[string]any              // the user's: sub, groups, ...
	edit   func(claims map[string]any) // changes the ID token's claims, the provider's own included
	sign   func(claims map[string]any) string
	deny   string                     // the error /authorize answers with
	keys   map[string]*rsa.PrivateKey // the published keys, by kid
	issuer string                     // the issuer discovery names; "" means its own URL
	broken bool                       // discovery answers 500
}

type grant struct{ nonce, challenge, method, redirect string }

func newIDP(t *testing.T, now func() time.Time) *idp {
	p := &idp{t: t, now: now, grants: map[string]grant{}, cfg: idpConfig{
		claims: map[string]any{"sub": "alice", "groups": []string{"ops"}},
		sign:   signRS256("key-1", providerKey()),
		keys:   map[string]*rsa.PrivateKey{"key-1": providerKey()},
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

// configure changes the provider between requests.
func (p *idp) configure(f func(c *idpConfig)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(&p.cfg)
}

func (p *idp) config() idpConfig {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg
}

func (p *idp) discovery(w http.ResponseWriter, r *http.Request) {
	c := p.config()
	if c.broken {
		http.Error(w, "down for maintenance", http.StatusInternalServerError)
		return
	}
	iss := cmpOr(c.issuer, p.url)
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer": iss, "authorization_endpoint": p.url + "/authorize", "token_endpoint": p.url + "/token", "jwks_uri": p.url + "/jwks",
		"scopes_supported": []string{"openid", "profile", "email", "groups", "offline_access"}, "response_types_supported": []string{"code"},
		"code_challenge_methods_supported": []string{"S256"}, "token_endpoint_auth_methods_supported": []string{"client_secret_basic"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (p *idp) jwks(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.jwksFetches++
	keys := p.cfg.keys
	p.mu.Unlock()
	set := jwk.NewSet()
	for kid, k := range keys {
		pub, err := jwk.Import(&k.PublicKey)
		if err != nil {
			p.t.Error(err)
			return
		}
		pub.Set(jwk.KeyIDKey, kid)
		pub.Set(jwk.AlgorithmKey, jwa.RS256())
		pub.Set(jwk.KeyUsageKey, "sig")
		set.AddKey(pub)
	}
	writeJSON(w, http.StatusOK, set)
}

func (p *idp) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	back, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || q.Get("client_id") != clientID || q.Get("response_type") != "code" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.authorized = append(p.authorized, q)
	v := url.Values{"state": {q.Get("state")}}
	if p.cfg.deny != "" {
		v.Set("error", p.cfg.deny)
		v.Set("error_description", "The user said no <b>thanks</b>")
	} else {
		code := "code-" + rand.Text()
		p.grants[code] = grant{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), method: q.Get("code_challenge_method"), redirect: q.Get("redirect_uri")}
		p.issued = append(p.issued, code)
		v.Set("code", code)
	}
	back.RawQuery = v.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (p *idp) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	// RFC 6749, 2.3.1: the client id and secret are form-encoded first.
	id, secret, ok := r.BasicAuth()
	id, err1 := url.QueryUnescape(id)
	secret, err2 := url.QueryUnescape(secret)
	if !ok || err1 != nil || err2 != nil || id != clientID || secret != clientSecret {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	g, ok := p.grants[r.PostForm.Get("code")]
	if !ok || r.PostForm.Get("grant_type") != "authorization_code" || r.PostForm.Get("redirect_uri") != g.redirect {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	}
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if g.method != "S256" || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		p.badVerifiers++
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "PKCE verification failed"})
		return
	}
	now := p.now()
	claims := map[string]any{"iss": p.url, "aud": clientID, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "nonce": g.nonce}
	maps.Copy(claims, p.cfg.claims)
	if p.cfg.edit != nil {
		p.cfg.edit(claims)
	}
	idToken, access := p.cfg.sign(claims), "access-"+rand.Text()
	p.issued = append(p.issued, idToken, access)
	writeJSON(w, http.StatusOK, map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": 300, "id_token": idToken})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func sign(claims map[string]any, alg jwa.SignatureAlgorithm, key any, kid string) string {
	payload, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	h := jws.NewHeaders()
	h.Set(jws.KeyIDKey, kid)
	tok, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(h)))
	if err != nil {
		panic(err)
	}
	return string(tok)
}

func signRS256(kid string, key *rsa.PrivateKey) func(map[string]any) string {
	return func(claims map[string]any) string { return sign(claims, jwa.RS256(), key, kid) }
}

func unsigned(claims map[string]any) string {
	payload, _ := json.Marshal(claims)
	b64 := base64.RawURLEncoding.EncodeToString
	return b64([]byte(`{"alg":"none","kid":"key-1"}`)) + "." + b64(payload) + "."
}

// newSSO is a console that signs in with p, its provider: members of ops
// may sign in, and members of admins may also manage keys.
func newSSO(t *testing.T, edit ...func(*console.OIDC)) (*fixture, *idp) {
	t.Helper()
	// The redirect URL names the console's address, so the console is
	// built over the fixture's stores once its listener exists.
	var o console.Options
	f := newFixture(t, func(opts *console.Options) { o = *opts })
	p := newIDP(t, f.clock.Now)
	srv := httptest.NewUnstartedServer(nil)
	f.url = "http://" + srv.Listener.Addr().String()
	o.OIDC = &console.OIDC{
		Issuer: p.url, ClientID: clientID, ClientSecret: clientSecret, RedirectURL: f.url + callbackPath,
		ConsoleGroups: []string{"ops"}, KeyGroups: []string{"admins"},
	}
	for _, e := range edit {
		e(o.OIDC)
	}
	srv.Config.Handler = console.New(o)
	srv.Start()
	t.Cleanup(srv.Close)
	return f, p
}

// callback starts single sign-on in b and follows the redirects, across
// the console and the provider, up to the console's callback, which it
// returns unvisited.
func (b *browser) callback() string {
	b.t.Helper()
	c := &http.Client{Jar: b.c.Jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Path == callbackPath {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := c.Get(b.f.url + "/console/oidc/start")
	if err != nil {
		b.t.Fatal(err)
	}
	resp.Body.Close()
	u, err := resp.Location()
	if err != nil || u.Path != callbackPath {
		b.t.Fatalf("starting single sign-on: HTTP %d to %v, want the provider's redirect to the callback", resp.StatusCode, u)
	}
	return u.String()
}

// follow visits u as a browser does, following redirects across the
// console and the provider, and returns the last response and its URL.
func (b *browser) follow(u string) (response, *url.URL) {
	b.t.Helper()
	resp, err := (&http.Client{Jar: b.c.Jar}).Get(u)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(data)}, resp.Request.URL
}

// ssoSignIn signs b in with single sign-on, failing the test if it does not.
func (b *browser) ssoSignIn() response {
	b.t.Helper()
	r, u := b.follow(b.f.url + "/console/oidc/start")
	if r.status != http.StatusOK || u.Path != callbackPath || r.header.Get("Refresh") != "0; url=/console/approvals" {
		b.t.Fatalf("single sign-on: HTTP %d at %s, Refresh %q: %s", r.status, u, r.header.Get("Refresh"), r.alert())
	}
	return r
}

// setCookie returns the cookie named name that r sets.
func (r response) setCookie(name string) *http.Cookie {
	for _, sc := range r.header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(sc); err == nil && c.Name == name {
			return c
		}
	}
	return nil
}

// signins returns the console's sign-in records, refused and not.
func (f *fixture) signins() []*audit.Record {
	f.t.Helper()
	var out []*audit.Record
	for _, rec := range f.records(audit.Query{}) {
		if rec.Method == "console/signin" {
			out = append(out, rec)
		}
	}
	return out
}

// checkNoTokens fails the test if any audit record holds a code or token
// the provider issued.
func (f *fixture) checkNoTokens(p *idp) {
	f.t.Helper()
	p.mu.Lock()
	issued := slices.Clone(p.issued)
	p.mu.Unlock()
	for _, rec := range f.records(audit.Query{}) {
		js, _ := json.Marshal(rec)
		for _, tok := range issued {
			if strings.Contains(string(js), tok) {
				f.t.Errorf("an audit record holds what the provider issued: %s", js)
			}
		}
	}
}

func TestSSOSignIn(t *testing.T) {
	f, p := newSSO(t, func(o *console.OIDC) { o.TenantClaim = "org" })
	b := f.browser()

	form := b.get("/console/signin")
	for _, want := range []string{`<input type="password" id="api_key"`, `<button type="submit">Sign in</button>`,
		`<a href="/console/oidc/start" class="button" id="sso">Sign in with single sign-on</a>`} {
		if !strings.Contains(form.body, want) {
			t.Errorf("the sign-in page lacks %s", want)
		}
	}

	p.configure(func(c *idpConfig) {
		c.claims = map[string]any{"sub": "alice", "org": "acme", "groups": []string{"staff", "ops", "admins"}}
	})
	start := b.get("/console/oidc/start")
	fc := start.setCookie("warden_console_oidc")
	if start.status != http.StatusSeeOther || !strings.HasPrefix(start.location(), p.url+"/authorize?") {
		t.Fatalf("start: HTTP %d to %q, want 303 to the provider", start.status, start.location())
	}
	if fc == nil || !fc.HttpOnly || !fc.Secure || fc.SameSite != http.SameSiteLaxMode || fc.Path != "/console/oidc" || fc.MaxAge != 600 {
		t.Errorf("the flow cookie is %v, want HttpOnly; Secure; SameSite=Lax; Path=/console/oidc; Max-Age=600", fc)
	}
	r, u := b.follow(start.location())
	if r.status != http.StatusOK || u.Path != callbackPath || r.header.Get("Refresh") != "0; url=/console/approvals" ||
		!strings.Contains(r.body, `<a href="/console/approvals" id="continue">`) {
		t.Fatalf("callback: HTTP %d at %s, Refresh %q: %s", r.status, u, r.header.Get("Refresh"), r.alert())
	}
	if c := r.setCookie("warden_console"); c == nil || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/console" || len(c.Value) != 43 {
		t.Errorf("the session cookie is %v, want it as an API key sign-in sets it", c)
	}
	if c := r.setCookie("warden_console_oidc"); c == nil || c.MaxAge >= 0 {
		t.Errorf("the callback left the flow cookie: %v", c)
	}

	p.mu.Lock()
	q := p.authorized[0]
	p.mu.Unlock()
	if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || len(q.Get("nonce")) < 43 || len(q.Get("state")) < 43 ||
		q.Get("scope") != "openid profile email groups" || q.Get("redirect_uri") != f.url+callbackPath {
		t.Errorf("the authorization request: %v", q)
	}

	if got := b.get("/console/approvals"); got.status != http.StatusOK || got.text("signed-in-as") != "alice" {
		t.Errorf("signed in, the queue answers HTTP %d naming %q", got.status, got.text("signed-in-as"))
	}
	if got := b.get("/console/signin"); got.status != http.StatusSeeOther || got.location() != "/console/approvals" {
		t.Errorf("signed in, the sign-in page answers HTTP %d to %q", got.status, got.location())
	}
	created := b.submit("/console/keys", "/console/keys", url.Values{"name": {"ci-bot"}, "tenant": {"acme"}, "scopes": {"crm.read"}})
	if created.status != http.StatusOK || created.text("new-key") == "" {
		t.Errorf("a member of a key group creating a key: HTTP %d (%s)", created.status, created.alert())
	}

	// A member of ops alone may sign in, but not manage keys. A single
	// string is a group too.
	p.configure(func(c *idpConfig) { c.claims = map[string]any{"sub": "bob", "org": "acme", "groups": "ops"} })
	bob := f.browser()
	bob.ssoSignIn()
	refused := bob.submit("/console/keys", "/console/keys", url.Values{"name": {"bob-bot"}, "tenant": {"acme"}, "scopes": {"crm.read"}})
	if refused.status != http.StatusForbidden || f.keyNamed("bob-bot") != nil {
		t.Errorf("a member of ops alone creating a key: HTTP %d", refused.status)
	}

	var who []string
	for _, rec := range f.signins() {
		if rec.Phase == audit.Outcome && rec.Decision == audit.Allow && rec.AuthMethod == "console" && rec.Tenant == "acme" &&
			strings.Contains(rec.Reason, "single sign-on") && strings.HasPrefix(rec.SessionID, "console-") {
			who = append(who, rec.Principal)
		}
	}
	if !slices.Equal(who, []string{"alice", "bob"}) {
		t.Errorf("audited sign-ins of %q, want alice and bob", who)
	}
	if recs := f.records(audit.Query{Target: "ci-bot"}); len(recs) != 1 || recs[0].Principal != "alice" || recs[0].Method != "keys/create" {
		t.Errorf("the key's creation is audited as %+v", recs)
	}
	f.checkNoTokens(p)
}

func TestSSORefusals(t *testing.T) {
	edit := func(f func(claims map[string]any)) func(*fixture, *idp) {
		return func(_ *fixture, p *idp) { p.configure(func(c *idpConfig) { c.edit = f }) }
	}
	deny := func(e string) func(*fixture, *idp) {
		return func(_ *fixture, p *idp) { p.configure(func(c *idpConfig) { c.deny = e }) }
	}
	const (
		unverified = "could not be verified"
		incomplete = "could not be completed"
	)
	tests := []struct {
		name  string
		setup func(f *fixture, p *idp)
		// callback returns the callback b visits; nil means b's own.
		callback func(t *testing.T, f *fixture, b *browser) string
		alert    string // what the sign-in page then says
		reason   string // what the audit record says
	}{
		{name: "a user in no console group", setup: func(_ *fixture, p *idp) {
			p.configure(func(c *idpConfig) { c.claims = map[string]any{"sub": "mallory", "groups": []string{"sales", "admins"}} })
		}, alert: "Your account may not use the console", reason: "none of the console groups"},
		{name: "a user without groups", setup: func(_ *fixture, p *idp) {
			p.configure(func(c *idpConfig) { c.claims = map[string]any{"sub": "mallory"} })
		}, alert: "Your account may not use the console", reason: "none of the console groups"},
		{name: "another audience", setup: edit(func(c map[string]any) { c["aud"] = "another-client" }),
			alert: unverified, reason: "client id (aud)"},
		{name: "several audiences without azp", setup: edit(func(c map[string]any) { c["aud"] = []string{clientID, "another-client"} }),
			alert: unverified, reason: "another client (azp)"},
		{name: "another issuer", setup: edit(func(c map[string]any) { c["iss"] = "https://idp.evil.example" }),
			alert: unverified, reason: "not issued by the configured issuer"},
		{name: "an expired token", setup: func(f *fixture, p *idp) {
			p.configure(func(c *idpConfig) {
				c.edit = func(c map[string]any) {
					c["iat"], c["exp"] = f.clock.Now().Add(-time.Hour).Unix(), f.clock.Now().Add(-2*time.Minute).Unix()
				}
			})
		}, alert: unverified, reason: "has expired"},
		{name: "another nonce", setup: edit(func(c map[string]any) { c["nonce"] = "a-nonce-of-another-sign-in" }),
			alert: unverified, reason: "nonce"},
		{name: "no nonce", setup: edit(func(c map[string]any) { delete(c, "nonce") }),
			alert: unverified, reason: "nonce"},
		{name: "HS256 keyed with the client secret", setup: func(_ *fixture, p *idp) {
			p.configure(func(c *idpConfig) {
				c.sign = func(claims map[string]any) string { return sign(claims, jwa.HS256(), []byte(clientSecret), "key-1") }
			})
		}, alert: unverified, reason: "algorithm the console refuses"},
		{name: "alg none", setup: func(_ *fixture, p *idp) { p.configure(func(c *idpConfig) { c.sign = unsigned }) },
			alert: unverified, reason: "algorithm the console refuses"},
		{name: "a key the provider does not publish", setup: func(_ *fixture, p *idp) {
			p.configure(func(c *idpConfig) { c.sign = signRS256("key-2", otherKey()) })
		}, alert: unverified, reason: "key the provider does not publish"},
		{name: "a forged signature", setup: func(_ *fixture, p *idp) {
			p.configure(func(c *idpConfig) { c.sign = signRS256("key-1", otherKey()) })
		}, alert: unverified, reason: "invalid signature"},
		{name: "the provider denies access", setup: deny("access_denied"), alert: "was denied", reason: "the provider reported access_denied"},
		{name: "a provider error", setup: deny("temporarily_unavailable"), alert: "reported an error", reason: "reported temporarily_unavailable"},
		{name: "a provider error that is not an error code", setup: deny("<script>alert(1)</script>"), alert: "reported an error", reason: "reported an unknown error"},
		{name: "another state (login CSRF)", callback: func(t *testing.T, f *fixture, b *browser) string {
			u, _ := url.Parse(b.callback())
			q := u.Query()
			q.Set("state", strings.Repeat("A", 43))
			u.RawQuery = q.Encode()
			return u.String()
		}, alert: incomplete, reason: "matches no sign-in"},
		{name: "an attacker's callback, without the cookie (login CSRF)", callback: func(t *testing.T, f *fixture, b *browser) string {
			return f.browser().callback()
		}, alert: incomplete, reason: "matches no sign-in"},
		{name: "a tampered cookie", callback: func(t *testing.T, f *fixture, b *browser) string {
			cb := b.callback()
			u, _ := url.Parse(cb)
			for _, c := range b.c.Jar.Cookies(u) {
				if c.Name == "warden_console_oidc" {
					parts := strings.Split(c.Value, ".")
					parts[1] = strings.Repeat("B", 43) // the nonce
					b.c.Jar.SetCookies(u, []*http.Cookie{{Name: c.Name, Value: strings.Join(parts, "."), Path: "/console/oidc"}})
				}
			}
			return cb
		}, alert: incomplete, reason: "matches no sign-in"},
		{name: "a sign-in older than 10 minutes", callback: func(t *testing.T, f *fixture, b *browser) string {
			cb := b.callback()
			f.clock.Advance(10*time.Minute + time.Second)
			return cb
		}, alert: incomplete, reason: "matches no sign-in"},
		{name: "an attacker's code in the user's callback (PKCE)", callback: func(t *testing.T, f *fixture, b *browser) string {
			theirs, _ := url.Parse(f.browser().callback())
			u, _ := url.Parse(b.callback())
			q := u.Query()
			q.Set("code", theirs.Query().Get("code"))
			u.RawQuery = q.Encode()
			return u.String()
		}, alert: unverified, reason: "refused the authorization code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, p := newSSO(t)
			if tt.setup != nil {
				tt.setup(f, p)
			}
			b := f.browser()
			cb := ""
			if tt.callback != nil {
				cb = tt.callback(t, f, b)
			} else {
				cb = b.callback()
			}
			r, u := b.follow(cb)
			if r.status != http.StatusOK || u.Path != "/console/signin" || !strings.Contains(r.alert(), tt.alert) {
				t.Errorf("HTTP %d at %s, alert %q; want the sign-in page saying %q", r.status, u, r.alert(), tt.alert)
			}
			if strings.Contains(r.body, "thanks") || strings.Contains(r.body, "<script>alert") {
				t.Error("the sign-in page quotes the provider's error")
			}
			if got := b.get("/console/approvals"); got.status != http.StatusSeeOther {
				t.Errorf("after a refused sign-in, the queue answers HTTP %d", got.status)
			}
			recs := f.signins()
			if len(recs) != 1 || recs[0].Phase != audit.Refusal || recs[0].Decision != audit.Deny || !strings.Contains(recs[0].Reason, tt.reason) {
				for _, rec := range recs {
					t.Logf("audited: %s %s %s", rec.Phase, rec.Principal, rec.Reason)
				}
				t.Errorf("audited %d sign-ins, want one refusal saying %q", len(recs), tt.reason)
			} else if tt.reason == "none of the console groups" && recs[0].Principal != "mallory" {
				t.Errorf("the refusal names %q, want mallory", recs[0].Principal)
			}
			p.mu.Lock()
			bad := p.badVerifiers
			p.mu.Unlock()
			if pkce := tt.name == "an attacker's code in the user's callback (PKCE)"; pkce && bad != 1 || !pkce && bad != 0 {
				t.Errorf("the token endpoint saw %d wrong code verifiers", bad)
			}
			f.checkNoTokens(p)
		})
	}
}

func TestSSOCallbackIsSingleUse(t *testing.T) {
	f, p := newSSO(t)
	b := f.browser()
	cb := b.callback()
	u, _ := url.Parse(cb)
	stolen := b.c.Jar.Cookies(u)
	if r, _ := b.follow(cb); r.status != http.StatusOK {
		t.Fatalf("the sign-in: HTTP %d (%s)", r.status, r.alert())
	}
	for _, tt := range []struct {
		name    string
		cookies []*http.Cookie
	}{
		{"without the cookie, cleared at the callback", nil},
		{"with the cookie, copied before", stolen},
	} {
		t.Run(tt.name, func(t *testing.T) {
			other := f.browser()
			other.c.Jar.SetCookies(u, tt.cookies)
			r, at := other.follow(cb)
			if at.Path != "/console/signin" || !strings.Contains(r.alert(), "could not be completed") {
				t.Errorf("a replayed callback: HTTP %d at %s (%s)", r.status, at, r.alert())
			}
			if got := other.get("/console/approvals"); got.status != http.StatusSeeOther {
				t.Errorf("a replayed callback made a session: HTTP %d", got.status)
			}
		})
	}
	var reasons []string
	for _, rec := range f.signins() {
		if rec.Phase == audit.Refusal {
			reasons = append(reasons, rec.Reason)
		}
	}
	if len(reasons) != 2 || !strings.Contains(reasons[0], "matches no sign-in") || !strings.Contains(reasons[1], "already completed") {
		t.Errorf("audited refusals %q", reasons)
	}
	f.checkNoTokens(p)
}

func TestSSOKeyRotation(t *testing.T) {
	f, p := newSSO(t)
	f.browser().ssoSignIn()
	fetches := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.jwksFetches
	}
	if n := fetches(); n != 1 {
		t.Fatalf("the keys were fetched %d times, want once", n)
	}

	// The provider rotates its key: an ID token naming a new key has the
	// console fetch the keys again, once they are a minute old.
	f.clock.Advance(time.Minute)
	p.configure(func(c *idpConfig) {
		c.keys = map[string]*rsa.PrivateKey{"key-2": otherKey()}
		c.sign = signRS256("key-2", otherKey())
	})
	f.browser().ssoSignIn()
	if n := fetches(); n != 2 {
		t.Fatalf("after the rotation, the keys were fetched %d times, want twice", n)
	}

	// Key ids the provider never published are refused, and fetch the
	// keys at most once a minute.
	p.configure(func(c *idpConfig) { c.sign = signRS256("key-3", providerKey()) })
	for i, wantFetches := range []int{2, 3} {
		if i > 0 {
			f.clock.Advance(time.Minute)
		}
		r, at := f.browser().follow(f.url + "/console/oidc/start")
		if at.Path != "/console/signin" || !strings.Contains(r.alert(), "could not be verified") {
			t.Errorf("an unknown key: HTTP %d at %s (%s)", r.status, at, r.alert())
		}
		if n := fetches(); n != wantFetches {
			t.Errorf("attempt %d with an unknown key: the keys were fetched %d times in all, want %d", i+1, n, wantFetches)
		}
	}
}

func TestSSOUnavailable(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	tests := []struct {
		name string
		oidc func(o *console.OIDC)
		idp  func(c *idpConfig)
	}{
		{"an unreachable provider", func(o *console.OIDC) { o.Issuer = gone.URL }, nil},
		{"a failing provider", nil, func(c *idpConfig) { c.broken = true }},
		{"a provider naming another issuer", nil, func(c *idpConfig) { c.issuer = "https://idp.evil.example" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, p := newSSO(t, func(o *console.OIDC) {
				if tt.oidc != nil {
					tt.oidc(o)
				}
			})
			if tt.idp != nil {
				p.configure(tt.idp)
			}
			b := f.browser()
			r, at := b.follow(f.url + "/console/oidc/start")
			if r.status != http.StatusOK || at.Path != "/console/signin" || r.text("sso-unavailable") == "" || strings.Contains(r.body, `id="sso"`) {
				t.Errorf("start: HTTP %d at %s; want the sign-in page saying single sign-on is unavailable\n%s", r.status, at, r.body)
			}
			if !strings.Contains(r.text("sso-unavailable"), "unavailable right now") || !strings.Contains(r.body, `id="api_key"`) {
				t.Errorf("the sign-in page: %s", r.body)
			}
			f.signedIn("ops-admin", admin) // API keys still work
			f.clock.Advance(time.Minute)
			if r := b.get("/console/signin"); !strings.Contains(r.body, `id="sso"`) {
				t.Errorf("a minute later, the sign-in page offers no single sign-on:\n%s", r.body)
			}
		})
	}
}

func TestSSOSessionsEnd(t *testing.T) {
	f, _ := newSSO(t)
	b := f.browser()
	b.ssoSignIn()
	// The ID token lived 5 minutes; the session does not end with it.
	for range 3 {
		f.clock.Advance(20 * time.Minute)
		if r := b.get("/console/tools"); r.status != http.StatusOK {
			t.Fatalf("a busy session: HTTP %d", r.status)
		}
	}
	f.clock.Advance(31 * time.Minute)
	if r := b.get("/console/tools"); r.status != http.StatusSeeOther || r.location() != "/console/signin?ended=1" {
		t.Errorf("after 31 idle minutes: HTTP %d to %q, want the session ended", r.status, r.location())
	}
}

func TestSSOFailuresAreLimited(t *testing.T) {
	f, p := newSSO(t)
	p.configure(func(c *idpConfig) { c.claims = map[string]any{"sub": "mallory", "groups": "sales"} })
	for i := range 10 {
		if r, _ := f.browser().follow(f.url + "/console/oidc/start"); !strings.Contains(r.alert(), "may not use the console") {
			t.Fatalf("refused sign-in %d: %q", i+1, r.alert())
		}
	}
	// As failed API key sign-ins are: the same address shares one limit.
	if r, _ := f.browser().follow(f.url + "/console/oidc/start"); !strings.Contains(r.alert(), "Too many failed sign-ins") {
		t.Errorf("after 10 refusals: %q, want the sign-in limited", r.alert())
	}
	if r := f.browser().signIn(f.key("ops-admin", admin)); r.status != http.StatusTooManyRequests {
		t.Errorf("after 10 refused single sign-ons, an API key: HTTP %d, want 429", r.status)
	}
	if n := len(f.signins()); n != 10 {
		t.Errorf("audited %d sign-ins, want the 10 refusals", n)
	}
}
