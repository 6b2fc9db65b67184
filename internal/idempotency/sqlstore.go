package idempotency

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/wardenmcp/warden/internal/state"
)

// sqlSchema is created idempotently on open. Its types and statements
// read the same to SQLite and PostgreSQL (SQLite takes $N as the Nth
// argument), so that one store serves both. Times are microseconds since
// the Unix epoch.
const sqlSchema = `
CREATE TABLE IF NOT EXISTS warden_idempotency (
	id         TEXT   PRIMARY KEY,
	args_hash  TEXT   NOT NULL,
	result     TEXT   NOT NULL,
	pending    BIGINT NOT NULL,
	expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS warden_idempotency_expires ON warden_idempotency (expires_at);
`

const (
	sqlGet = `SELECT args_hash, result, pending FROM warden_idempotency WHERE id = $1 AND expires_at > $2`
	// sqlPut inserts, or replaces an expired entry; a live one is left
	// alone and no row is affected. The database makes it atomic: of
	// several claims of one key, one affects a row.
	sqlPut = `INSERT INTO warden_idempotency (id, args_hash, result, pending, expires_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET args_hash = excluded.args_hash, result = excluded.result, pending = excluded.pending, expires_at = excluded.expires_at
		WHERE warden_idempotency.expires_at <= $6`
	sqlSet = `INSERT INTO warden_idempotency (id, args_hash, result, pending, expires_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET args_hash = excluded.args_hash, result = excluded.result, pending = excluded.pending, expires_at = excluded.expires_at`
	sqlDelete = `DELETE FROM warden_idempotency WHERE id = $1`
	sqlSweep  = `DELETE FROM warden_idempotency WHERE id IN (SELECT id FROM warden_idempotency WHERE expires_at <= $1 LIMIT $2)`
)

// Expired entries are deleted by every sweepEvery-th claim, sweepMax at a
// time: more than the claims in between can add, so the table holds
// about the live entries, and no claim waits on a long delete.
const (
	sweepEvery = 32
	sweepMax   = 512
)

// schema reads the same to both databases.
var schema = state.Schema{Table: "warden_idempotency", DDL: sqlSchema}

// sqlStore keeps entries in a table of Warden's state database, so that
// they outlive a restart. Expired entries read as absent until a sweep
// deletes them.
type sqlStore struct {
	db   *state.DB
	now  func() time.Time
	puts atomic.Uint64
}

var _ Store = (*sqlStore)(nil)

// OpenSQLite returns a store in the table warden_idempotency of the SQLite
// state file at path (see state.OpenSQLite), creating the file and the
// table if need be.
func OpenSQLite(ctx context.Context, path string) (Store, error) {
	return open(schema.OpenSQLite(ctx, path))
}

// OpenPostgres returns a store in the table warden_idempotency of the
// PostgreSQL state database dsn names (see state.OpenPostgres), creating
// the table if need be. Instances sharing the database share the keys.
func OpenPostgres(ctx context.Context, dsn string) (Store, error) {
	return open(schema.OpenPostgres(ctx, dsn))
}

func open(db *state.DB, err error) (Store, error) {
	if err != nil {
		return nil, err
	}
	return &sqlStore{db: db, now: time.Now}, nil
}

func (s *sqlStore) Get(ctx context.Context, key string) (*Entry, error) {
	var (
		e      Entry
		result string
	)
	err := s.db.QueryRowContext(ctx, sqlGet, key, s.now().UnixMicro()).Scan(&e.ArgsHash, &result, &e.Pending)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading idempotency key: %w", err)
	}
	if result != "" {
		e.Result = []byte(result)
	}
	return &e, nil
}

func (s *sqlStore) Put(ctx context.Context, key string, e *Entry, ttl time.Duration) (bool, error) {
	now := s.now()
	if s.puts.Add(1)%sweepEvery == 1 {
		// A failed sweep costs only space; the next one tries again.
		s.db.ExecContext(ctx, sqlSweep, now.UnixMicro(), sweepMax)
	}
	res, err := s.db.ExecContext(ctx, sqlPut, append(values(key, e, now.Add(ttl)), now.UnixMicro())...)
	if err != nil {
		return false, fmt.Errorf("claiming idempotency key: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claiming idempotency key: %w", err)
	}
	return n == 1, nil
}

func (s *sqlStore) Set(ctx context.Context, key string, e *Entry, ttl time.Duration) error {
	if _, err := s.db.ExecContext(ctx, sqlSet, values(key, e, s.now().Add(ttl))...); err != nil {
		return fmt.Errorf("storing idempotent result: %w", err)
	}
	return nil
}

func (s *sqlStore) Delete(ctx context.Context, key string) error {
	if _, err := s.db.ExecContext(ctx, sqlDelete, key); err != nil {
		return fmt.Errorf("releasing idempotency key: %w", err)
	}
	return nil
}

func (s *sqlStore) Close() error { return s.db.Close() }

// values are the arguments $1 to $5 of sqlPut and sqlSet.
func values(key string, e *Entry, expires time.Time) []any {
	var pending int64
	if e.Pending {
		pending = 1
	}
	return []any{key, e.ArgsHash, string(e.Result), pending, expires.UnixMicro()}
}
