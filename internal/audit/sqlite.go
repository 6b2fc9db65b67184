package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/wardenmcp/warden/internal/state"
)

// sqliteSchema is created idempotently on open. Times are microseconds
// since the Unix epoch; Args is canonical JSON text, NULL for none.
const sqliteSchema = `
CREATE TABLE IF NOT EXISTS warden_audit (
	instance          TEXT    NOT NULL,
	seq               INTEGER NOT NULL,
	time              INTEGER NOT NULL,
	phase             TEXT    NOT NULL,
	trace_id          TEXT    NOT NULL,
	principal         TEXT    NOT NULL,
	tenant            TEXT    NOT NULL,
	auth_method       TEXT    NOT NULL,
	client_name       TEXT    NOT NULL,
	client_version    TEXT    NOT NULL,
	protocol_version  TEXT    NOT NULL,
	session_id        TEXT    NOT NULL,
	remote_addr       TEXT    NOT NULL,
	method            TEXT    NOT NULL,
	target            TEXT    NOT NULL,
	tool_version      TEXT    NOT NULL,
	mode              TEXT    NOT NULL,
	source            TEXT    NOT NULL,
	args              TEXT,
	args_hash         TEXT    NOT NULL,
	decision          TEXT    NOT NULL,
	reason            TEXT    NOT NULL,
	error_code        TEXT    NOT NULL,
	suggestion        TEXT    NOT NULL,
	retry_after       INTEGER NOT NULL,
	status            TEXT    NOT NULL,
	duration_ns       INTEGER NOT NULL,
	result_bytes      INTEGER NOT NULL,
	result_tokens     INTEGER NOT NULL,
	row_count         INTEGER NOT NULL,
	truncated         INTEGER NOT NULL,
	approval          TEXT    NOT NULL,
	cache_hit         INTEGER NOT NULL,
	idempotent_replay INTEGER NOT NULL,
	prev_hash         TEXT    NOT NULL,
	hash              TEXT    NOT NULL,
	PRIMARY KEY (instance, seq)
);
CREATE INDEX IF NOT EXISTS warden_audit_time ON warden_audit (time, instance, seq);
CREATE INDEX IF NOT EXISTS warden_audit_principal ON warden_audit (principal, time);
CREATE INDEX IF NOT EXISTS warden_audit_target ON warden_audit (target, time);
CREATE INDEX IF NOT EXISTS warden_audit_trace_id ON warden_audit (trace_id);
`

// sqliteStore keeps the audit log in Warden's own SQLite state file.
type sqliteStore struct {
	db *sql.DB
	// insert adds one record; insertChunk adds chunk of them, for fewer
	// statements per batch.
	insert, insertChunk *sql.Stmt
}

// chunk is how many records one INSERT of a large batch adds.
const chunk = 16

var (
	_ Store  = (*sqliteStore)(nil)
	_ lister = (*sqliteStore)(nil)
)

func openSQLite(ctx context.Context, path string) (Store, error) {
	db, err := state.OpenSQLite(ctx, path)
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, sqliteSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("server.state.sqlite: preparing the audit log in %s: %w", path, err)
	}
	row := "(?" + strings.Repeat(", ?", ncolumns-1) + ")"
	s := &sqliteStore{db: db}
	for _, p := range []struct {
		stmt **sql.Stmt
		n    int
	}{{&s.insert, 1}, {&s.insertChunk, chunk}} {
		*p.stmt, err = db.PrepareContext(ctx, "INSERT INTO warden_audit ("+columns+") VALUES "+row+strings.Repeat(", "+row, p.n-1))
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("server.state.sqlite: preparing the audit log in %s: %w", path, err)
		}
	}
	return s, nil
}

func (s *sqliteStore) Append(ctx context.Context, recs []*Record) error {
	tx, err := s.db.BeginTx(ctx, nil) // immediate: the one writer until commit
	if err != nil {
		return appendError(err)
	}
	defer tx.Rollback()
	vals := make([]any, 0, chunk*ncolumns)
	for len(recs) > 0 {
		n, stmt := 1, s.insert
		if len(recs) >= chunk {
			n, stmt = chunk, s.insertChunk
		}
		vals = vals[:0]
		for _, r := range recs[:n] {
			var args sql.NullString
			if r.Args != nil {
				args = sql.NullString{String: string(r.Args), Valid: true}
			}
			vals = append(vals, values(r, r.Time.UnixMicro(), args)...)
		}
		_, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, vals...)
		var se *sqlite.Error
		if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
			return appendError(fmt.Errorf("instance %s, seq %d to %d: %w", recs[0].Instance, recs[0].Seq, recs[n-1].Seq, ErrDuplicate))
		}
		if err != nil {
			return appendError(err)
		}
		recs = recs[n:]
	}
	if err := tx.Commit(); err != nil {
		return appendError(err)
	}
	return nil
}

func (s *sqliteStore) Last(ctx context.Context, instance string) (int64, string, error) {
	var (
		seq  int64
		hash string
	)
	err := s.db.QueryRowContext(ctx, `SELECT seq, hash FROM warden_audit WHERE instance = ? ORDER BY seq DESC LIMIT 1`, instance).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("reading the last audit record of %s: %w", instance, err)
	}
	return seq, hash, nil
}

func (s *sqliteStore) Scan(ctx context.Context, q Query, fn func(*Record) error) error {
	query, args := selectQuery(q, func(int) string { return "?" }, func(t time.Time) any { return t.UnixMicro() })
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("reading audit records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r    Record
			at   int64
			args sql.NullString
		)
		if err := rows.Scan(fields(&r, &at, &args)...); err != nil {
			return fmt.Errorf("reading audit records: %w", err)
		}
		r.Time = time.UnixMicro(at).UTC()
		if args.Valid {
			r.Args = []byte(args.String)
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading audit records: %w", err)
	}
	return nil
}

func (s *sqliteStore) Instances(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT instance FROM warden_audit ORDER BY instance`)
	if err != nil {
		return nil, fmt.Errorf("listing audit chains: %w", err)
	}
	defer rows.Close()
	var is []string
	for rows.Next() {
		var i string
		if err := rows.Scan(&i); err != nil {
			return nil, fmt.Errorf("listing audit chains: %w", err)
		}
		is = append(is, i)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing audit chains: %w", err)
	}
	return is, nil
}

func (s *sqliteStore) Close() error {
	s.insert.Close()
	s.insertChunk.Close()
	return s.db.Close()
}
