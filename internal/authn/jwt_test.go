package authn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	_ "crypto/sha512" // for crypto.SHA512
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/jwks"
	"github.com/wardenmcp/warden/pipeline"
)

const (
	testIssuer   = "https://idp.example.com"
	testAudience = "https://mcp.example.com/mcp"
)

// testKeys are generated once per test binary: RSA generation is slow.
var testKeys = sync.OnceValue(func() struct {
	rsa, rsa2, rsaRS256 *rsa.PrivateKey
	ec, ec384           *ecdsa.PrivateKey
	ed                  ed25519.PrivateKey
} {
	check := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	var k struct {
		rsa, rsa2, rsaRS256 *rsa.PrivateKey
		ec, ec384           *ecdsa.PrivateKey
		ed                  ed25519.PrivateKey
	}
	var err error
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	check(err)
	k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
	check(err)
	k.rsaRS256, err = rsa.GenerateKey(rand.Reader, 2048)
	check(err)
	k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	check(err)
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	check(err)
	return k
})

var b64url = base64.RawURLEncoding

// jwkOf writes a public key as a JWK, by hand, so that the keys the tests
// trust do not depend on the library under test.
func jwkOf(kid string, pub crypto.PublicKey, extra ...string) map[string]any {
	m := map[string]any{"kid": kid}
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		m["kty"] = "RSA"
		m["n"] = b64url.EncodeToString(pub.N.Bytes())
		m["e"] = b64url.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		pt, err := pub.Bytes()
		if err != nil {
			panic(err)
		}
		n := (len(pt) - 1) / 2
		m["kty"], m["crv"] = "EC", pub.Curve.Params().Name
		m["x"], m["y"] = b64url.EncodeToString(pt[1:1+n]), b64url.EncodeToString(pt[1+n:])
	case ed25519.PublicKey:
		m["kty"], m["crv"] = "OKP", "Ed25519"
		m["x"] = b64url.EncodeToString(pub)
	default:
		panic("unsupported key")
	}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

func jwksJSON(keys ...map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err)
	}
	return b
}

// The issuer's usual key set: one key of each type, an RSA key published
// for RS256 only, and a P-384 key (for ES384, which is not allowed).
func standardJWKS() []byte {
	k := testKeys()
	return jwksJSON(
		jwkOf("rsa", &k.rsa.PublicKey),
		jwkOf("ec", &k.ec.PublicKey),
		jwkOf("ec384", &k.ec384.PublicKey),
		jwkOf("ed", k.ed.Public()),
		jwkOf("rsa-rs256", &k.rsaRS256.PublicKey, "alg", "RS256", "use", "sig"),
	)
}

