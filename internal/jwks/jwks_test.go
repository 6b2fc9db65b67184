package jwks

import (
	"bytes"
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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testKeys are generated once per test binary: RSA generation is slow.
var testKeys = sync.OnceValue(func() (k struct {
	rsa, rsa2, rsaRS256 *rsa.PrivateKey
	ec, ec384           *ecdsa.PrivateKey
	ed                  ed25519.PrivateKey
}) {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	var err error
	for _, p := range []**rsa.PrivateKey{&k.rsa, &k.rsa2, &k.rsaRS256} {
		*p, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
	}
	k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(err)
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
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

func setJSON(keys ...map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err)
	}
	return b
}

// standardSet holds one key of each type, an RSA key published for RS256
// only, and a P-384 key (for ES384, which testAlgs do not allow).
func standardSet() []byte {
	k := testKeys()
	return setJSON(
		jwkOf("rsa", &k.rsa.PublicKey),
		jwkOf("ec", &k.ec.PublicKey),
		jwkOf("ec384", &k.ec384.PublicKey),
		jwkOf("ed", k.ed.Public()),
		jwkOf("rsa-rs256", &k.rsaRS256.PublicKey, "alg", "RS256", "use", "sig"),
	)
}

var testAlgs = []string{"RS256", "PS256", "ES256", "EdDSA"}

// signToken hand-crafts a compact JWS, so that tests can build the tokens
// a careful library would refuse to make.
func signToken(header map[string]any, sign func(input []byte) []byte) string {
	h, err := json.Marshal(header)
	if err != nil {
		panic(err)
	}
	input := b64url.EncodeToString(h) + "." + b64url.EncodeToString([]byte(`{"sub":"alice"}`))
	return input + "." + b64url.EncodeToString(sign([]byte(input)))
}

func hdr(alg, kid string) map[string]any {
	h := map[string]any{"alg": alg}
	if kid != "" {
		h["kid"] = kid
	}
	return h
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

func noSignature([]byte) []byte { return nil }

// clock is the time the set sees.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// issuer serves a key set on loopback and counts its fetches.
type issuer struct {
	srv     *httptest.Server
	fetches atomic.Int64

	mu     sync.Mutex
	body   []byte
	status int
}

func newIssuer(t testing.TB, body []byte) *issuer {
	p := &issuer{body: body, status: http.StatusOK}
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

func (p *issuer) serve(status int, body []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status, p.body = status, body
}

// newTestSet starts an issuer serving body and a set fetched from it, on
// a fake clock.
func newTestSet(t *testing.T, body []byte, algs ...string) (*Set, *issuer, *clock) {
	t.Helper()
	if algs == nil {
		algs = testAlgs
	}
	p := newIssuer(t, body)
	clk := &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	s, err := Fetch(t.Context(), p.srv.URL, Options{Algorithms: algs, HTTPClient: p.srv.Client(), Now: clk.Now})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return s, p, clk
}

func TestVerify(t *testing.T) {
	s, p, _ := newTestSet(t, standardSet(), "RS256", "RS512", "PS256", "ES256", "EdDSA")
	k := testKeys()
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&k.rsa.PublicKey))})
	valid := signToken(hdr("RS256", "rsa"), rs(k.rsa, crypto.SHA256))
	parts := strings.Split(valid, ".")

	tests := []struct {
		name  string
		token string
		want  error // nil: accepted
	}{
		{"RS256", valid, nil},
		{"RS512", signToken(hdr("RS512", "rsa"), rs(k.rsa, crypto.SHA512)), nil},
		{"PS256", signToken(hdr("PS256", "rsa"), ps256(k.rsa)), nil},
		{"ES256", signToken(hdr("ES256", "ec"), es256(k.ec)), nil},
		{"EdDSA", signToken(hdr("EdDSA", "ed"), eddsa(k.ed)), nil},
		{"RS256 with a key published for RS256", signToken(hdr("RS256", "rsa-rs256"), rs(k.rsaRS256, crypto.SHA256)), nil},

		{"alg none", signToken(hdr("none", "rsa"), noSignature), ErrAlgorithm},
		{"alg none without a kid", signToken(hdr("none", ""), noSignature), ErrAlgorithm},
		{"alg none with a signature", signToken(hdr("none", "rsa"), rs(k.rsa, crypto.SHA256)), ErrAlgorithm},
		{"no alg", signToken(map[string]any{"kid": "rsa"}, rs(k.rsa, crypto.SHA256)), ErrAlgorithm},
		{"HS256 keyed with the RSA public key PEM", signToken(hdr("HS256", "rsa"), hs256(rsaPEM)), ErrAlgorithm},
		{"HS256 keyed with the RSA modulus", signToken(hdr("HS256", "rsa"), hs256(k.rsa.N.Bytes())), ErrAlgorithm},
		{"ES384, not allowed", signToken(hdr("ES384", "ec384"), es256(k.ec384)), ErrAlgorithm},

		{"ES256 naming the RSA key", signToken(hdr("ES256", "rsa"), es256(k.ec)), ErrKey},
		{"RS256 naming the EC key", signToken(hdr("RS256", "ec"), rs(k.rsa, crypto.SHA256)), ErrKey},
		{"ES256 naming a P-384 key", signToken(hdr("ES256", "ec384"), es256(k.ec)), ErrKey},
		{"EdDSA naming the RSA key", signToken(hdr("EdDSA", "rsa"), eddsa(k.ed)), ErrKey},
		{"PS256 with a key published for RS256 only", signToken(hdr("PS256", "rsa-rs256"), ps256(k.rsaRS256)), ErrKey},
		{"unknown kid", signToken(hdr("RS256", "rsa2"), rs(k.rsa2, crypto.SHA256)), ErrKey},
		{"no kid with several keys", signToken(hdr("RS256", ""), rs(k.rsa, crypto.SHA256)), ErrKey},

		{"signed by another key", signToken(hdr("RS256", "rsa"), rs(k.rsa2, crypto.SHA256)), ErrSignature},
		{"RS256 signature under a header naming RS512", signToken(hdr("RS512", "rsa"), rs(k.rsa, crypto.SHA256)), ErrSignature},
		{"tampered payload", parts[0] + "." + b64url.EncodeToString([]byte(`{"sub":"admin"}`)) + "." + parts[2], ErrSignature},
		{"no signature", parts[0] + "." + parts[1] + ".", ErrMalformed},
		{"unknown critical header", signToken(map[string]any{"alg": "RS256", "kid": "rsa", "crit": []string{"x-warden"}, "x-warden": true}, rs(k.rsa, crypto.SHA256)), ErrSignature},

		{"JSON serialization", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"an unknown algorithm", signToken(hdr("XS256", "rsa"), rs(k.rsa, crypto.SHA256)), ErrMalformed},
		{"a header that is not JSON", b64url.EncodeToString([]byte("alg=RS256")) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"too long", parts[0] + "." + strings.Repeat("A", MaxTokenBytes) + "." + parts[2], ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload, err := s.Verify(t.Context(), tt.token)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if string(payload) != `{"sub":"alice"}` {
					t.Errorf("payload = %s", payload)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			t.Log(err)
		})
	}
	if n := p.fetches.Load(); n != 1 {
		t.Errorf("the key set was fetched %d times, want once: refusals within %s of a fetch must not fetch again", n, DefaultRefreshInterval)
	}
}

