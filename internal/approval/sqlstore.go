package approval

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/state"
)

// schema is created idempotently on open; Upgrade adds to an older table
// the columns it lacks. Lists are JSON text, and times microseconds since
// the Unix epoch, in both databases.
var schema = state.Schema{
	Table: "warden_approvals",
	DDL: `
CREATE TABLE IF NOT EXISTS warden_approvals (
	id           TEXT  PRIMARY KEY,
	principal    TEXT  NOT NULL,
	tenant       TEXT  NOT NULL,
	tool         TEXT  NOT NULL,
	tool_version TEXT  NOT NULL,
	args_hash    TEXT  NOT NULL,
	args         TEXT  NOT NULL,
	summary      TEXT  NOT NULL,
	groups       TEXT  NOT NULL,
	needed       {int} NOT NULL,
	decisions    TEXT  NOT NULL,
	state        TEXT  NOT NULL,
	created_at   {int} NOT NULL,
	expires_at   {int} NOT NULL,
	risk         TEXT  NOT NULL DEFAULT '',
	policy       TEXT  NOT NULL DEFAULT '',
	dry_run      TEXT  NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS warden_approvals_state ON warden_approvals (state, created_at);
CREATE INDEX IF NOT EXISTS warden_approvals_expires ON warden_approvals (expires_at);
`,
	Upgrade: addColumns,
}

// addedColumns are the text columns added to warden_approvals after its
// first release. Opening a store adds those an older table lacks, not null
// with the empty string as default, so that its rows read back with them
// empty.
var addedColumns = []string{"risk", "policy", "dry_run"}

// addColumns adds the addedColumns an older warden_approvals lacks. It
// runs in the transaction that prepares the schema, which holds the lock
// that makes processes opening the database together take turns, so that
// they do not both add a column.
func addColumns(ctx context.Context, tx *sql.Tx, d state.Dialect) error {
	rows, err := tx.QueryContext(ctx, d.Pick(
		`SELECT name FROM pragma_table_info('warden_approvals')`,
		`SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'warden_approvals'`))
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
	return nil
}

// columns is the column list of warden_approvals, in the order of row.
const columns = `id, principal, tenant, tool, tool_version, args_hash, args, summary, groups, needed, decisions, state, created_at, expires_at, risk, policy, dry_run`