// signToken hand-crafts a compact JWS, so that tests can build the tokens
// a careful library would refuse to make.
func signToken(header, claims map[string]any, sign func(input []byte) []byte) string {
	h, err := json.Marshal(header)
	if err != nil {
		panic(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	input := b64url.EncodeToString(h) + "." + b64url.EncodeToString(c)
	return input + "." + b64url.EncodeToString(sign([]byte(input)))
}

func rs(key *rsa.PrivateKey, h crypto.Hash) func([]byte) []byte {
	return func(in []byte) []byte {
		d := h.New()
		d.Write(in)
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, h, d.Sum(nil))
		if err != nil {
			panic(err)
		}
		return sig
	}
}

func ps256(key *rsa.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte {
		d := sha256.Sum256(in)
		sig, err := rsa.SignPSS(rand.Reader, key, crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		if err != nil {
			panic(err)
		}
		return sig
	}
}

func es256(key *ecdsa.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte {
		d := sha256.Sum256(in)
		r, s, err := ecdsa.Sign(rand.Reader, key, d[:])
		if err != nil {
			panic(err)
		}
		n := (key.Curve.Params().BitSize + 7) / 8
		sig := make([]byte, 2*n)
		r.FillBytes(sig[:n])
		s.FillBytes(sig[n:])
		return sig
	}
}

func eddsa(key ed25519.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte { return ed25519.Sign(key, in) }
}

func hs256(secret []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}

func joseHeader(alg, kid string) map[string]any {
	h := map[string]any{"alg": alg, "typ": "JWT"}
	if kid != "" {
		h["kid"] = kid
	}
	return h
}

// claimsAt are valid claims at now; pairs override them, and a nil value
// removes a claim.
func claimsAt(now time.Time, pairs ...any) map[string]any {
	m := map[string]any{
		"iss":   testIssuer,
		"aud":   testAudience,
		"sub":   "alice",
		"iat":   now.Unix(),
		"exp":   now.Add(5 * time.Minute).Unix(),
		"scope": "crm.read",
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		k := pairs[i].(string)
		if pairs[i+1] == nil {
			delete(m, k)
		} else {
			m[k] = pairs[i+1]
		}
	}
	return m
}

// jwtClock is the time the verifier sees.
type jwtClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *jwtClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *jwtClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// idp serves a JWKS on loopback and counts its fetches.
type idp struct {
	srv     *httptest.Server
	fetches atomic.Int64

	mu     sync.Mutex
	body   []byte
	status int
}

func newIdP(t testing.TB, body []byte) *idp {
	p := &idp{body: body, status: http.StatusOK}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		body, status := p.body, p.status
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) serve(status int, body []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status, p.body = status, body
}

func jwtConfig(jwksURL string) *config.JWT {
	return &config.JWT{
		Issuer:           testIssuer,
		Audience:         testAudience,
		JWKSURL:          jwksURL,
		Algorithms:       config.DefaultAlgorithms,
		MaxTokenLifetime: config.DefaultMaxTokenLifetime,
		ClockSkew:        config.DefaultClockSkew,
		Claims:           config.Claims{User: "sub", Tenant: "tenant", Groups: "groups"},
	}
}

// newTestJWT starts an issuer serving body and a verifier of its tokens,
// on a fake clock.
func newTestJWT(t *testing.T, body []byte) (*JWT, *idp, *jwtClock) {
	t.Helper()
	p := newIdP(t, body)
	clk := &jwtClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	j, err := newJWT(t.Context(), jwtConfig(p.srv.URL), nil, p.srv.Client(), clk.Now)
	if err != nil {
		t.Fatalf("newJWT: %v", err)
	}
	return j, p, clk
}

// wantTokenRefused checks that err is the 401 invalid_token every refused
// token gets, with description desc if desc is set.
func wantTokenRefused(t *testing.T, err error, desc string) {
	t.Helper()
	var ae *pipeline.AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v (%T), want a *pipeline.AuthError", err, err)
	}
	if ae.Status != http.StatusUnauthorized || ae.Code != "invalid_token" {
		t.Errorf("refused with %d %q, want 401 invalid_token", ae.Status, ae.Code)
	}
	if desc != "" && ae.Description != desc {
		t.Errorf("description = %q, want %q (reason: %v)", ae.Description, desc, err)
	}
}

func TestJWTVerify(t *testing.T) {
	j, p, clk := newTestJWT(t, standardJWKS())
	k := testKeys()
	now := clk.Now()
	alice := &pipeline.Principal{ID: "alice", Scopes: []string{"crm.read"}, AuthMethod: "jwt"}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: mustValue(x509.MarshalPKIXPublicKey(&k.rsa.PublicKey))})
	rsaPKCS1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	valid := signToken(joseHeader("RS256", "rsa"), claimsAt(now), rs(k.rsa, crypto.SHA256))
	parts := strings.Split(valid, ".")

	tests := []struct {
		name  string
		token string
		want  *pipeline.Principal // nil: refused
		desc  string              // the refusal's description, if checked
	}{
		{name: "valid RS256", token: valid, want: alice},
		{name: "valid PS256", token: signToken(joseHeader("PS256", "rsa"), claimsAt(now), ps256(k.rsa)), want: alice},
		{name: "valid ES256", token: signToken(joseHeader("ES256", "ec"), claimsAt(now), es256(k.ec)), want: alice},
		{name: "valid EdDSA", token: signToken(joseHeader("EdDSA", "ed"), claimsAt(now), eddsa(k.ed)), want: alice},
		{name: "valid RS256 with a key published for RS256", token: signToken(joseHeader("RS256", "rsa-rs256"), claimsAt(now), rs(k.rsaRS256, crypto.SHA256)), want: alice},

		{name: "expired", desc: descExpired,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "iat", now.Add(-7*time.Minute).Unix(), "exp", now.Add(-2*time.Minute).Unix()), rs(k.rsa, crypto.SHA256))},
		{name: "expired within the clock skew", want: alice,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "iat", now.Add(-5*time.Minute).Unix(), "exp", now.Add(-30*time.Second).Unix()), rs(k.rsa, crypto.SHA256))},
		{name: "not yet valid", desc: descNotYetValid,
			token: signToken(joseHeader("ES256", "ec"), claimsAt(now, "nbf", now.Add(2*time.Minute).Unix()), es256(k.ec))},
		{name: "not yet valid within the clock skew", want: alice,
			token: signToken(joseHeader("ES256", "ec"), claimsAt(now, "nbf", now.Add(30*time.Second).Unix()), es256(k.ec))},
		{name: "issued in the future", desc: descNotYetValid,
			token: signToken(joseHeader("EdDSA", "ed"), claimsAt(now, "iat", now.Add(2*time.Minute).Unix(), "exp", now.Add(7*time.Minute).Unix()), eddsa(k.ed))},
		{name: "wrong issuer", desc: descIssuer,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "iss", "https://evil.example.com"), rs(k.rsa, crypto.SHA256))},
		{name: "wrong audience", desc: descAudience,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "aud", "https://other.example.com/mcp"), rs(k.rsa, crypto.SHA256))},
		{name: "audience list containing ours", want: alice,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "aud", []string{"https://other.example.com", testAudience}), rs(k.rsa, crypto.SHA256))},
		{name: "audience list without ours", desc: descAudience,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "aud", []string{"https://other.example.com", "https://mcp.example.com"}), rs(k.rsa, crypto.SHA256))},
		{name: "no audience", desc: descAudience,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "aud", nil), rs(k.rsa, crypto.SHA256))},
		{name: "lifetime over the maximum", desc: descLifetime,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "exp", now.Add(16*time.Minute).Unix()), rs(k.rsa, crypto.SHA256))},
		{name: "lifetime at the maximum", want: alice,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "exp", now.Add(15*time.Minute).Unix()), rs(k.rsa, crypto.SHA256))},
		{name: "lifetime from nbf over the maximum", desc: descLifetime,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "iat", nil, "nbf", now.Add(-time.Minute).Unix(), "exp", now.Add(15*time.Minute).Unix()), rs(k.rsa, crypto.SHA256))},
		{name: "lifetime from nbf", want: alice,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "iat", nil, "nbf", now.Unix()), rs(k.rsa, crypto.SHA256))},
		{name: "neither iat nor nbf", desc: descNoIssueTime,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "iat", nil), rs(k.rsa, crypto.SHA256))},
		{name: "missing exp", desc: descNoExpiry,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "exp", nil), rs(k.rsa, crypto.SHA256))},

		{name: "alg none", desc: descInvalid,
			token: signToken(joseHeader("none", "rsa"), claimsAt(now), func([]byte) []byte { return nil })},
		{name: "alg none without a kid", desc: descInvalid,
			token: signToken(map[string]any{"alg": "none"}, claimsAt(now), func([]byte) []byte { return nil })},
		{name: "HS256 keyed with the RSA public key PEM", desc: descInvalid,
			token: signToken(joseHeader("HS256", "rsa"), claimsAt(now), hs256(rsaPEM))},
		{name: "HS256 keyed with the RSA public key PKCS#1 PEM", desc: descInvalid,
			token: signToken(joseHeader("HS256", "rsa"), claimsAt(now), hs256(rsaPKCS1PEM))},
		{name: "HS256 keyed with the RSA modulus", desc: descInvalid,
			token: signToken(joseHeader("HS256", "rsa"), claimsAt(now), hs256(k.rsa.N.Bytes()))},
		{name: "RS256 signature under a header naming RS512", desc: descInvalid,
			token: signToken(joseHeader("RS512", "rsa"), claimsAt(now), rs(k.rsa, crypto.SHA256))},
		{name: "RS512, not in the allow-list", desc: descInvalid,
			token: signToken(joseHeader("RS512", "rsa"), claimsAt(now), rs(k.rsa, crypto.SHA512))},
		{name: "ES256 naming the RSA key", desc: descInvalid,
			token: signToken(joseHeader("ES256", "rsa"), claimsAt(now), es256(k.ec))},
		{name: "RS256 naming the EC key", desc: descInvalid,
			token: signToken(joseHeader("RS256", "ec"), claimsAt(now), rs(k.rsa, crypto.SHA256))},
		{name: "ES256 naming a P-384 key", desc: descInvalid,
			token: signToken(joseHeader("ES256", "ec384"), claimsAt(now), es256(k.ec384))},
		{name: "an unknown algorithm", desc: descInvalid,
			token: signToken(joseHeader("XS256", "rsa"), claimsAt(now), rs(k.rsa, crypto.SHA256))},
		{name: "EdDSA naming the RSA key", desc: descInvalid,
			token: signToken(joseHeader("EdDSA", "rsa"), claimsAt(now), eddsa(k.ed))},
		{name: "PS256 with a key published for RS256 only", desc: descInvalid,
			token: signToken(joseHeader("PS256", "rsa-rs256"), claimsAt(now), ps256(k.rsaRS256))},
		{name: "signed by another key", desc: descInvalid,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now), rs(k.rsa2, crypto.SHA256))},
		{name: "unknown kid", desc: descInvalid,
			token: signToken(joseHeader("RS256", "rsa2"), claimsAt(now), rs(k.rsa2, crypto.SHA256))},
		{name: "no kid with several keys", desc: descInvalid,
			token: signToken(joseHeader("RS256", ""), claimsAt(now), rs(k.rsa, crypto.SHA256))},
		{name: "tampered payload", desc: descInvalid,
			token: parts[0] + "." + b64url.EncodeToString(mustValue(json.Marshal(claimsAt(now, "sub", "admin")))) + "." + parts[2]},
		{name: "tampered header", desc: descInvalid,
			token: b64url.EncodeToString([]byte(`{"alg":"RS256","kid":"rsa","typ":"at+jwt"}`)) + "." + parts[1] + "." + parts[2]},
		{name: "no signature", desc: descInvalid, token: parts[0] + "." + parts[1] + "."},
		{name: "unknown critical header", desc: descInvalid,
			token: signToken(map[string]any{"alg": "RS256", "kid": "rsa", "crit": []string{"x-warden"}, "x-warden": true}, claimsAt(now), rs(k.rsa, crypto.SHA256))},
		{name: "JSON serialization", desc: descInvalid,
			token: `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`},
		{name: "not a JWT", desc: descInvalid, token: "wdn_not-a-jwt"},
		{name: "too long", desc: descInvalid, token: parts[0] + "." + strings.Repeat("A", jwks.MaxTokenBytes) + "." + parts[2]},

		{name: "scope from scp string", want: &pipeline.Principal{ID: "alice", Scopes: []string{"crm.read", "crm.write"}, AuthMethod: "jwt"},
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "scope", nil, "scp", "crm.read crm.write"), rs(k.rsa, crypto.SHA256))},
		{name: "scope from scp array", want: &pipeline.Principal{ID: "alice", Scopes: []string{"crm.read", "crm.write"}, AuthMethod: "jwt"},
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "scope", nil, "scp", []string{"crm.read", "crm.write"}), rs(k.rsa, crypto.SHA256))},
		{name: "scope, space-separated, before scp", want: &pipeline.Principal{ID: "alice", Scopes: []string{"a", "b"}, AuthMethod: "jwt"},
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "scope", " a  b a ", "scp", []string{"c"}), rs(k.rsa, crypto.SHA256))},
		{name: "no scope", want: &pipeline.Principal{ID: "alice", AuthMethod: "jwt"},
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "scope", nil), rs(k.rsa, crypto.SHA256))},
		{name: "tenant and groups", want: &pipeline.Principal{ID: "alice", Tenant: "acme", Scopes: []string{"crm.read"}, Groups: []string{"admins", "sales"}, AuthMethod: "jwt"},
			token: signToken(joseHeader("ES256", "ec"), claimsAt(now, "tenant", "acme", "groups", []string{"admins", "sales"}), es256(k.ec))},
		{name: "one group as a string", want: &pipeline.Principal{ID: "alice", Scopes: []string{"crm.read"}, Groups: []string{"Domain Admins"}, AuthMethod: "jwt"},
			token: signToken(joseHeader("ES256", "ec"), claimsAt(now, "groups", "Domain Admins"), es256(k.ec))},
		{name: "no subject", desc: descClaims,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "sub", nil), rs(k.rsa, crypto.SHA256))},
		{name: "groups of the wrong type", desc: descClaims,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "groups", []any{"admins", 7}), rs(k.rsa, crypto.SHA256))},
		{name: "scope as an array", desc: descClaims,
			token: signToken(joseHeader("RS256", "rsa"), claimsAt(now, "scope", []string{"crm.read"}), rs(k.rsa, crypto.SHA256))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, exp, err := j.Verify(t.Context(), tt.token)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("accepted as %+v, want refused", p)
				}
				wantTokenRefused(t, err, tt.desc)
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			// The verified token is kept, for token exchange at upstreams.
			if p.Token != tt.token {
				t.Errorf("the principal does not keep the token it was verified from")
			}
			p.Token = ""
			if !reflect.DeepEqual(p, tt.want) {
				t.Errorf("principal = %+v, want %+v", p, tt.want)
			}
			if exp.IsZero() || exp.Before(now.Add(-time.Minute)) {
				t.Errorf("expiry = %v", exp)
			}
		})
	}
	if n := p.fetches.Load(); n != 1 {
		t.Errorf("the key set was fetched %d times, want once: refusals within %s of a fetch mustValue not fetch again", n, jwks.DefaultRefreshInterval)
	}
}

