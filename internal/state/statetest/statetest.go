// Package statetest gives the tests of Warden's state stores a database of
// their own: a fresh SQLite file, or a fresh schema on the PostgreSQL server
// WARDEN_TEST_POSTGRES_URL names, so that tests run in parallel and leave
// nothing behind.
package statetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
)

// SQLitePath is the path of a state file, not yet created, in a directory
// removed when the test ends.
func SQLitePath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "state.db")
}

// Postgres is a DSN for the server WARDEN_TEST_POSTGRES_URL names whose
// search_path is a schema of its own, dropped when the test ends. It skips
// the test when WARDEN_TEST_POSTGRES_URL is unset.
func Postgres(t testing.TB) string {
	t.Helper()
	base := os.Getenv("WARDEN_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("set WARDEN_TEST_POSTGRES_URL (such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the PostgreSQL tests")
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("WARDEN_TEST_POSTGRES_URL: %v", err)
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connecting to WARDEN_TEST_POSTGRES_URL: %v", err)
	}
	var b [6]byte
	rand.Read(b[:]) // never fails
	schema := "warden_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close(ctx)
		t.Fatalf("creating schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
		admin.Close(ctx)
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
