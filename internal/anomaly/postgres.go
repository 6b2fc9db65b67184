package anomaly

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wardenmcp/warden/internal/state"
)

// postgresSchema is created idempotently on open, by state.Migrate.
const postgresSchema = `
CREATE TABLE IF NOT EXISTS warden_suspensions (
	principal text        PRIMARY KEY,
	reason    text        NOT NULL,
	since     timestamptz NOT NULL
);
`

// postgresStore keeps suspensions in PostgreSQL, shared by every instance.
type postgresStore struct{ pool *pgxpool.Pool }

var _ SuspensionStore = (*postgresStore)(nil)

func openPostgres(ctx context.Context, dsn string) (SuspensionStore, error) {
	pool, err := state.OpenPostgres(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := state.Migrate(ctx, pool, "warden_suspensions", postgresSchema); err != nil {
		pool.Close()
		return nil, err
	}
	return &postgresStore{pool: pool}, nil
}

func (s *postgresStore) Suspend(ctx context.Context, principal, reason string) error {
	reason, err := checkSuspend(principal, reason)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx,
		`INSERT INTO warden_suspensions (principal, reason, since) VALUES ($1, $2, $3)
		 ON CONFLICT (principal) DO NOTHING`,
		principal, reason, now())
	if err != nil {
		return fmt.Errorf("suspending %q: %w", principal, err)
	}
	return nil
}

func (s *postgresStore) Lift(ctx context.Context, principal string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM warden_suspensions WHERE principal = $1`, principal)
	if err != nil {
		return fmt.Errorf("lifting the suspension of %q: %w", principal, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("lifting the suspension of %q: %w", principal, ErrNotSuspended)
	}
	return nil
}

func (s *postgresStore) Suspended(ctx context.Context, principal string) (bool, string, error) {
	var reason string
	err := s.pool.QueryRow(ctx, `SELECT reason FROM warden_suspensions WHERE principal = $1`, principal).Scan(&reason)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("checking whether %q is suspended: %w", principal, err)
	}
	return true, reason, nil
}

func (s *postgresStore) List(ctx context.Context) ([]Suspension, error) {
	rows, err := s.pool.Query(ctx, `SELECT principal, reason, since FROM warden_suspensions ORDER BY since, principal`)
	if err != nil {
		return nil, fmt.Errorf("listing suspensions: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Suspension, error) {
		var s Suspension
		err := r.Scan(&s.Principal, &s.Reason, &s.Since)
		s.Since = s.Since.UTC()
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing suspensions: %w", err)
	}
	if len(list) == 0 {
		return nil, nil // as SQLite answers
	}
	return list, nil
}

func (s *postgresStore) Close() error {
	s.pool.Close()
	return nil
}
