package nonce

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/state"
)

// sqlSchema is the table of used values, in Warden's state database; times
// are microseconds since the Unix epoch.
const sqlSchema = `
CREATE TABLE IF NOT EXISTS warden_nonces (
	value      TEXT   PRIMARY KEY,
	expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS warden_nonces_expires ON warden_nonces (expires_at);
`

const (
	// sqlUse inserts, or takes over an expired row; a live row is left
	// alone and no row is affected. The database makes it atomic.
	sqlUse = `INSERT INTO warden_nonces (value, expires_at) VALUES ($1, $2)
		ON CONFLICT (value) DO UPDATE SET expires_at = excluded.expires_at
		WHERE warden_nonces.expires_at <= $3`
	sqlSweep = `DELETE FROM warden_nonces WHERE value IN (SELECT value FROM warden_nonces WHERE expires_at <= $1 LIMIT $2)`
)

// Every sweepEvery-th Use deletes up to sweepMax expired rows.
const (
	sweepEvery = 32
	sweepMax   = 512
)

var schema = state.Schema{Table: "warden_nonces", DDL: sqlSchema}

// sqlStore remembers values in the state database: in PostgreSQL, shared
// by every instance using it.
type sqlStore struct {
	db   *state.DB
	now  func() time.Time
	uses atomic.Uint64
}

var _ Store = (*sqlStore)(nil)

// Open returns a store in the table warden_nonces of the state database
// cfg names (SQLite or PostgreSQL), creating it if need be.
func Open(ctx context.Context, cfg *config.Config) (Store, error) {
	return open(schema.Open(ctx, cfg))
}

// OpenSQLite and OpenPostgres open the store in the SQLite file at path or
// the PostgreSQL database dsn names.
func OpenSQLite(ctx context.Context, path string) (Store, error) {
	return open(schema.OpenSQLite(ctx, path))
}

func OpenPostgres(ctx context.Context, dsn string) (Store, error) {
	return open(schema.OpenPostgres(ctx, dsn))
}

func open(db *state.DB, err error) (Store, error) {
	if err != nil {
		return nil, err
	}
	return &sqlStore{db: db, now: time.Now}, nil
}

func (s *sqlStore) Use(ctx context.Context, value string, expires time.Time) (bool, error) {
	now := s.now().UnixMicro()
	if s.uses.Add(1)%sweepEvery == 1 {
		// A failed sweep costs only space; the next one tries again.
		s.db.ExecContext(ctx, sqlSweep, now, sweepMax)
	}
	res, err := s.db.ExecContext(ctx, sqlUse, value, expires.Add(Skew).UnixMicro(), now)
	if err != nil {
		return false, fmt.Errorf("recording a single-use value: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("recording a single-use value: %w", err)
	}
	return n == 1, nil
}

func (s *sqlStore) Close() error { return s.db.Close() }
