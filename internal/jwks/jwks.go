// Package jwks verifies compact JWS signatures — the signatures of JWTs —
// with an issuer's JSON Web Key Set. It is the one place where Warden
// decides which key may verify which token, for the resource server's
// access tokens (internal/authn) and the console's OpenID Connect ID tokens
// (internal/console) alike.
//
//	keys, err := jwks.Fetch(ctx, "https://idp.example.com/jwks.json", jwks.Options{
//		Algorithms: []string{"RS256", "ES256"},
//	})
//	if err != nil {
//		return err // unreachable, or no key in the set can verify a token
//	}
//	payload, err := keys.Verify(ctx, token) // the payload is not yet validated
//
// A Set trusts only asymmetric signatures, with the algorithms its user
// allows, each verified by a key of the type the algorithm is defined for:
// never "none", never an HMAC keyed with a public key's bytes. A set that
// publishes a symmetric or a private key is refused whole.
package jwks

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/wardenmcp/warden/internal/config"
)

const (
	// DefaultRefreshInterval is the least time between two fetches of a
	// key set, whatever the tokens presented, unless Options say otherwise.
	DefaultRefreshInterval = 10 * time.Second
	// MaxTokenBytes bounds the tokens a Set parses. Real tokens are a few
	// kilobytes even with many groups.
	MaxTokenBytes = 32 << 10

	// refreshAge is how old a fetched key set may grow before it is
	// fetched again in the background, so that a key the issuer withdraws
	// stops being trusted; the token at hand is checked against the keys
	// at hand, which were good a few minutes ago.
	refreshAge = 5 * time.Minute
	// maxAge is how old a key set may grow before a token waits for it to
	// be fetched again: after a quiet spell, keys hours old are not
	// trusted without asking the issuer first.
	maxAge = 15 * time.Minute
	// fetchTimeout bounds a fetch when the HTTP client sets no timeout.
	fetchTimeout = 10 * time.Second
	// maxJWKSBytes bounds a fetched key set.
	maxJWKSBytes = 1 << 20
	// minRSABits is the shortest RSA key trusted to sign a token.
	minRSABits = 2048
)

// Why Verify refuses a token. Each error Verify returns wraps one of them,
// and the detail, which may quote the token, for the log.
var (
	// ErrMalformed: the token is not a compact JWS of at most MaxTokenBytes,
	// or its header cannot be parsed.
	ErrMalformed = errors.New("the token is not a compact JWS")
	// ErrAlgorithm: the token names no algorithm, or one not allowed.
	ErrAlgorithm = errors.New("the token's algorithm is not allowed")
	// ErrKey: no key in the set may verify the token — its kid is unknown
	// even after fetching the set again, or the key is of another type or
	// published for another algorithm.
	ErrKey = errors.New("no key in the set may verify the token")
	// ErrSignature: the signature does not verify, or the header holds
	// what cannot be honoured (an unknown "crit" extension).
	ErrSignature = errors.New("the token's signature is invalid")
)

// errUnknownKey is a token naming a key that is not in the set: the one
// refusal that fetching the set again may cure.
var errUnknownKey = errors.New("not in the key set")

