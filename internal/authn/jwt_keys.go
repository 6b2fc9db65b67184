package authn

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
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/wardenmcp/warden/internal/config"
)

const (
	// minRefreshInterval is the least time between two fetches of a key
	// set, whatever the tokens presented.
	minRefreshInterval = 10 * time.Second
	// maxKeyAge is how old a fetched key set may grow before it is fetched
	// again, so that a key the issuer withdraws stops being trusted.
	maxKeyAge = 5 * time.Minute
	// fetchTimeout bounds a fetch when the HTTP client sets no timeout.
	fetchTimeout = 10 * time.Second
	// maxJWKSBytes bounds a fetched key set.
	maxJWKSBytes = 1 << 20
	// minRSABits is the shortest RSA key trusted to sign a token.
	minRSABits = 2048
)

// errUnknownKey is a token naming a key that is not in the set.
var errUnknownKey = errors.New("not in the key set")

// keySource finds the key that verifies a token.
type keySource interface {
	// key returns the public key with the given kid (or the only key, if
	// kid is empty) that can verify alg.
	key(ctx context.Context, kid, alg string) (crypto.PublicKey, error)
}

// keySet is a JWKS reduced to the keys that may verify a token.
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

func (s *keySet) find(kid, alg string) (crypto.PublicKey, error) {
	if kid == "" {
		if len(s.keys) != 1 {
			return nil, errors.New(`the token names no key ("kid") and the key set holds several`)
		}
		k := &s.keys[0]
		return k.pub, k.fits(alg)
	}
	err := fmt.Errorf("key %.64q: %w", kid, errUnknownKey)
	for i := range s.keys {
		k := &s.keys[i]
		if k.kid != kid {
			continue
		}
		if err = k.fits(alg); err == nil {
			return k.pub, nil
		}
	}
	return nil, err
}

// compile keeps the keys of set that can verify a signature. A symmetric
// key or a private key fails the whole set: either would mean the issuer
// publishes a secret, and trusting what it signs would be unwise.
func compile(set jwk.Set, fetched time.Time) (*keySet, error) {
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
		ks.keys = append(ks.keys, vk)
	}
	if len(ks.keys) == 0 {
		if len(skipped) == 0 {
			return nil, errors.New("the key set is empty")
		}
		return nil, fmt.Errorf("no key can verify a token: %s", strings.Join(skipped, "; "))
	}
	return ks, nil
}

func parseKeySet(data []byte, fetched time.Time) (*keySet, error) {
	// Not strict: an entry of a type jwx does not know (a post-quantum key
	// published beside classical ones) is skipped, not fatal.
	set, err := jwk.Parse(data, jwk.WithStrictKeySetParsing(false))
	if err != nil {
		return nil, err
	}
	return compile(set, fetched)
}

// staticKeys is a key set read once from a file.
type staticKeys struct{ set *keySet }

func loadKeyFile(path string) (staticKeys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return staticKeys{}, err
	}
	ks, err := parseKeySet(data, time.Time{})
	if err != nil {
		return staticKeys{}, fmt.Errorf("%s: %w", path, err)
	}
	return staticKeys{ks}, nil
}

func (s staticKeys) key(_ context.Context, kid, alg string) (crypto.PublicKey, error) {
	return s.set.find(kid, alg)
}

// remoteKeys is a key set fetched from the issuer's JWKS URL and fetched
// again when it grows old or a token names a key it lacks — never more
// often than minRefreshInterval, and one fetch at a time.
type remoteKeys struct {
	url    string
	client *http.Client
	now    func() time.Time
	set    atomic.Pointer[keySet]

	mu       sync.Mutex
	last     time.Time     // when the last fetch began
	inflight chan struct{} // closed when the fetch in progress ends
	err      error         // why the last fetch failed, or nil
}

func newRemoteKeys(ctx context.Context, u string, client *http.Client, now func() time.Time) (*remoteKeys, error) {
	if err := config.SecureURL(u); err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{}
	}
	// Bounded time, bounded redirects, and never from HTTPS down to HTTP.
	hc := jwk.WrapHTTPClientDefaults(client)
	if client.Timeout == 0 {
		hc.Timeout = fetchTimeout
	}
	r := &remoteKeys{url: u, client: hc, now: now, last: now()}
	ks, err := r.fetch(ctx)
	if err != nil {
		return nil, err
	}
	r.set.Store(ks)
	return r, nil
}

func (r *remoteKeys) fetch(ctx context.Context) (*keySet, error) {
	fetched := r.now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	res, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", r.url, res.Status)
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", r.url, err)
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("GET %s: the key set is larger than %d bytes", r.url, maxJWKSBytes)
	}
	ks, err := parseKeySet(data, fetched)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", r.url, err)
	}
	return ks, nil
}

func (r *remoteKeys) key(ctx context.Context, kid, alg string) (crypto.PublicKey, error) {
	ks := r.set.Load()
	var done <-chan struct{}
	if r.now().Sub(ks.fetched) >= maxKeyAge {
		// In the background: this token is checked against the keys at
		// hand, which were good a few minutes ago.
		done = r.refresh()
	}
	pub, err := ks.find(kid, alg)
	if !errors.Is(err, errUnknownKey) {
		return pub, err
	}
	// The issuer may have rotated its keys since the last fetch.
	if done == nil {
		done = r.refresh()
	}
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	// A newer set, from this fetch or from one that ended since ks was
	// loaded.
	if cur := r.set.Load(); cur != ks {
		return cur.find(kid, alg)
	}
	r.mu.Lock()
	ferr := r.err
	r.mu.Unlock()
	if ferr != nil {
		return nil, fmt.Errorf("%w; the last fetch of the key set failed: %w", err, ferr)
	}
	if done == nil {
		return nil, fmt.Errorf("%w; the key set was fetched less than %s ago", err, minRefreshInterval)
	}
	return nil, err
}

// refresh starts fetching the key set again and returns a channel closed
// when that fetch ends — or the channel of the fetch already in flight, or
// nil if a fetch began less than minRefreshInterval ago. A failed fetch
// keeps the keys at hand.
func (r *remoteKeys) refresh() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight != nil {
		return r.inflight
	}
	now := r.now()
	if now.Sub(r.last) < minRefreshInterval {
		return nil
	}
	r.last = now
	done := make(chan struct{})
	r.inflight = done
	go func() {
		// Not the caller's context: one caller giving up must not cancel
		// the fetch that others wait for. The client's timeout bounds it.
		ks, err := r.fetch(context.Background())
		if err == nil {
			r.set.Store(ks)
		}
		r.mu.Lock()
		r.inflight, r.err = nil, err
		r.mu.Unlock()
		close(done)
	}()
	return done
}
