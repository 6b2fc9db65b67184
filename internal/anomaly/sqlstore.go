package anomaly

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/state"
)

// schema is created idempotently on open.
var schema = state.Schema{
	Table: "warden_suspensions",
	DDL: `
CREATE TABLE IF NOT EXISTS warden_suspensions (
	principal TEXT   PRIMARY KEY,
	reason    TEXT   NOT NULL,
	since     {time} NOT NULL
);`,
}

// sqlStore keeps suspensions in Warden's state database, SQLite or
// PostgreSQL; in PostgreSQL, every instance shares them.
type sqlStore struct {
	db        *state.DB
	suspended *sql.Stmt // prepared once: it runs on calls the negative cache does not answer
}

var _ SuspensionStore = (*sqlStore)(nil)

// OpenStore opens the suspension store the configuration names: PostgreSQL
// if server.state.postgres is set, otherwise SQLite at server.state.sqlite
// (relative to the configuration file; created if missing) — the same
// database as the rest of Warden's state. It creates the table
// warden_suspensions if needed.
func OpenStore(ctx context.Context, cfg *config.Config) (SuspensionStore, error) {
	db, err := schema.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	suspended, err := db.PrepareContext(ctx, `SELECT reason FROM warden_suspensions WHERE principal = $1`)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("server.state.%s: preparing warden_suspensions: %w", db.Dialect, err)
	}
	return &sqlStore{db: db, suspended: suspended}, nil
}

func (s *sqlStore) Suspend(ctx context.Context, principal, reason string) error {
	reason, err := checkSuspend(principal, reason)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx,
		`INSERT INTO warden_suspensions (principal, reason, since) VALUES ($1, $2, $3)
		 ON CONFLICT (principal) DO NOTHING`,
		principal, reason, s.db.Dialect.Time(now()))
	if err != nil {
		return fmt.Errorf("suspending %q: %w", principal, err)
	}
	return nil
}

func (s *sqlStore) Lift(ctx context.Context, principal string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM warden_suspensions WHERE principal = $1`, principal)
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

func (s *sqlStore) Suspended(ctx context.Context, principal string) (bool, string, error) {
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

func (s *sqlStore) List(ctx context.Context) ([]Suspension, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT principal, reason, since FROM warden_suspensions ORDER BY since, principal`)
	if err != nil {
		return nil, fmt.Errorf("listing suspensions: %w", err)
	}
	defer rows.Close()
	var list []Suspension
	for rows.Next() {
		var s Suspension
		if err := rows.Scan(&s.Principal, &s.Reason, state.ScanTime(&s.Since)); err != nil {
			return nil, fmt.Errorf("listing suspensions: %w", err)
		}
		list = append(list, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing suspensions: %w", err)
	}
	return list, nil
}

func (s *sqlStore) Close() error { return errors.Join(s.suspended.Close(), s.db.Close()) }

// now is the time a store records: microseconds, which both databases
// keep, so a suspension reads back exactly as it was made.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
