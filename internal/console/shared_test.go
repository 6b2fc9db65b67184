package console_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/console"
	"github.com/wardenmcp/warden/internal/nonce"
)

// With the sign-in limits in a Redis that does not answer, nobody signs in:
// an unknown count is not taken for zero.
func TestSignInLimitsUnreadableRefuse(t *testing.T) {
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { down.Close() })
	f := newFixture(t, func(o *console.Options) { o.Failures = console.NewRedisFailures(down, "warden:signin:") })
	good := f.key("ops-admin", admin)
	r := f.browser().signIn(good)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.alert(), "sign-in limits") {
		t.Fatalf("a good key with the sign-in limits unreadable: HTTP %d (%s), want 503", r.status, r.alert())
	}
}

// ssoInstances is newSSO with two consoles behind one address, taking
// requests in turn as a load balancer without stickiness would, sharing
// what instances share: sessions in the state database, completed sign-ins
// in a nonce store there, and the key of the flow cookie.
func ssoInstances(t *testing.T) (*fixture, *idp) {
	t.Helper()
	var o console.Options
	f := newFixture(t, func(opts *console.Options) { o = *opts })
	p := newIDP(t, f.clock.Now)
	srv := httptest.NewUnstartedServer(nil)
	f.url = "http://" + srv.Listener.Addr().String()
	o.OIDC = &console.OIDC{
		Issuer: p.url, ClientID: clientID, ClientSecret: clientSecret, RedirectURL: f.url + callbackPath,
		ConsoleGroups: []string{"ops"},
	}
	cfg := &config.Config{}
	cfg.Server.State.SQLite = f.path
	o.Secret = []byte("a console secret every instance shares")
	var handlers [2]http.Handler
	for i := range handlers {
		sessions, err := console.OpenSessions(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sessions.Close() })
		nonces, err := nonce.Open(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nonces.Close() })
		o.Sessions, o.Nonces = sessions, nonces
		handlers[i] = console.New(o)
	}
	var n atomic.Uint64
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers[n.Add(1)%2].ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(srv.Close)
	return f, p
}

// A single sign-on started on one instance completes on the other, its
// session holds on both, and its callback cannot be replayed on either.
func TestSSOAcrossInstances(t *testing.T) {
	f, _ := ssoInstances(t)
	b := f.browser()
	cb := b.callback()
	u, _ := url.Parse(cb)
	stolen := b.c.Jar.Cookies(u)
	if r, _ := b.follow(cb); r.status != http.StatusOK {
		t.Fatalf("the callback on the other instance: HTTP %d (%s)", r.status, r.alert())
	}
	for i := range 2 {
		if got := b.get("/console/approvals"); got.status != http.StatusOK {
			t.Fatalf("request %d after signing in, on either instance: HTTP %d", i+1, got.status)
		}
	}
	for i := range 2 {
		other := f.browser()
		other.c.Jar.SetCookies(u, stolen)
		if r, at := other.follow(cb); at.Path != "/console/signin" || !strings.Contains(r.alert(), "could not be completed") {
			t.Errorf("the callback replayed with its cookie (try %d): HTTP %d at %s (%s)", i+1, r.status, at, r.alert())
		}
	}
}
