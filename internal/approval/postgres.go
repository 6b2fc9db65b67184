package approval

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wardenmcp/warden/internal/state"
)

// postgresSchema is created idempotently on open, by state.Migrate.
const postgresSchema = `
CREATE TABLE IF NOT EXISTS warden_approvals (
	id           text   PRIMARY KEY,
	principal    text   NOT NULL,
	tenant       text   NOT NULL,
	tool         text   NOT NULL,
	tool_version text   NOT NULL,
	args_hash    text   NOT NULL,
	args         text   NOT NULL,
	summary      text   NOT NULL,
	groups       text   NOT NULL,
	needed       bigint NOT NULL,
	decisions    text   NOT NULL,
	state        text   NOT NULL,
	created_at   bigint NOT NULL,
	expires_at   bigint NOT NULL,
	risk         text   NOT NULL DEFAULT '',
	policy       text   NOT NULL DEFAULT '',
	dry_run      text   NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS warden_approvals_state ON warden_approvals (state, created_at);
CREATE INDEX IF NOT EXISTS warden_approvals_expires ON warden_approvals (expires_at);
`

// postgresMigration adds to an older warden_approvals the columns it lacks.
func postgresMigration() string {
	var b strings.Builder
	for _, c := range addedColumns {
		fmt.Fprintf(&b, "ALTER TABLE warden_approvals ADD COLUMN IF NOT EXISTS %s text NOT NULL DEFAULT '';\n", c)
	}
	return b.String()
}

// postgresStore keeps approval requests in PostgreSQL, shared by every
// instance.
type postgresStore struct {
	pool  *pgxpool.Pool
	clock func() time.Time
}

var _ Store = (*postgresStore)(nil)

func openPostgres(ctx context.Context, dsn string) (Store, error) {
	pool, err := state.OpenPostgres(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := state.Migrate(ctx, pool, "warden_approvals", postgresSchema+postgresMigration()); err != nil {
		pool.Close()
		return nil, err
	}
	return &postgresStore{pool: pool, clock: now}, nil
}

func (s *postgresStore) Create(ctx context.Context, r *Request) error {
	if err := checkCreate(r); err != nil {
		return err
	}
	w, err := toRow(r)
	if err != nil {
		return fmt.Errorf("creating approval request %s: %w", r.ID, err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO warden_approvals (`+columns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`, w.values()...); err != nil {
		return fmt.Errorf("creating approval request %s: %w", r.ID, err)
	}
	return nil
}

func (s *postgresStore) get(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id, suffix string) (*Request, error) {
	var w row
	err := q.QueryRow(ctx, `SELECT `+columns+` FROM warden_approvals WHERE id = $1`+suffix, id).Scan(w.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("approval request %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading approval request %q: %w", id, err)
	}
	return w.request()
}

func (s *postgresStore) Get(ctx context.Context, id string) (*Request, error) {
	r, err := s.get(ctx, s.pool, id, "")
	if err != nil {
		return nil, err
	}
	r.State = effective(r, s.clock())
	return r, nil
}

func (s *postgresStore) List(ctx context.Context, st string) ([]*Request, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM warden_approvals ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing approval requests: %w", err)
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Request, error) {
		var w row
		if err := r.Scan(w.dest()...); err != nil {
			return nil, err
		}
		return w.request()
	})
	if err != nil {
		return nil, fmt.Errorf("listing approval requests: %w", err)
	}
	return filter(all, st, s.clock()), nil
}

func (s *postgresStore) Decide(ctx context.Context, id string, d Decision, approverGroups []string) (*Request, error) {
	var r *Request
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// FOR UPDATE: concurrent decisions on one request take turns.
		var err error
		if r, err = s.get(ctx, tx, id, " FOR UPDATE"); err != nil {
			return err
		}
		if err := decide(r, d, approverGroups, s.clock()); err != nil {
			return fmt.Errorf("deciding on approval request %q: %w", id, err)
		}
		w, err := toRow(r)
		if err != nil {
			return fmt.Errorf("deciding on approval request %q: %w", id, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE warden_approvals SET decisions = $1, state = $2 WHERE id = $3`, w.decisions, w.state, id); err != nil {
			return fmt.Errorf("deciding on approval request %q: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (s *postgresStore) Use(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx,
		`UPDATE warden_approvals SET state = 'used' WHERE id = $1 AND state = 'approved' AND expires_at > $2`,
		id, s.clock().UnixMicro())
	if err != nil {
		return fmt.Errorf("using approval request %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("using approval request %q: %w", id, ErrNotApproved)
	}
	return nil
}

func (s *postgresStore) Purge(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, purge, before.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("purging approval requests: %w", err)
	}
	return tag.RowsAffected(), nil
}

func (s *postgresStore) Close() error {
	s.pool.Close()
	return nil
}