// Options configure a Set. Algorithms is required.
type Options struct {
	// Algorithms is the allow-list: a token signed with any other
	// algorithm is refused before a key is looked up. Each must be one of
	// config.AsymmetricAlgorithms.
	Algorithms []string
	// HTTPClient fetches the set; nil means a client with a 10s timeout,
	// as does a client without a timeout. Redirects are bounded and never
	// lead from HTTPS to HTTP.
	HTTPClient *http.Client
	// RefreshInterval is the least time between two fetches, so that
	// tokens with made-up key ids cannot make Warden hammer the issuer;
	// zero means DefaultRefreshInterval.
	RefreshInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Set is an issuer's key set, reduced to the keys that may verify a token.
// A Set fetched from a URL is fetched again when it grows old or a token
// names a key it lacks — never more often than Options.RefreshInterval,
// one fetch at a time, and a failed fetch keeps the keys at hand. It is
// safe for concurrent use.
type Set struct {
	algs     map[string]jwa.SignatureAlgorithm
	names    string // the allowed algorithms, for errors
	now      func() time.Time
	interval time.Duration
	url      string // "" for a set that is never fetched again
	client   *http.Client
	keys     atomic.Pointer[keySet]

	mu       sync.Mutex
	last     time.Time     // when the last fetch began
	inflight chan struct{} // closed when the fetch in progress ends
	err      error         // why the last fetch failed, or nil
}

func newSet(o Options) (*Set, error) {
	if len(o.Algorithms) == 0 {
		return nil, errors.New("no algorithm is allowed; choose from " + strings.Join(config.AsymmetricAlgorithms, ", "))
	}
	s := &Set{algs: make(map[string]jwa.SignatureAlgorithm, len(o.Algorithms)), names: strings.Join(o.Algorithms, ", "),
		now: o.Now, interval: o.RefreshInterval}
	for _, name := range o.Algorithms {
		alg, ok := jwa.LookupSignatureAlgorithm(name)
		if !ok || !slices.Contains(config.AsymmetricAlgorithms, name) {
			return nil, fmt.Errorf("algorithm %q is not allowed; choose from %s", name, strings.Join(config.AsymmetricAlgorithms, ", "))
		}
		s.algs[name] = alg
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.interval <= 0 {
		s.interval = DefaultRefreshInterval
	}
	return s, nil
}

// Parse reads a key set once, from data (a file's contents, say); it is
// never fetched again. It fails if no key in it can verify a token signed
// with an allowed algorithm.
func Parse(data []byte, o Options) (*Set, error) {
	s, err := newSet(o)
	if err != nil {
		return nil, err
	}
	ks, err := s.parse(data, time.Time{})
	if err != nil {
		return nil, err
	}
	s.keys.Store(ks)
	return s, nil
}

// Fetch loads the key set at url, which must be HTTPS (or plain HTTP on
// loopback), and fails if it cannot be loaded or holds no key that can
// verify a token signed with an allowed algorithm. ctx bounds this first
// fetch only.
func Fetch(ctx context.Context, url string, o Options) (*Set, error) {
	if err := config.SecureURL(url); err != nil {
		return nil, err
	}
	s, err := newSet(o)
	if err != nil {
		return nil, err
	}
	client := o.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	// Bounded time, bounded redirects, and never from HTTPS down to HTTP.
	s.client = jwk.WrapHTTPClientDefaults(client)
	if client.Timeout == 0 {
		s.client.Timeout = fetchTimeout
	}
	s.url, s.last = url, s.now()
	ks, err := s.fetch(ctx)
	if err != nil {
		return nil, err
	}
	s.keys.Store(ks)
	return s, nil
}

// Verify checks token's signature and returns its payload, which the
// caller has yet to validate (a JWT's claims, say). Every refusal wraps
// ErrMalformed, ErrAlgorithm, ErrKey or ErrSignature.
func (s *Set) Verify(ctx context.Context, token string) ([]byte, error) {
	if err := compactShape(token); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	payload, err := jws.Verify([]byte(token),
		jws.WithCompact(),
		// Refuse any "crit" extension: Warden understands none, and
		// RFC 7515 requires refusing what is not understood.
		jws.WithCritValidation(true),
		jws.WithContext(ctx),
		jws.WithKeyProvider(keyProvider{s}),
	)
	switch {
	case err == nil:
		return payload, nil
	case errors.Is(err, ErrAlgorithm), errors.Is(err, ErrKey):
		return nil, err
	case errors.Is(err, jws.ParseError()):
		// A header that is not JSON, or names an algorithm jwx does not
		// know.
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil, fmt.Errorf("%w: %w", ErrSignature, err)
}

// compactShape admits only the compact serialization: three base64url
// segments. The JSON serialization (with its unprotected headers and
// several signatures) has no place in a token.
func compactShape(token string) error {
	if len(token) > MaxTokenBytes {
		return fmt.Errorf("the token is longer than %d bytes", MaxTokenBytes)
	}
	if strings.Count(token, ".") != 2 {
		return errors.New("the token does not have three parts")
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return errors.New("the token is not base64url")
		}
	}
	return nil
}

// keyProvider hands jws.Verify the one key a token may be verified with:
// its algorithm must be allowed, and the key must be an asymmetric key of
// the type that algorithm needs. Verifying with the header's algorithm
// against any key that merely shares the kid is how alg confusion attacks
// work (none, HS256 keyed with an RSA public key).
type keyProvider struct{ s *Set }

func (kp keyProvider) FetchKeys(ctx context.Context, sink jws.KeySink, sig *jws.Signature, _ *jws.Message) error {
	h := sig.ProtectedHeaders()
	a, ok := h.Algorithm()
	if !ok {
		return fmt.Errorf(`%w: the token has no "alg"`, ErrAlgorithm)
	}
	alg, ok := kp.s.algs[a.String()]
	if !ok {
		return fmt.Errorf("%w: %.32q (allowed: %s)", ErrAlgorithm, a.String(), kp.s.names)
	}
	kid, _ := h.KeyID()
	key, err := kp.s.key(ctx, kid, alg.String())
	if err != nil {
		return err
	}
	sink.Key(alg, key)
	return nil
}

// keySet is a JWKS reduced to the keys that may verify a signature.
type keySet struct {
	keys    []verifyKey
	fetched time.Time
}

type verifyKey struct {
	kid string
	alg string // the JWK's "alg", or "" if it names none
	pub crypto.PublicKey
}

// curves binds each ECDSA algorithm to its one curve (RFC 7518, 3.4).
var curves = map[string]elliptic.Curve{
	"ES256": elliptic.P256(),
	"ES384": elliptic.P384(),
	"ES512": elliptic.P521(),
}

// fits reports whether k may verify alg: the JWK's own "alg", if any, must
// be alg, and the key's type must be the one alg is defined for.
func (k *verifyKey) fits(alg string) error {
	if k.alg != "" && k.alg != alg {
		return fmt.Errorf("key %q is for %s, not %s", k.kid, k.alg, alg)
	}
	ok := false
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		ok = strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		ok = curves[alg] != nil && pub.Curve == curves[alg]
	case ed25519.PublicKey:
		ok = alg == "EdDSA"
	}
	if !ok {
		return fmt.Errorf("key %q (%T) cannot verify %s", k.kid, k.pub, alg)
	}
	return nil
}

func (ks *keySet) find(kid, alg string) (crypto.PublicKey, error) {
	if kid == "" {
		if len(ks.keys) != 1 {
			return nil, fmt.Errorf(`%w: the token names no key ("kid") and the key set holds several`, ErrKey)
		}
		k := &ks.keys[0]
		if err := k.fits(alg); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKey, err)
		}
		return k.pub, nil
	}
	var unfit error
	for i := range ks.keys {
		k := &ks.keys[i]
		if k.kid != kid {
			continue
		}
		if unfit = k.fits(alg); unfit == nil {
			return k.pub, nil
		}
	}
	if unfit != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, unfit)
	}
	return nil, fmt.Errorf("%w: key %.64q: %w", ErrKey, kid, errUnknownKey)
}

