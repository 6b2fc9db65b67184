package keys

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wardenmcp/warden/internal/state"
)

// postgresSchema is created idempotently on open, by state.Migrate. The
// UNIQUE hash column is indexed; the partial index keeps a name to one key that is not revoked.
const postgresSchema = `
CREATE TABLE IF NOT EXISTS warden_api_keys (
	id         text        PRIMARY KEY,
	name       text        NOT NULL,
	prefix     text        NOT NULL,
	hash       bytea       NOT NULL UNIQUE,
	tenant     text        NOT NULL,
	scopes     text[]      NOT NULL,
	groups     text[]      NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz,
	revoked_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS warden_api_keys_active_name
	ON warden_api_keys (name) WHERE revoked_at IS NULL;
`

const postgresColumns = `id, name, prefix, tenant, scopes, groups, created_at, expires_at, revoked_at`

// postgresStore keeps keys in PostgreSQL, shared by every instance.
type postgresStore struct{ pool *pgxpool.Pool }

var _ Store = (*postgresStore)(nil)

func openPostgres(ctx context.Context, dsn string) (Store, error) {
	pool, err := state.OpenPostgres(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := state.Migrate(ctx, pool, "warden_api_keys", postgresSchema); err != nil {
		pool.Close()
		return nil, err
	}
	return &postgresStore{pool: pool}, nil
}

func (s *postgresStore) Create(ctx context.Context, k *Key, hash []byte) error {
	if err := k.check(hash); err != nil {
		return fmt.Errorf("creating API key: %w", err)
	}
	_, err := s.pool.Exec(ctx,
		`INSERT INTO warden_api_keys (id, name, prefix, hash, tenant, scopes, groups, created_at, expires_at, revoked_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		k.ID, k.Name, k.Prefix, hash, k.Tenant, list(k.Scopes), list(k.Groups),
		k.CreatedAt, nullTime(k.ExpiresAt), nullTime(k.RevokedAt))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "warden_api_keys_active_name" {
		return fmt.Errorf("creating API key %q: %w", k.Name, ErrNameTaken)
	}
	if err != nil {
		return fmt.Errorf("creating API key %q: %w", k.Name, err)
	}
	return nil
}

func (s *postgresStore) Lookup(ctx context.Context, hash []byte) (*Key, error) {
	row := s.pool.QueryRow(ctx, `SELECT `+postgresColumns+`, hash FROM warden_api_keys WHERE hash = $1`, hash)
	k, err := scanPostgres(row, true)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("looking up API key: %w", err)
	}
	return k, nil
}

func (s *postgresStore) List(ctx context.Context) ([]*Key, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+postgresColumns+` FROM warden_api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing API keys: %w", err)
	}
	defer rows.Close()
	var ks []*Key
	for rows.Next() {
		k, err := scanPostgres(rows, false)
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

func (s *postgresStore) Revoke(ctx context.Context, idOrName string) (*Key, error) {
	var k *Key
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		k, err = scanPostgres(tx.QueryRow(ctx, `SELECT `+postgresColumns+` FROM warden_api_keys WHERE id = $1 FOR UPDATE`, idOrName), false)
		if errors.Is(err, pgx.ErrNoRows) {
			k, err = scanPostgres(tx.QueryRow(ctx, `SELECT `+postgresColumns+` FROM warden_api_keys WHERE name = $1 AND revoked_at IS NULL FOR UPDATE`, idOrName), false)
		}
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil || !k.RevokedAt.IsZero() {
			return err
		}
		now := time.Now().UTC().Truncate(time.Microsecond)
		if _, err := tx.Exec(ctx, `UPDATE warden_api_keys SET revoked_at = $1 WHERE id = $2`, now, k.ID); err != nil {
			return err
		}
		k.RevokedAt = now
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("revoking API key %q: %w", idOrName, err)
	}
	return k, nil
}

func (s *postgresStore) Close() error {
	s.pool.Close()
	return nil
}

func scanPostgres(r scanner, withHash bool) (*Key, error) {
	var (
		k                Key
		expires, revoked *time.Time
	)
	dest := []any{&k.ID, &k.Name, &k.Prefix, &k.Tenant, &k.Scopes, &k.Groups, &k.CreatedAt, &expires, &revoked}
	if withHash {
		dest = append(dest, &k.hash)
	}
	if err := r.Scan(dest...); err != nil {
		return nil, err
	}
	k.Scopes, k.Groups = nilIfEmpty(k.Scopes), nilIfEmpty(k.Groups)
	k.CreatedAt = k.CreatedAt.UTC()
	if expires != nil {
		k.ExpiresAt = expires.UTC()
	}
	if revoked != nil {
		k.RevokedAt = revoked.UTC()
	}
	return &k, nil
}

// list stores an empty list as '{}' rather than NULL.
func list(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
