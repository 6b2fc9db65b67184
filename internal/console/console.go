// Package console is Warden's web console: server-rendered pages, mounted
// at /console/, where operators decide on calls waiting for approval,
// search and verify the audit log, read the tools catalog, issue and
// revoke API keys, and approve or reject changed upstream definitions.
//
//	c := console.New(console.Options{
//		Approvals:   approvals, // approval.OpenStore
//		Audit:       auditLog,  // audit.Open
//		AuditSecret: secret,    // audit.LoadSecret
//		Keys:        apiKeys,   // keys.Open
//		Tools:       catalog,
//		Record:      writer.Write, // an *audit.Writer
//	})
//	mux.Handle("/console/", c)
//	mux.Handle("/console", c) // else the mux redirects it, without the console's headers
//
// An operator signs in with an API key that holds ScopeConsole; issuing and
// revoking keys also takes ScopeKeys. Which requests an operator may decide
// on is the approval store's call, by the key's groups, as from the CLI.
// With Options.OIDC, an operator may instead sign in with an OpenID Connect
// provider, which vouches for their groups: OIDC.ConsoleGroups grant
// ScopeConsole, and OIDC.KeyGroups ScopeKeys too.
//
// Sessions live on the server, and the browser's cookie holds only a random
// 256-bit id. A session ends at sign-out, after Options.SessionTTL, after
// 30 minutes without a request, and at the first request after its key is
// revoked or expires: every request looks the key up again. A session
// signed in with the provider has no key to look up: it ends at sign-out,
// SessionTTL or the idle timeout, whatever the ID token's own expiry, so
// removing a user from a group at the provider takes effect at their next
// sign-in.
//
// Every form carries a CSRF token, cross-origin writes are refused, bodies
// are capped, and every response forbids framing, caching and any script or
// style not served by the console itself; the console runs no JavaScript.
// Every action — a sign-in, a refused sign-in, a decision, a key issued or
// revoked — is written to the audit log through Options.Record.
package console

import (
	"context"
	"crypto/rand"
	"embed"
	"log/slog"
	"net/http"
	"time"

	"github.com/wardenmcp/warden/internal/approval"
	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/keys"
	"github.com/wardenmcp/warden/internal/nonce"
	"github.com/wardenmcp/warden/internal/pin"
)

// Scopes a principal needs.
const (
	// ScopeConsole lets a principal sign in, see every page, and approve or
	// deny requests (group membership still decides which).
	ScopeConsole = "warden.console"
	// ScopeKeys additionally lets a principal create and revoke API keys.
	ScopeKeys = "warden.console.keys"
	// ScopeUpstreams additionally lets a principal approve and reject
	// upstream definitions, which every tenant is served: a server-wide
	// decision, whatever the principal's tenant. A principal of no tenant
	// holding ScopeKeys (an operator signed in through OIDC.KeyGroups) may
	// too.
	ScopeUpstreams = "warden.console.upstreams"
)

// Options configure the console. Approvals, Audit and Keys may be nil when
// the server has no such store: the pages then say the feature is not
// configured (without Keys, nobody can sign in).
type Options struct {
	Approvals approval.Store
	Audit     audit.Store
	// AuditSecret keys the audit chain, to verify it (see audit.Verify).
	AuditSecret []byte
	Keys        keys.Store
	// Pins are the pinned definitions of upstream MCP servers (see
	// pin.OpenSQLite); deciding on them takes ScopeUpstreams.
	Pins pin.Store
	// Tools is the catalog, as the server built it from its configuration.
	Tools []Tool
	// Record writes an audit record of each console action: sign-in,
	// refused sign-in, approval, denial, key created, key revoked. It is
	// required. When it fails, the console refuses the action if it has not
	// yet happened (a sign-in, a key), and otherwise says that it happened
	// but was not audited (a decision, a revocation).
	Record func(ctx context.Context, r *audit.Record) error
	// SessionTTL is a session's absolute lifetime; zero means 8 hours.
	SessionTTL time.Duration
	// Logger receives internal errors, which users see only as "something
	// went wrong"; nil discards them.
	Logger *slog.Logger
	// Now is the clock of sessions and sign-in limits; nil means time.Now.
	Now func() time.Time
	// OIDC, if set, adds "Sign in with <Name>" beside the API key form.
	OIDC *OIDC

	// What the console keeps between requests. Instances behind one load
	// balancer must share all four, so that a browser's next request may
	// reach any of them; each left nil is this process's own.
	//
	// Sessions keeps sessions and their CSRF tokens (OpenSessions: the
	// state database); nil keeps them in memory, lost on restart.
	Sessions SessionStore
	// Failures counts failed sign-ins by address (NewRedisFailures); nil
	// counts them in memory.
	Failures Failures
	// Nonces remembers completed single sign-ons, so that a callback is
	// accepted once (see package nonce); nil remembers them in memory.
	Nonces nonce.Store
	// Secret keys the sign-in form's CSRF tokens and the single sign-on
	// flow's cookie; nil means a random key of this process.
	Secret []byte
}