// parse keeps the keys of a JWKS that can verify a signature. A symmetric
// key or a private key fails the whole set: either would mean the issuer
// publishes a secret, and trusting what it signs would be unwise. A set
// none of whose keys fits an allowed algorithm fails too.
func (s *Set) parse(data []byte, fetched time.Time) (*keySet, error) {
	// Not strict: an entry of a type jwx does not know (a post-quantum key
	// published beside classical ones) is skipped, not fatal.
	set, err := jwk.Parse(data, jwk.WithStrictKeySetParsing(false))
	if err != nil {
		return nil, err
	}
	ks := &keySet{fetched: fetched}
	var skipped []string
	for i := range set.Len() {
		key, _ := set.Key(i)
		kid, _ := key.KeyID()
		name := fmt.Sprintf("%q", kid)
		if kid == "" {
			name = fmt.Sprintf("#%d", i)
		}
		if uk, ok := key.(jwk.UnsupportedKey); ok {
			skipped = append(skipped, fmt.Sprintf("%s is unusable: %v", name, uk.Reason()))
			continue
		}
		if key.KeyType() == jwa.OctetSeq() {
			return nil, fmt.Errorf("key %s is a symmetric key; publish only public keys, and sign tokens with an asymmetric algorithm", name)
		}
		if private, err := jwk.IsPrivateKey(key); err == nil && private {
			return nil, fmt.Errorf("key %s holds private key material; publish only public keys", name)
		}
		if use, ok := key.KeyUsage(); ok && use != "" && use != string(jwk.ForSignature) {
			skipped = append(skipped, fmt.Sprintf("%s is for use %q", name, use))
			continue
		}
		if ops, ok := key.KeyOps(); ok && len(ops) > 0 && !slices.Contains(ops, jwk.KeyOpVerify) {
			skipped = append(skipped, name+` has key_ops without "verify"`)
			continue
		}
		var pub any
		if err := jwk.Export(key, &pub); err != nil {
			skipped = append(skipped, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		switch pub := pub.(type) {
		case *rsa.PublicKey:
			if pub.N.BitLen() < minRSABits {
				skipped = append(skipped, fmt.Sprintf("%s is an RSA key shorter than %d bits", name, minRSABits))
				continue
			}
		case *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			skipped = append(skipped, fmt.Sprintf("%s (%T) cannot verify signatures", name, pub))
			continue
		}
		vk := verifyKey{kid: kid, pub: pub}
		if a, ok := key.Algorithm(); ok {
			vk.alg = a.String()
		}
		// A key that fits no allowed algorithm stays in the set, so that a
		// token naming it is refused for what it is rather than sent to
		// fetch the set again as if its key were new.
		ks.keys = append(ks.keys, vk)
	}
	usable := slices.ContainsFunc(ks.keys, func(k verifyKey) bool {
		for alg := range s.algs {
			if k.fits(alg) == nil {
				return true
			}
		}
		return false
	})
	switch {
	case usable:
		return ks, nil
	case set.Len() == 0:
		return nil, errors.New("the key set is empty")
	case len(ks.keys) > 0:
		skipped = append(skipped, fmt.Sprintf("%d key(s) fit none of the allowed algorithms (%s)", len(ks.keys), s.names))
	}
	return nil, fmt.Errorf("no key can verify a token: %s", strings.Join(skipped, "; "))
}

func (s *Set) fetch(ctx context.Context) (*keySet, error) {
	fetched := s.now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	res, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", s.url, res.Status)
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", s.url, err)
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("GET %s: the key set is larger than %d bytes", s.url, maxJWKSBytes)
	}
	ks, err := s.parse(data, fetched)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", s.url, err)
	}
	return ks, nil
}

