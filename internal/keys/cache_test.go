package keys

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/state/statetest"
)

// twoProcesses opens two stores on one SQLite file, as a server and
// warden keys revoke would, and caches the first for ttl.
func twoProcesses(t *testing.T, path string, ttl time.Duration) (server, other Store) {
	t.Helper()
	cfg := &config.Config{}
	cfg.Server.State.SQLite = path
	open := func() Store {
		s, err := Open(context.Background(), cfg)
		if err != nil {
			t.Fatalf("opening the SQLite store: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return NewCache(open(), ttl), open()
}

// counting counts the lookups that reach the store.
type counting struct {
	Store
	lookups atomic.Int64
}

func (c *counting) Lookup(ctx context.Context, hash []byte) (*Key, error) {
	c.lookups.Add(1)
	return c.Store.Lookup(ctx, hash)
}

func TestCacheRevokedElsewhereIsRefusedWithinTTL(t *testing.T) {
	path := statetest.SQLitePath(t)
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		server, other := twoProcesses(t, path, time.Second)
		plaintext, _ := create(t, other, "ci-bot", 0)
		if _, _, err := Authenticate(ctx, server, plaintext); err != nil {
			t.Fatalf("before revoking: %v", err)
		}
		if _, err := other.Revoke(ctx, "ci-bot"); err != nil {
			t.Fatal(err)
		}
		// The bound is the TTL, not better: just inside it the cached
		// key is still accepted.
		time.Sleep(time.Second - time.Nanosecond)
		if _, _, err := Authenticate(ctx, server, plaintext); err != nil {
			t.Errorf("just inside the TTL: %v (the cache should still answer)", err)
		}
		time.Sleep(time.Nanosecond)
		_, _, err := Authenticate(ctx, server, plaintext)
		wantRefused(t, err)
	})
}

func TestCacheRevokedHereIsRefusedOnTheNextCall(t *testing.T) {
	ctx := context.Background()
	inner := &counting{Store: openSQLiteFor(t)}
	s := NewCache(inner, time.Hour)
	plaintext, _ := create(t, s, "ci-bot", 0)
	for range 3 {
		if _, _, err := Authenticate(ctx, s, plaintext); err != nil {
			t.Fatalf("before revoking: %v", err)
		}
	}
	if n := inner.lookups.Load(); n != 1 {
		t.Errorf("three calls asked the store %d times, want once", n)
	}
	if _, err := s.Revoke(ctx, "ci-bot"); err != nil {
		t.Fatal(err)
	}
	_, _, err := Authenticate(ctx, s, plaintext)
	wantRefused(t, err)
}

// racing revokes the key through the cache while a lookup is in flight:
// after the store has answered, before the cache stores the answer.
type racing struct {
	Store
	revoke func()
}

func (r *racing) Lookup(ctx context.Context, hash []byte) (*Key, error) {
	k, err := r.Store.Lookup(ctx, hash)
	if r.revoke != nil {
		r.revoke()
		r.revoke = nil
	}
	return k, err
}

func TestCacheLookupRacingARevocationIsNotCached(t *testing.T) {
	ctx := context.Background()
	inner := &racing{Store: openSQLiteFor(t)}
	s := NewCache(inner, time.Hour)
	plaintext, _ := create(t, s, "ci-bot", 0)
	inner.revoke = func() {
		if _, err := s.Revoke(ctx, "ci-bot"); err != nil {
			t.Error(err)
		}
	}
	// This call overlaps the revocation, so either answer is right; the
	// next one starts after it, and must be refused.
	Authenticate(ctx, s, plaintext)
	_, _, err := Authenticate(ctx, s, plaintext)
	wantRefused(t, err)
}

func TestCacheExpiredKeyIsRefusedAtItsExpiry(t *testing.T) {
	path := statetest.SQLitePath(t)
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s, _ := twoProcesses(t, path, time.Second)
		plaintext, _ := create(t, s, "short-lived", 500*time.Millisecond)
		if _, _, err := Authenticate(ctx, s, plaintext); err != nil {
			t.Fatalf("fresh key: %v", err)
		}
		time.Sleep(500*time.Millisecond - time.Nanosecond)
		if _, _, err := Authenticate(ctx, s, plaintext); err != nil {
			t.Fatalf("just before its expiry: %v", err)
		}
		time.Sleep(time.Nanosecond) // at its expiry, well inside the TTL
		_, _, err := Authenticate(ctx, s, plaintext)
		wantRefused(t, err)
	})
}

func TestCacheHoldsOnlyActiveKeys(t *testing.T) {
	ctx := context.Background()
	inner := &counting{Store: openSQLiteFor(t)}
	s := NewCache(inner, time.Hour)
	good, _ := create(t, s, "good", 0)
	revoked, _ := create(t, s, "revoked", 0)
	if _, err := s.Revoke(ctx, "revoked"); err != nil {
		t.Fatal(err)
	}
	unknown, _, _ := Generate("unknown", "acme", []string{"crm.read"}, nil, 0)
	tampered := []byte(good)
	tampered[20] ^= 1

	for _, token := range []string{unknown, revoked, string(tampered), unknown, revoked, string(tampered)} {
		_, _, err := Authenticate(ctx, s, token)
		wantRefused(t, err)
	}
	if n := inner.lookups.Load(); n != 6 {
		t.Errorf("six bad keys asked the store %d times, want every time: a refusal is never cached", n)
	}
	if n := len(s.(*cache).entries); n != 0 {
		t.Errorf("the cache holds %d entries after only bad keys, want none", n)
	}
}

func TestCacheIsBounded(t *testing.T) {
	ctx := context.Background()
	s := NewCache(openSQLiteFor(t), time.Hour)
	c := s.(*cache)
	c.max = 3
	var tokens []string
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		p, _ := create(t, s, name, 0)
		tokens = append(tokens, p)
	}
	for range 2 {
		for _, p := range tokens {
			if _, _, err := Authenticate(ctx, s, p); err != nil {
				t.Fatalf("a key evicted from the cache must still authenticate: %v", err)
			}
			if n := len(c.entries); n > c.max {
				t.Fatalf("the cache holds %d entries, over its bound of %d", n, c.max)
			}
		}
	}
}

func TestCacheCopiesKeys(t *testing.T) {
	ctx := context.Background()
	s := NewCache(openSQLiteFor(t), time.Hour)
	plaintext, _ := create(t, s, "ci-bot", 0)
	p, _, err := Authenticate(ctx, s, plaintext)
	if err != nil {
		t.Fatal(err)
	}
	p.Scopes[0] = "admin.everything"
	k, err := s.Lookup(ctx, Hash(plaintext))
	if err != nil {
		t.Fatal(err)
	}
	k.Scopes[0] = "admin.everything"
	if p, _, _ := Authenticate(ctx, s, plaintext); p.Scopes[0] != "crm.read" {
		t.Errorf("a caller's edit reached the cache: scopes %v", p.Scopes)
	}
}

func TestCacheTTLZeroIsNoCache(t *testing.T) {
	s := openSQLiteFor(t)
	if got := NewCache(s, 0); got != s {
		t.Errorf("NewCache(s, 0) = %T, want s itself", got)
	}
}
