package keys

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/wardenmcp/warden/internal/state"
)

// sqliteSchema is created idempotently on open. Times are microseconds
// since the Unix epoch, NULL for never; lists are JSON arrays. The UNIQUE
// hash column is indexed; the partial index keeps a name to one key that is
// not revoked.
const sqliteSchema = `
CREATE TABLE IF NOT EXISTS warden_api_keys (
	id         TEXT    PRIMARY KEY,
	name       TEXT    NOT NULL,
	prefix     TEXT    NOT NULL,
	hash       BLOB    NOT NULL UNIQUE,
	tenant     TEXT    NOT NULL,
	scopes     TEXT    NOT NULL,
	groups     TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER,
	revoked_at INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS warden_api_keys_active_name
	ON warden_api_keys (name) WHERE revoked_at IS NULL;
`

const sqliteColumns = `id, name, prefix, tenant, scopes, groups, created_at, expires_at, revoked_at`

// sqliteStore keeps keys in Warden's own SQLite state file.
type sqliteStore struct {
	db     *sql.DB
	lookup *sql.Stmt // prepared once: it runs on every authenticated call
}

var _ Store = (*sqliteStore)(nil)

func openSQLite(ctx context.Context, path string) (Store, error) {
	db, err := state.OpenSQLite(ctx, path)
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, sqliteSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("server.state.sqlite: preparing %s: %w", path, err)
	}
	lookup, err := db.PrepareContext(ctx, `SELECT `+sqliteColumns+`, hash FROM warden_api_keys WHERE hash = ?`)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("server.state.sqlite: preparing %s: %w", path, err)
	}
	return &sqliteStore{db: db, lookup: lookup}, nil
}

func (s *sqliteStore) Create(ctx context.Context, k *Key, hash []byte) error {
	if err := k.check(hash); err != nil {
		return fmt.Errorf("creating API key: %w", err)
	}
	scopes, groups := jsonList(k.Scopes), jsonList(k.Groups)
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO warden_api_keys (id, name, prefix, hash, tenant, scopes, groups, created_at, expires_at, revoked_at)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.Name, k.Prefix, hash, k.Tenant, scopes, groups,
		k.CreatedAt.UnixMicro(), micros(k.ExpiresAt), micros(k.RevokedAt))
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE && strings.Contains(se.Error(), "warden_api_keys.name") {
		return fmt.Errorf("creating API key %q: %w", k.Name, ErrNameTaken)
	}
	if err != nil {
		return fmt.Errorf("creating API key %q: %w", k.Name, err)
	}
	return nil
}

func (s *sqliteStore) Lookup(ctx context.Context, hash []byte) (*Key, error) {
	row := s.lookup.QueryRowContext(ctx, hash)
	k, err := scanSQLite(row, true)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("looking up API key: %w", err)
	}
	return k, nil
}

func (s *sqliteStore) List(ctx context.Context) ([]*Key, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+sqliteColumns+` FROM warden_api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing API keys: %w", err)
	}
	defer rows.Close()
	var ks []*Key
	for rows.Next() {
		k, err := scanSQLite(rows, false)
		if err != nil {
			return nil, fmt.Errorf("listing API keys: %w", err)
		}
		ks = append(ks, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing API keys: %w", err)
	}
	return ks, nil
}

func (s *sqliteStore) Revoke(ctx context.Context, idOrName string) (*Key, error) {
	tx, err := s.db.BeginTx(ctx, nil) // immediate: no other writer until commit
	if err != nil {
		return nil, fmt.Errorf("revoking API key %q: %w", idOrName, err)
	}
	defer tx.Rollback()
	k, err := scanSQLite(tx.QueryRowContext(ctx, `SELECT `+sqliteColumns+` FROM warden_api_keys WHERE id = ?`, idOrName), false)
	if errors.Is(err, sql.ErrNoRows) {
		k, err = scanSQLite(tx.QueryRowContext(ctx, `SELECT `+sqliteColumns+` FROM warden_api_keys WHERE name = ? AND revoked_at IS NULL`, idOrName), false)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("revoking API key %q: %w", idOrName, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("revoking API key %q: %w", idOrName, err)
	}
	if !k.RevokedAt.IsZero() {
		return k, nil
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	if _, err := tx.ExecContext(ctx, `UPDATE warden_api_keys SET revoked_at = ? WHERE id = ?`, now.UnixMicro(), k.ID); err != nil {
		return nil, fmt.Errorf("revoking API key %q: %w", idOrName, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("revoking API key %q: %w", idOrName, err)
	}
	k.RevokedAt = now
	return k, nil
}

func (s *sqliteStore) Close() error { return errors.Join(s.lookup.Close(), s.db.Close()) }

// scanner is a row from database/sql or pgx.
type scanner interface{ Scan(dest ...any) error }

func scanSQLite(r scanner, withHash bool) (*Key, error) {
	var (
		k                Key
		scopes, groups   string
		created          int64
		expires, revoked sql.NullInt64
	)
	dest := []any{&k.ID, &k.Name, &k.Prefix, &k.Tenant, &scopes, &groups, &created, &expires, &revoked}
	if withHash {
		dest = append(dest, &k.hash)
	}
	if err := r.Scan(dest...); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(scopes), &k.Scopes); err != nil {
		return nil, fmt.Errorf("key %s: scopes: %w", k.ID, err)
	}
	if err := json.Unmarshal([]byte(groups), &k.Groups); err != nil {
		return nil, fmt.Errorf("key %s: groups: %w", k.ID, err)
	}
	k.Scopes, k.Groups = nilIfEmpty(k.Scopes), nilIfEmpty(k.Groups)
	k.CreatedAt = time.UnixMicro(created).UTC()
	if expires.Valid {
		k.ExpiresAt = time.UnixMicro(expires.Int64).UTC()
	}
	if revoked.Valid {
		k.RevokedAt = time.UnixMicro(revoked.Int64).UTC()
	}
	return &k, nil
}

func jsonList(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(l) // a []string always encodes
	return string(b)
}

// micros is t in microseconds since the epoch, or NULL for the zero time.
func micros(t time.Time) sql.NullInt64 {
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: !t.IsZero()}
}

// nilIfEmpty makes both stores return an empty list the same way.
func nilIfEmpty(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}
