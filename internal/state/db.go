package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/wardenmcp/warden/internal/config"
)

// Dialect is how SQLite and PostgreSQL differ, for a store that serves
// both from one set of statements through database/sql. The statements
// are written once, in what the two share — $N parameters (SQLite reads
// $N as the Nth argument), ON CONFLICT, LIMIT — and what they do not
// share goes through the Dialect.
type Dialect struct{ postgres bool }

// The two dialects.
var (
	SQLite   = Dialect{}
	Postgres = Dialect{postgres: true}
)

func (d Dialect) String() string { return d.Pick("sqlite", "postgres") }

// Pick returns sqlite or postgres, whichever is d's.
func (d Dialect) Pick(sqlite, postgres string) string {
	if d.postgres {
		return postgres
	}
	return sqlite
}

// Placeholder is the nth parameter of a statement, for a statement
// built in code: $n reads the same to both databases, but SQLite binds a
// bare ? faster, without looking up the parameter's name, which counts
// in a statement of hundreds (see audit.sqlStore).
func (d Dialect) Placeholder(n int) string {
	if d.postgres {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

// types spells the column types of a Schema's DDL: the types each store
// had before they shared their statements, so that the tables they made
// still open.
func (d Dialect) types() *strings.Replacer {
	if d.postgres {
		return postgresTypes
	}
	return sqliteTypes
}

var (
	sqliteTypes   = strings.NewReplacer("{int}", "INTEGER", "{time}", "INTEGER", "{bool}", "INTEGER", "{bytes}", "BLOB", "{list}", "TEXT")
	postgresTypes = strings.NewReplacer("{int}", "bigint", "{time}", "timestamptz", "{bool}", "boolean", "{bytes}", "bytea", "{list}", "text[]")
)

// ForUpdate ends a SELECT, run in a transaction, that reads rows the
// transaction then writes, so that concurrent transactions on those rows
// take turns. PostgreSQL needs FOR UPDATE; a SQLite transaction holds the
// database's write lock from BEGIN (see sqliteParams), which serialises
// it already.
func (d Dialect) ForUpdate() string { return d.Pick("", " FOR UPDATE") }

// Time is t as a time column keeps it: microseconds since the Unix epoch
// in SQLite (INTEGER), a timestamptz, also to the microsecond, in
// PostgreSQL. Read it back with ScanTime.
func (d Dialect) Time(t time.Time) any {
	if d.postgres {
		return t
	}
	return t.UnixMicro()
}

// NullTime is Time(t), or NULL for the zero time.
func (d Dialect) NullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return d.Time(t)
}

// List is l as a list column keeps it, never NULL: JSON text in SQLite,
// text[] in PostgreSQL. Read it back through ListJSON.
func (d Dialect) List(l []string) any {
	if d.postgres {
		if l == nil {
			return []string{}
		}
		return l
	}
	if len(l) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(l) // a []string always encodes
	return string(b)
}

// ListJSON is the expression that selects the list column col as a JSON
// array, in either database.
func (d Dialect) ListJSON(col string) string {
	return d.Pick(col, "array_to_json("+col+")::text")
}

// Conflict reports whether err is a write's violation of a unique index
// or primary key: the one PostgreSQL names index, or the one over
// columns ("table.column, table.column"), which is how SQLite names it.
func (d Dialect) Conflict(err error, index, columns string) bool {
	if d.postgres {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == index
	}
	var se *sqlite.Error
	return errors.As(err, &se) &&
		(se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) &&
		strings.Contains(se.Error(), "constraint failed: "+columns)
}

// ScanTime is a Scan destination for a time column of either database
// (see Dialect.Time): it sets *t, in UTC, or to the zero time for NULL.
func ScanTime(t *time.Time) sql.Scanner { return (*timeDest)(t) }

type timeDest time.Time

func (t *timeDest) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*t = timeDest{}
	case int64:
		*t = timeDest(time.UnixMicro(v).UTC())
	case time.Time:
		*t = timeDest(v.UTC())
	default:
		return fmt.Errorf("reading a time: unexpected %T", src)
	}
	return nil
}

// DB is the state database, opened for one store by its Schema.
type DB struct {
	*sql.DB
	Dialect Dialect
	close   func() error
}

// Close closes the database.
func (db *DB) Close() error { return db.close() }

// Schema is a store's table, created — or brought up to date — each time
// the store opens.
type Schema struct {
	// Table names the table in errors, and the lock PostgreSQL instances
	// opening together take turns on.
	Table string
	// DDL creates the table and its indexes idempotently (CREATE ... IF
	// NOT EXISTS), in SQL both databases read but for column types, which
	// it writes as {int} (a 64-bit integer), {time} (see Dialect.Time),
	// {bool}, {bytes} and {list} (see Dialect.List).
	DDL string
	// Upgrade, if set, runs after them in the same transaction, to bring
	// a table an older release created up to date.
	Upgrade func(ctx context.Context, tx *sql.Tx, d Dialect) error
}

// Open opens the state database the configuration names (see the
// function Open) and prepares s in it.
func (s *Schema) Open(ctx context.Context, cfg *config.Config) (*DB, error) {
	return Open(ctx, cfg, s.OpenPostgres, s.OpenSQLite)
}

// OpenSQLite opens the SQLite state file at path (see the function
// OpenSQLite) and prepares s in it. The preparation is one transaction,
// which holds the write lock from BEGIN, so that processes opening the
// file together take turns.
func (s *Schema) OpenSQLite(ctx context.Context, path string) (*DB, error) {
	db, err := OpenSQLite(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := s.prepare(ctx, db, SQLite); err != nil {
		db.Close()
		return nil, fmt.Errorf("server.state.sqlite: preparing %s: %w", path, err)
	}
	return &DB{DB: db, Dialect: SQLite, close: db.Close}, nil
}

// OpenPostgres opens the PostgreSQL state database dsn names (see the
// function OpenPostgres) and prepares s in it. The preparation is one
// transaction, which holds an advisory lock named for the table, so that
// instances starting together do not race on CREATE ... IF NOT EXISTS
// (which PostgreSQL does not make atomic). The error names the server's
// host, never the DSN.
func (s *Schema) OpenPostgres(ctx context.Context, dsn string) (*DB, error) {
	pool, err := OpenPostgres(ctx, dsn)
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDBFromPool(pool)
	// database/sql queues for one of the pool's connections itself, and
	// gives up when the caller's context ends; unbounded, it would open
	// connection after connection, each blocked acquiring from the pool.
	db.SetMaxOpenConns(int(pool.Config().MaxConns))
	db.SetMaxIdleConns(int(pool.Config().MaxConns))
	closeAll := func() error {
		err := db.Close()
		pool.Close()
		return err
	}
	if err := s.prepare(ctx, db, Postgres); err != nil {
		closeAll()
		return nil, fmt.Errorf("server.state.postgres: preparing %s on %s: %w", s.Table, pool.Config().ConnConfig.Host, err)
	}
	return &DB{DB: db, Dialect: Postgres, close: closeAll}, nil
}

func (s *Schema) prepare(ctx context.Context, db *sql.DB, d Dialect) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if d.postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, s.Table); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, d.types().Replace(s.DDL)); err != nil {
		return err
	}
	if s.Upgrade != nil {
		if err := s.Upgrade(ctx, tx, d); err != nil {
			return err
		}
	}
	return tx.Commit()
}
