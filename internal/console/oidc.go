package console

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"golang.org/x/oauth2"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/jwks"
	"github.com/wardenmcp/warden/internal/nonce"
	"github.com/wardenmcp/warden/pipeline"
)

// OIDC configures sign-in with an OpenID Connect provider: the
// authorization code flow with PKCE (S256), state and nonce.
//
// The console asks for the scope openid, and for profile, email and the
// groups claim's name where the provider's discovery document lists them
// in scopes_supported.
type OIDC struct {
	Name         string // shown on the button, e.g. "SSO"; default "single sign-on"
	Issuer       string // discovery at Issuer + "/.well-known/openid-configuration"; its "issuer" must equal Issuer exactly
	ClientID     string
	ClientSecret string // may be empty for a public client (PKCE only)
	RedirectURL  string // must be this console's /console/oidc/callback as the user's browser reaches it
	UserClaim    string // the principal id; default "sub"
	TenantClaim  string // optional; "" means no tenant
	GroupsClaim  string // default "groups"; an array of strings (a single string is accepted too)
	// ConsoleGroups: members may sign in (they get the scope
	// warden.console). A user in none of them is refused.
	ConsoleGroups []string
	// KeyGroups: members of a console group who are also in one of these
	// get warden.console.keys.
	KeyGroups []string
	// HTTPClient makes the discovery, token and JWKS requests; nil means a
	// client with a 10s timeout, as does a client without a timeout.
	HTTPClient *http.Client
}

const (
	ssoStartPath    = "/console/oidc/start"
	ssoCallbackPath = "/console/oidc/callback"
	// flowCookie carries a sign-in's state, nonce and PKCE verifier from
	// the redirect to the provider to its callback. It is SameSite=Lax,
	// unlike the console's other cookies: the callback is a top-level
	// navigation from the provider's site.
	flowCookie = "warden_console_oidc"
	// flowTTL is how long a user has to sign in at the provider.
	flowTTL = 10 * time.Minute
	// ssoRetry is how long, after the provider fails to answer discovery,
	// the console says single sign-on is unavailable without asking again;
	// and the least time between two fetches of the provider's keys,
	// whatever key ids ID tokens name.
	ssoRetry = time.Minute
	// ssoTimeout bounds a request to the provider.
	ssoTimeout = 10 * time.Second
	// maxProviderDoc bounds a discovery document.
	maxProviderDoc = 1 << 20
	// idTokenSkew is the clock difference tolerated for exp and iat.
	idTokenSkew = time.Minute
	// maxFlows bounds the finished sign-ins remembered (see spend).
	maxFlows = 10000
)

// idTokenAlgs are the signature algorithms an ID token may use: never
// none, never an HMAC, whose key the client secret would be.
var idTokenAlgs = []string{"RS256", "PS256", "ES256", "EdDSA"}

// provider is the OpenID provider, as far as the console knows it: its
// discovery document and keys are fetched at the first sign-in and kept;
// the keys are fetched again as a jwks.Set is. It is safe for concurrent
// use.
type provider struct {
	o      OIDC // with defaults
	client *http.Client
	now    func() time.Time
	// fetching is held while discovering the provider, so that one
	// discovery runs at a time and concurrent sign-ins wait for its result.
	fetching chan struct{}

	mu       sync.Mutex
	oauth    *oauth2.Config // nil until discovery succeeds
	keys     *jwks.Set      // nil until discovery succeeds
	failedAt time.Time      // when discovery last failed; zero if it has not
	failure  error          // why
	// spent holds the states of finished sign-ins until their flows
	// expire, so that a callback cannot be replayed even with its cookie.
	spent nonce.Store
}

// newProvider checks o and applies its defaults. It panics if o is
// unusable: the configuration check catches all of it first.
func newProvider(o OIDC, now func() time.Time, spent nonce.Store) *provider {
	if err := o.check(); err != nil {
		panic("console.New: Options.OIDC: " + err.Error())
	}
	if o.Name == "" {
		o.Name = "single sign-on"
	}
	if o.UserClaim == "" {
		o.UserClaim = "sub"
	}
	if o.GroupsClaim == "" {
		o.GroupsClaim = "groups"
	}
	o.ConsoleGroups, o.KeyGroups = slices.Clone(o.ConsoleGroups), slices.Clone(o.KeyGroups)
	client := o.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	// Bounded time, bounded redirects, and never from HTTPS down to HTTP.
	client = jwk.WrapHTTPClientDefaults(client)
	if o.HTTPClient == nil || o.HTTPClient.Timeout == 0 {
		client.Timeout = ssoTimeout
	}
	return &provider{o: o, client: client, now: now, fetching: make(chan struct{}, 1), spent: spent}
}

