package approval

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/wardenmcp/warden/internal/state"
)

// sqliteSchema is created idempotently on open.
const sqliteSchema = `
CREATE TABLE IF NOT EXISTS warden_approvals (
	id           TEXT    PRIMARY KEY,
	principal    TEXT    NOT NULL,
	tenant       TEXT    NOT NULL,
	tool         TEXT    NOT NULL,
	tool_version TEXT    NOT NULL,
	args_hash    TEXT    NOT NULL,
	args         TEXT    NOT NULL,
	summary      TEXT    NOT NULL,
	groups       TEXT    NOT NULL,
	needed       INTEGER NOT NULL,
	decisions    TEXT    NOT NULL,
	state        TEXT    NOT NULL,
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	risk         TEXT    NOT NULL DEFAULT '',
	policy       TEXT    NOT NULL DEFAULT '',
	dry_run      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS warden_approvals_state ON warden_approvals (state, created_at);
CREATE INDEX IF NOT EXISTS warden_approvals_expires ON warden_approvals (expires_at);
`

// sqliteStore keeps approval requests in Warden's own SQLite state file.
type sqliteStore struct {
	db    *sql.DB
	clock func() time.Time
}

var _ Store = (*sqliteStore)(nil)

func openSQLite(ctx context.Context, path string) (Store, error) {
	db, err := state.OpenSQLite(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := migrateSQLite(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("server.state.sqlite: preparing %s: %w", path, err)
	}
	return &sqliteStore{db: db, clock: now}, nil
}

// migrateSQLite creates warden_approvals, or adds to an older one the
// columns it lacks. It runs in one transaction, which holds the write lock
// from BEGIN (_txlock=immediate), so that processes opening the file
// together do not both add a column.
func migrateSQLite(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, sqliteSchema); err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, `SELECT name FROM pragma_table_info('warden_approvals')`)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		have[name] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range addedColumns {
		if have[c] {
			continue
		}
		if _, err := tx.ExecContext(ctx, `ALTER TABLE warden_approvals ADD COLUMN `+c+` TEXT NOT NULL DEFAULT ''`); err != nil {
			return fmt.Errorf("adding column %s to warden_approvals: %w", c, err)
		}
	}
	return tx.Commit()
}

func (s *sqliteStore) Create(ctx context.Context, r *Request) error {
	if err := checkCreate(r); err != nil {
		return err
	}
	w, err := toRow(r)
	if err != nil {
		return fmt.Errorf("creating approval request %s: %w", r.ID, err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO warden_approvals (`+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, w.values()...); err != nil {
		return fmt.Errorf("creating approval request %s: %w", r.ID, err)
	}
	return nil
}

func (s *sqliteStore) get(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (*Request, error) {
	var w row
	err := q.QueryRowContext(ctx, `SELECT `+columns+` FROM warden_approvals WHERE id = ?`, id).Scan(w.dest()...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("approval request %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading approval request %q: %w", id, err)
	}
	return w.request()
}

func (s *sqliteStore) Get(ctx context.Context, id string) (*Request, error) {
	r, err := s.get(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	r.State = effective(r, s.clock())
	return r, nil
}

func (s *sqliteStore) List(ctx context.Context, st string) ([]*Request, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM warden_approvals ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing approval requests: %w", err)
	}
	defer rows.Close()
	var all []*Request
	for rows.Next() {
		var w row
		if err := rows.Scan(w.dest()...); err != nil {
			return nil, fmt.Errorf("listing approval requests: %w", err)
		}
		r, err := w.request()
		if err != nil {
			return nil, err
		}
		all = append(all, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing approval requests: %w", err)
	}
	return filter(all, st, s.clock()), nil
}

func (s *sqliteStore) Decide(ctx context.Context, id string, d Decision, approverGroups []string) (*Request, error) {
	// _txlock=immediate: the transaction holds the write lock from BEGIN,
	// so no other decision can interleave between the read and the write.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("deciding on approval request %q: %w", id, err)
	}
	defer tx.Rollback()
	r, err := s.get(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	if err := decide(r, d, approverGroups, s.clock()); err != nil {
		return nil, fmt.Errorf("deciding on approval request %q: %w", id, err)
	}
	w, err := toRow(r)
	if err != nil {
		return nil, fmt.Errorf("deciding on approval request %q: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE warden_approvals SET decisions = ?, state = ? WHERE id = ?`, w.decisions, w.state, id); err != nil {
		return nil, fmt.Errorf("deciding on approval request %q: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("deciding on approval request %q: %w", id, err)
	}
	return r, nil
}

func (s *sqliteStore) Use(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx,
		`UPDATE warden_approvals SET state = 'used' WHERE id = ? AND state = 'approved' AND expires_at > ?`,
		id, s.clock().UnixMicro())
	if err != nil {
		return fmt.Errorf("using approval request %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("using approval request %q: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("using approval request %q: %w", id, ErrNotApproved)
	}
	return nil
}

func (s *sqliteStore) Purge(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, purge, before.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("purging approval requests: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("purging approval requests: %w", err)
	}
	return n, nil
}

func (s *sqliteStore) Close() error { return s.db.Close() }
