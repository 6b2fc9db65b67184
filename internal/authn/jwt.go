package authn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/jwks"
	"github.com/wardenmcp/warden/pipeline"
)

// What a client is told when its token is refused. The descriptions are
// fixed: they never echo what the token held, so a refusal cannot reflect
// attacker-chosen text into the WWW-Authenticate header. The reason for the
// log travels in the error chain.
const (
	descInvalid     = "the access token is invalid"
	descExpired     = "the access token has expired"
	descNotYetValid = "the access token is not valid yet"
	descIssuer      = "the access token was not issued by a trusted issuer"
	descAudience    = "the access token was not issued for this server"
	descNoExpiry    = "the access token has no expiry"
	descNoIssueTime = "the access token has neither iat nor nbf"
	descLifetime    = "the access token lives longer than this server accepts"
	descClaims      = "the access token lacks the claims that identify its principal"
)

// JWT verifies OAuth 2.1 access tokens that are signed JWTs, making Warden
// an OAuth resource server in the sense of the MCP authorization
// specification: the issuer's signature, the issuer, this server as the
// audience, a bounded lifetime. It is safe for concurrent use.
type JWT struct {
	cfg   config.JWT
	keys  *jwks.Set
	now   func() time.Time
	parse []jwt.ParseOption
}

var _ Verifier = (*JWT)(nil)

// NewJWT loads the issuer's keys, from c.JWKSFile (a path made absolute by
// resolve) or from c.JWKSURL (fetched with client, or a client with a
// timeout if nil), and fails if they cannot be loaded or hold no key that
// can verify a token with one of c.Algorithms. Keys fetched from a URL are
// refreshed as a jwks.Set is: when older than a few minutes, and when a
// token names a key that is not in the set — at most once per
// jwks.DefaultRefreshInterval, so that tokens with made-up key ids cannot
// make Warden hammer the issuer. ctx bounds the initial load only.
func NewJWT(ctx context.Context, c *config.JWT, resolve func(string) string, client *http.Client) (*JWT, error) {
	return newJWT(ctx, c, resolve, client, time.Now)
}

func newJWT(ctx context.Context, c *config.JWT, resolve func(string) string, client *http.Client, now func() time.Time) (*JWT, error) {
	cfg := withDefaults(c)
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("jwt: issuer and audience are required")
	}
	j := &JWT{cfg: cfg, now: now}
	j.parse = []jwt.ParseOption{
		jwt.WithVerify(false), // the signature was verified by j.keys
		jwt.WithValidate(true),
		jwt.WithStrictStringClaims(true),
		jwt.WithClock(jwt.ClockFunc(now)),
		jwt.WithAcceptableSkew(cfg.ClockSkew),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
	}
	opts := jwks.Options{Algorithms: cfg.Algorithms, HTTPClient: client, Now: now}
	var err error
	switch {
	case cfg.JWKSFile != "":
		path := cfg.JWKSFile
		if resolve != nil {
			path = resolve(path)
		}
		var data []byte
		if data, err = os.ReadFile(path); err == nil {
			if j.keys, err = jwks.Parse(data, opts); err != nil {
				err = fmt.Errorf("%s: %w", path, err)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("jwt: jwks_file: %w", err)
		}
	case cfg.JWKSURL != "":
		if j.keys, err = jwks.Fetch(ctx, cfg.JWKSURL, opts); err != nil {
			return nil, fmt.Errorf("jwt: jwks_url: %w", err)
		}
	default:
		return nil, errors.New("jwt: set jwks_url or jwks_file")
	}
	return j, nil
}

// withDefaults copies c and fills what the configuration loader would have,
// so that a JWT built outside it is never laxer than one built inside.
func withDefaults(c *config.JWT) config.JWT {
	cfg := *c
	cfg.Algorithms = slices.Clone(cfg.Algorithms)
	cfg.AuthorizationServers = slices.Clone(cfg.AuthorizationServers)
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = slices.Clone(config.DefaultAlgorithms)
	}
	if cfg.MaxTokenLifetime <= 0 {
		cfg.MaxTokenLifetime = config.DefaultMaxTokenLifetime
	}
	if cfg.ClockSkew <= 0 {
		cfg.ClockSkew = config.DefaultClockSkew
	}
	cfg.Claims = claimNames(cfg.Claims)
	if len(cfg.AuthorizationServers) == 0 && cfg.Issuer != "" {
		cfg.AuthorizationServers = []string{cfg.Issuer}
	}
	return cfg
}

func claimNames(c config.Claims) config.Claims {
	if c.User == "" {
		c.User = "sub"
	}
	if c.Tenant == "" {
		c.Tenant = "tenant"
	}
	if c.Groups == "" {
		c.Groups = "groups"
	}
	return c
}

