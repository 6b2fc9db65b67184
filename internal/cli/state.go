package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
)

// requireState refuses to go on unless the state an operator command reads
// already exists: the SQLite state file and, if auditKey, the audit key
// file beside it (when the configuration names no audit.secret). Opening
// either creates it, so a mistyped path or a command run in the wrong
// directory would otherwise look at a new, empty store and write a new key
// that verifies nothing — and say nothing about it. PostgreSQL state is
// not checked here: its database exists, or opening it fails.
func requireState(cfg *config.Config, auditKey bool) error {
	if cfg.Server.State.Postgres != "" || cfg.Server.State.SQLite == "" {
		return nil
	}
	path := cfg.Resolve(cfg.Server.State.SQLite)
	if err := mustExist(path); err != nil {
		return fmt.Errorf("the state store %s does not exist (server.state.sqlite of %s); this command never creates one: check the path, or run warden serve with this configuration first: %w",
			path, configName(cfg), err)
	}
	if !auditKey || cfg.Audit.Secret != "" {
		return nil
	}
	key := filepath.Join(filepath.Dir(path), audit.SecretFile)
	if err := mustExist(key); err != nil {
		return fmt.Errorf("the audit key %s does not exist, so the audit log of %s cannot be checked or extended; this command never creates one: restore the key, or set audit.secret as the server has it: %w",
			key, path, err)
	}
	return nil
}

// errMissing is what requireState wraps for a file that is not there.
var errMissing = errors.New("no such file")

func mustExist(path string) error {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return errMissing
	}
	return err
}

func configName(cfg *config.Config) string {
	if cfg.File == "" {
		return "the configuration"
	}
	return cfg.File
}
