package audit

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/wardenmcp/warden/internal/config"
)

// SecretFile is the key file created beside a SQLite state database when
// the configuration names no audit secret.
const SecretFile = "warden-audit.key"

// LoadSecret returns the audit secret: audit.secret from the
// configuration, or else the key file beside the SQLite state database,
// created (0600, 32 random bytes) the first time. Losing it makes the chain
// unverifiable, so it is never recreated over an existing file.
func LoadSecret(cfg *config.Config) ([]byte, error) {
	if s := cfg.Audit.Secret; s != "" {
		return []byte(s), nil
	}
	if cfg.Server.State.SQLite == "" {
		return nil, errors.New("audit.secret is required when the state is not in SQLite")
	}
	path := filepath.Join(filepath.Dir(cfg.Resolve(cfg.Server.State.SQLite)), SecretFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		var b [32]byte
		rand.Read(b[:])
		data = []byte(hex.EncodeToString(b[:]) + "\n")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("creating the audit key %s: %w", path, err)
		}
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("writing the audit key %s: %w", path, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("reading the audit key: %w", err)
	}
	secret := strings.TrimSpace(string(data))
	if len(secret) < config.MinAuditSecret {
		return nil, fmt.Errorf("the audit key %s is shorter than %d bytes", path, config.MinAuditSecret)
	}
	return []byte(secret), nil
}