func (o *OIDC) check() error {
	if o.Issuer == "" || o.ClientID == "" || o.RedirectURL == "" {
		return errors.New("needs Issuer, ClientID and RedirectURL")
	}
	if err := config.SecureURL(o.Issuer); err != nil {
		return fmt.Errorf("field Issuer: %w", err)
	}
	if err := config.SecureURL(o.RedirectURL); err != nil {
		return fmt.Errorf("field RedirectURL: %w", err)
	}
	if u, _ := url.Parse(o.RedirectURL); !strings.HasSuffix(u.Path, ssoCallbackPath) {
		return fmt.Errorf("field RedirectURL: %s is not this console's %s", u.Redacted(), ssoCallbackPath)
	}
	return nil
}

// discovery is the part of a provider's discovery document the console
// uses.
type discovery struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	JWKSURI               string   `json:"jwks_uri"`
	ScopesSupported       []string `json:"scopes_supported"`
	CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
	TokenAuthMethods      []string `json:"token_endpoint_auth_methods_supported"`
}

// available reports whether single sign-on may work: it has, or has not
// failed in the last ssoRetry.
func (p *provider) available() bool {
	conf, err := p.ready()
	return conf != nil || err == nil
}

// ready returns the OAuth configuration if discovery has succeeded, an
// error if it failed less than ssoRetry ago, and neither if it is to be
// tried.
func (p *provider) ready() (*oauth2.Config, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.oauth != nil {
		return p.oauth, nil
	}
	if !p.failedAt.IsZero() && p.now().Sub(p.failedAt) < ssoRetry {
		return nil, fmt.Errorf("%w (less than %s ago)", p.failure, ssoRetry)
	}
	return nil, nil
}

// config returns the OAuth configuration, fetching the discovery document
// and the keys on first use.
func (p *provider) config(ctx context.Context) (*oauth2.Config, error) {
	if conf, err := p.ready(); conf != nil || err != nil {
		return conf, err
	}
	if err := p.lock(ctx); err != nil {
		return nil, err
	}
	defer p.unlock()
	// Another sign-in may have fetched it while this one waited.
	if conf, err := p.ready(); conf != nil || err != nil {
		return conf, err
	}
	now := p.now()
	conf, keys, err := p.discover(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil { // not merely a user who gave up
			p.failedAt, p.failure = now, err
		}
		return nil, err
	}
	p.oauth, p.keys = conf, keys
	return conf, nil
}

