package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/internal/approval"
	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/console"
	"github.com/wardenmcp/warden/internal/keys"
	"github.com/wardenmcp/warden/internal/state/statetest"
)

var secret = []byte("the console tests' audit secret, 32+ bytes")

// fixture is a console over real stores in a SQLite file of the test's
// own, served on loopback.
type fixture struct {
	t         *testing.T
	path      string // the SQLite state file
	approvals approval.Store
	audit     audit.Store
	keys      keys.Store
	writer    *audit.Writer
	clock     *statetest.Clock
	url       string
	handler   http.Handler // the console
	// failRecord makes Options.Record fail, as an audit log that accepts
	// no records does.
	failRecord atomic.Bool
}

func newFixture(t *testing.T, edit ...func(*console.Options)) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{t: t, path: statetest.SQLitePath(t), clock: statetest.NewClock(time.Now())}
	cfg := &config.Config{}
	cfg.Server.State.SQLite = f.path
	var err error
	if f.approvals, err = approval.OpenStore(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.approvals.Close() })
	if f.keys, err = keys.Open(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.keys.Close() })
	if f.audit, err = audit.Open(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.audit.Close() })
	if f.writer, err = audit.NewWriter(f.audit, secret, "console-test", audit.WriterOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.writer.Close() }) // before the store closes

	o := console.Options{
		Approvals: f.approvals, Audit: f.audit, AuditSecret: secret, Keys: f.keys,
		Tools: []console.Tool{{
			Name: "request_refund", Title: "Request a refund", Description: "Refund a paid order", Scope: "billing.refund",
			Mode: "write", Risk: "high", Version: "2", Approval: "finance, 1 of", RateLimit: "10/min",
		}},
		Record: func(ctx context.Context, r *audit.Record) error {
			if f.failRecord.Load() {
				return errors.New("the audit log accepts no records")
			}
			return f.writer.Write(ctx, r)
		},
		Now: f.clock.Now,
	}
	for _, e := range edit {
		e(&o)
	}
	f.handler = console.New(o)
	srv := httptest.NewServer(f.handler)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// behindWarden serves f's console as the server does: mounted at /console/
// in Warden's HTTP handler, behind its transport guard.
func (f *fixture) behindWarden() {
	f.t.Helper()
	srv := httptest.NewServer(warden.New(&mcp.Implementation{Name: "console-test", Version: "1"}, nil).
		HTTPHandler(&warden.HTTPOptions{Mounts: map[string]http.Handler{"/console/": f.handler}}))
	f.t.Cleanup(srv.Close)
	f.url = srv.URL
}

// key creates an API key and returns it.
func (f *fixture) key(name string, scopes []string, groups ...string) string {
	f.t.Helper()
	return f.keyIn("acme", name, scopes, groups...)
}

// keyIn is key for a principal of tenant.
func (f *fixture) keyIn(tenant, name string, scopes []string, groups ...string) string {
	f.t.Helper()
	plaintext, k, hash := keys.Generate(name, tenant, scopes, groups, 0)
	if err := f.keys.Create(context.Background(), k, hash); err != nil {
		f.t.Fatal(err)
	}
	return plaintext
}

var (
	consoleOnly = []string{console.ScopeConsole}
	admin       = []string{console.ScopeConsole, console.ScopeKeys}
)