func TestJWTVerifyReturnsExpiry(t *testing.T) {
	j, _, clk := newTestJWT(t, standardJWKS())
	exp := clk.Now().Add(4 * time.Minute).Truncate(time.Second)
	tok := signToken(joseHeader("EdDSA", "ed"), claimsAt(clk.Now(), "exp", exp.Unix()), eddsa(testKeys().ed))
	_, got, err := j.Verify(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(exp) {
		t.Errorf("expiry = %v, want %v", got, exp)
	}
}

// A refusal tells the client what is wrong without reflecting the token,
// and keeps the reason in the error chain for the log.
func TestJWTRefusalDoesNotEchoToken(t *testing.T) {
	j, _, clk := newTestJWT(t, standardJWKS())
	k := testKeys()
	evil := `"><script>alert(1)</script>`
	for _, tok := range []string{
		signToken(joseHeader("RS256", "rsa"), claimsAt(clk.Now(), "iss", evil), rs(k.rsa, crypto.SHA256)),
		signToken(joseHeader("RS256", evil), claimsAt(clk.Now()), rs(k.rsa, crypto.SHA256)),
		signToken(joseHeader("RS256", "rsa"), claimsAt(clk.Now(), "sub", nil, "aud", evil), rs(k.rsa, crypto.SHA256)),
	} {
		_, _, err := j.Verify(t.Context(), tok)
		var ae *pipeline.AuthError
		if !errors.As(err, &ae) {
			t.Fatalf("err = %v, want a *pipeline.AuthError", err)
		}
		if strings.Contains(ae.Description, "script") || strings.Contains(ae.Description, "alice") {
			t.Errorf("description %q echoes the token", ae.Description)
		}
		if err.Error() == ae.Description {
			t.Errorf("error %q carries no reason for the log", err)
		}
	}
}

func TestJWTKeyRotation(t *testing.T) {
	j, p, clk := newTestJWT(t, standardJWKS())
	k := testKeys()
	rotated := func() string {
		return signToken(joseHeader("RS256", "rsa2"), claimsAt(clk.Now()), rs(k.rsa2, crypto.SHA256))
	}

	// The issuer rotates; within the refresh interval of the first fetch,
	// an unknown kid is refused without a fetch.
	p.serve(http.StatusOK, jwksJSON(jwkOf("rsa", &k.rsa.PublicKey), jwkOf("rsa2", &k.rsa2.PublicKey)))
	_, _, err := j.Verify(t.Context(), rotated())
	wantTokenRefused(t, err, descInvalid)
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}

	// Later, the unknown kid makes Warden fetch the set again, and the
	// token signed with the new key is accepted.
	clk.Advance(jwks.DefaultRefreshInterval)
	if _, _, err := j.Verify(t.Context(), rotated()); err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
	if n := p.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}

	// A kid still unknown after a fetch is refused.
	clk.Advance(jwks.DefaultRefreshInterval)
	ghost := signToken(joseHeader("RS256", "ghost"), claimsAt(clk.Now()), rs(k.rsa2, crypto.SHA256))
	_, _, err = j.Verify(t.Context(), ghost)
	wantTokenRefused(t, err, descInvalid)
	if n := p.fetches.Load(); n != 3 {
		t.Fatalf("fetches = %d, want 3", n)
	}
}