const (
	insert = `INSERT INTO warden_approvals (` + columns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`
	use    = `UPDATE warden_approvals SET state = 'used' WHERE id = $1 AND state = 'approved' AND expires_at > $2`
	purge  = `DELETE FROM warden_approvals WHERE (state IN ('denied', 'used') AND created_at < $1) OR expires_at < $1`
)

// sqlStore keeps approval requests in Warden's state database, SQLite or
// PostgreSQL; in PostgreSQL, every instance shares them.
type sqlStore struct {
	db    *state.DB
	clock func() time.Time
}

var _ Store = (*sqlStore)(nil)

// OpenStore opens the approval store in Warden's state database (see
// state.Open), creating the table warden_approvals if needed.
func OpenStore(ctx context.Context, cfg *config.Config) (Store, error) {
	db, err := schema.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &sqlStore{db: db, clock: now}, nil
}

func (s *sqlStore) Create(ctx context.Context, r *Request) error {
	if err := checkCreate(r); err != nil {
		return err
	}
	w, err := toRow(r)
	if err != nil {
		return fmt.Errorf("creating approval request %s: %w", r.ID, err)
	}
	if _, err := s.db.ExecContext(ctx, insert, w.values()...); err != nil {
		return fmt.Errorf("creating approval request %s: %w", r.ID, err)
	}
	return nil
}

// get reads request id through q, the database or a transaction; suffix
// ends the SELECT.
func (s *sqlStore) get(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id, suffix string) (*Request, error) {
	var w row
	err := q.QueryRowContext(ctx, `SELECT `+columns+` FROM warden_approvals WHERE id = $1`+suffix, id).Scan(w.dest()...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("approval request %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading approval request %q: %w", id, err)
	}
	return w.request()
}

func (s *sqlStore) Get(ctx context.Context, id string) (*Request, error) {
	r, err := s.get(ctx, s.db, id, "")
	if err != nil {
		return nil, err
	}
	r.State = effective(r, s.clock())
	return r, nil
}

func (s *sqlStore) List(ctx context.Context, st string) ([]*Request, error) {
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

func (s *sqlStore) Decide(ctx context.Context, id string, d Decision, approverGroups []string) (*Request, error) {
	// Concurrent decisions on one request take turns: the transaction
	// locks the row (SQLite: holds the write lock from BEGIN), so that no
	// other decision can interleave between the read and the write.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("deciding on approval request %q: %w", id, err)
	}
	defer tx.Rollback()
	r, err := s.get(ctx, tx, id, s.db.Dialect.ForUpdate())
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
	if _, err := tx.ExecContext(ctx, `UPDATE warden_approvals SET decisions = $1, state = $2 WHERE id = $3`, w.decisions, w.state, id); err != nil {
		return nil, fmt.Errorf("deciding on approval request %q: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("deciding on approval request %q: %w", id, err)
	}
	return r, nil
}

func (s *sqlStore) Use(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, use, id, s.clock().UnixMicro())
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

func (s *sqlStore) Purge(ctx context.Context, before time.Time) (int64, error) {
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

func (s *sqlStore) Close() error { return s.db.Close() }

// row is a Request as the table keeps it: lists as JSON text, times as
// microseconds since the Unix epoch.
type row struct {
	id, principal, tenant, tool, toolVersion, argsHash, args, summary, groups string
	needed                                                                    int64
	decisions, state                                                          string
	createdAt, expiresAt                                                      int64
	risk, policy, dryRun                                                      string
}

func toRow(r *Request) (*row, error) {
	groups, err := json.Marshal(r.Groups)
	if err != nil {
		return nil, err
	}
	decisions, err := json.Marshal(r.Approvals)
	if err != nil {
		return nil, err
	}
	return &row{
		id: r.ID, principal: r.Principal, tenant: r.Tenant, tool: r.Tool, toolVersion: r.ToolVersion,
		argsHash: r.ArgsHash, args: string(r.Args), summary: r.Summary, groups: string(groups),
		needed: int64(r.Needed), decisions: string(decisions), state: r.State,
		createdAt: r.CreatedAt.UnixMicro(), expiresAt: r.ExpiresAt.UnixMicro(),
		risk: r.Risk, policy: r.Policy, dryRun: string(r.DryRun),
	}, nil
}

// dest is what Scan fills.
func (w *row) dest() []any {
	return []any{&w.id, &w.principal, &w.tenant, &w.tool, &w.toolVersion, &w.argsHash, &w.args, &w.summary,
		&w.groups, &w.needed, &w.decisions, &w.state, &w.createdAt, &w.expiresAt, &w.risk, &w.policy, &w.dryRun}
}

// values is what an INSERT takes.
func (w *row) values() []any {
	return []any{w.id, w.principal, w.tenant, w.tool, w.toolVersion, w.argsHash, w.args, w.summary,
		w.groups, w.needed, w.decisions, w.state, w.createdAt, w.expiresAt, w.risk, w.policy, w.dryRun}
}

func (w *row) request() (*Request, error) {
	r := &Request{
		ID: w.id, Principal: w.principal, Tenant: w.tenant, Tool: w.tool, ToolVersion: w.toolVersion,
		ArgsHash: w.argsHash, Summary: w.summary, Needed: int(w.needed), State: w.state,
		CreatedAt: time.UnixMicro(w.createdAt).UTC(), ExpiresAt: time.UnixMicro(w.expiresAt).UTC(),
		Risk: w.risk, Policy: w.policy,
	}
	if w.args != "" {
		r.Args = json.RawMessage(w.args)
	}
	if w.dryRun != "" {
		r.DryRun = json.RawMessage(w.dryRun)
	}
	if err := json.Unmarshal([]byte(w.groups), &r.Groups); err != nil {
		return nil, fmt.Errorf("reading approval request %s: %w", w.id, err)
	}
	if err := json.Unmarshal([]byte(w.decisions), &r.Approvals); err != nil {
		return nil, fmt.Errorf("reading approval request %s: %w", w.id, err)
	}
	return r, nil
}
