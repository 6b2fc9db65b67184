package keys

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/state"
)

// schema is created idempotently on open. A NULL time is never. The UNIQUE
// hash column is indexed; the partial index keeps a name to one key that
// is not revoked.
var schema = state.Schema{
	Table: "warden_api_keys",
	DDL: `
CREATE TABLE IF NOT EXISTS warden_api_keys (
	id         TEXT    PRIMARY KEY,
	name       TEXT    NOT NULL,
	prefix     TEXT    NOT NULL,
	hash       {bytes} NOT NULL UNIQUE,
	tenant     TEXT    NOT NULL,
	scopes     {list}  NOT NULL,
	groups     {list}  NOT NULL,
	created_at {time}  NOT NULL,
	expires_at {time},
	revoked_at {time}
);
CREATE UNIQUE INDEX IF NOT EXISTS warden_api_keys_active_name
	ON warden_api_keys (name) WHERE revoked_at IS NULL;
`,
}

// sqlStore keeps keys in Warden's state database, SQLite or PostgreSQL; in
// PostgreSQL, every instance shares them.
type sqlStore struct {
	db *state.DB
	// selectKey reads the columns scan takes.
	selectKey string
	lookup    *sql.Stmt // prepared once: it runs on every authenticated call
}

var _ Store = (*sqlStore)(nil)

// Open opens the state store the configuration names: PostgreSQL if
// server.state.postgres is set, otherwise SQLite at server.state.sqlite
// (relative to the configuration file; created if missing). It creates the
// table if needed.
func Open(ctx context.Context, cfg *config.Config) (Store, error) {
	db, err := schema.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	d := db.Dialect
	s := &sqlStore{
		db:        db,
		selectKey: `SELECT id, name, prefix, tenant, ` + d.ListJSON("scopes") + `, ` + d.ListJSON("groups") + `, created_at, expires_at, revoked_at`,
	}
	if s.lookup, err = db.PrepareContext(ctx, s.selectKey+`, hash FROM warden_api_keys WHERE hash = $1`); err != nil {
		db.Close()
		return nil, fmt.Errorf("server.state.%s: preparing warden_api_keys: %w", d, err)
	}
	return s, nil
}

func (s *sqlStore) Create(ctx context.Context, k *Key, hash []byte) error {
	if err := k.check(hash); err != nil {
		return fmt.Errorf("creating API key: %w", err)
	}
	d := s.db.Dialect
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO warden_api_keys (id, name, prefix, hash, tenant, scopes, groups, created_at, expires_at, revoked_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		k.ID, k.Name, k.Prefix, hash, k.Tenant, d.List(k.Scopes), d.List(k.Groups),
		d.Time(k.CreatedAt), d.NullTime(k.ExpiresAt), d.NullTime(k.RevokedAt))
	if d.Conflict(err, "warden_api_keys_active_name", "warden_api_keys.name") {
		return fmt.Errorf("creating API key %q: %w", k.Name, ErrNameTaken)
	}
	if err != nil {
		return fmt.Errorf("creating API key %q: %w", k.Name, err)
	}
	return nil
}

func (s *sqlStore) Lookup(ctx context.Context, hash []byte) (*Key, error) {
	k, err := scan(s.lookup.QueryRowContext(ctx, hash), true)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("looking up API key: %w", err)
	}
	return k, nil
}

func (s *sqlStore) List(ctx context.Context) ([]*Key, error) {
	rows, err := s.db.QueryContext(ctx, s.selectKey+` FROM warden_api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing API keys: %w", err)
	}
	defer rows.Close()
	var ks []*Key
	for rows.Next() {
		k, err := scan(rows, false)
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

func (s *sqlStore) Revoke(ctx context.Context, idOrName string) (*Key, error) {
	k, err := s.revoke(ctx, idOrName)
	if err != nil {
		return nil, fmt.Errorf("revoking API key %q: %w", idOrName, err)
	}
	return k, nil
}

// revoke reads the key and revokes it in one transaction, in which the
// key's row is locked (SQLite: the whole database), so that a concurrent
// revocation, or a new key taking the name, cannot come in between.
func (s *sqlStore) revoke(ctx context.Context, idOrName string) (*Key, error) {
	d := s.db.Dialect
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	k, err := scan(tx.QueryRowContext(ctx, s.selectKey+` FROM warden_api_keys WHERE id = $1`+d.ForUpdate(), idOrName), false)
	if errors.Is(err, sql.ErrNoRows) {
		k, err = scan(tx.QueryRowContext(ctx, s.selectKey+` FROM warden_api_keys WHERE name = $1 AND revoked_at IS NULL`+d.ForUpdate(), idOrName), false)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil || !k.RevokedAt.IsZero() {
		return k, err
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	if _, err := tx.ExecContext(ctx, `UPDATE warden_api_keys SET revoked_at = $1 WHERE id = $2`, d.Time(now), k.ID); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	k.RevokedAt = now
	return k, nil
}

func (s *sqlStore) Close() error { return errors.Join(s.lookup.Close(), s.db.Close()) }

// scanner is a row or rows from database/sql.
type scanner interface{ Scan(dest ...any) error }

// scan reads the columns of selectKey, and the hash after them if
// withHash.
func scan(r scanner, withHash bool) (*Key, error) {
	var (
		k              Key
		scopes, groups string
	)
	dest := []any{&k.ID, &k.Name, &k.Prefix, &k.Tenant, &scopes, &groups,
		state.ScanTime(&k.CreatedAt), state.ScanTime(&k.ExpiresAt), state.ScanTime(&k.RevokedAt)}
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
	return &k, nil
}

// nilIfEmpty makes both databases return an empty list the same way.
func nilIfEmpty(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}
