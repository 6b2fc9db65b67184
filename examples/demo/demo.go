// Package demo holds Warden's demo: a CRM for two fictional tenants, its
// configuration (warden.yaml, also embedded in the binary) and the data
// that `warden demo` seeds once into the user's data directory.
package demo

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite"
)

// Config is examples/demo/warden.yaml.
//
//go:embed warden.yaml
var Config []byte

//go:embed seed.sql
var seed string

//go:embed resources
var resources embed.FS

// DirEnv is the environment variable the demo configuration reads its data
// directory from.
const DirEnv = "WARDEN_DEMO_DIR"

// DefaultDir returns the demo's data directory: $XDG_DATA_HOME/warden/demo,
// or the platform's equivalent.
func DefaultDir() (string, error) {
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding a data directory: %w", err)
		}
		base = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(base, "warden", "demo"), nil
}

// Setup creates the demo database and resources in dir unless they exist,
// and reports whether it created them. The database is built in a temporary
// file and renamed into place, so an interrupted setup leaves nothing half
// made.
func Setup(ctx context.Context, dir string) (created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	if err := os.CopyFS(filepath.Join(dir, "resources"), mustSub(resources, "resources")); err != nil && !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("writing demo resources: %w", err)
	}
	dbPath := filepath.Join(dir, "crm.db")
	if _, err := os.Stat(dbPath); err == nil {
		return false, nil
	}
	tmp := dbPath + ".tmp"
	os.Remove(tmp)
	db, err := sql.Open("sqlite", tmp)
	if err != nil {
		return false, err
	}
	_, err = db.ExecContext(ctx, seed)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("seeding the demo database: %w", err)
	}
	return true, os.Rename(tmp, dbPath)
}

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
