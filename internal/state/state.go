// Package state opens Warden's own state database: the SQLite file or the
// PostgreSQL server that holds API keys, the audit log and suspensions.
//
// Every table there is a security record (a revocation, a suspension, an
// audit entry), so every connection to it must be durable, private and
// careful with secrets in the same way. Those properties live here, once,
// so that a store cannot drift from the others; each store keeps its own
// schema and statements.
//
//	var schema = state.Schema{
//		Table: "warden_suspensions",
//		DDL:   `CREATE TABLE IF NOT EXISTS warden_suspensions (principal TEXT PRIMARY KEY, since {time} NOT NULL)`,
//	}
//
//	func OpenStore(ctx context.Context, cfg *config.Config) (Store, error) {
//		db, err := schema.Open(ctx, cfg) // SQLite or PostgreSQL, as cfg says
//		if err != nil {
//			return nil, err
//		}
//		return &sqlStore{db: db}, nil
//	}
//
// A store then writes each statement once, for both databases, and asks
// db.Dialect about what differs: a time's encoding (Dialect.Time,
// ScanTime), a list's (Dialect.List, Dialect.ListJSON), row locks
// (Dialect.ForUpdate), which unique index a write violated
// (Dialect.Conflict).
package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wardenmcp/warden/internal/config"

	_ "modernc.org/sqlite" // the "sqlite" driver
)

// sqliteParams are the connection parameters of every connection to the
// state file:
//   - mode=rw: should the file vanish while Warden runs, a new connection
//     fails rather than recreating it with default permissions;
//   - busy_timeout: a writer waits for another rather than failing at once;
//   - WAL: readers do not block the writer, nor it them;
//   - synchronous FULL: a committed revocation, suspension or audit record
//     survives a power cut;
//   - cache_size -512: each connection caches at most 512 KiB of pages
//     (SQLite's default is 2 MiB): Warden's stores read by key and append
//     at the end of their indexes, so the pages they touch are few, and
//     the operating system caches the file besides (measured: 3-5 MiB
//     less peak RSS at 32 clients, no fewer calls per CPU-second; see
//     BENCHMARKS.md);
//   - _txlock=immediate: a transaction takes the write lock when it
//     begins, so a read-then-write (a revocation) cannot be overtaken by
//     another writer, and waits on busy_timeout instead of failing with
//     SQLITE_BUSY at its first write.
const sqliteParams = "?mode=rw&_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=cache_size(-512)&_txlock=immediate"

// Open calls openPostgres with server.state.postgres if that is set, and
// otherwise openSQLite with the path of server.state.sqlite, relative to
// the configuration file, or of the default state file. Each store opens
// with its own function; which database they share is decided here.
func Open[S any](ctx context.Context, cfg *config.Config, openPostgres, openSQLite func(context.Context, string) (S, error)) (S, error) {
	st := cfg.Server.State
	switch {
	case st.SQLite != "" && st.Postgres != "":
		var zero S
		return zero, errors.New("server.state: set sqlite or postgres, not both")
	case st.Postgres != "":
		return openPostgres(ctx, st.Postgres)
	case st.SQLite != "":
		return openSQLite(ctx, cfg.Resolve(st.SQLite))
	}
	return openSQLite(ctx, cfg.Resolve(config.DefaultStateFile))
}

// OpenSQLite opens the state file at path, creating it if need be.
func OpenSQLite(ctx context.Context, path string) (*sql.DB, error) {
	// Warden creates its own state file, unlike a source database, and
	// makes it private to its user from the first byte: SQLite gives the
	// -wal and -shm files the same permissions.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("server.state.sqlite: opening %s: %w", path, err)
	}
	f.Close()
	file := (&url.URL{Path: path}).EscapedPath()
	db, err := sql.Open("sqlite", "file:"+file+sqliteParams)
	if err != nil {
		return nil, fmt.Errorf("server.state.sqlite: opening %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("server.state.sqlite: opening %s: %w", path, err)
	}
	// Each new connection runs the pragmas above again; keep enough idle
	// ones for the concurrent lookups on every authenticated call.
	db.SetMaxIdleConns(8)
	return db, nil
}

// MaxConns bounds each store's PostgreSQL pool unless the DSN sets
// pool_max_conns: enough for the concurrent lookups of a busy instance,
// few enough that a server that stops answering holds a bounded number of
// connections, and of goroutines waiting on them.
const MaxConns = 16

// ConnectTimeout bounds the making of a PostgreSQL connection, handshake
// and set-up included, unless the DSN sets connect_timeout.
const ConnectTimeout = 5 * time.Second

// OpenPostgres opens a pool on the state database dsn names. Its errors
// never include dsn, which may hold a password.
func OpenPostgres(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error may echo the DSN, password included; say less.
		return nil, errors.New("server.state.postgres: not a valid PostgreSQL connection string")
	}
	// A commit must be durable when it returns. A server or role set to
	// synchronous_commit=off would acknowledge first; raise it to on for
	// these connections, and leave stricter settings (remote_apply) alone.
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		ctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
		defer cancel()
		var sc string
		if err := c.QueryRow(ctx, "SHOW synchronous_commit").Scan(&sc); err != nil {
			return err
		}
		if sc == "off" {
			_, err := c.Exec(ctx, "SET synchronous_commit TO on")
			return err
		}
		return nil
	}
	// A stalled server must not take every goroutine with it: the pool is
	// bounded, and a caller that finds it full waits for a connection only
	// as long as its context allows. pool_max_conns in the DSN overrides.
	if !strings.Contains(dsn, "pool_max_conns") {
		pc.MaxConns = MaxConns
	}
	// The pool goes on making a connection after the call that asked for
	// it has given up; against a server that accepts and never answers,
	// only this ends it (and a pool that is closing waits for it).
	if !strings.Contains(dsn, "connect_timeout") {
		pc.ConnConfig.ConnectTimeout = ConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("server.state.postgres: %w", err)
	}
	return pool, nil
}