// Tool is one row of the tools catalog.
type Tool struct {
	Name, Title, Description, Scope, Mode, Risk, Version, Approval, RateLimit string
}

// idleTimeout ends a session that has made no request for this long.
const idleTimeout = 30 * time.Minute

// maxBody caps a request body; the console's forms are far smaller.
const maxBody = 64 << 10

//go:embed templates/*.html static
var assets embed.FS

// console is the handler New returns.
type console struct {
	o         Options
	now       func() time.Time
	log       *slog.Logger
	ttl       time.Duration
	sessions  sessionStore
	failures  Failures
	signinKey []byte    // keys the sign-in form's CSRF token and the OIDC flow cookie
	sso       *provider // nil without Options.OIDC
	pages     pages
}

// New returns the console handler; mount it at /console/ and at /console
// (or, with Warden's HTTPHandler, in HTTPOptions.Mounts at /console/, where
// it sets its headers also on what the server answers for it). It panics if o.Record is nil: every
// console action must be audited; and if o.OIDC lacks its Issuer, ClientID
// or RedirectURL, or these are not https URLs (http only on loopback), or
// RedirectURL is not a /console/oidc/callback. New makes no request to the
// provider: the first sign-in with it does.
func New(o Options) http.Handler {
	if o.Record == nil {
		panic("console.New: Options.Record is nil; the console audits every action and needs it")
	}
	c := &console{
		o:         o,
		now:       o.Now,
		log:       o.Logger,
		ttl:       o.SessionTTL,
		failures:  o.Failures,
		signinKey: o.Secret,
		pages:     parsePages(),
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.ttl <= 0 {
		c.ttl = 8 * time.Hour
	}
	if len(c.signinKey) == 0 {
		c.signinKey = make([]byte, 32)
		rand.Read(c.signinKey) // never fails
	}
	c.sessions = newMemSessions()
	if o.Sessions != nil {
		c.sessions = o.Sessions
	}
	if c.failures == nil {
		c.failures = newFailures(c.now)
	}
	if o.OIDC != nil {
		spent := o.Nonces
		if spent == nil {
			spent = nonce.NewMemory(c.now, maxFlows)
		}
		c.sso = newProvider(*o.OIDC, c.now, spent)
	}

	mux := http.NewServeMux()
	c.handle(mux, "/", c.notFound, c.notFound)
	c.handle(mux, "/console", redirect("/console/"), nil)
	c.handle(mux, "/console/{$}", c.signedIn(c.home), nil)
	c.handle(mux, "/console/style.css", static("style.css", "text/css; charset=utf-8"), nil)
	c.handle(mux, "/console/favicon.svg", static("favicon.svg", "image/svg+xml"), nil)
	c.handle(mux, "/console/signin", c.signinForm, c.signin)
	c.handle(mux, "/console/signout", nil, c.signedIn(c.signout))
	if c.sso != nil {
		c.handle(mux, ssoStartPath, c.ssoStart, nil)
		c.handle(mux, ssoCallbackPath, c.ssoCallback, nil)
	}
	c.handle(mux, "/console/approvals", c.signedIn(c.approvals), nil)
	c.handle(mux, "/console/approvals/{id}", c.signedIn(c.approval), c.signedIn(c.decide))
	c.handle(mux, "/console/audit", c.signedIn(c.audit), nil)
	c.handle(mux, "/console/audit/{instance}/{seq}", c.signedIn(c.record), nil)
	c.handle(mux, "/console/tools", c.signedIn(c.tools), nil)
	c.handle(mux, "/console/keys", c.signedIn(c.keys), c.signedIn(c.createKey))
	c.handle(mux, "/console/upstreams", c.signedIn(c.upstreams), nil)
	c.handle(mux, "/console/upstreams/pin", c.signedIn(c.upstream), c.signedIn(c.decidePin))
	c.handle(mux, "/console/keys/{id}/revoke", nil, c.signedIn(c.revokeKey))

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, nil, http.StatusForbidden, "Request refused",
			"This request came from another site, so it was refused and nothing was changed. Use the console's own pages.")
	}))
	return handler{c.secure(cop.Handler(mux))}
}

