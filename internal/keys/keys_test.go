package keys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/state/statetest"
	"github.com/wardenmcp/warden/pipeline"
)

// stores are the implementations every contract test runs against.
var stores = []struct {
	name string
	open func(t *testing.T) Store
}{
	{"sqlite", openTestSQLite},
	{"postgres", openTestPostgres},
	// The cache must keep the contract for its own process, revocation on
	// the next call included.
	{"sqlite-cached", func(t *testing.T) Store { return NewCache(openTestSQLite(t), time.Hour) }},
	{"postgres-cached", func(t *testing.T) Store { return NewCache(openTestPostgres(t), time.Hour) }},
}

// forEachStore runs f as a subtest against a fresh, empty store of each
// kind.
func forEachStore(t *testing.T, f func(t *testing.T, s Store)) {
	t.Helper()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) { f(t, st.open(t)) })
	}
}

func openTestSQLite(t *testing.T) Store { return openSQLiteFor(t) }

func openSQLiteFor(t testing.TB) Store {
	t.Helper()
	cfg := &config.Config{}
	cfg.Server.State.SQLite = statetest.SQLitePath(t)
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("opening the SQLite store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openTestPostgres opens a store in a schema of its own, dropped when the
// test ends.
func openTestPostgres(t *testing.T) Store {
	t.Helper()
	cfg := &config.Config{}
	cfg.Server.State.Postgres = statetest.Postgres(t)
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("opening the PostgreSQL store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// create makes and stores a key, and returns its plaintext and the key.
func create(t *testing.T, s Store, name string, ttl time.Duration) (string, *Key) {
	t.Helper()
	plaintext, k, hash := Generate(name, "acme", []string{"crm.read", "crm:write"}, []string{"support"}, ttl)
	if err := s.Create(context.Background(), k, hash); err != nil {
		t.Fatalf("creating key %s: %v", name, err)
	}
	return plaintext, k
}

// wantRefused fails unless err is the one 401 every bad key gets.
func wantRefused(t *testing.T, err error) {
	t.Helper()
	var ae *pipeline.AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want a *pipeline.AuthError", err)
	}
	want := refused().(*pipeline.AuthError)
	if *ae != *want {
		t.Errorf("refusal = %+v, want %+v (the same for every bad key)", *ae, *want)
	}
	if ae.Status != http.StatusUnauthorized || ae.Code != "invalid_token" {
		t.Errorf("refusal = %d %s, want 401 invalid_token", ae.Status, ae.Code)
	}
}

func TestAuthenticate(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		plaintext, k := create(t, s, "ci-bot", time.Hour)
		p, exp, err := Authenticate(ctx, s, plaintext)
		if err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		if p.ID != "ci-bot" || p.Tenant != "acme" || p.AuthMethod != "api_key" ||
			!slices.Equal(p.Scopes, []string{"crm.read", "crm:write"}) || !slices.Equal(p.Groups, []string{"support"}) {
			t.Errorf("principal = %+v", p)
		}
		if !exp.Equal(k.ExpiresAt) {
			t.Errorf("expiry = %v, want %v", exp, k.ExpiresAt)
		}

		never, _ := create(t, s, "forever", 0)
		if _, exp, err := Authenticate(ctx, s, never); err != nil || !exp.IsZero() {
			t.Errorf("a key without expiry: expiry %v, err %v; want zero, nil", exp, err)
		}
	})
}

func TestAuthenticateRefuses(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		good, _ := create(t, s, "good", time.Hour)

		revoked, _ := create(t, s, "revoked", time.Hour)
		if _, err := s.Revoke(ctx, "revoked"); err != nil {
			t.Fatal(err)
		}

		expired, k, hash := Generate("expired", "acme", []string{"crm.read"}, nil, time.Hour)
		k.CreatedAt = k.CreatedAt.Add(-2 * time.Hour)
		k.ExpiresAt = k.CreatedAt.Add(time.Hour)
		if err := s.Create(ctx, k, hash); err != nil {
			t.Fatal(err)
		}

		unknown, _, _ := Generate("unknown", "acme", []string{"crm.read"}, nil, 0)
		tampered := []byte(good)
		tampered[20] = map[bool]byte{true: 'B', false: 'A'}[tampered[20] == 'A']

		tests := []struct{ name, token string }{
			{"one character changed", string(tampered)},
			{"never issued", unknown},
			{"revoked", revoked},
			{"expired", expired},
			{"without the marker", strings.TrimPrefix(good, Marker)},
			{"truncated", good[:len(good)-1]},
			{"with more after it", good + "A"},
			{"empty", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p, _, err := Authenticate(ctx, s, tt.token)
				if p != nil {
					t.Errorf("principal = %+v, want none", p)
				}
				wantRefused(t, err)
			})
		}
	})
}

