package anomaly

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/wardenmcp/warden/internal/state"
)

// sqliteSchema is created idempotently on open. since is microseconds since
// the Unix epoch.
const sqliteSchema = `
CREATE TABLE IF NOT EXISTS warden_suspensions (
	principal TEXT    PRIMARY KEY,
	reason    TEXT    NOT NULL,
	since     INTEGER NOT NULL
);
`

// sqliteStore keeps suspensions in Warden's own SQLite state file.
type sqliteStore struct {
	db        *sql.DB
	suspended *sql.Stmt // prepared once: it runs on calls the negative cache does not answer
}

var _ SuspensionStore = (*sqliteStore)(nil)

func openSQLite(ctx context.Context, path string) (SuspensionStore, error) {
	db, err := state.OpenSQLite(ctx, path)
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, sqliteSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("server.state.sqlite: preparing %s: %w", path, err)
	}
	suspended, err := db.PrepareContext(ctx, `SELECT reason FROM warden_suspensions WHERE principal = ?`)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("server.state.sqlite: preparing %s: %w", path, err)
	}
	return &sqliteStore{db: db, suspended: suspended}, nil
}

func (s *sqliteStore) Suspend(ctx context.Context, principal, reason string) error {
	reason, err := checkSuspend(principal, reason)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx,
		`INSERT INTO warden_suspensions (principal, reason, since) VALUES (?, ?, ?)
		 ON CONFLICT (principal) DO NOTHING`,
		principal, reason, now().UnixMicro())
	if err != nil {
		return fmt.Errorf("suspending %q: %w", principal, err)
	}
	return nil
}

func (s *sqliteStore) Lift(ctx context.Context, principal string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM warden_suspensions WHERE principal = ?`, principal)
	if err != nil {
		return fmt.Errorf("lifting the suspension of %q: %w", principal, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("lifting the suspension of %q: %w", principal, err)
	} else if n == 0 {
		return fmt.Errorf("lifting the suspension of %q: %w", principal, ErrNotSuspended)
	}
	return nil
}

func (s *sqliteStore) Suspended(ctx context.Context, principal string) (bool, string, error) {
	var reason string
	err := s.suspended.QueryRowContext(ctx, principal).Scan(&reason)
	if errors.Is(err, sql.ErrNoRows) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("checking whether %q is suspended: %w", principal, err)
	}
	return true, reason, nil
}

func (s *sqliteStore) List(ctx context.Context) ([]Suspension, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT principal, reason, since FROM warden_suspensions ORDER BY since, principal`)
	if err != nil {
		return nil, fmt.Errorf("listing suspensions: %w", err)
	}
	defer rows.Close()
	var list []Suspension
	for rows.Next() {
		var (
			s     Suspension
			since int64
		)
		if err := rows.Scan(&s.Principal, &s.Reason, &since); err != nil {
			return nil, fmt.Errorf("listing suspensions: %w", err)
		}
		s.Since = time.UnixMicro(since).UTC()
		list = append(list, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing suspensions: %w", err)
	}
	return list, nil
}

func (s *sqliteStore) Close() error { return errors.Join(s.suspended.Close(), s.db.Close()) }