// handler is the console as New returns it: a warden.HeaderSetter, so that
// the server puts the console's headers on every response under /console,
// also those it answers itself (the redirect of /console, refusals of its
// transport guard).
type handler struct{ http.Handler }

// SetHeaders sets the headers every console response carries: no framing,
// no caching, no referrer, and no script or style from anywhere else.
func (handler) SetHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// secure sets the headers every response carries, refuses methods the
// console never uses, and caps request bodies.
func (c *console) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		handler{}.SetHeaders(h)
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodPost:
		default:
			h.Set("Allow", "GET, HEAD, POST")
			c.fail(w, r, nil, http.StatusMethodNotAllowed, "Method not allowed",
				"The console answers only GET and POST requests.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		next.ServeHTTP(w, r)
	})
}

// handle registers pattern on mux: get answers GET and HEAD, post answers
// POST; either may be nil, and other methods get a 405 page.
func (c *console) handle(mux *http.ServeMux, pattern string, get, post http.HandlerFunc) {
	allow := "POST"
	if get != nil {
		allow = "GET, HEAD"
		if post != nil {
			allow += ", POST"
		}
	}
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case (r.Method == http.MethodGet || r.Method == http.MethodHead) && get != nil:
			get(w, r)
		case r.Method == http.MethodPost && post != nil:
			post(w, r)
		default:
			w.Header().Set("Allow", allow)
			c.fail(w, r, nil, http.StatusMethodNotAllowed, "Method not allowed",
				"This page does not accept a "+r.Method+" request.")
		}
	})
}

func redirect(to string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, to, http.StatusSeeOther)
	}
}

func (c *console) home(w http.ResponseWriter, r *http.Request, _ *session) {
	http.Redirect(w, r, "/console/approvals", http.StatusSeeOther)
}

func (c *console) notFound(w http.ResponseWriter, r *http.Request) {
	c.fail(w, r, nil, http.StatusNotFound, "Page not found",
		"There is no console page at this address.")
}

// static serves an embedded file. The console's own icon keeps browsers
// from asking the server for /favicon.ico.
func static(name, contentType string) http.HandlerFunc {
	b, err := assets.ReadFile("static/" + name)
	if err != nil {
		panic(err) // embedded at build time
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Write(b)
	}
}

// tools shows the catalog.
func (c *console) tools(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, r, s, http.StatusOK, "tools", page{Title: "Tools", Nav: "tools", Data: c.o.Tools})
}

// actionRecord starts the audit record of an action a signed-in principal
// takes, as a success; the caller fills in what was done.
func (c *console) actionRecord(r *http.Request, s *session, method string) *audit.Record {
	return &audit.Record{
		Phase: audit.Outcome, Method: method, Principal: s.Principal.ID, Tenant: s.Principal.Tenant,
		AuthMethod: "console", SessionID: s.handle(), RemoteAddr: r.RemoteAddr,
		Decision: audit.Allow, Status: audit.StatusOK,
	}
}
