package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/guard"
	"github.com/wardenmcp/warden/internal/secret"
	"github.com/wardenmcp/warden/pipeline"
)

// authenticator is Warden's own credential at an HTTP upstream. Requests
// are made by Warden, never copied from the client's: no header of the
// client's reaches the upstream, and Authorization holds Warden's
// credential or nothing.
type authenticator struct {
	header, value string             // a static header
	own           oauth2.TokenSource // client credentials, for Warden's own requests
	exchange      *exchanger         // token exchange, for calls
}

// tokenKey carries the token a call's requests present, from token
// exchange.
type tokenKey struct{}

// transport sets Warden's credential on every request to the upstream.
type transport struct {
	base  http.RoundTripper
	auth  *authenticator
	notes *notes // of the one connection the transport serves
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Del("Authorization")
	a := t.auth
	switch tok, _ := r.Context().Value(tokenKey{}).(string); {
	case tok != "":
		r.Header.Set("Authorization", "Bearer "+tok)
	case a.own != nil:
		tok, err := a.own.Token()
		if err != nil {
			return nil, fmt.Errorf("getting Warden's token for the upstream: %w", err)
		}
		r.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	case a.header != "":
		r.Header.Set(a.header, a.value)
	}
	resp, err := t.base.RoundTrip(r)
	if err == nil && t.notes != nil {
		t.notes.watch(resp)
	}
	return resp, err
}

// http makes the connection of an HTTP upstream.
func (u *Upstream) http() error {
	a, err := newAuthenticator(u.cfg.Auth)
	if err != nil {
		return err
	}
	u.auth = a
	base := http.DefaultTransport.(*http.Transport).Clone()
	// Calls in flight at once each want a connection of their own; the
	// default of two idle ones would have most calls dial anew.
	base.MaxIdleConnsPerHost = 64
	if u.cfg.Transport != config.TransportSSE {
		u.post = &http.Client{Transport: &transport{base: base, auth: a}}
	}
	u.connect = func(ctx context.Context, version string) (*conn, error) {
		n := newNotes(u.cfg.Logging != "")
		hc := &http.Client{Transport: &transport{base: base, auth: a, notes: n}}
		var t mcp.Transport = &mcp.StreamableClientTransport{Endpoint: u.cfg.URL, HTTPClient: hc, MaxRetries: 2}
		if u.cfg.Transport == config.TransportSSE {
			t = &mcp.SSEClientTransport{Endpoint: u.cfg.URL, HTTPClient: hc}
		}
		sess, err := u.client.Connect(ctx, t, &mcp.ClientSessionOptions{ProtocolVersion: version})
		if err != nil {
			return nil, err
		}
		u.track(sess, n)
		return &conn{sess: sess, stop: func() { _ = sess.Close(); u.untrack(sess) }, notes: n}, nil
	}
	return nil
}

func newAuthenticator(c *config.UpstreamAuth) (*authenticator, error) {
	a := &authenticator{}
	if c == nil {
		return a, nil
	}
	var err error
	switch {
	case c.Bearer != "":
		var v string
		if v, err = secret.Required("auth.bearer", c.Bearer); err == nil {
			a.header, a.value = "Authorization", "Bearer "+v
		}
	case c.Header != nil:
		var v string
		if v, err = secret.Required("auth.header.value", c.Header.Value); err == nil {
			a.header, a.value = http.CanonicalHeaderKey(c.Header.Name), v
		}
	case c.ClientCredentials != nil:
		a.own, err = clientCredentials("auth.client_credentials", c.ClientCredentials)
	case c.TokenExchange != nil:
		var cs string
		if cs, err = secret.Required("auth.token_exchange.client_secret", c.TokenExchange.ClientSecret); err != nil {
			return nil, err
		}
		a.exchange = &exchanger{cfg: c.TokenExchange, secret: cs, cache: map[[32]byte]exchanged{}}
		a.own, err = clientCredentials("auth.token_exchange", c.TokenExchange)
	}
	return a, err
}

