package console

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/state"
)

// SessionStore keeps the console's sessions (see Options.Sessions). Open
// one on Warden's state database with OpenSessions; its methods are the
// console's own.
type SessionStore interface {
	sessionStore
	Close() error
}

// SessionsWithin bounds each read and write of st by ceiling, under the
// request's own deadline: a state store that stops answering refuses the
// console's request instead of holding it.
func SessionsWithin(st SessionStore, ceiling time.Duration) SessionStore {
	return sessionsWithin{st, ceiling}
}

type sessionsWithin struct {
	SessionStore
	ceiling time.Duration
}

func (s sessionsWithin) Put(ctx context.Context, ses *session) error {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.SessionStore.Put(ctx, ses)
}

func (s sessionsWithin) Get(ctx context.Context, key string) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.SessionStore.Get(ctx, key)
}

func (s sessionsWithin) Delete(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, s.ceiling)
	defer cancel()
	return s.SessionStore.Delete(ctx, key)
}

// sqlSessions is the schema of the sessions table. A session is kept as
// JSON, beside the expiry it is swept by (microseconds since the epoch).
var sqlSessions = state.Schema{Table: "warden_console_sessions", DDL: `
CREATE TABLE IF NOT EXISTS warden_console_sessions (
	id         TEXT   PRIMARY KEY,
	session    TEXT   NOT NULL,
	expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS warden_console_sessions_expires ON warden_console_sessions (expires_at);
`}

const (
	sqlSessionPut = `INSERT INTO warden_console_sessions (id, session, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET session = excluded.session, expires_at = excluded.expires_at`
	sqlSessionGet    = `SELECT session FROM warden_console_sessions WHERE id = $1`
	sqlSessionDelete = `DELETE FROM warden_console_sessions WHERE id = $1`
	sqlSessionSweep  = `DELETE FROM warden_console_sessions WHERE id IN (SELECT id FROM warden_console_sessions WHERE expires_at <= $1 LIMIT 512)`
)

// dbSessions keeps sessions in the state database: in PostgreSQL, a
// session signed in through one instance is good on every other, and in
// either database it outlives a restart.
type dbSessions struct {
	db   *state.DB
	puts atomic.Uint64
}

// OpenSessions returns a store of console sessions in the table
// warden_console_sessions of the state database cfg names (SQLite or
// PostgreSQL), creating it if need be.
func OpenSessions(ctx context.Context, cfg *config.Config) (SessionStore, error) {
	db, err := sqlSessions.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &dbSessions{db: db}, nil
}

func (s *dbSessions) Put(ctx context.Context, se *session) error {
	b, err := json.Marshal(se)
	if err != nil {
		return err
	}
	if s.puts.Add(1)%32 == 1 {
		// Sessions nobody signed out of; a failed sweep costs only space.
		s.db.ExecContext(ctx, sqlSessionSweep, se.Seen.UnixMicro())
	}
	if _, err := s.db.ExecContext(ctx, sqlSessionPut, se.Key, string(b), se.Expires.UnixMicro()); err != nil {
		return fmt.Errorf("storing a console session: %w", err)
	}
	return nil
}

func (s *dbSessions) Get(ctx context.Context, key string) (*session, error) {
	var raw string
	err := s.db.QueryRowContext(ctx, sqlSessionGet, key).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading a console session: %w", err)
	}
	se := new(session)
	if err := json.Unmarshal([]byte(raw), se); err != nil {
		return nil, fmt.Errorf("reading a console session: %w", err)
	}
	return se, nil
}

func (s *dbSessions) Delete(ctx context.Context, key string) error {
	if _, err := s.db.ExecContext(ctx, sqlSessionDelete, key); err != nil {
		return fmt.Errorf("ending a console session: %w", err)
	}
	return nil
}

func (s *dbSessions) Close() error { return s.db.Close() }

func (m *memSessions) Close() error { return nil }

var (
	_ SessionStore = (*dbSessions)(nil)
	_ SessionStore = (*memSessions)(nil)
)