// Beneath the allow-list, a key verifies only the algorithms of its type:
// were HS256 or none ever allowed, no published key could serve them.
func TestKeyFitsAlgorithm(t *testing.T) {
	k := testKeys()
	rsaKey := verifyKey{kid: "rsa", pub: &k.rsa.PublicKey}
	ecKey := verifyKey{kid: "ec", pub: &k.ec.PublicKey}
	edKey := verifyKey{kid: "ed", pub: k.ed.Public()}
	rs256Only := verifyKey{kid: "rsa-rs256", alg: "RS256", pub: &k.rsaRS256.PublicKey}
	tests := []struct {
		key  verifyKey
		alg  string
		fits bool
	}{
		{rsaKey, "RS256", true}, {rsaKey, "PS512", true}, {rsaKey, "HS256", false}, {rsaKey, "none", false},
		{rsaKey, "ES256", false}, {rsaKey, "EdDSA", false},
		{ecKey, "ES256", true}, {ecKey, "ES384", false}, {ecKey, "RS256", false}, {ecKey, "HS256", false},
		{edKey, "EdDSA", true}, {edKey, "ES256", false}, {edKey, "HS256", false},
		{rs256Only, "RS256", true}, {rs256Only, "PS256", false},
	}
	for _, tt := range tests {
		if err := tt.key.fits(tt.alg); (err == nil) != tt.fits {
			t.Errorf("key %s fits %s: %v, want %v", tt.key.kid, tt.alg, err, tt.fits)
		}
	}
}

func TestOptionsRefuseUnsafeAlgorithms(t *testing.T) {
	for _, algs := range [][]string{nil, {"none"}, {"RS256", "HS256"}, {"HS512"}, {"XS256"}} {
		if _, err := Parse(standardSet(), Options{Algorithms: algs}); err == nil {
			t.Errorf("algorithms %q accepted, want an error", algs)
		}
	}
}

