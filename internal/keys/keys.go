// Package keys issues, stores and checks Warden's API keys.
//
// A key is shown once, when it is created, and only its SHA-256 hash is
// stored: in SQLite beside the configuration by default, in PostgreSQL when
// several instances share state.
//
//	store, err := keys.Open(ctx, cfg)
//	if err != nil { ... }
//	defer store.Close()
//	plaintext, k, hash := keys.Generate("ci-bot", "acme", []string{"crm.read"}, nil, 30*24*time.Hour)
//	if err := store.Create(ctx, k, hash); err != nil { ... }
//	fmt.Println(plaintext) // the only time anyone sees it
//
//	// Later, for each request presenting Authorization: Bearer <key>:
//	principal, expires, err := keys.Authenticate(ctx, store, token)
//
// Authenticate reads the store it is given on every call. The server gives
// it NewCache(store, auth.api_keys.cache_ttl), which remembers a verified
// key for a second by default: a revocation through that cache (the
// console) takes effect on the very next request, and one made by another
// process or instance (warden keys revoke) within the TTL.
package keys

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/pipeline"
)

// Marker starts every key, so that people and secret scanners recognise a
// Warden key, and the HTTP layer can route it without trying a JWT parse.
const Marker = "wdn_"

// secretBytes is the randomness in a key: 256 bits.
const secretBytes = 32

// keyLen is the length of a key: the marker and 32 bytes in unpadded
// base64url.
var keyLen = len(Marker) + base64.RawURLEncoding.EncodedLen(secretBytes)

// prefixLen is how many characters after the marker a listing shows. They
// tell keys apart; the 208 bits that remain secret are far beyond guessing.
const prefixLen = 8

// Key describes an API key. It never holds the key itself; the hash is kept
// unexported, so a Key can be printed or encoded without leaking it.
type Key struct {
	// ID is random, assigned at creation, and never reused.
	ID string
	// Name is chosen by the operator and unique among keys not revoked; it
	// is the principal's ID (see Authenticate).
	Name string
	// Prefix is the marker and the first characters of the key: not a
	// secret, shown so that an operator can tell which key is which.
	Prefix string
	Tenant string
	Scopes []string
	Groups []string
	// CreatedAt is when the key was created. A zero ExpiresAt never
	// expires; a zero RevokedAt is not revoked.
	CreatedAt, ExpiresAt, RevokedAt time.Time

	// hash is set by Store.Lookup only, for Authenticate to compare.
	hash []byte
}

// Active reports whether the key is neither revoked nor expired at now.
func (k *Key) Active(now time.Time) bool {
	return k.RevokedAt.IsZero() && !k.expired(now)
}

func (k *Key) expired(now time.Time) bool {
	return !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt)
}

// Status is "active", "expired" or "revoked" at now.
func (k *Key) Status(now time.Time) string {
	switch {
	case !k.RevokedAt.IsZero():
		return "revoked"
	case k.expired(now):
		return "expired"
	}
	return "active"
}

// Errors a Store returns; they are wrapped, so test with errors.Is.
var (
	// ErrNotFound: no key has this hash (Lookup), or no key has this ID
	// and no key that is not revoked has this name (Revoke).
	ErrNotFound = errors.New("no such API key")
	// ErrNameTaken: a key that is not revoked already has this name.
	ErrNameTaken = errors.New("a key that is not revoked already has this name: revoke it first, or choose another name")
)

// Store keeps API keys. Implementations are safe for concurrent use by
// several goroutines, and by several processes sharing the same database.
//
// Create stores k and the SHA-256 hash of its plaintext. It validates k
// (see ValidName and config.ValidScope), refuses with ErrNameTaken a name
// held by a key that is not revoked — an expired key keeps its name until
// it is revoked, so a name always means one key — and keeps neither k nor
// hash after it returns.
//
// Lookup returns the key with this hash, whether active, expired or revoked:
// judging it is Authenticate's job. It returns ErrNotFound if none has it.
//
// List returns every key, revoked ones included, oldest first, without
// hashes.
//
// Revoke revokes the key with this ID or, failing that, the key that is
// not revoked with this name, and returns it. Revoking a revoked key by ID
// changes nothing and returns it. Revocation is durable when Revoke returns,
// and Lookup sees it from then on (a cache from NewCache: its own Revoke
// from then on, another Store's within its TTL).
//
// Keys returned belong to the caller. Close releases the store; no other
// method may be called after it.
type Store interface {
	Create(ctx context.Context, k *Key, hash []byte) error
	Lookup(ctx context.Context, hash []byte) (*Key, error)
	List(ctx context.Context) ([]*Key, error)
	Revoke(ctx context.Context, idOrName string) (*Key, error)
	Close() error
}