func TestRevokeTakesEffectOnTheNextCall(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		byName, _ := create(t, s, "by-name", 0)
		byID, kID := create(t, s, "by-id", 0)
		tests := []struct{ name, token, idOrName string }{
			{"by name", byName, "by-name"},
			{"by ID", byID, kID.ID},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if _, _, err := Authenticate(ctx, s, tt.token); err != nil {
					t.Fatalf("before revoking: %v", err)
				}
				k, err := s.Revoke(ctx, tt.idOrName)
				if err != nil {
					t.Fatalf("Revoke: %v", err)
				}
				if k.RevokedAt.IsZero() {
					t.Errorf("revoked key has no RevokedAt: %+v", k)
				}
				_, _, err = Authenticate(ctx, s, tt.token)
				wantRefused(t, err)

				again, err := s.Revoke(ctx, k.ID)
				if err != nil || !again.RevokedAt.Equal(k.RevokedAt) {
					t.Errorf("revoking again by ID = %v, %v; want the key unchanged", again, err)
				}
				if _, err := s.Revoke(ctx, k.Name); !errors.Is(err, ErrNotFound) {
					t.Errorf("revoking again by name: err = %v, want ErrNotFound (no key that is not revoked has it)", err)
				}
			})
		}
		if _, err := s.Revoke(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Errorf("revoking an unknown key: err = %v, want ErrNotFound", err)
		}
	})
}

func TestListShowsKeysButNoSecrets(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		p1, k1 := create(t, s, "alpha", 30*24*time.Hour)
		p2, k2, h2 := Generate("beta", "globex", []string{"orders.read"}, nil, 0)
		if err := s.Create(ctx, k2, h2); err != nil {
			t.Fatal(err)
		}
		rk, err := s.Revoke(ctx, "alpha")
		if err != nil {
			t.Fatal(err)
		}
		k1.RevokedAt = rk.RevokedAt

		got, err := s.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(got) != 2 {
			t.Fatalf("List returned %d keys, want 2", len(got))
		}
		for i, want := range []*Key{k1, k2} {
			g := got[i]
			if g.ID != want.ID || g.Name != want.Name || g.Prefix != want.Prefix || g.Tenant != want.Tenant ||
				!slices.Equal(g.Scopes, want.Scopes) || !slices.Equal(g.Groups, want.Groups) ||
				!g.CreatedAt.Equal(want.CreatedAt) || !g.ExpiresAt.Equal(want.ExpiresAt) || !g.RevokedAt.Equal(want.RevokedAt) {
				t.Errorf("key %d = %+v\nwant %+v", i, g, want)
			}
			if g.hash != nil {
				t.Errorf("List returned the hash of %s", g.Name)
			}
		}
		if got[0].Status(time.Now()) != "revoked" || got[1].Status(time.Now()) != "active" {
			t.Errorf("statuses = %s, %s; want revoked, active", got[0].Status(time.Now()), got[1].Status(time.Now()))
		}
		if !strings.HasPrefix(p1, got[0].Prefix) || len(got[0].Prefix) != len(Marker)+prefixLen {
			t.Errorf("prefix %q does not start key %q", got[0].Prefix, p1)
		}

		js, _ := json.Marshal(got)
		shown := string(js) + fmt.Sprintf("%+v %+v", *got[0], *got[1])
		for _, p := range []string{p1, p2} {
			h := Hash(p)
			for _, secret := range []string{p, p[len(Marker)+prefixLen:], hex.EncodeToString(h), base64.StdEncoding.EncodeToString(h)} {
				if strings.Contains(shown, secret) {
					t.Errorf("a listing shows a key or its hash: %s", shown)
				}
			}
		}
	})
}