func TestFetchRefusesUnusableSets(t *testing.T) {
	k := testKeys()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	privateRSA := jwkOf("rsa", &k.rsa.PublicKey, "d", b64url.EncodeToString(k.rsa.D.Bytes()),
		"p", b64url.EncodeToString(k.rsa.Primes[0].Bytes()), "q", b64url.EncodeToString(k.rsa.Primes[1].Bytes()))
	// A valid set, padded past the limit with whitespace.
	oversized := append(standardSet(), bytes.Repeat([]byte(" "), maxJWKSBytes)...)
	tests := []struct {
		name   string
		status int
		body   []byte
		want   string
	}{
		{"not found", http.StatusNotFound, []byte("no"), "404"},
		{"not JSON", http.StatusOK, []byte("<html>"), ""},
		{"empty set", http.StatusOK, []byte(`{"keys":[]}`), "empty"},
		{"oversized", http.StatusOK, oversized, "larger than"},
		{"symmetric key", http.StatusOK, setJSON(jwkOf("rsa", &k.rsa.PublicKey), map[string]any{"kty": "oct", "kid": "h", "k": b64url.EncodeToString([]byte("secret"))}), "symmetric"},
		{"private key", http.StatusOK, setJSON(privateRSA), "private"},
		{"only an encryption key", http.StatusOK, setJSON(jwkOf("rsa", &k.rsa.PublicKey, "use", "enc")), "use"},
		{"only a short RSA key", http.StatusOK, setJSON(jwkOf("rsa", &small.PublicKey)), "2048"},
		{"only a key for an algorithm not allowed", http.StatusOK, setJSON(jwkOf("ec384", &k.ec384.PublicKey)), "none of the allowed algorithms"},
		{"only a key published for another algorithm", http.StatusOK, setJSON(jwkOf("rsa", &k.rsa.PublicKey, "alg", "RS512")), "none of the allowed algorithms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newIssuer(t, tt.body)
			p.serve(tt.status, tt.body)
			_, err := Fetch(t.Context(), p.srv.URL, Options{Algorithms: testAlgs, HTTPClient: p.srv.Client()})
			if err == nil {
				t.Fatal("Fetch succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
			t.Log(err)
		})
	}
	if _, err := Fetch(t.Context(), "http://idp.example.com/jwks", Options{Algorithms: testAlgs}); err == nil {
		t.Error("Fetch over plain HTTP beyond loopback succeeded")
	}
}

func TestRefreshRateLimitedUnderBurst(t *testing.T) {
	s, p, clk := newTestSet(t, standardSet())
	k := testKeys()
	burst := func(kid string, key *rsa.PrivateKey) (accepted int) {
		tok := signToken(hdr("RS256", kid), rs(key, crypto.SHA256))
		var wg sync.WaitGroup
		var n atomic.Int64
		for range 64 {
			wg.Go(func() {
				_, err := s.Verify(t.Context(), tok)
				if err == nil {
					n.Add(1)
					return
				}
				if !errors.Is(err, ErrKey) {
					t.Errorf("err = %v, want %v", err, ErrKey)
				}
			})
		}
		wg.Wait()
		return int(n.Load())
	}

	steps := []struct {
		advance     time.Duration
		kid         string
		wantFetches int64
		wantAccept  int
	}{
		{advance: 0, kid: "ghost", wantFetches: 1},                                     // just fetched at start-up
		{advance: DefaultRefreshInterval, kid: "ghost", wantFetches: 2},                // one fetch for 64 tokens
		{advance: DefaultRefreshInterval / 2, kid: "ghost", wantFetches: 2},            // still within the interval
		{advance: DefaultRefreshInterval / 2, kid: "ghost", wantFetches: 3},            // the interval has passed
		{advance: time.Second, kid: "ghost", wantFetches: 3},                           // and begins again
		{advance: DefaultRefreshInterval, kid: "rsa2", wantFetches: 4, wantAccept: 64}, // rotated: all share one fetch
	}
	for i, st := range steps {
		clk.Advance(st.advance)
		key := k.rsa
		if st.kid == "rsa2" {
			p.serve(http.StatusOK, setJSON(jwkOf("rsa", &k.rsa.PublicKey), jwkOf("rsa2", &k.rsa2.PublicKey)))
			key = k.rsa2
		}
		if got := burst(st.kid, key); got != st.wantAccept {
			t.Errorf("step %d: %d tokens accepted, want %d", i, got, st.wantAccept)
		}
		if n := p.fetches.Load(); n != st.wantFetches {
			t.Errorf("step %d: fetches = %d, want %d", i, n, st.wantFetches)
		}
	}
}

// Each user sets its own interval: the console fetches at most once a
// minute.
func TestRefreshInterval(t *testing.T) {
	k := testKeys()
	p := newIssuer(t, standardSet())
	clk := &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	s, err := Fetch(t.Context(), p.srv.URL, Options{Algorithms: testAlgs, HTTPClient: p.srv.Client(), Now: clk.Now, RefreshInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ghost := signToken(hdr("RS256", "ghost"), rs(k.rsa, crypto.SHA256))
	for _, st := range []struct {
		advance     time.Duration
		wantFetches int64
	}{{0, 1}, {DefaultRefreshInterval, 1}, {time.Minute - DefaultRefreshInterval, 2}, {30 * time.Second, 2}} {
		clk.Advance(st.advance)
		if _, err := s.Verify(t.Context(), ghost); !errors.Is(err, ErrKey) {
			t.Errorf("err = %v, want %v", err, ErrKey)
		}
		if n := p.fetches.Load(); n != st.wantFetches {
			t.Errorf("after %s more: fetches = %d, want %d", st.advance, n, st.wantFetches)
		}
	}
}

// An old key set is fetched again in the background, so a key the issuer
// withdraws stops being trusted.
func TestStaleSetRefetched(t *testing.T) {
	s, p, clk := newTestSet(t, standardSet())
	k := testKeys()
	ec := signToken(hdr("ES256", "ec"), es256(k.ec))

	p.serve(http.StatusOK, setJSON(jwkOf("rsa", &k.rsa.PublicKey)))
	clk.Advance(refreshAge)
	if _, err := s.Verify(t.Context(), ec); err != nil {
		t.Fatalf("verified against the keys at hand: %v", err)
	}
	if done := s.refresh(); done != nil {
		<-done
	}
	if n := p.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
	if _, err := s.Verify(t.Context(), ec); !errors.Is(err, ErrKey) {
		t.Errorf("a withdrawn key: err = %v, want %v", err, ErrKey)
	}
}

// A key set older than maxAge is not trusted before the issuer is asked
// again: the token waits for the fetch.
func TestExpiredSetRefetchedFirst(t *testing.T) {
	s, p, clk := newTestSet(t, standardSet())
	k := testKeys()
	p.serve(http.StatusOK, setJSON(jwkOf("rsa", &k.rsa.PublicKey)))
	clk.Advance(maxAge)
	if _, err := s.Verify(t.Context(), signToken(hdr("ES256", "ec"), es256(k.ec))); !errors.Is(err, ErrKey) {
		t.Errorf("a key withdrawn while the set was idle: err = %v, want %v", err, ErrKey)
	}
	if n := p.fetches.Load(); n != 2 {
		t.Errorf("fetches = %d, want 2", n)
	}
	if _, err := s.Verify(t.Context(), signToken(hdr("RS256", "rsa"), rs(k.rsa, crypto.SHA256))); err != nil {
		t.Errorf("a key still published: %v", err)
	}
}

// When the issuer is down, the keys at hand still verify, and an unknown
// kid is refused with the fetch failure in the error chain.
func TestFetchFailureKeepsKeys(t *testing.T) {
	k := testKeys()
	for _, tt := range []struct {
		name    string
		advance time.Duration
		status  int
		body    []byte
		want    string
	}{
		{"an error", refreshAge, http.StatusInternalServerError, []byte("down"), "500"},
		{"an oversized set", refreshAge, http.StatusOK, append(standardSet(), bytes.Repeat([]byte(" "), maxJWKSBytes)...), "larger than"},
		{"an error, after a quiet spell", maxAge, http.StatusInternalServerError, []byte("down"), "500"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, p, clk := newTestSet(t, standardSet())
			p.serve(tt.status, tt.body)
			clk.Advance(tt.advance)

			_, err := s.Verify(t.Context(), signToken(hdr("RS256", "ghost"), rs(k.rsa, crypto.SHA256)))
			if !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %v saying why the fetch failed (%s)", err, ErrKey, tt.want)
			}
			if _, err := s.Verify(t.Context(), signToken(hdr("EdDSA", "ed"), eddsa(k.ed))); err != nil {
				t.Errorf("known key refused while the issuer is down: %v", err)
			}
			if n := p.fetches.Load(); n != 2 {
				t.Errorf("fetches = %d, want 2", n)
			}
		})
	}
}

// A set read once is never fetched: an unknown kid is refused at once.
func TestParse(t *testing.T) {
	k := testKeys()
	s, err := Parse(setJSON(jwkOf("ed", k.ed.Public())), Options{Algorithms: testAlgs})
	if err != nil {
		t.Fatal(err)
	}
	// One key: a token without a kid may use it.
	if _, err := s.Verify(t.Context(), signToken(hdr("EdDSA", ""), eddsa(k.ed))); err != nil {
		t.Errorf("valid token: %v", err)
	}
	for _, tok := range []string{
		signToken(hdr("RS256", "rsa"), rs(k.rsa, crypto.SHA256)),
		signToken(hdr("ES256", ""), es256(k.ec)),
	} {
		if _, err := s.Verify(t.Context(), tok); !errors.Is(err, ErrKey) {
			t.Errorf("err = %v, want %v", err, ErrKey)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