func (p *provider) lock(ctx context.Context) error {
	select {
	case p.fetching <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *provider) unlock() { <-p.fetching }

func (p *provider) discover(ctx context.Context) (*oauth2.Config, *jwks.Set, error) {
	var d discovery
	doc := strings.TrimSuffix(p.o.Issuer, "/") + "/.well-known/openid-configuration"
	data, err := p.get(ctx, doc)
	if err == nil {
		if err = json.Unmarshal(data, &d); err != nil {
			err = fmt.Errorf("GET %s: %w", doc, err)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("discovery: %w", err)
	}
	if d.Issuer != p.o.Issuer {
		return nil, nil, fmt.Errorf("discovery: the provider names itself %.200q, not %q: set the issuer exactly as the provider does", d.Issuer, p.o.Issuer)
	}
	for name, u := range map[string]string{"authorization_endpoint": d.AuthorizationEndpoint, "token_endpoint": d.TokenEndpoint, "jwks_uri": d.JWKSURI} {
		if u == "" {
			return nil, nil, fmt.Errorf("discovery: no %s", name)
		}
		if err := config.SecureURL(u); err != nil {
			return nil, nil, fmt.Errorf("discovery: %s: %w", name, err)
		}
	}
	if len(d.CodeChallengeMethods) > 0 && !slices.Contains(d.CodeChallengeMethods, "S256") {
		return nil, nil, errors.New("discovery: the provider does not support PKCE with S256")
	}
	keys, err := jwks.Fetch(ctx, d.JWKSURI, jwks.Options{Algorithms: idTokenAlgs, HTTPClient: p.client, RefreshInterval: ssoRetry, Now: p.now})
	if err != nil {
		return nil, nil, fmt.Errorf("keys: %w", err)
	}
	conf := &oauth2.Config{
		ClientID: p.o.ClientID, ClientSecret: p.o.ClientSecret, RedirectURL: p.o.RedirectURL,
		Endpoint: oauth2.Endpoint{AuthURL: d.AuthorizationEndpoint, TokenURL: d.TokenEndpoint, AuthStyle: authStyle(p.o.ClientSecret, d.TokenAuthMethods)},
		Scopes:   []string{"openid"},
	}
	for _, s := range []string{"profile", "email", p.o.GroupsClaim} {
		if slices.Contains(d.ScopesSupported, s) && !slices.Contains(conf.Scopes, s) {
			conf.Scopes = append(conf.Scopes, s)
		}
	}
	return conf, keys, nil
}

// authStyle is how the client authenticates at the token endpoint: a
// public client only names itself; a confidential one uses HTTP Basic
// (the default, RFC 8414) unless the provider takes only the form.
func authStyle(secret string, methods []string) oauth2.AuthStyle {
	if secret == "" || len(methods) > 0 && !slices.Contains(methods, "client_secret_basic") && slices.Contains(methods, "client_secret_post") {
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader
}

// get fetches a JSON document from the provider.
func (p *provider) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	res, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, res.Status)
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, maxProviderDoc+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(data) > maxProviderDoc {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", u, maxProviderDoc)
	}
	return data, nil
}

// tokenError is an ID token the console refuses: what is wrong with it,
// in fixed words that never quote the token, and the detail for the log.
type tokenError struct {
	what string
	err  error
}

func (e *tokenError) Error() string {
	if e.err == nil {
		return "the ID token " + e.what
	}
	return "the ID token " + e.what + ": " + e.err.Error()
}

func (e *tokenError) Unwrap() error { return e.err }

// verify checks an ID token as OpenID Connect Core 3.1.3.7 requires of a
// client of the code flow: the provider's signature with an asymmetric
// algorithm, the issuer, this client among the audience (and as azp if
// there are several), exp and iat, and the nonce this sign-in sent.
func (p *provider) verify(ctx context.Context, raw, nonce string) (jwt.Token, error) {
	p.mu.Lock()
	keys := p.keys
	p.mu.Unlock()
	if keys == nil {
		return nil, &tokenError{"arrived before the provider's keys were fetched", nil}
	}
	payload, err := keys.Verify(ctx, raw)
	switch {
	case errors.Is(err, jwks.ErrMalformed):
		return nil, &tokenError{"is not a compact JWS", err}
	case errors.Is(err, jwks.ErrAlgorithm):
		return nil, &tokenError{"is signed with an algorithm the console refuses (it takes " + strings.Join(idTokenAlgs, ", ") + ")", err}
	case errors.Is(err, jwks.ErrKey):
		return nil, &tokenError{"is signed with a key the provider does not publish", err}
	case err != nil:
		return nil, &tokenError{"has an invalid signature", err}
	}
	tok, err := jwt.Parse(payload,
		jwt.WithVerify(false), // verified above
		jwt.WithValidate(true),
		jwt.WithStrictStringClaims(true),
		jwt.WithClock(jwt.ClockFunc(p.now)),
		jwt.WithAcceptableSkew(idTokenSkew),
		jwt.WithIssuer(p.o.Issuer),
		jwt.WithAudience(p.o.ClientID),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithRequiredClaim(jwt.IssuedAtKey),
	)
	if err != nil {
		return nil, &tokenError{invalidClaims(err), err}
	}
	aud, _ := tok.Audience()
	var azp string
	if tok.Has("azp") && (tok.Get("azp", &azp) != nil || azp != p.o.ClientID) || len(aud) > 1 && azp == "" {
		return nil, &tokenError{"was issued to another client (azp)", nil}
	}
	var got string
	if tok.Get("nonce", &got) != nil || subtle.ConstantTimeCompare([]byte(got), []byte(nonce)) != 1 {
		return nil, &tokenError{"does not carry the nonce this sign-in sent", nil}
	}
	return tok, nil
}

func invalidClaims(err error) string {
	switch {
	case errors.Is(err, jwt.TokenExpiredError()):
		return "has expired"
	case errors.Is(err, jwt.TokenNotYetValidError()), errors.Is(err, jwt.InvalidIssuedAtError()):
		return "is not valid yet"
	case errors.Is(err, jwt.InvalidIssuerError()):
		return "was not issued by the configured issuer"
	case errors.Is(err, jwt.InvalidAudienceError()):
		return "was not issued to this console's client id (aud)"
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return "lacks exp or iat"
	}
	return "is invalid"
}

// principal maps an ID token's claims to a principal, who holds
// ScopeConsole if in a console group, and ScopeKeys too if also in a key
// group. A claim of the wrong type is an error rather than ignored, so
// that a misconfigured mapping is noticed.
func (p *provider) principal(tok jwt.Token) (*pipeline.Principal, error) {
	claim := func(name string) (any, bool) {
		var v any
		if !tok.Has(name) || tok.Get(name, &v) != nil {
			return nil, false
		}
		return v, true
	}
	pr := &pipeline.Principal{AuthMethod: methodOIDC}
	v, _ := claim(p.o.UserClaim)
	id, ok := v.(string)
	if !ok || id == "" {
		return nil, fmt.Errorf("claim %q: want a non-empty string naming the user", p.o.UserClaim)
	}
	pr.ID = id
	if p.o.TenantClaim != "" {
		if v, ok := claim(p.o.TenantClaim); ok {
			if pr.Tenant, ok = v.(string); !ok {
				return nil, fmt.Errorf("claim %q: want a string naming the tenant", p.o.TenantClaim)
			}
		}
	}
	if v, ok := claim(p.o.GroupsClaim); ok {
		switch v := v.(type) {
		case string:
			pr.Groups = []string{v}
		case []any:
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("claim %q: want an array of strings, found a %T in it", p.o.GroupsClaim, e)
				}
				pr.Groups = append(pr.Groups, s)
			}
		default:
			return nil, fmt.Errorf("claim %q: want an array of strings, found a %T", p.o.GroupsClaim, v)
		}
	}
	in := func(groups []string) bool {
		return slices.ContainsFunc(pr.Groups, func(g string) bool { return slices.Contains(groups, g) })
	}
	if in(p.o.ConsoleGroups) {
		pr.Scopes = append(pr.Scopes, ScopeConsole)
		if in(p.o.KeyGroups) {
			pr.Scopes = append(pr.Scopes, ScopeKeys)
		}
	}
	return pr, nil
}