func TestNamesAreUniqueAmongKeysNotRevoked(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		create(t, s, "ci-bot", 0)
		_, dup, hash := Generate("ci-bot", "acme", []string{"crm.read"}, nil, 0)
		if err := s.Create(ctx, dup, hash); !errors.Is(err, ErrNameTaken) {
			t.Fatalf("second active ci-bot: err = %v, want ErrNameTaken", err)
		}

		_, exp, hash := Generate("expired", "acme", []string{"crm.read"}, nil, 0)
		exp.ExpiresAt = exp.CreatedAt.Add(-time.Minute)
		if err := s.Create(ctx, exp, hash); err != nil {
			t.Fatal(err)
		}
		_, again, hash := Generate("expired", "acme", []string{"crm.read"}, nil, 0)
		if err := s.Create(ctx, again, hash); !errors.Is(err, ErrNameTaken) {
			t.Errorf("reusing the name of an expired key not revoked: err = %v, want ErrNameTaken", err)
		}

		if _, err := s.Revoke(ctx, "ci-bot"); err != nil {
			t.Fatal(err)
		}
		plaintext, _ := create(t, s, "ci-bot", 0) // rotation: same name, new key
		if _, _, err := Authenticate(ctx, s, plaintext); err != nil {
			t.Errorf("the reissued key: %v", err)
		}
		ks, _ := s.List(ctx)
		if len(ks) != 3 {
			t.Errorf("List after rotation has %d keys, want 3 (the revoked one stays)", len(ks))
		}
	})
}

func TestCreateRefusesInvalidKeys(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(k *Key)
		hash   []byte
		errHas string
	}{
		{"wildcard scope", func(k *Key) { k.Scopes = []string{"crm.*"} }, nil, "wildcards"},
		{"no scopes", func(k *Key) { k.Scopes = nil }, nil, "at least one scope"},
		{"no name", func(k *Key) { k.Name = "" }, nil, "needs a name"},
		{"a key as its name", func(k *Key) { k.Name = "wdn_abc" }, nil, "must not start with wdn_"},
		{"an ID as its name", func(k *Key) { k.Name = "key_0123" }, nil, "starts key IDs"},
		{"spaces in the name", func(k *Key) { k.Name = "ci bot" }, nil, "not a key name"},
		{"not a hash", func(*Key) {}, []byte("short"), "SHA-256"},
	}
	forEachStore(t, func(t *testing.T, s Store) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, k, hash := Generate("valid", "acme", []string{"crm.read"}, nil, 0)
				tt.edit(k)
				if tt.hash != nil {
					hash = tt.hash
				}
				err := s.Create(context.Background(), k, hash)
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Errorf("err = %v, want one saying %q", err, tt.errHas)
				}
			})
		}
		if ks, _ := s.List(context.Background()); len(ks) != 0 {
			t.Errorf("invalid keys were stored: %v", ks)
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		plaintext, _ := create(t, s, "busy", 0)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			errs    []error
			created int
		)
		fail := func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		for range 16 {
			wg.Go(func() {
				for range 20 {
					if _, _, err := Authenticate(ctx, s, plaintext); err != nil {
						fail(err)
					}
				}
				if _, err := s.List(ctx); err != nil {
					fail(err)
				}
			})
			wg.Go(func() {
				_, k, hash := Generate("contested", "acme", []string{"crm.read"}, nil, 0)
				switch err := s.Create(ctx, k, hash); {
				case err == nil:
					mu.Lock()
					created++
					mu.Unlock()
				case !errors.Is(err, ErrNameTaken):
					fail(err)
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			t.Error(err)
		}
		if created != 1 {
			t.Errorf("%d concurrent creates of one name succeeded, want exactly 1", created)
		}
	})
}