func TestJWTKeyFile(t *testing.T) {
	k := testKeys()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), jwksJSON(jwkOf("ed", k.ed.Public())), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := jwtConfig("")
	cfg.JWKSFile = "jwks.json"
	clk := &jwtClock{t: time.Now()}
	j, err := newJWT(t.Context(), cfg, func(p string) string { return filepath.Join(dir, p) }, nil, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	// One key: a token without a kid may use it.
	if _, _, err := j.Verify(t.Context(), signToken(joseHeader("EdDSA", ""), claimsAt(clk.Now()), eddsa(k.ed))); err != nil {
		t.Errorf("valid token: %v", err)
	}
	_, _, err = j.Verify(t.Context(), signToken(joseHeader("RS256", "rsa"), claimsAt(clk.Now()), rs(k.rsa, crypto.SHA256)))
	wantTokenRefused(t, err, descInvalid)
}

func TestNewJWTRefusesUnusableKeys(t *testing.T) {
	k := testKeys()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	privateRSA := jwkOf("rsa", &k.rsa.PublicKey, "d", b64url.EncodeToString(k.rsa.D.Bytes()),
		"p", b64url.EncodeToString(k.rsa.Primes[0].Bytes()), "q", b64url.EncodeToString(k.rsa.Primes[1].Bytes()))
	tests := []struct {
		name   string
		status int
		body   []byte
		want   string
	}{
		{"not found", http.StatusNotFound, []byte("no"), "404"},
		{"not JSON", http.StatusOK, []byte("<html>"), ""},
		{"empty set", http.StatusOK, []byte(`{"keys":[]}`), "empty"},
		{"symmetric key", http.StatusOK, jwksJSON(jwkOf("rsa", &k.rsa.PublicKey), map[string]any{"kty": "oct", "kid": "h", "k": b64url.EncodeToString([]byte("secret"))}), "symmetric"},
		{"private key", http.StatusOK, jwksJSON(privateRSA), "private"},
		{"only an encryption key", http.StatusOK, jwksJSON(jwkOf("rsa", &k.rsa.PublicKey, "use", "enc")), "use"},
		{"only a short RSA key", http.StatusOK, jwksJSON(jwkOf("rsa", &small.PublicKey)), "2048"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newIdP(t, tt.body)
			p.serve(tt.status, tt.body)
			_, err := NewJWT(t.Context(), jwtConfig(p.srv.URL), nil, p.srv.Client())
			if err == nil {
				t.Fatal("NewJWT succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
			t.Log(err)
		})
	}
}

func TestNewJWTRefusesUnsafeConfig(t *testing.T) {
	p := newIdP(t, standardJWKS())
	tests := []struct {
		name   string
		change func(*config.JWT)
	}{
		{"HS256 allowed", func(c *config.JWT) { c.Algorithms = []string{"RS256", "HS256"} }},
		{"none allowed", func(c *config.JWT) { c.Algorithms = []string{"none"} }},
		{"plain HTTP beyond loopback", func(c *config.JWT) { c.JWKSURL = "http://idp.example.com/jwks" }},
		{"no issuer", func(c *config.JWT) { c.Issuer = "" }},
		{"no audience", func(c *config.JWT) { c.Audience = "" }},
		{"no keys", func(c *config.JWT) { c.JWKSURL = "" }},
		{"missing key file", func(c *config.JWT) { c.JWKSURL, c.JWKSFile = "", filepath.Join(t.TempDir(), "none.json") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := jwtConfig(p.srv.URL)
			tt.change(cfg)
			if _, err := NewJWT(t.Context(), cfg, nil, p.srv.Client()); err == nil {
				t.Error("NewJWT succeeded, want an error")
			}
		})
	}
}

func TestJWTPrincipalFromClaims(t *testing.T) {
	custom := &config.JWT{Claims: config.Claims{User: "email", Tenant: "https://example.com/org", Groups: "roles"}}
	tests := []struct {
		name   string
		cfg    *config.JWT
		claims string
		want   *pipeline.Principal
	}{
		{"defaults", &config.JWT{}, `{"sub":"alice","tenant":"acme","groups":["a","b"],"scope":"x y"}`,
			&pipeline.Principal{ID: "alice", Tenant: "acme", Groups: []string{"a", "b"}, Scopes: []string{"x", "y"}, AuthMethod: "jwt"}},
		{"custom claim names", custom, `{"sub":"ignored","email":"bob@example.com","https://example.com/org":"acme","roles":"admin","scp":["x"]}`,
			&pipeline.Principal{ID: "bob@example.com", Tenant: "acme", Groups: []string{"admin"}, Scopes: []string{"x"}, AuthMethod: "jwt"}},
		{"empty and repeated values dropped", &config.JWT{}, `{"sub":"alice","groups":["a","","a"],"scp":"x  x"}`,
			&pipeline.Principal{ID: "alice", Groups: []string{"a"}, Scopes: []string{"x"}, AuthMethod: "jwt"}},
		{"no user", &config.JWT{}, `{"tenant":"acme"}`, nil},
		{"empty user", &config.JWT{}, `{"sub":""}`, nil},
		{"numeric user", &config.JWT{}, `{"sub":42}`, nil},
		{"tenant not a string", &config.JWT{}, `{"sub":"alice","tenant":["acme"]}`, nil},
		{"groups not strings", &config.JWT{}, `{"sub":"alice","groups":[1]}`, nil},
		{"groups null", &config.JWT{}, `{"sub":"alice","groups":null}`, nil},
		{"scp an object", &config.JWT{}, `{"sub":"alice","scp":{"x":true}}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal([]byte(tt.claims), &m); err != nil {
				t.Fatal(err)
			}
			p, err := PrincipalFromClaims(tt.cfg, m)
			if tt.want == nil {
				if err == nil {
					t.Errorf("mapped to %+v, want an error", p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p, tt.want) {
				t.Errorf("principal = %+v, want %+v", p, tt.want)
			}
		})
	}
}

func TestJWTMetadata(t *testing.T) {
	j, _, _ := newTestJWT(t, standardJWKS())
	scopes := []string{"crm.write", "crm.read", "crm.write"}
	m := j.Metadata(scopes)
	if m.Resource != testAudience {
		t.Errorf("resource = %q, want %q", m.Resource, testAudience)
	}
	if !slices.Equal(m.AuthorizationServers, []string{testIssuer}) {
		t.Errorf("authorization_servers = %q, want [issuer]", m.AuthorizationServers)
	}
	if !slices.Equal(m.ScopesSupported, []string{"crm.read", "crm.write"}) {
		t.Errorf("scopes_supported = %q", m.ScopesSupported)
	}
	if !slices.Equal(m.BearerMethodsSupported, []string{"header"}) {
		t.Errorf("bearer_methods_supported = %q, want [header]", m.BearerMethodsSupported)
	}
	if scopes[0] != "crm.write" {
		t.Error("Metadata reordered its argument")
	}
	m.AuthorizationServers[0] = "changed"
	if j.Metadata(nil).AuthorizationServers[0] != testIssuer {
		t.Error("changing the returned metadata changed the verifier's")
	}
}

func mustValue[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func BenchmarkJWTVerify(b *testing.B) {
	k := testKeys()
	p := newIdP(b, standardJWKS())
	j, err := NewJWT(b.Context(), jwtConfig(p.srv.URL), nil, p.srv.Client())
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for _, bm := range []struct {
		name  string
		token string
	}{
		{"RS256", signToken(joseHeader("RS256", "rsa"), claimsAt(now), rs(k.rsa, crypto.SHA256))},
		{"ES256", signToken(joseHeader("ES256", "ec"), claimsAt(now), es256(k.ec))},
		{"EdDSA", signToken(joseHeader("EdDSA", "ed"), claimsAt(now, "groups", []string{"admins", "sales"}), eddsa(k.ed))},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := j.Verify(b.Context(), bm.token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Whatever arrives as a bearer token, Verify neither panics nor accepts a
// token the issuer did not sign.
func FuzzJWTVerify(f *testing.F) {
	k := testKeys()
	p := newIdP(f, standardJWKS())
	clk := &jwtClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	j, err := newJWT(f.Context(), jwtConfig(p.srv.URL), nil, p.srv.Client(), clk.Now)
	if err != nil {
		f.Fatal(err)
	}
	now := clk.Now()
	f.Add(signToken(joseHeader("RS256", "rsa"), claimsAt(now), rs(k.rsa, crypto.SHA256)))
	f.Add(signToken(joseHeader("ES256", "ec"), claimsAt(now, "groups", []string{"a"}), es256(k.ec)))
	f.Add(signToken(joseHeader("EdDSA", "ed"), claimsAt(now, "scp", []string{"x"}), eddsa(k.ed)))
	f.Add(signToken(joseHeader("none", "rsa"), claimsAt(now), func([]byte) []byte { return nil }))
	f.Add("")
	f.Add("..")
	f.Fuzz(func(t *testing.T, token string) {
		pr, _, err := j.Verify(t.Context(), token)
		if err != nil {
			wantTokenRefused(t, err, "")
			return
		}
		// Only the seeds are signed; a mutation that still verifies can
		// differ only in how the same signed bytes are encoded.
		if pr.ID != "alice" {
			t.Errorf("accepted a token for %q", pr.ID)
		}
	})
}
