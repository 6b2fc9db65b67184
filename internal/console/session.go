package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/wardenmcp/warden/internal/keys"
	"github.com/wardenmcp/warden/pipeline"
)

// How a principal signed in. Each method has a case in recheck, which
// decides on every request whether its sessions still stand.
const (
	methodAPIKey = "api_key"
	methodOIDC   = "oidc"
)

// session is one signed-in browser.
type session struct {
	// Key is the hex SHA-256 of the id in the cookie: whoever reads a
	// store learns no id to present.
	Key       string
	Principal *pipeline.Principal
	// Method is how the principal signed in, and Credential what recheck
	// checks again: for methodAPIKey, keys.Hash of the key, never the key;
	// for methodOIDC, nothing.
	Method     string
	Credential []byte
	// CSRF is the token every form of the session carries.
	CSRF          string
	Created, Seen time.Time
	// Expires is the earlier of the absolute and the idle expiry, as of
	// Seen.
	Expires time.Time
	// Flash is a message for the next page shown, such as "Approved.".
	Flash string
}

// handle names the session in audit records, so that the actions of one
// sign-in can be told apart; it reveals nothing of the id.
func (s *session) handle() string { return "console-" + s.Key[:16] }

// sessionStore keeps sessions by Key. Implementations are safe for
// concurrent use. The console checks expiry itself, on every request.
//
// Put stores a copy of s, replacing any session with its Key; it may
// forget sessions that expired before s.Seen. Get returns a copy of the
// session with key, or nil if there is none. Delete forgets the session
// with key, if there is one.
type sessionStore interface {
	Put(ctx context.Context, s *session) error
	Get(ctx context.Context, key string) (*session, error)
	Delete(ctx context.Context, key string) error
}

// memSessions keeps sessions in memory: they end when the process does.
type memSessions struct {
	mu sync.Mutex
	m  map[string]session
}

var _ sessionStore = (*memSessions)(nil)

func newMemSessions() *memSessions { return &memSessions{m: map[string]session{}} }

func (m *memSessions) Put(_ context.Context, s *session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.m[s.Key]; !ok {
		// A new sign-in: forget the sessions nobody signed out of, so they
		// do not pile up.
		for k, o := range m.m {
			if !s.Seen.Before(o.Expires) {
				delete(m.m, k)
			}
		}
	}
	m.m[s.Key] = *s
	return nil
}

func (m *memSessions) Get(_ context.Context, key string) (*session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.m[key]
	if !ok {
		return nil, nil
	}
	return &s, nil
}

func (m *memSessions) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, key)
	return nil
}

// Cookies. Both are confined to the console, out of reach of scripts,
// sent only over HTTPS (browsers make an exception for localhost) and
// never on a request another site starts. The __Host- prefix would be
// better still, but some browsers refuse it over plain HTTP on localhost.
const (
	sessionCookie = "warden_console"
	// signinCookie holds the random value the sign-in form's CSRF token is
	// derived from, before there is a session.
	signinCookie = "warden_console_signin"
)

func cookie(name, value string) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/console", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}
}

func clearCookie(name string) *http.Cookie {
	c := cookie(name, "")
	c.MaxAge = -1
	return c
}

// tokenLen is the length of a random token: 256 bits in base64url.
var tokenLen = base64.RawURLEncoding.EncodedLen(32)

func randomToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// keyOf is the store's key for a session id.
func keyOf(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// errEnded: the session's credential no longer stands.
var errEnded = errors.New("the session has ended")

// session returns the request's session, nil if it has none or it ended,
// and an error only if a store could not answer. It marks the session
// used, pushing its idle expiry back.
func (c *console) session(r *http.Request) (*session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || len(ck.Value) != tokenLen {
		return nil, nil
	}
	ctx := r.Context()
	s, err := c.sessions.Get(ctx, keyOf(ck.Value))
	if err != nil || s == nil {
		return nil, err
	}
	now := c.now()
	if !now.Before(s.Expires) {
		return nil, c.sessions.Delete(ctx, s.Key)
	}
	p, err := c.recheck(ctx, s, now)
	if errors.Is(err, errEnded) {
		return nil, c.sessions.Delete(ctx, s.Key)
	}
	if err != nil {
		return nil, err
	}
	s.Principal, s.Seen = p, now
	s.Expires = c.expiry(s.Created, now)
	return s, c.sessions.Put(ctx, s)
}

// expiry is when a session created at created and last used at seen
// expires.
func (c *console) expiry(created, seen time.Time) time.Time {
	abs, idle := created.Add(c.ttl), seen.Add(idleTimeout)
	if idle.Before(abs) {
		return idle
	}
	return abs
}

// recheck returns the session's principal as of now, or wraps errEnded if
// the credential it signed in with no longer stands: revoked, expired, or
// without ScopeConsole.
func (c *console) recheck(ctx context.Context, s *session, now time.Time) (*pipeline.Principal, error) {
	switch s.Method {
	case methodAPIKey:
		if c.o.Keys == nil {
			return nil, errEnded
		}
		k, err := c.o.Keys.Lookup(ctx, s.Credential)
		if errors.Is(err, keys.ErrNotFound) {
			return nil, errEnded
		}
		if err != nil {
			return nil, err
		}
		p := &pipeline.Principal{ID: k.Name, Tenant: k.Tenant, Scopes: slices.Clone(k.Scopes), Groups: slices.Clone(k.Groups), AuthMethod: methodAPIKey}
		if !k.Active(now) || !p.HasScope(ScopeConsole) {
			return nil, errEnded
		}
		return p, nil
	case methodOIDC:
		// Nothing to look up again: the provider is asked only at sign-in,
		// and the ID token's expiry (often minutes) does not bound the
		// session. It stands until sign-out, SessionTTL or the idle
		// timeout, as long as the server signs in with the provider.
		if c.sso == nil {
			return nil, errEnded
		}
		return s.Principal, nil
	}
	return nil, errEnded
}

// sessionHandler handles a request of a signed-in principal.
type sessionHandler func(w http.ResponseWriter, r *http.Request, s *session)

// signedIn runs h for a signed-in principal, after checking the CSRF token
// of a POST, and sends anyone else to the sign-in page.
func (c *console) signedIn(h sessionHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := c.session(r)
		if err != nil {
			c.log.Error("console: checking a session", "err", err)
			c.fail(w, r, nil, http.StatusServiceUnavailable, "Unavailable",
				"The console cannot check your session right now: the key store is not answering. Try again shortly.")
			return
		}
		if s == nil {
			to := "/console/signin"
			if _, err := r.Cookie(sessionCookie); err == nil {
				http.SetCookie(w, clearCookie(sessionCookie))
				to += "?ended=1"
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost && !c.checkForm(w, r, s, s.CSRF) {
			return
		}
		h(w, r, s)
	}
}

// takeFlash returns the session's flash message, once.
func (c *console) takeFlash(r *http.Request, s *session) string {
	f := s.Flash
	if f == "" {
		return ""
	}
	s.Flash = ""
	if err := c.sessions.Put(r.Context(), s); err != nil {
		c.log.Error("console: clearing a flash message", "err", err)
	}
	return f
}

// setFlash keeps msg for the next page of s.
func (c *console) setFlash(r *http.Request, s *session, msg string) {
	s.Flash = msg
	if err := c.sessions.Put(r.Context(), s); err != nil {
		c.log.Error("console: keeping a flash message", "err", err)
	}
}