// Verify checks a bearer token and returns its principal and expiry. Every
// refusal is a *pipeline.AuthError with status 401 and code invalid_token.
func (j *JWT) Verify(ctx context.Context, token string) (*pipeline.Principal, time.Time, error) {
	payload, err := j.keys.Verify(ctx, token)
	if err != nil {
		return nil, time.Time{}, invalid(descInvalid, err)
	}
	// A JWT's payload is a JSON object; anything else (a nested JWS, say)
	// is not a token Warden issues principals for.
	if p := bytes.TrimLeft(payload, " \t\r\n"); len(p) == 0 || p[0] != '{' {
		return nil, time.Time{}, invalid(descInvalid, errors.New("the payload is not a JSON object"))
	}
	tok, err := jwt.Parse(payload, j.parse...)
	if err != nil {
		return nil, time.Time{}, invalid(validationDescription(err), err)
	}
	exp, _ := tok.Expiration()
	start, ok := tok.IssuedAt()
	if !ok {
		start, ok = tok.NotBefore()
	}
	if !ok {
		return nil, time.Time{}, invalid(descNoIssueTime, errors.New("without iat or nbf the token's lifetime is unknown"))
	}
	if life := exp.Sub(start); life > j.cfg.MaxTokenLifetime {
		return nil, time.Time{}, invalid(descLifetime, fmt.Errorf("lifetime %s exceeds max_token_lifetime %s", life, j.cfg.MaxTokenLifetime))
	}
	p, err := principal(j.cfg.Claims, func(name string) (any, bool) {
		var v any
		if !tok.Has(name) || tok.Get(name, &v) != nil {
			return nil, false
		}
		return v, true
	})
	if err != nil {
		return nil, time.Time{}, invalid(descClaims, err)
	}
	p.Token = token
	return p, exp, nil
}

func validationDescription(err error) string {
	switch {
	case errors.Is(err, jwt.TokenExpiredError()):
		return descExpired
	case errors.Is(err, jwt.TokenNotYetValidError()), errors.Is(err, jwt.InvalidIssuedAtError()):
		return descNotYetValid
	case errors.Is(err, jwt.InvalidIssuerError()):
		return descIssuer
	case errors.Is(err, jwt.InvalidAudienceError()):
		return descAudience
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return descNoExpiry
	}
	return descInvalid
}

// PrincipalFromClaims maps verified token claims to a principal, as
// configured in c.Claims: the user id (a non-empty string) from
// Claims.User, the tenant (a string) from Claims.Tenant, groups (a string
// naming one group, or an array of strings) from Claims.Groups, and scopes
// from "scope" (space-separated, RFC 8693) or, failing that, "scp" (a
// space-separated string or an array). A claim of the wrong type is an
// error rather than ignored, so that a misconfigured mapping is noticed.
func PrincipalFromClaims(c *config.JWT, claims map[string]any) (*pipeline.Principal, error) {
	return principal(claimNames(c.Claims), func(name string) (any, bool) {
		v, ok := claims[name]
		return v, ok
	})
}

func principal(names config.Claims, claim func(name string) (any, bool)) (*pipeline.Principal, error) {
	p := &pipeline.Principal{AuthMethod: "jwt"}
	v, _ := claim(names.User)
	id, ok := v.(string)
	if !ok || id == "" {
		return nil, fmt.Errorf("claim %q: want a non-empty string naming the user", names.User)
	}
	p.ID = id
	if v, ok := claim(names.Tenant); ok {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("claim %q: want a string naming the tenant", names.Tenant)
		}
		p.Tenant = s
	}
	var err error
	if v, ok := claim(names.Groups); ok {
		if p.Groups, err = stringList(names.Groups, v, false); err != nil {
			return nil, err
		}
	}
	if v, ok := claim("scope"); ok {
		if _, ok := v.(string); !ok {
			return nil, errors.New(`claim "scope": want a space-separated string`)
		}
		p.Scopes, err = stringList("scope", v, true)
	} else if v, ok := claim("scp"); ok {
		p.Scopes, err = stringList("scp", v, true)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// stringList reads a claim that is a string or an array of strings; split
// says whether a string holds several space-separated values. Empty values
// and repeats are dropped.
func stringList(name string, v any, split bool) ([]string, error) {
	var vals []string
	switch v := v.(type) {
	case string:
		if split {
			vals = strings.Fields(v)
		} else {
			vals = []string{v}
		}
	case []string:
		vals = slices.Clone(v)
	case []any:
		vals = make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("claim %q: want an array of strings, found a %T", name, e)
			}
			vals = append(vals, s)
		}
	default:
		return nil, fmt.Errorf("claim %q: want a string or an array of strings, found %T", name, v)
	}
	out := vals[:0]
	for _, s := range vals {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// Metadata returns this server's OAuth protected resource metadata (RFC
// 9728), from which MCP clients learn where to obtain a token and for which
// resource; scopes lists every scope the configuration uses. Each call
// returns a fresh value that the caller may change.
func (j *JWT) Metadata(scopes []string) *oauthex.ProtectedResourceMetadata {
	s := slices.Clone(scopes)
	slices.Sort(s)
	return &oauthex.ProtectedResourceMetadata{
		Resource:               j.cfg.Audience,
		AuthorizationServers:   slices.Clone(j.cfg.AuthorizationServers),
		ScopesSupported:        slices.Compact(s),
		BearerMethodsSupported: []string{"header"},
	}
}

// refusal is a refused token: the 401 a client sees and, for the log, the
// reason, which may name what the token held.
type refusal struct {
	auth   *pipeline.AuthError
	reason error
}

func invalid(description string, reason error) error {
	return &refusal{auth: pipeline.Unauthenticated("invalid_token", description), reason: reason}
}

func (r *refusal) Error() string   { return r.auth.Description + ": " + r.reason.Error() }
func (r *refusal) Unwrap() []error { return []error{r.auth, r.reason} }