// spend marks the sign-in with state finished, until exp; it reports
// false if it already was, or if too many sign-ins are in flight to
// remember one more, and an error if the store cannot answer.
func (p *provider) spend(ctx context.Context, state string, exp time.Time) (bool, error) {
	first, err := p.spent.Use(ctx, "oidc:"+state, exp)
	if errors.Is(err, nonce.ErrFull) {
		return false, nil
	}
	return first, err
}

// flow is a sign-in in progress, as its cookie holds it.
type flow struct {
	state, nonce, verifier string
	expires                time.Time
}

// flowMAC authenticates a flow cookie, with the key of the sign-in form's
// CSRF tokens but a label of its own.
func (c *console) flowMAC(payload string) string {
	m := hmac.New(sha256.New, c.signinKey)
	m.Write([]byte("warden console oidc flow\x00" + payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (c *console) flowCookie(f flow) *http.Cookie {
	payload := strings.Join([]string{f.state, f.nonce, f.verifier, strconv.FormatInt(f.expires.Unix(), 10)}, ".")
	return &http.Cookie{
		Name: flowCookie, Value: payload + "." + c.flowMAC(payload), Path: "/console/oidc",
		MaxAge: int(flowTTL / time.Second), HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode,
	}
}

func clearFlowCookie() *http.Cookie {
	return &http.Cookie{Name: flowCookie, Path: "/console/oidc", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode}
}

// readFlow returns the request's flow if its cookie is intact, unexpired,
// and holds the state the callback names.
func (c *console) readFlow(r *http.Request, now time.Time) (flow, bool) {
	ck, err := r.Cookie(flowCookie)
	if err != nil {
		return flow{}, false
	}
	i := strings.LastIndexByte(ck.Value, '.')
	if i < 0 || !hmac.Equal([]byte(ck.Value[i+1:]), []byte(c.flowMAC(ck.Value[:i]))) {
		return flow{}, false
	}
	parts := strings.Split(ck.Value[:i], ".")
	if len(parts) != 4 {
		return flow{}, false
	}
	exp, err := strconv.ParseInt(parts[3], 10, 64)
	f := flow{state: parts[0], nonce: parts[1], verifier: parts[2], expires: time.Unix(exp, 0)}
	state := r.URL.Query().Get("state")
	if err != nil || !now.Before(f.expires) || subtle.ConstantTimeCompare([]byte(state), []byte(f.state)) != 1 {
		return flow{}, false
	}
	return f, true
}

// ssoStart sends the browser to the provider, with a new flow in its
// cookie. It is a GET, so that a plain link starts it; a page of another
// site that links here gets nothing but the user signed in as themselves.
func (c *console) ssoStart(w http.ResponseWriter, r *http.Request) {
	if s, err := c.session(r); err == nil && s != nil {
		http.Redirect(w, r, "/console/approvals", http.StatusSeeOther)
		return
	}
	conf, err := c.sso.config(r.Context())
	if err != nil {
		// The sign-in page now says single sign-on is unavailable.
		c.log.Warn("console: single sign-on is unavailable", "issuer", c.sso.o.Issuer, "err", err)
		http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
		return
	}
	f := flow{state: randomToken(), nonce: randomToken(), verifier: randomToken(), expires: c.now().Add(flowTTL)}
	http.SetCookie(w, c.flowCookie(f))
	http.Redirect(w, r, conf.AuthCodeURL(f.state, oauth2.S256ChallengeOption(f.verifier), oauth2.SetAuthURLParam("nonce", f.nonce)), http.StatusSeeOther)
}

// ssoRefusal is a single sign-on the console refuses.
type ssoRefusal struct {
	alert  string // the sign-in page's message: a key of ssoAlerts
	reason string // for the audit log, in fixed words that never quote a token
	err    error  // the detail, for the log
	failed bool   // counts as a failed sign-in
}

// ssoAlert is what the sign-in page says after a refused single sign-on,
// by the alert the callback sends it with.
func (c *console) ssoAlert(alert string) string {
	with := "Sign-in with " + c.sso.o.Name
	switch alert {
	case "denied":
		return with + " was denied: you declined, or the identity provider refused to sign you in. If you should have access, ask its administrator."
	case "error":
		return with + " failed: the identity provider reported an error. Try again; if it persists, tell the operator."
	case "expired":
		return with + " could not be completed: it took more than 10 minutes, was already completed, or was started in another tab or browser. Sign in again."
	case "failed":
		return with + " failed: the identity provider's answer could not be verified. The error is logged; try again, and if it persists, tell the operator."
	case "unavailable":
		return with + " is unavailable right now: the identity provider is not answering. Try again in a minute."
	case "refused":
		return "Your account may not use the console: it is in none of the groups allowed to sign in. Ask an operator to add you to one."
	case "limited":
		return "Too many failed sign-ins from your address. Wait a few minutes, then try again."
	}
	return ""
}

// ssoCallback completes a single sign-on: the provider sends the browser
// here with a code, which the console exchanges for an ID token. The flow
// cookie is cleared whatever the outcome: each serves one callback.
func (c *console) ssoCallback(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, clearFlowCookie())
	ctx, addr, now := r.Context(), remoteHost(r), c.now()
	rec := &audit.Record{Method: "console/signin", AuthMethod: "console", RemoteAddr: r.RemoteAddr}
	p, ref := c.ssoSignin(r, addr, now)
	if p != nil {
		rec.Principal, rec.Tenant = p.ID, p.Tenant
	}
	if ref != nil {
		c.log.Warn("console: single sign-on refused", "remote", addr, "principal", rec.Principal, "reason", ref.reason, "err", ref.err)
		if ref.alert != "limited" { // not audited, as with API keys: the log would fill
			if ref.failed {
				c.addFailure(ctx, addr)
			}
			rec.Phase, rec.Decision, rec.Status = audit.Refusal, audit.Deny, audit.StatusRefused
			rec.ErrorCode, rec.Reason = string(pipeline.PermissionDenied), "console sign-in refused: single sign-on: "+ref.reason
			if err := c.o.Record(ctx, rec); err != nil {
				c.log.Error("console: a refused sign-in was not audited", "err", err)
			}
		}
		// The code is spent: send the browser back to the form, which says
		// why, rather than answer on a page that a reload would replay.
		http.Redirect(w, r, "/console/signin?sso="+ref.alert, http.StatusSeeOther)
		return
	}
	s := c.startSession(w, r, rec, p, methodOIDC, nil, now, "signed in to the console with single sign-on ("+c.sso.o.Name+")")
	if s == nil {
		return
	}
	// Not a redirect: the browser came here from the provider's site, and
	// would not send the SameSite=Strict session cookie on a redirect that
	// navigation started. A refresh is the console page's own navigation.
	w.Header().Set("Refresh", "0; url=/console/approvals")
	c.render(w, r, s, http.StatusOK, "signedin", page{Title: "Signed in"})
}

// errorCode is a provider's error code as the audit log may quote it.
var errorCode = regexp.MustCompile(`^[a-z_]{1,64}$`)

// ssoSignin checks a callback and returns its principal, or why it is
// refused; a principal comes with a refusal when the provider vouched for
// a user the console refuses.
func (c *console) ssoSignin(r *http.Request, addr string, now time.Time) (*pipeline.Principal, *ssoRefusal) {
	ctx, q := r.Context(), r.URL.Query()
	f, ok := c.readFlow(r, now)
	if !ok {
		return nil, &ssoRefusal{alert: "expired", reason: "the callback's state matches no sign-in this browser started in the last 10 minutes (expired, or a forged callback)"}
	}
	if first, err := c.sso.spend(ctx, f.state, f.expires); err != nil {
		return nil, &ssoRefusal{alert: "unavailable", reason: "the completed sign-ins cannot be read", err: err}
	} else if !first {
		return nil, &ssoRefusal{alert: "expired", reason: "the sign-in was already completed (a replayed callback)"}
	}
	if e := q.Get("error"); e != "" {
		if !errorCode.MatchString(e) {
			e = "an unknown error"
		}
		alert := "error"
		if e == "access_denied" {
			alert = "denied"
		}
		return nil, &ssoRefusal{alert: alert, reason: "the provider reported " + e}
	}
	if allowed, err := c.failures.Allowed(ctx, addr); err != nil {
		return nil, &ssoRefusal{alert: "unavailable", reason: "the sign-in limits cannot be read", err: err}
	} else if !allowed {
		return nil, &ssoRefusal{alert: "limited", reason: "too many failed sign-ins"}
	}
	conf, err := c.sso.config(ctx)
	if err != nil {
		return nil, &ssoRefusal{alert: "unavailable", reason: "the provider is unavailable", err: err}
	}
	code := q.Get("code")
	if code == "" {
		return nil, &ssoRefusal{alert: "failed", reason: "the callback carries no authorization code", failed: true}
	}
	tok, err := conf.Exchange(context.WithValue(ctx, oauth2.HTTPClient, c.sso.client), code, oauth2.VerifierOption(f.verifier))
	if _, ok := errors.AsType[*oauth2.RetrieveError](err); ok {
		return nil, &ssoRefusal{alert: "failed", reason: "the provider refused the authorization code", err: err, failed: true}
	} else if err != nil {
		return nil, &ssoRefusal{alert: "unavailable", reason: "the provider's token endpoint did not answer", err: err}
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, &ssoRefusal{alert: "failed", reason: "the provider sent no ID token", failed: true}
	}
	idt, err := c.sso.verify(ctx, raw, f.nonce)
	if err != nil {
		what := "is invalid"
		if te, ok := errors.AsType[*tokenError](err); ok {
			what = te.what
		}
		return nil, &ssoRefusal{alert: "failed", reason: "the ID token " + what, err: err, failed: true}
	}
	p, err := c.sso.principal(idt)
	if err != nil {
		return nil, &ssoRefusal{alert: "failed", reason: "the ID token does not name a user as configured", err: err, failed: true}
	}
	if !p.HasScope(ScopeConsole) {
		return p, &ssoRefusal{alert: "refused", reason: "the user is in none of the console groups", failed: true}
	}
	return p, nil
}