func clientCredentials(key string, o *config.OAuthClient) (oauth2.TokenSource, error) {
	cs, err := secret.Required(key+".client_secret", o.ClientSecret)
	if err != nil {
		return nil, err
	}
	cc := &clientcredentials.Config{ClientID: o.ClientID, ClientSecret: cs, TokenURL: o.TokenURL, Scopes: o.Scopes}
	if o.Audience != "" {
		cc.EndpointParams = url.Values{"audience": {o.Audience}}
	}
	return cc.TokenSource(context.Background()), nil
}

// credential returns the context of a call's requests upstream: with
// token exchange, carrying the token the caller's own verified JWT was
// exchanged for.
func (u *Upstream) credential(ctx context.Context, c *pipeline.Call) (context.Context, error) {
	if u.auth == nil || u.auth.exchange == nil {
		return ctx, nil
	}
	p := c.Principal
	if p == nil || p.AuthMethod != "jwt" || p.Token == "" {
		return nil, pipeline.Errorf(pipeline.PermissionDenied, "sign in with a token from the identity provider",
			"the upstream server %s acts for the user, and only a caller signed in with a JWT can be vouched for", u.name)
	}
	tok, err := u.auth.exchange.token(ctx, p.Token)
	if err != nil {
		return nil, u.exchangeFailed(err)
	}
	return context.WithValue(ctx, tokenKey{}, tok), nil
}

func (u *Upstream) exchangeFailed(err error) error {
	var refused *refusedError
	if errors.As(err, &refused) {
		u.log.Warn("token exchange refused", "status", refused.status)
		return pipeline.Errorf(pipeline.PermissionDenied, "ask the operator whether you may use this upstream",
			"the authorization server would not issue a token for the upstream server %s to you", u.name)
	}
	u.log.Warn("token exchange failed", "err", err)
	return pipeline.Errorf(pipeline.Unavailable, "retry later", "no token could be had for the upstream server %s", u.name).WithRetryAfter(5 * time.Second)
}

// exchanger exchanges callers' tokens (RFC 8693) and keeps what it got
// until shortly before it expires.
type exchanger struct {
	cfg    *config.OAuthClient
	secret string

	mu    sync.Mutex
	cache map[[32]byte]exchanged // by hash of the subject token
}

type exchanged struct {
	token   string
	expires time.Time
}

// maxExchanged bounds the cache; when full, it starts over.
const maxExchanged = 4096

type refusedError struct{ status int }

func (e *refusedError) Error() string { return fmt.Sprintf("refused with status %d", e.status) }

func (x *exchanger) token(ctx context.Context, subject string) (string, error) {
	k := sha256.Sum256([]byte(subject))
	x.mu.Lock()
	if e, ok := x.cache[k]; ok && time.Until(e.expires) > 30*time.Second {
		x.mu.Unlock()
		return e.token, nil
	}
	x.mu.Unlock()
	form := url.Values{
		"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":        {subject},
		"subject_token_type":   {"urn:ietf:params:oauth:token-type:jwt"},
		"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":             {x.cfg.Audience},
	}
	if len(x.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(x.cfg.Scopes, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(x.cfg.ClientID), url.QueryEscape(x.secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode/100 == 4 {
		return "", &refusedError{resp.StatusCode}
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("the token endpoint answered %s", resp.Status)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return "", errors.New("the token endpoint's answer holds no access_token")
	}
	guard.AddSecret(tr.AccessToken)
	exp := time.Now().Add(time.Duration(tr.ExpiresIn) * time.Second)
	if tr.ExpiresIn <= 0 {
		exp = time.Now().Add(time.Minute)
	}
	x.mu.Lock()
	if len(x.cache) >= maxExchanged {
		clear(x.cache)
	}
	x.cache[k] = exchanged{tr.AccessToken, exp}
	x.mu.Unlock()
	return tr.AccessToken, nil
}