func TestStoreErrorIsNotARefusal(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		plaintext, _ := create(t, s, "ci-bot", 0)
		s.Close()
		_, _, err := Authenticate(context.Background(), s, plaintext)
		var ae *pipeline.AuthError
		if err == nil || errors.As(err, &ae) {
			t.Errorf("err = %v, want a plain error (answered 503, not 401)", err)
		}
	})
}

func TestGenerate(t *testing.T) {
	p1, k1, h1 := Generate("a", "acme", []string{"crm.read"}, nil, 0)
	p2, k2, _ := Generate("a", "acme", []string{"crm.read"}, nil, 12*time.Hour)
	secret, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(p1, Marker))
	if !strings.HasPrefix(p1, Marker) || err != nil || len(secret) != 32 {
		t.Errorf("key %q: want %s and 32 random bytes in base64url (decode error %v)", p1, Marker, err)
	}
	if p1 == p2 || k1.ID == k2.ID {
		t.Errorf("two keys share a key or an ID: %s %s, %s %s", p1, p2, k1.ID, k2.ID)
	}
	if sum := sha256.Sum256([]byte(p1)); !bytes.Equal(h1, sum[:]) {
		t.Errorf("hash is not SHA-256 of the key")
	}
	if k1.Prefix != p1[:12] {
		t.Errorf("prefix = %q, want %q", k1.Prefix, p1[:12])
	}
	if !k1.ExpiresAt.IsZero() || k2.ExpiresAt.Sub(k2.CreatedAt) != 12*time.Hour {
		t.Errorf("expiries = %v, %v; want never and 12h after creation", k1.ExpiresAt, k2.ExpiresAt)
	}
}

func TestSQLiteFileIsPrivateAndHoldsNoKey(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.Config{Dir: dir} // server.state unset: the default file
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	plaintext, _ := create(t, s, "ci-bot", 0)
	if _, _, err := Authenticate(context.Background(), s, plaintext); err != nil {
		t.Fatal(err)
	}

	files, _ := filepath.Glob(filepath.Join(dir, config.DefaultStateFile+"*"))
	if len(files) == 0 {
		t.Fatalf("no state file in %s", dir)
	}
	// Read the files while the store is open, WAL included, and again after
	// Close has checkpointed the WAL into the database.
	check := func() {
		for _, f := range files {
			st, err := os.Stat(f)
			if err != nil {
				continue // Close removes the WAL and shared-memory files
			}
			if perm := st.Mode().Perm(); perm&0o077 != 0 {
				t.Errorf("%s has permissions %v; want none for group or others", f, perm)
			}
			b, _ := os.ReadFile(f)
			if bytes.Contains(b, []byte(plaintext[len(Marker)+prefixLen:])) {
				t.Errorf("%s holds the key", f)
			}
		}
	}
	check()
	s.Close()
	check()

	reopened, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer reopened.Close()
	if _, _, err := Authenticate(context.Background(), reopened, plaintext); err != nil {
		t.Errorf("the key after reopening the store: %v", err)
	}
}

func TestOpenRefusesTwoStores(t *testing.T) {
	cfg := &config.Config{Dir: t.TempDir()}
	cfg.Server.State = config.State{SQLite: "state.db", Postgres: "postgres://localhost/x"}
	if _, err := Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("err = %v, want one saying to choose sqlite or postgres", err)
	}
}

func ExampleAuthenticate() {
	dir, _ := os.MkdirTemp("", "warden-keys")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	store, err := Open(ctx, &config.Config{Dir: dir})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	plaintext, k, hash := Generate("ci-bot", "acme", []string{"crm.read"}, nil, 30*24*time.Hour)
	if err := store.Create(ctx, k, hash); err != nil {
		panic(err)
	}
	p, _, err := Authenticate(ctx, store, plaintext)
	fmt.Println(p.ID, p.Tenant, p.Scopes, p.AuthMethod, err)

	store.Revoke(ctx, "ci-bot")
	_, _, err = Authenticate(ctx, store, plaintext)
	fmt.Println(err)
	// Output:
	// ci-bot acme [crm.read] api_key <nil>
	// the API key is not valid: it may be wrong, expired or revoked
}