// request puts a pending request by principal, for group to approve, in the
// queue.
func (f *fixture) request(principal string, needed int, group string) *approval.Request {
	f.t.Helper()
	r := &approval.Request{
		ID: approval.NewID(), Principal: principal, Tenant: "acme", Tool: "request_refund", ToolVersion: "2",
		ArgsHash: "h1", Args: json.RawMessage(`{"order_id":"O-5004","amount_cents":23450}`),
		Summary: "refund O-5004 <in full>", Groups: []string{group}, Needed: needed,
		Risk: "high", Policy: "risk_policies.high", DryRun: json.RawMessage(`{"rows_affected":1,"changes":[{"table":"orders","op":"update","before":{"id":"O-5004","status":"paid"},"after":{"id":"O-5004","status":"refunded"}}]}`),
		ExpiresAt: time.Now().Add(time.Hour),
	}
	if err := f.approvals.Create(context.Background(), r); err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *fixture) state(id string) string {
	f.t.Helper()
	r, err := f.approvals.Get(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return r.State
}

// records returns the audit records q selects, oldest first.
func (f *fixture) records(q audit.Query) []*audit.Record {
	f.t.Helper()
	var out []*audit.Record
	if err := f.audit.Scan(context.Background(), q, func(r *audit.Record) error { out = append(out, r); return nil }); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// browser is one browser: a cookie jar, following no redirects so that
// tests see them.
type browser struct {
	t *testing.T
	f *fixture
	c *http.Client
}

func (f *fixture) browser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return &browser{t: f.t, f: f, c: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type response struct {
	status int
	header http.Header
	body   string
}

// location is where a redirect points.
func (r response) location() string { return r.header.Get("Location") }

// text returns the text of the element with id, unescaped, or "".
func (r response) text(id string) string {
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)`).FindStringSubmatch(r.body)
	if m == nil {
		return ""
	}
	return strings.TrimSpace(html.UnescapeString(m[1]))
}

// role returns the texts of the elements with role, tags stripped.
func (r response) role(role string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`(?s)role="`+role+`"[^>]*>(.*?)</p>`).FindAllStringSubmatch(r.body, -1) {
		out = append(out, html.UnescapeString(regexp.MustCompile(`<[^>]+>`).ReplaceAllString(m[1], "")))
	}
	return out
}

func (r response) alert() string { return strings.Join(r.role("alert"), " ") }

func (b *browser) do(method, path string, form url.Values, header http.Header) response {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.f.url+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(data)}
}

func (b *browser) get(path string) response { return b.do(http.MethodGet, path, nil, nil) }

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of the forms of the page at path.
func (b *browser) csrf(path string) string {
	b.t.Helper()
	r := b.get(path)
	m := csrfField.FindStringSubmatch(r.body)
	if m == nil {
		b.t.Fatalf("GET %s (HTTP %d): no csrf field in\n%s", path, r.status, r.body)
	}
	return m[1]
}

// submit posts form, with the CSRF token of the page at from, to path.
func (b *browser) submit(from, path string, form url.Values) response {
	b.t.Helper()
	form.Set("csrf", b.csrf(from))
	return b.do(http.MethodPost, path, form, nil)
}

func (b *browser) signIn(key string) response {
	b.t.Helper()
	return b.submit("/console/signin", "/console/signin", url.Values{"api_key": {key}})
}

// signedIn is a browser signed in with a new key of name.
func (f *fixture) signedIn(name string, scopes []string, groups ...string) *browser {
	f.t.Helper()
	return f.signedInTenant("acme", name, scopes, groups...)
}

// signedInTenant is signedIn with a key of tenant; "" is an operator's key,
// bound to no tenant, which sees every tenant's records.
func (f *fixture) signedInTenant(tenant, name string, scopes []string, groups ...string) *browser {
	f.t.Helper()
	b := f.browser()
	if r := b.signIn(f.keyIn(tenant, name, scopes, groups...)); r.status != http.StatusSeeOther || r.location() != "/console/approvals" {
		f.t.Fatalf("signing in as %s: HTTP %d to %q: %s", name, r.status, r.location(), r.alert())
	}
	return b
}

func TestSignedOutVisitorsAreSentToSignIn(t *testing.T) {
	f := newFixture(t)
	r := f.request("alice", 1, "finance")
	b := f.browser()
	for _, path := range []string{"/console/", "/console/approvals", "/console/approvals/" + r.ID, "/console/audit", "/console/audit/console-test/1", "/console/tools", "/console/keys"} {
		if got := b.get(path); got.status != http.StatusSeeOther || got.location() != "/console/signin" {
			t.Errorf("GET %s signed out: HTTP %d to %q, want 303 to /console/signin", path, got.status, got.location())
		}
	}
	got := b.do(http.MethodPost, "/console/approvals/"+r.ID, url.Values{"decision": {"approve"}}, nil)
	if got.status != http.StatusSeeOther || got.location() != "/console/signin" || f.state(r.ID) != approval.Pending {
		t.Errorf("POST approve signed out: HTTP %d to %q, request %s", got.status, got.location(), f.state(r.ID))
	}
	if got := b.get("/console/signin"); got.status != http.StatusOK || !strings.Contains(got.body, `<label for="api_key">API key</label>`) {
		t.Errorf("GET /console/signin: HTTP %d\n%s", got.status, got.body)
	}
}

func TestSignIn(t *testing.T) {
	f := newFixture(t)
	good := f.key("ops-admin", admin)
	noScope := f.key("crm-bot", []string{"crm.read"})
	revoked := f.key("old-admin", admin)
	if _, err := f.keys.Revoke(context.Background(), "old-admin"); err != nil {
		t.Fatal(err)
	}
	refused := []struct{ name, key string }{
		{"an unknown key", keys.Marker + strings.Repeat("A", 43)},
		{"not a key at all", "hunter2"},
		{"a key without warden.console", noScope},
		{"a revoked key", revoked},
	}
	var alerts []string
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			b := f.browser()
			r := b.signIn(tt.key)
			if r.status != http.StatusSeeOther || r.location() != "/console/signin?refused=1" {
				t.Fatalf("HTTP %d to %q, want 303 back to the form", r.status, r.location())
			}
			r = b.get(r.location())
			if r.status != http.StatusOK || !strings.Contains(r.alert(), "may not use the console") {
				t.Errorf("HTTP %d, alert %q; want the form saying the key may not use the console", r.status, r.alert())
			}
			alerts = append(alerts, r.alert())
			if got := b.get("/console/approvals"); got.status != http.StatusSeeOther {
				t.Errorf("after a refused sign-in, the queue answers HTTP %d", got.status)
			}
		})
	}
	if len(slices.Compact(alerts)) != 1 {
		t.Errorf("refusals differ, telling a guesser which keys exist: %q", alerts)
	}
	b := f.browser()
	r := b.signIn(good)
	if r.status != http.StatusSeeOther || r.location() != "/console/approvals" {
		t.Fatalf("a good key: HTTP %d to %q (%s)", r.status, r.location(), r.alert())
	}
	if got := b.get("/console/approvals"); got.status != http.StatusOK || got.text("signed-in-as") != "ops-admin" {
		t.Errorf("signed in, the queue answers HTTP %d naming %q", got.status, got.text("signed-in-as"))
	}
	if got := b.get("/console/signin"); got.status != http.StatusSeeOther || got.location() != "/console/approvals" {
		t.Errorf("signed in, the sign-in page answers HTTP %d to %q", got.status, got.location())
	}

	recs := f.records(audit.Query{Target: ""})
	var refusals, signins int
	for _, rec := range recs {
		js, _ := json.Marshal(rec)
		for _, k := range []string{good, noScope, revoked} {
			if strings.Contains(string(js), k) {
				t.Errorf("an audit record holds a key: %s", js)
			}
		}
		if rec.Method != "console/signin" || rec.AuthMethod != "console" {
			continue
		}
		switch {
		case rec.Phase == audit.Refusal && rec.Decision == audit.Deny:
			refusals++
			if strings.Contains(rec.Reason, "scope") && rec.Principal != "crm-bot" {
				t.Errorf("the refusal of a key without the scope names %q, want crm-bot", rec.Principal)
			}
		case rec.Phase == audit.Outcome && rec.Decision == audit.Allow && rec.Principal == "ops-admin":
			signins++
		}
	}
	if refusals != len(refused) || signins != 1 {
		t.Errorf("audit log: %d refused sign-ins and %d sign-ins, want %d and 1", refusals, signins, len(refused))
	}
}

func TestFailedSignInsAreLimited(t *testing.T) {
	f := newFixture(t)
	good := f.key("ops-admin", admin)
	b := f.browser()
	wrong := keys.Marker + strings.Repeat("B", 43)
	for i := range 10 {
		if r := b.signIn(wrong); r.location() != "/console/signin?refused=1" {
			t.Fatalf("failed sign-in %d: HTTP %d to %q, want a refusal", i+1, r.status, r.location())
		}
	}
	r := b.signIn(good)
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.alert(), "Too many failed sign-ins") {
		t.Fatalf("after 10 failures, a good key: HTTP %d (%s); want 429", r.status, r.alert())
	}
	f.clock.Advance(time.Minute)
	if r := b.signIn(good); r.status != http.StatusSeeOther {
		t.Errorf("a minute later, a good key: HTTP %d (%s); want a sign-in", r.status, r.alert())
	}
}

func TestSessionsEnd(t *testing.T) {
	tests := []struct {
		name string
		ttl  time.Duration
		// end ends the session of ops-admin, who signed in with b.
		end  func(t *testing.T, f *fixture, b *browser)
		want string // where the next request is sent
	}{
		{"at sign-out", 0, func(t *testing.T, f *fixture, b *browser) {
			if r := b.submit("/console/tools", "/console/signout", url.Values{}); r.status != http.StatusSeeOther || r.location() != "/console/signin" {
				t.Fatalf("sign-out: HTTP %d to %q", r.status, r.location())
			}
		}, "/console/signin"},
		{"when the key is revoked", 0, func(t *testing.T, f *fixture, b *browser) {
			if _, err := f.keys.Revoke(context.Background(), "ops-admin"); err != nil {
				t.Fatal(err)
			}
		}, "/console/signin?ended=1"},
		{"after 30 idle minutes", 0, func(t *testing.T, f *fixture, b *browser) {
			f.clock.Advance(29 * time.Minute)
			if r := b.get("/console/tools"); r.status != http.StatusOK {
				t.Fatalf("after 29 idle minutes: HTTP %d", r.status)
			}
			f.clock.Advance(30 * time.Minute)
		}, "/console/signin?ended=1"},
		{"at SessionTTL however busy", time.Hour, func(t *testing.T, f *fixture, b *browser) {
			for range 2 {
				f.clock.Advance(20 * time.Minute)
				if r := b.get("/console/tools"); r.status != http.StatusOK {
					t.Fatalf("a busy session: HTTP %d", r.status)
				}
			}
			f.clock.Advance(20 * time.Minute)
		}, "/console/signin?ended=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(o *console.Options) { o.SessionTTL = tt.ttl })
			b := f.signedIn("ops-admin", admin)
			u, _ := url.Parse(f.url + "/console/")
			stolen := b.c.Jar.Cookies(u)
			tt.end(t, f, b)
			if r := b.get("/console/tools"); r.status != http.StatusSeeOther || r.location() != tt.want {
				t.Errorf("next request: HTTP %d to %q, want 303 to %s", r.status, r.location(), tt.want)
			}
			// Nor does the old cookie work from elsewhere.
			other := f.browser()
			other.c.Jar.SetCookies(u, stolen)
			if r := other.get("/console/tools"); r.status != http.StatusSeeOther {
				t.Errorf("the ended session's cookie still works: HTTP %d", r.status)
			}
		})
	}
}

func TestCSRF(t *testing.T) {
	tests := []struct {
		name   string
		csrf   func(own, other string) string
		header http.Header
	}{
		{"no token", func(string, string) string { return "" }, nil},
		{"a wrong token", func(own, _ string) string { return own[:len(own)-2] + "xx" }, nil},
		{"another session's token", func(_, other string) string { return other }, nil},
		{"a cross-site request", func(own, _ string) string { return own }, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"another origin, from an old browser", func(own, _ string) string { return own }, http.Header{"Origin": {"https://evil.example"}}},
	}
	f := newFixture(t)
	b := f.signedIn("ops-admin", admin, "finance")
	other := f.signedIn("ops-other", admin, "finance")
	own, theirs := b.csrf("/console/tools"), other.csrf("/console/tools")
	req := f.request("alice", 1, "finance")
	f.key("victim", consoleOnly)
	victimID := ""
	ks, _ := f.keys.List(context.Background())
	for _, k := range ks {
		if k.Name == "victim" {
			victimID = k.ID
		}
	}
	actions := []struct {
		name string
		path string
		form url.Values
	}{
		{"approve", "/console/approvals/" + req.ID, url.Values{"decision": {"approve"}, "reason": {"ok"}}},
		{"create a key", "/console/keys", url.Values{"name": {"planted"}, "tenant": {"acme"}, "scopes": {"warden.console.keys,warden.console"}}},
		{"revoke a key", "/console/keys/" + victimID + "/revoke", url.Values{}},
		{"sign out", "/console/signout", url.Values{}},
	}
	for _, tt := range tests {
		for _, a := range actions {
			t.Run(tt.name+"/"+a.name, func(t *testing.T) {
				form := url.Values{}
				for k, v := range a.form {
					form[k] = v
				}
				if tok := tt.csrf(own, theirs); tok != "" {
					form.Set("csrf", tok)
				}
				r := b.do(http.MethodPost, a.path, form, tt.header)
				if r.status != http.StatusForbidden {
					t.Errorf("HTTP %d, want 403", r.status)
				}
				if tt.header == nil && !strings.Contains(r.alert(), "the form expired; reload and try again") {
					t.Errorf("alert %q does not say the form expired", r.alert())
				}
			})
		}
	}
	if st := f.state(req.ID); st != approval.Pending {
		t.Errorf("the request is %s, want still pending", st)
	}
	ks, _ = f.keys.List(context.Background())
	for _, k := range ks {
		if k.Name == "planted" || !k.RevokedAt.IsZero() {
			t.Errorf("a forged request changed the keys: %+v", k)
		}
	}
	if r := b.get("/console/tools"); r.status != http.StatusOK {
		t.Errorf("a forged sign-out ended the session: HTTP %d", r.status)
	}

	// The sign-in form has a token too, bound to a cookie of its own.
	fresh := f.browser()
	good := f.key("ops-third", admin)
	fresh.csrf("/console/signin")
	for _, tok := range []string{"", theirs, own} {
		form := url.Values{"api_key": {good}}
		if tok != "" {
			form.Set("csrf", tok)
		}
		if r := fresh.do(http.MethodPost, "/console/signin", form, nil); r.status != http.StatusForbidden {
			t.Errorf("sign-in with token %q: HTTP %d, want 403", tok, r.status)
		}
	}
	// Nor can one browser's sign-in token serve another.
	tok := f.browser().csrf("/console/signin")
	if r := fresh.do(http.MethodPost, "/console/signin", url.Values{"api_key": {good}, "csrf": {tok}}, nil); r.status != http.StatusForbidden {
		t.Errorf("sign-in with another browser's token: HTTP %d, want 403", r.status)
	}
	if r := fresh.get("/console/tools"); r.status != http.StatusSeeOther {
		t.Errorf("a forged sign-in made a session: HTTP %d", r.status)
	}
}

func TestSecurityHeaders(t *testing.T) {
	want := map[string]string{
		"Content-Security-Policy":    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Frame-Options":            "DENY",
		"X-Content-Type-Options":     "nosniff",
		"Referrer-Policy":            "no-referrer",
		"Cache-Control":              "no-store",
		"Cross-Origin-Opener-Policy": "same-origin",
	}
	f := newFixture(t)
	b := f.signedIn("ops-admin", admin)
	anon := f.browser()
	tests := []struct {
		name   string
		r      response
		status int
	}{
		{"the sign-in page", anon.get("/console/signin"), http.StatusOK},
		{"a redirect", anon.get("/console/"), http.StatusSeeOther},
		{"the queue", b.get("/console/approvals"), http.StatusOK},
		{"the stylesheet", b.get("/console/style.css"), http.StatusOK},
		{"a missing page", b.get("/console/nope"), http.StatusNotFound},
		{"a missing request", b.get("/console/approvals/apr_nope"), http.StatusNotFound},
		{"a refused method", b.do(http.MethodPut, "/console/approvals", nil, nil), http.StatusMethodNotAllowed},
		{"a refused form", b.do(http.MethodPost, "/console/keys", url.Values{}, nil), http.StatusForbidden},
		{"a cross-origin form", b.do(http.MethodPost, "/console/keys", url.Values{}, http.Header{"Sec-Fetch-Site": {"cross-site"}}), http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.r.status != tt.status {
				t.Errorf("HTTP %d, want %d", tt.r.status, tt.status)
			}
			for k, v := range want {
				if got := tt.r.header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if tt.status >= 400 && (!strings.Contains(tt.r.header.Get("Content-Type"), "text/html") || !strings.Contains(tt.r.body, `role="alert"`)) {
				t.Errorf("an error is not an HTML page with an alert: %s\n%s", tt.r.header.Get("Content-Type"), tt.r.body)
			}
		})
	}
}

// Every response under /console carries the console's headers when the
// console is mounted in Warden's HTTP handler — also the ones the server
// answers for it: the redirect of /console, unclean paths, and refusals of
// the transport guard.
func TestSecurityHeadersBehindWarden(t *testing.T) {
	f := newFixture(t)
	f.behindWarden()
	b := f.signedIn("ops-admin", admin)
	anon := f.browser()
	tests := []struct {
		name   string
		r      response
		status int
	}{
		{"GET /console", anon.get("/console"), http.StatusTemporaryRedirect},
		{"HEAD /console", anon.do(http.MethodHead, "/console", nil, nil), http.StatusTemporaryRedirect},
		{"POST /console", anon.do(http.MethodPost, "/console", url.Values{}, nil), http.StatusTemporaryRedirect},
		{"GET /console/ signed out", anon.get("/console/"), http.StatusSeeOther},
		{"GET /console/ signed in", b.get("/console/"), http.StatusSeeOther},
		{"GET /console/signin", anon.get("/console/signin"), http.StatusOK},
		{"HEAD /console/signin", anon.do(http.MethodHead, "/console/signin", nil, nil), http.StatusOK},
		{"GET /console/tools", b.get("/console/tools"), http.StatusOK},
		{"GET /console/style.css", anon.get("/console/style.css"), http.StatusOK},
		{"GET /console/nope", b.get("/console/nope"), http.StatusNotFound},
		{"GET /console/static/missing", anon.get("/console/static/missing"), http.StatusNotFound},
		{"GET /console//tools", b.get("/console//tools"), http.StatusTemporaryRedirect},
		{"GET /console/approvals/apr_nope", b.get("/console/approvals/apr_nope"), http.StatusNotFound},
		{"POST /console/x without CSRF", b.do(http.MethodPost, "/console/x", url.Values{}, nil), http.StatusNotFound},
		{"POST /console/keys without CSRF", b.do(http.MethodPost, "/console/keys", url.Values{}, nil), http.StatusForbidden},
		{"POST /console/signin cross-site", anon.do(http.MethodPost, "/console/signin", url.Values{}, http.Header{"Sec-Fetch-Site": {"cross-site"}}), http.StatusForbidden},
		{"PUT /console/approvals", b.do(http.MethodPut, "/console/approvals", nil, nil), http.StatusMethodNotAllowed},
		{"DELETE /console", anon.do(http.MethodDelete, "/console", nil, nil), http.StatusTemporaryRedirect},
		{"OPTIONS /console/", anon.do(http.MethodOptions, "/console/", nil, nil), http.StatusMethodNotAllowed},
		{"GET /console/signout", b.get("/console/signout"), http.StatusMethodNotAllowed},
		{"a token in the query string", anon.get("/console/signin?access_token=x"), http.StatusUnauthorized},
		{"a foreign Host", anon.foreignHost("/console/signin"), http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.r.status != tt.status {
				t.Errorf("HTTP %d, want %d", tt.r.status, tt.status)
			}
			for _, k := range []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy", "Cache-Control"} {
				if tt.r.header.Get(k) == "" {
					t.Errorf("no %s header", k)
				}
			}
			if got := tt.r.header.Get("Content-Security-Policy"); !strings.Contains(got, "frame-ancestors 'none'") {
				t.Errorf("Content-Security-Policy %q is not the console's", got)
			}
		})
	}
	// Pages beside the console are not the console's.
	if r := anon.get("/healthz"); r.header.Get("Content-Security-Policy") != "" {
		t.Errorf("/healthz carries the console's headers: %v", r.header)
	}
}

// foreignHost gets path with a Host header the server does not serve, as
// a DNS-rebinding page would.
func (b *browser) foreignHost(path string) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.f.url+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Host = "evil.example"
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, string(data)}
}

func TestCookies(t *testing.T) {
	f := newFixture(t)
	key := f.key("ops-admin", admin)
	b := f.browser()
	form := b.get("/console/signin")
	r := b.submit("/console/signin", "/console/signin", url.Values{"api_key": {key}})
	for _, tt := range []struct {
		name    string
		r       response
		cookie  string
		wantLen int
	}{
		{"sign-in form", form, "warden_console_signin", 43},
		{"session", r, "warden_console", 43},
	} {
		var c *http.Cookie
		for _, sc := range tt.r.header.Values("Set-Cookie") {
			if p, err := http.ParseSetCookie(sc); err == nil && p.Name == tt.cookie {
				c = p
			}
		}
		if c == nil {
			t.Errorf("%s: no %s cookie set", tt.name, tt.cookie)
			continue
		}
		if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/console" || len(c.Value) != tt.wantLen {
			t.Errorf("%s: cookie %s, want HttpOnly; Secure; SameSite=Strict; Path=/console and a 256-bit value", tt.name, c)
		}
	}
}

func TestMethods(t *testing.T) {
	f := newFixture(t)
	b := f.signedIn("ops-admin", admin)
	for _, tt := range []struct {
		method, path, allow string
	}{
		{http.MethodPut, "/console/approvals", "GET, HEAD, POST"},
		{http.MethodDelete, "/console/keys", "GET, HEAD, POST"},
		{http.MethodOptions, "/console/signin", "GET, HEAD, POST"},
		{http.MethodPost, "/console/tools", "GET, HEAD"},
		{http.MethodGet, "/console/signout", "POST"},
	} {
		r := b.do(tt.method, tt.path, url.Values{"csrf": {b.csrf("/console/tools")}}, nil)
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != tt.allow {
			t.Errorf("%s %s: HTTP %d, Allow %q; want 405, Allow %q", tt.method, tt.path, r.status, r.header.Get("Allow"), tt.allow)
		}
	}
	if r := b.do(http.MethodHead, "/console/tools", nil, nil); r.status != http.StatusOK {
		t.Errorf("HEAD /console/tools: HTTP %d", r.status)
	}
}

func TestToolsPage(t *testing.T) {
	f := newFixture(t)
	r := f.signedIn("ops-admin", consoleOnly).get("/console/tools")
	for _, want := range []string{`<table id="tools">`, `<code>request_refund</code>`, "Refund a paid order", "billing.refund", "10/min"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the tools page lacks %q", want)
		}
	}
}

func TestUnconfiguredFeatures(t *testing.T) {
	f := newFixture(t, func(o *console.Options) { o.Approvals, o.Audit, o.Tools = nil, nil, nil })
	b := f.signedIn("ops-admin", admin)
	for path, want := range map[string]string{
		"/console/approvals": "The approval queue is not configured",
		"/console/audit":     "The audit log is not configured",
		"/console/tools":     "No tools are configured",
	} {
		if r := b.get(path); r.status != http.StatusOK || !strings.Contains(r.body, want) {
			t.Errorf("GET %s: HTTP %d without %q", path, r.status, want)
		}
	}
	if r := b.get("/console/approvals/apr_x"); r.status != http.StatusNotFound {
		t.Errorf("a request without a queue: HTTP %d", r.status)
	}

	nokeys := newFixture(t, func(o *console.Options) { o.Keys = nil })
	r := nokeys.browser().get("/console/signin")
	if r.status != http.StatusOK || !strings.Contains(r.body, "No way to sign in is configured") {
		t.Errorf("the sign-in page without keys: HTTP %d\n%s", r.status, r.body)
	}
}

func TestNewNeedsRecord(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New without Record did not panic")
		}
	}()
	console.New(console.Options{})
}