// Generate makes a new key: the plaintext to hand to its owner once, the
// Key to store, and the hash to store with it. A ttl of zero or less never
// expires.
func Generate(name, tenant string, scopes, groups []string, ttl time.Duration) (plaintext string, k *Key, hash []byte) {
	var secret [secretBytes]byte
	rand.Read(secret[:]) // never fails; it crashes the program if the OS has no randomness
	var id [8]byte
	rand.Read(id[:])
	plaintext = Marker + base64.RawURLEncoding.EncodeToString(secret[:])
	// Microseconds: both stores keep that precision, so a key reads back
	// exactly as it was made.
	now := time.Now().UTC().Truncate(time.Microsecond)
	k = &Key{
		ID:        idPrefix + hex.EncodeToString(id[:]),
		Name:      name,
		Prefix:    plaintext[:len(Marker)+prefixLen],
		Tenant:    tenant,
		Scopes:    slices.Clone(scopes),
		Groups:    slices.Clone(groups),
		CreatedAt: now,
	}
	if ttl > 0 {
		k.ExpiresAt = now.Add(ttl)
	}
	return plaintext, k, Hash(plaintext)
}

// Hash is what a store keeps of a key. A key carries 256 random bits, so
// no one can guess it from its hash however fast the hash is: a slow
// password hash (bcrypt, Argon2) would add nothing but latency to every
// request.
func Hash(plaintext string) []byte {
	h := sha256.Sum256([]byte(plaintext))
	return h[:]
}

// refused is the one answer for an unknown, revoked or expired key, so a
// caller cannot probe which it holds.
func refused() error {
	return pipeline.Unauthenticated("invalid_token", "the API key is not valid: it may be wrong, expired or revoked")
}

// Authenticate checks an API key presented as a bearer token and returns
// its principal and expiry (zero if it never expires). It refuses unknown,
// revoked and expired keys with the same *pipeline.AuthError. A store that
// cannot answer is returned as a plain error, so the caller can answer
// "unavailable" rather than "unauthenticated".
//
// The principal's ID is the key's name rather than its random ID: policies,
// rate limits and audit records then name the client the operator chose,
// and follow it when the key is rotated (revoked and reissued under the
// same name). The key's ID remains in the store for forensics.
func Authenticate(ctx context.Context, s Store, token string) (*pipeline.Principal, time.Time, error) {
	if len(token) != keyLen || !strings.HasPrefix(token, Marker) {
		return nil, time.Time{}, refused()
	}
	want := Hash(token)
	k, err := s.Lookup(ctx, want)
	if errors.Is(err, ErrNotFound) {
		return nil, time.Time{}, refused()
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("looking up the API key: %w", err)
	}
	// The store found the row through an index, which compares bytes
	// in variable time; that only leaks the hash, which is no help in
	// forging a key. Comparing again here in constant time keeps a store
	// that matched loosely (by prefix, case-insensitively) from letting a
	// wrong key in.
	if subtle.ConstantTimeCompare(k.hash, want) != 1 || !k.Active(time.Now()) {
		return nil, time.Time{}, refused()
	}
	return &pipeline.Principal{
		ID:         k.Name,
		Tenant:     k.Tenant,
		Scopes:     slices.Clone(k.Scopes),
		Groups:     slices.Clone(k.Groups),
		AuthMethod: "api_key",
	}, k.ExpiresAt, nil
}

// idPrefix starts every key ID; names may not start with it, so that
// Revoke never mistakes a name for an ID.
const idPrefix = "key_"

var namePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.@-]{0,63}$`)

// ValidName reports whether name may name a key. A name becomes the
// principal's ID, in policies and audit records, so it is short and plain.
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("a key needs a name, such as ci-bot or alice@example.com")
	case strings.HasPrefix(name, Marker):
		return fmt.Errorf("a name must not start with %s: that is what keys look like, and a name is not secret", Marker)
	case strings.HasPrefix(name, idPrefix):
		return fmt.Errorf("a name must not start with %s, which starts key IDs", idPrefix)
	case !namePattern.MatchString(name):
		return fmt.Errorf("%q is not a key name: up to 64 letters, digits and . _ @ -, starting with a letter or digit", name)
	}
	return nil
}

// check validates a key before a store writes it.
func (k *Key) check(hash []byte) error {
	if !strings.HasPrefix(k.ID, idPrefix) {
		return fmt.Errorf("key ID %q: make keys with Generate", k.ID)
	}
	if len(hash) != sha256.Size {
		return fmt.Errorf("key hash: %d bytes, want a SHA-256 hash (%d bytes)", len(hash), sha256.Size)
	}
	if err := ValidName(k.Name); err != nil {
		return err
	}
	if len(k.Scopes) == 0 {
		return errors.New("a key needs at least one scope: no scope, no call")
	}
	for _, sc := range k.Scopes {
		if err := config.ValidScope(sc); err != nil {
			return err
		}
	}
	for _, g := range k.Groups {
		if g == "" {
			return errors.New("a group name may not be empty")
		}
	}
	return nil
}
