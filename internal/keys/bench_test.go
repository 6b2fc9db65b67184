package keys

import (
	"context"
	"testing"
)

// BenchmarkAuthenticateSQLite is what an API key costs on every call: a
// lookup by hash in the SQLite state store (never cached, so that a
// revocation bites on the next call).
func BenchmarkAuthenticateSQLite(b *testing.B) {
	s := openSQLiteFor(b)
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
