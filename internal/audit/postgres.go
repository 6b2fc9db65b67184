package audit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wardenmcp/warden/internal/state"
)

// postgresSchema is created idempotently on open, by state.Migrate. Args is text, not jsonb: the chain needs the exact bytes back, and jsonb
// would refuse a \u0000 a client sent, failing a whole batch.
const postgresSchema = `
CREATE TABLE IF NOT EXISTS warden_audit (
	instance          text        NOT NULL,
	seq               bigint      NOT NULL,
	time              timestamptz NOT NULL,
	phase             text        NOT NULL,
	trace_id          text        NOT NULL,
	principal         text        NOT NULL,
	tenant            text        NOT NULL,
	auth_method       text        NOT NULL,
	client_name       text        NOT NULL,
	client_version    text        NOT NULL,
	protocol_version  text        NOT NULL,
	session_id        text        NOT NULL,
	remote_addr       text        NOT NULL,
	method            text        NOT NULL,
	target            text        NOT NULL,
	tool_version      text        NOT NULL,
	mode              text        NOT NULL,
	source            text        NOT NULL,
	args              text,
	args_hash         text        NOT NULL,
	decision          text        NOT NULL,
	reason            text        NOT NULL,
	error_code        text        NOT NULL,
	suggestion        text        NOT NULL,
	retry_after       bigint      NOT NULL,
	status            text        NOT NULL,
	duration_ns       bigint      NOT NULL,
	result_bytes      bigint      NOT NULL,
	result_tokens     bigint      NOT NULL,
	row_count         bigint      NOT NULL,
	truncated         boolean     NOT NULL,
	approval          text        NOT NULL,
	cache_hit         boolean     NOT NULL,
	idempotent_replay boolean     NOT NULL,
	prev_hash         text        NOT NULL,
	hash              text        NOT NULL,
	PRIMARY KEY (instance, seq)
);
CREATE INDEX IF NOT EXISTS warden_audit_time ON warden_audit (time, instance, seq);
CREATE INDEX IF NOT EXISTS warden_audit_principal ON warden_audit (principal, time);
CREATE INDEX IF NOT EXISTS warden_audit_target ON warden_audit (target, time);
CREATE INDEX IF NOT EXISTS warden_audit_trace_id ON warden_audit (trace_id);
`

// postgresStore keeps the audit log in PostgreSQL, shared by every
// instance, each appending to its own chain.
type postgresStore struct{ pool *pgxpool.Pool }

var (
	_ Store  = (*postgresStore)(nil)
	_ lister = (*postgresStore)(nil)
)

var postgresInsert = func() string {
	ps := make([]string, ncolumns)
	for i := range ps {
		ps[i] = "$" + strconv.Itoa(i+1)
	}
	return "INSERT INTO warden_audit (" + columns + ") VALUES (" + strings.Join(ps, ", ") + ")"
}()

func openPostgres(ctx context.Context, dsn string) (Store, error) {
	pool, err := state.OpenPostgres(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := state.Migrate(ctx, pool, "warden_audit", postgresSchema); err != nil {
		pool.Close()
		return nil, err
	}
	return &postgresStore{pool: pool}, nil
}

// Append sends the batch in one round trip: the statements of a pgx batch
// run in one implicit transaction, committed at its end.
func (s *postgresStore) Append(ctx context.Context, recs []*Record) error {
	var b pgx.Batch
	for _, r := range recs {
		var args *string
		if r.Args != nil {
			a := string(r.Args)
			args = &a
		}
		b.Queue(postgresInsert, values(r, r.Time, args)...)
	}
	err := s.pool.SendBatch(ctx, &b).Close()
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "warden_audit_pkey" {
		return appendError(fmt.Errorf("%s: %w", pe.Detail, ErrDuplicate))
	}
	if err != nil {
		return appendError(err)
	}
	return nil
}

func (s *postgresStore) Last(ctx context.Context, instance string) (int64, string, error) {
	var (
		seq  int64
		hash string
	)
	err := s.pool.QueryRow(ctx, `SELECT seq, hash FROM warden_audit WHERE instance = $1 ORDER BY seq DESC LIMIT 1`, instance).Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("reading the last audit record of %s: %w", instance, err)
	}
	return seq, hash, nil
}

func (s *postgresStore) Scan(ctx context.Context, q Query, fn func(*Record) error) error {
	query, args := selectQuery(q, func(n int) string { return "$" + strconv.Itoa(n) }, func(t time.Time) any { return t })
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("reading audit records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r    Record
			args *string
		)
		if err := rows.Scan(fields(&r, &r.Time, &args)...); err != nil {
			return fmt.Errorf("reading audit records: %w", err)
		}
		r.Time = r.Time.UTC()
		if args != nil {
			r.Args = []byte(*args)
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

func (s *postgresStore) Instances(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT instance FROM warden_audit ORDER BY instance`)
	if err != nil {
		return nil, fmt.Errorf("listing audit chains: %w", err)
	}
	is, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing audit chains: %w", err)
	}
	return is, nil
}

func (s *postgresStore) Close() error {
	s.pool.Close()
	return nil
}
