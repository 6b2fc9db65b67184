package keys

import (
	"context"
	"testing"
	"time"
)

// BenchmarkAuthenticateSQLite is what an API key costs on a call the cache
// does not answer, or on every call with auth.api_keys.cache_ttl: 0: a
// lookup by hash in the SQLite state store.
func BenchmarkAuthenticateSQLite(b *testing.B) {
	benchmarkAuthenticate(b, openSQLiteFor(b))
}

// BenchmarkAuthenticateSQLiteCached is what it costs with the default
// cache: one store lookup a second, the other calls answered from memory.
func BenchmarkAuthenticateSQLiteCached(b *testing.B) {
	benchmarkAuthenticate(b, NewCache(openSQLiteFor(b), time.Second))
}

func benchmarkAuthenticate(b *testing.B, s Store) {
	ctx := context.Background()
	plain, k, hash := Generate("bench", "acme", []string{"crm.read"}, nil, 0)
	if err := s.Create(ctx, k, hash); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := Authenticate(ctx, s, plain); err != nil {
				b.Fatal(err)
			}
		}
	})
}