// key returns the public key with the given kid (or the only key, if kid
// is empty) that can verify alg.
func (s *Set) key(ctx context.Context, kid, alg string) (crypto.PublicKey, error) {
	ks := s.keys.Load()
	if s.url == "" {
		return ks.find(kid, alg)
	}
	var done <-chan struct{}
	if age := s.now().Sub(ks.fetched); age >= refreshAge {
		done = s.refresh()
		if done != nil && age >= maxAge {
			if err := wait(ctx, done); err != nil {
				return nil, err
			}
			ks = s.keys.Load()
		}
	}
	pub, err := ks.find(kid, alg)
	if !errors.Is(err, errUnknownKey) {
		return pub, err
	}
	// The issuer may have rotated its keys since the last fetch.
	if done == nil {
		done = s.refresh()
	}
	if done != nil {
		if err := wait(ctx, done); err != nil {
			return nil, err
		}
	}
	// A newer set, from this fetch or from one that ended since ks was
	// loaded.
	if cur := s.keys.Load(); cur != ks {
		return cur.find(kid, alg)
	}
	s.mu.Lock()
	ferr := s.err
	s.mu.Unlock()
	if ferr != nil {
		return nil, fmt.Errorf("%w; the last fetch of the key set failed: %w", err, ferr)
	}
	if done == nil {
		return nil, fmt.Errorf("%w; the key set was fetched less than %s ago", err, s.interval)
	}
	return nil, err
}

func wait(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for the key set: %w", ErrKey, ctx.Err())
	}
}

// refresh starts fetching the key set again and returns a channel closed
// when that fetch ends — or the channel of the fetch already in flight, or
// nil if a fetch began less than the refresh interval ago. A failed fetch
// keeps the keys at hand.
func (s *Set) refresh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight != nil {
		return s.inflight
	}
	now := s.now()
	if now.Sub(s.last) < s.interval {
		return nil
	}
	s.last = now
	done := make(chan struct{})
	s.inflight = done
	go func() {
		// Not the caller's context: one caller giving up must not cancel
		// the fetch that others wait for. The client's timeout bounds it.
		ks, err := s.fetch(context.Background())
		if err == nil {
			s.keys.Store(ks)
		}
		s.mu.Lock()
		s.inflight, s.err = nil, err
		s.mu.Unlock()
		close(done)
	}()
	return done
}
