package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/keys"
	"github.com/wardenmcp/warden/pipeline"
)

// refusedSignin is the one answer to a key that may not sign in, whether
// it is unknown, revoked, expired or without ScopeConsole, so that the
// answer does not tell a guesser which.
const refusedSignin = "This key may not use the console: it is wrong, expired or revoked, or it lacks the " + ScopeConsole + " scope."

type signinData struct {
	CSRF       string
	Configured bool     // sign-in with an API key is configured
	SSO        *ssoLink // sign-in with an OpenID provider, if configured
}

type ssoLink struct {
	Name        string
	Unavailable bool // the provider failed to answer a moment ago
}

func (c *console) signinForm(w http.ResponseWriter, r *http.Request) {
	s, err := c.session(r)
	if err != nil {
		c.log.Error("console: checking a session", "err", err)
	}
	if s != nil {
		http.Redirect(w, r, "/console/approvals", http.StatusSeeOther)
		return
	}
	alert, flash := "", ""
	if r.URL.Query().Get("refused") != "" {
		alert = refusedSignin
	}
	if r.URL.Query().Get("ended") != "" {
		flash = "Your session has ended. Sign in again."
	}
	if sso := r.URL.Query().Get("sso"); sso != "" && c.sso != nil {
		alert = c.ssoAlert(sso)
	}
	c.showSignin(w, r, http.StatusOK, alert, flash)
}

// showSignin writes the sign-in page, with a CSRF token bound to the
// sign-in cookie, which it sets if the browser has none yet.
func (c *console) showSignin(w http.ResponseWriter, r *http.Request, status int, alert, flash string) {
	v := ""
	if ck, err := r.Cookie(signinCookie); err == nil && len(ck.Value) == tokenLen {
		v = ck.Value
	} else {
		v = randomToken()
		http.SetCookie(w, cookie(signinCookie, v))
	}
	d := signinData{CSRF: c.signinToken(v), Configured: c.o.Keys != nil}
	if c.sso != nil {
		d.SSO = &ssoLink{Name: c.sso.o.Name, Unavailable: !c.sso.available()}
	}
	c.render(w, r, nil, status, "signin", page{Title: "Sign in", Alert: alert, Flash: flash, Data: d})
}

