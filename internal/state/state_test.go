package state_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/internal/state"
	"github.com/wardenmcp/warden/internal/state/statetest"
)

func TestOpenSQLiteIsPrivate(t *testing.T) {
	path := statetest.SQLitePath(t)
	db, err := state.OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("state file permissions = %v, want 0600", perm)
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestOpenPostgresHidesTheDSN(t *testing.T) {
	_, err := state.OpenPostgres(context.Background(), "postgres://warden:hunter2@[::1/state")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("OpenPostgres(bad DSN) = %v; want an error without the password", err)
	}
}