// signinToken is the sign-in form's CSRF token for the sign-in cookie's
// value v. It is a MAC rather than v itself, so that a cookie planted by
// a sibling domain does not come with a token that matches it.
func (c *console) signinToken(v string) string {
	m := hmac.New(sha256.New, c.signinKey)
	m.Write([]byte("warden console sign-in\x00" + v))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (c *console) signin(w http.ResponseWriter, r *http.Request) {
	want := ""
	if ck, err := r.Cookie(signinCookie); err == nil && len(ck.Value) == tokenLen {
		want = c.signinToken(ck.Value)
	}
	if !c.checkForm(w, r, nil, want) {
		return
	}
	if c.o.Keys == nil {
		c.showSignin(w, r, http.StatusServiceUnavailable, "Sign-in with an API key is not configured on this server.", "")
		return
	}
	key := strings.TrimSpace(r.PostFormValue("api_key"))
	if key == "" {
		c.showSignin(w, r, http.StatusBadRequest, "Enter an API key.", "")
		return
	}
	ctx, addr, now := r.Context(), remoteHost(r), c.now()
	allowed, err := c.failures.Allowed(ctx, addr)
	if err != nil {
		c.log.Error("console: sign-in refused: the sign-in limits cannot be read", "err", err)
		c.showSignin(w, r, http.StatusServiceUnavailable, "Sign-in is unavailable right now: the server cannot check its sign-in limits. Try again shortly.", "")
		return
	}
	if !allowed {
		c.log.Warn("console: sign-in refused: too many failed sign-ins", "remote", addr)
		c.showSignin(w, r, http.StatusTooManyRequests, "Too many failed sign-ins from your address. Wait a few minutes, then try again.", "")
		return
	}

	p, _, err := keys.Authenticate(ctx, c.o.Keys, key)
	var (
		ae     *pipeline.AuthError
		reason string
	)
	switch {
	case errors.As(err, &ae):
		reason = ae.Description
	case err != nil:
		c.log.Error("console: sign-in", "err", err)
		c.showSignin(w, r, http.StatusServiceUnavailable, "Sign-in is unavailable right now: the key store is not answering. Try again shortly.", "")
		return
	case !p.HasScope(ScopeConsole):
		reason = "the key lacks the " + ScopeConsole + " scope"
	}
	rec := &audit.Record{Method: "console/signin", AuthMethod: "console", RemoteAddr: r.RemoteAddr}
	if p != nil {
		rec.Principal, rec.Tenant = p.ID, p.Tenant
	}
	if reason != "" {
		c.addFailure(ctx, addr)
		rec.Phase, rec.Decision, rec.Status = audit.Refusal, audit.Deny, audit.StatusRefused
		rec.ErrorCode, rec.Reason = string(pipeline.PermissionDenied), "console sign-in refused: "+reason
		if err := c.o.Record(ctx, rec); err != nil {
			c.log.Error("console: a refused sign-in was not audited", "err", err)
		}
		// Back to the form, which says why: a page answering the POST
		// itself would post the key again if reloaded.
		http.Redirect(w, r, "/console/signin?refused=1", http.StatusSeeOther)
		return
	}

	if c.startSession(w, r, rec, p, methodAPIKey, keys.Hash(key), now, "signed in to the console with an API key") != nil {
		http.Redirect(w, r, "/console/approvals", http.StatusSeeOther)
	}
}

// startSession signs p in, by method with credential (see session): it
// audits the sign-in in rec, saying how, stores the session and sets its
// cookie. It returns the session, or nil after writing an error page: a
// sign-in that cannot be audited is refused.
func (c *console) startSession(w http.ResponseWriter, r *http.Request, rec *audit.Record, p *pipeline.Principal, method string, credential []byte, now time.Time, how string) *session {
	ctx := r.Context()
	id := randomToken()
	s := &session{
		Key: keyOf(id), Principal: p, Method: method, Credential: credential,
		CSRF: randomToken(), Created: now, Seen: now, Expires: c.expiry(now, now),
	}
	rec.Phase, rec.Decision, rec.Status, rec.SessionID = audit.Outcome, audit.Allow, audit.StatusOK, s.handle()
	rec.Reason = how
	if err := c.o.Record(ctx, rec); err != nil {
		c.log.Error("console: a sign-in could not be audited, so it was refused", "err", err)
		c.showSignin(w, r, http.StatusServiceUnavailable,
			"Sign-in is unavailable right now: it could not be recorded in the audit log. Try again shortly; if it persists, tell the operator.", "")
		return nil
	}
	if err := c.sessions.Put(ctx, s); err != nil {
		c.internal(w, r, nil, "storing a session", err)
		return nil
	}
	http.SetCookie(w, cookie(sessionCookie, id))
	http.SetCookie(w, clearCookie(signinCookie))
	return s
}

func (c *console) signout(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.sessions.Delete(r.Context(), s.Key); err != nil {
		c.internal(w, r, s, "ending a session", err)
		return
	}
	http.SetCookie(w, clearCookie(sessionCookie))
	http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
}

// checkForm reads a POST form and checks its CSRF token against want; if
// either fails it writes an error page, and the handler must change
// nothing. An empty want matches nothing.
func (c *console) checkForm(w http.ResponseWriter, r *http.Request, s *session, want string) bool {
	if err := r.ParseForm(); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			c.fail(w, r, s, http.StatusRequestEntityTooLarge, "Form too large",
				"The form was larger than the console accepts, so nothing was changed.")
		} else {
			c.fail(w, r, s, http.StatusBadRequest, "Bad request", "The form could not be read, so nothing was changed. Reload the page and try again.")
		}
		return false
	}
	got := r.PostForm.Get("csrf")
	if want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		c.fail(w, r, s, http.StatusForbidden, "Form expired",
			"This form could not be submitted, and nothing was changed: the form expired; reload and try again.")
		return false
	}
	return true
}

// remoteHost is the address failed sign-ins are counted by: the client's
// IP, or for IPv6 its /64, which one host usually holds whole.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if ip = ip.Unmap(); ip.Is6() {
		pfx, _ := ip.Prefix(64) // cannot fail for an IPv6 address
		return pfx.String()
	}
	return ip.String()
}
