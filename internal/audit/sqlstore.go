package audit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/state"
)

// schema is created idempotently on open. Every index is one more B-tree
// each record is written to: the indexes are those the queries of Scan
// use, and each grows at its end (time, or time within a principal or a
// target), so a batch dirties few pages. An index on the random trace_id,
// which no query used, dirtied a page of its own for nearly every record
// of a batch, more than doubling what a commit wrote and synced; it is
// dropped from stores created before. Args is canonical JSON text,
// NULL for none: text, not jsonb, in PostgreSQL, because the chain needs
// the exact bytes back, and jsonb would refuse a \u0000 a client sent,
// failing a whole batch.
var schema = state.Schema{
	Table: "warden_audit",
	DDL: `
CREATE TABLE IF NOT EXISTS warden_audit (
	instance          TEXT   NOT NULL,
	seq               {int}  NOT NULL,
	time              {time} NOT NULL,
	phase             TEXT   NOT NULL,
	trace_id          TEXT   NOT NULL,
	principal         TEXT   NOT NULL,
	tenant            TEXT   NOT NULL,
	auth_method       TEXT   NOT NULL,
	client_name       TEXT   NOT NULL,
	client_version    TEXT   NOT NULL,
	protocol_version  TEXT   NOT NULL,
	session_id        TEXT   NOT NULL,
	remote_addr       TEXT   NOT NULL,
	method            TEXT   NOT NULL,
	target            TEXT   NOT NULL,
	tool_version      TEXT   NOT NULL,
	mode              TEXT   NOT NULL,
	source            TEXT   NOT NULL,
	args              TEXT,
	args_hash         TEXT   NOT NULL,
	decision          TEXT   NOT NULL,
	reason            TEXT   NOT NULL,
	error_code        TEXT   NOT NULL,
	suggestion        TEXT   NOT NULL,
	retry_after       {int}  NOT NULL,
	status            TEXT   NOT NULL,
	duration_ns       {int}  NOT NULL,
	result_bytes      {int}  NOT NULL,
	result_tokens     {int}  NOT NULL,
	row_count         {int}  NOT NULL,
	truncated         {bool} NOT NULL,
	approval          TEXT   NOT NULL,
	cache_hit         {bool} NOT NULL,
	idempotent_replay {bool} NOT NULL,
	late              {bool} NOT NULL DEFAULT FALSE,
	prev_hash         TEXT   NOT NULL,
	hash              TEXT   NOT NULL,
	PRIMARY KEY (instance, seq)
);
CREATE INDEX IF NOT EXISTS warden_audit_time ON warden_audit (time, instance, seq);
CREATE INDEX IF NOT EXISTS warden_audit_principal ON warden_audit (principal, time);
CREATE INDEX IF NOT EXISTS warden_audit_target ON warden_audit (target, time);
DROP INDEX IF EXISTS warden_audit_trace_id;
CREATE TABLE IF NOT EXISTS warden_audit_instances (
	instance  TEXT   PRIMARY KEY,
	heartbeat {time} NOT NULL,
	closed_by TEXT   NOT NULL DEFAULT '',
	closed    {bool} NOT NULL DEFAULT FALSE,
	closed_through {int} NOT NULL DEFAULT 0
);
`,
	Upgrade: addLate,
}

// addLate adds the late column to a warden_audit table an older release
// created. Rows it had are not late, which is the column's default, and
// their hashes, which omit a false late, still verify. It runs in the
// transaction that prepares the schema, under the lock that makes
// processes opening the database together take turns.
func addLate(ctx context.Context, tx *sql.Tx, d state.Dialect) error {
	var n int
	err := tx.QueryRowContext(ctx, d.Pick(
		`SELECT count(*) FROM pragma_table_info('warden_audit') WHERE name = 'late'`,
		`SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'warden_audit' AND column_name = 'late'`)).Scan(&n)
	if err != nil || n > 0 {
		return err
	}
	_, err = tx.ExecContext(ctx, `ALTER TABLE warden_audit ADD COLUMN late `+d.Pick("INTEGER", "boolean")+` NOT NULL DEFAULT FALSE`)
	return err
}

// columns are the warden_audit columns, in the order fields and values
// below list them.
const columns = `instance, seq, time, phase, trace_id, principal, tenant, auth_method,
	client_name, client_version, protocol_version, session_id, remote_addr,
	method, target, tool_version, mode, source, args, args_hash,
	decision, reason, error_code, suggestion, retry_after, status, duration_ns,
	result_bytes, result_tokens, row_count, truncated, approval, cache_hit, idempotent_replay,
	late, prev_hash, hash`

// ncolumns is how many columns there are.
var ncolumns = strings.Count(columns, ",") + 1

// chunk is how many records one INSERT adds at most: a batch of up to
// chunk records is one statement, one round trip to PostgreSQL, and a
// larger batch is a transaction of ceil(n/chunk) statements.
const chunk = 64

// sqlStore keeps the audit log in Warden's state database, SQLite or
// PostgreSQL; in PostgreSQL, every instance shares it, each appending to
// its own chain.
type sqlStore struct {
	db *state.DB

	mu sync.Mutex
	// inserts[n-1] adds n records, prepared when first needed.
	inserts [chunk]*sql.Stmt

	// With audit.durability os, every Append goes through one connection
	// set to commit without syncing (see osConn), in turn.
	os     bool
	osMu   sync.Mutex
	osConn *sql.Conn // nil until needed, and after a failure
}

var (
	_ Store         = (*sqlStore)(nil)
	_ lister        = (*sqlStore)(nil)
	_ leaser        = (*sqlStore)(nil)
	_ orphanFinder  = (*sqlStore)(nil)
	_ outcomeFinder = (*sqlStore)(nil)
)

// Open opens the audit store the configuration names: PostgreSQL if
// server.state.postgres is set, otherwise SQLite at server.state.sqlite
// (relative to the configuration file; created if missing) — the same
// database as the rest of Warden's state. It creates the table if needed.
//
// With audit.durability "os", Append returns once the database has its
// records, before they are synced to disk: they survive a crash of Warden,
// and a crash of the machine may lose the newest of them — never some
// without those appended before them, since both databases recover a
// prefix of their commits. The rest of Warden's state is unaffected.
func Open(ctx context.Context, cfg *config.Config) (Store, error) {
	db, err := schema.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &sqlStore{db: db, os: cfg.Audit.Durability == config.DurabilityOS}, nil
}

// insert returns the statement that adds n records.
func (s *sqlStore) insert(ctx context.Context, n int) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.inserts[n-1]; st != nil {
		return st, nil
	}
	var b strings.Builder
	b.WriteString("INSERT INTO warden_audit (" + columns + ") VALUES ")
	for i := range n * ncolumns {
		switch {
		case i == 0:
			b.WriteString("(")
		case i%ncolumns == 0:
			b.WriteString("), (")
		default:
			b.WriteString(", ")
		}
		b.WriteString(s.db.Dialect.Placeholder(i + 1))
	}
	b.WriteString(")")
	st, err := s.db.PrepareContext(ctx, b.String())
	if err != nil {
		return nil, err
	}
	s.inserts[n-1] = st
	return st, nil
}

// Append adds the batch atomically: in one statement if it fits, else in
// one transaction, which in SQLite holds the write lock from BEGIN.
func (s *sqlStore) Append(ctx context.Context, recs []*Record) error {
	if s.os {
		return s.appendOS(ctx, recs)
	}
	if len(recs) <= chunk {
		return s.appendChunk(ctx, nil, recs)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return appendError(err)
	}
	defer tx.Rollback()
	for len(recs) > 0 {
		n := min(len(recs), chunk)
		if err := s.appendChunk(ctx, tx, recs[:n]); err != nil {
			return err
		}
		recs = recs[n:]
	}
	if err := tx.Commit(); err != nil {
		return appendError(err)
	}
	return nil
}

// appendChunk inserts up to chunk records, in tx if not nil.
func (s *sqlStore) appendChunk(ctx context.Context, tx *sql.Tx, recs []*Record) error {
	if len(recs) == 0 {
		return nil
	}
	st, err := s.insert(ctx, len(recs))
	if err != nil {
		return appendError(err)
	}
	if tx != nil {
		st = tx.StmtContext(ctx, st)
	}
	d := s.db.Dialect
	vals := make([]any, 0, len(recs)*ncolumns)
	for _, r := range recs {
		var args sql.NullString
		if r.Args != nil {
			args = sql.NullString{String: string(r.Args), Valid: true}
		}
		vals = appendValues(vals, r, d.Time(r.Time), args)
	}
	_, err = st.ExecContext(ctx, vals...)
	if d.Conflict(err, "warden_audit_pkey", "warden_audit.instance, warden_audit.seq") {
		return appendError(fmt.Errorf("instance %s, seq %d to %d: %w", recs[0].Instance, recs[0].Seq, recs[len(recs)-1].Seq, ErrDuplicate))
	}
	if err != nil {
		return appendError(err)
	}
	return nil
}

// appendOS adds the batch in one transaction on the store's unsynced
// connection.
func (s *sqlStore) appendOS(ctx context.Context, recs []*Record) error {
	s.osMu.Lock()
	defer s.osMu.Unlock()
	conn, err := s.unsynced(ctx)
	if err != nil {
		return appendError(err)
	}
	err = func() error {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return appendError(err)
		}
		defer tx.Rollback()
		for len(recs) > 0 {
			n := min(len(recs), chunk)
			if err := s.appendChunk(ctx, tx, recs[:n]); err != nil {
				return err
			}
			recs = recs[n:]
		}
		if err := tx.Commit(); err != nil {
			return appendError(err)
		}
		return nil
	}()
	if err != nil && !errors.Is(err, ErrDuplicate) {
		// Whatever went wrong, the next Append starts on a fresh
		// connection, set up anew.
		conn.Raw(func(any) error { return driver.ErrBadConn }) // discards it
		conn.Close()
		s.osConn = nil
	}
	return err
}

// unsynced returns the connection Appends use with durability os, set to
// commit without waiting for the disk: in SQLite synchronous=NORMAL, which
// in WAL mode leaves syncing to checkpoints; in PostgreSQL
// synchronous_commit=off, which leaves it to the WAL writer, a fraction of
// a second later. Both settings are the connection's own. Call it with
// osMu held.
func (s *sqlStore) unsynced(ctx context.Context) (*sql.Conn, error) {
	if s.osConn != nil {
		return s.osConn, nil
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	set := s.db.Dialect.Pick("PRAGMA synchronous = NORMAL", "SET synchronous_commit TO off")
	if _, err := conn.ExecContext(ctx, set); err != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn })
		conn.Close()
		return nil, fmt.Errorf("setting audit.durability os: %w", err)
	}
	s.osConn = conn
	return conn, nil
}

func (s *sqlStore) Last(ctx context.Context, instance string) (int64, string, error) {
	var (
		seq  int64
		hash string
	)
	err := s.db.QueryRowContext(ctx, `SELECT seq, hash FROM warden_audit WHERE instance = $1 ORDER BY seq DESC LIMIT 1`, instance).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("reading the last audit record of %s: %w", instance, err)
	}
	return seq, hash, nil
}

func (s *sqlStore) Scan(ctx context.Context, q Query, fn func(*Record) error) error {
	query, args := selectQuery(q, s.db.Dialect)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("reading audit records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r    Record
			args sql.NullString
		)
		if err := rows.Scan(fields(&r, state.ScanTime(&r.Time), &args)...); err != nil {
			return fmt.Errorf("reading audit records: %w", err)
		}
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

func (s *sqlStore) Instances(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT instance FROM warden_audit ORDER BY instance`)
	is, err := scanStrings(rows, err)
	if err != nil {
		return nil, fmt.Errorf("listing audit chains: %w", err)
	}
	return is, nil
}

// scanStrings reads the one column of text that a query returned: instance
// names, trace ids.
func scanStrings(rows *sql.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

// Ping asks the database for one row: whether it answers within ctx.
func (s *sqlStore) Ping(ctx context.Context) error {
	var one int
	return s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

func (s *sqlStore) Close() error {
	s.osMu.Lock()
	if s.osConn != nil {
		s.osConn.Close()
		s.osConn = nil
	}
	s.osMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.inserts {
		if st != nil {
			st.Close()
		}
	}
	return s.db.Close()
}

// fields returns pointers to r's fields in column order, with time and
// args, which need converting, supplied by the caller.
func fields(r *Record, at, args any) []any {
	return []any{&r.Instance, &r.Seq, at, (*string)(&r.Phase), &r.TraceID, &r.Principal, &r.Tenant, &r.AuthMethod,
		&r.ClientName, &r.ClientVersion, &r.ProtocolVersion, &r.SessionID, &r.RemoteAddr,
		&r.Method, &r.Target, &r.ToolVersion, &r.Mode, &r.Source, args, &r.ArgsHash,
		(*string)(&r.Decision), &r.Reason, &r.ErrorCode, &r.Suggestion, &r.RetryAfter, &r.Status, (*int64)(&r.Duration),
		&r.ResultBytes, &r.ResultTokens, &r.Rows, &r.Truncated, &r.Approval, &r.CacheHit, &r.IdempotentReplay,
		&r.Late, &r.PrevHash, &r.Hash}
}

// appendValues appends r's fields to vals in column order, time and args
// as given.
func appendValues(vals []any, r *Record, at, args any) []any {
	return append(vals, r.Instance, r.Seq, at, string(r.Phase), r.TraceID, r.Principal, r.Tenant, r.AuthMethod,
		r.ClientName, r.ClientVersion, r.ProtocolVersion, r.SessionID, r.RemoteAddr,
		r.Method, r.Target, r.ToolVersion, r.Mode, r.Source, args, r.ArgsHash,
		string(r.Decision), r.Reason, r.ErrorCode, r.Suggestion, r.RetryAfter, r.Status, int64(r.Duration),
		r.ResultBytes, r.ResultTokens, r.Rows, r.Truncated, r.Approval, r.CacheHit, r.IdempotentReplay,
		r.Late, r.PrevHash, r.Hash)
}

// selectQuery builds the SELECT for q.
func selectQuery(q Query, d state.Dialect) (string, []any) {
	var (
		where []string
		args  []any
	)
	cond := func(expr string, v any) {
		args = append(args, v)
		where = append(where, expr+" $"+strconv.Itoa(len(args)))
	}
	for _, c := range []struct{ col, v string }{
		{"instance", q.Instance}, {"principal", q.Principal}, {"tenant", q.Tenant},
		{"target", q.Target}, {"trace_id", q.TraceID}, {"decision", string(q.Decision)}, {"error_code", q.ErrorCode},
	} {
		if c.v != "" {
			cond(c.col+" =", c.v)
		}
	}
	if !q.Since.IsZero() {
		cond("time >=", d.Time(q.Since))
	}
	if !q.Until.IsZero() {
		cond("time <", d.Time(q.Until))
	}
	var b strings.Builder
	b.WriteString("SELECT " + columns + " FROM warden_audit")
	if len(where) > 0 {
		b.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	dir := ""
	if q.Desc {
		dir = " DESC"
	}
	if q.Instance != "" {
		b.WriteString(" ORDER BY seq" + dir)
	} else {
		b.WriteString(" ORDER BY time" + dir + ", instance" + dir + ", seq" + dir)
	}
	if q.Limit > 0 {
		b.WriteString(" LIMIT " + strconv.Itoa(q.Limit))
	}
	return b.String(), args
}

// Heartbeat, ClaimDead, Closed and Release keep warden_audit_instances:
// a row per writer instance, its latest heartbeat, and which instance, if
// any, claimed it once it stopped beating (closed_by) and whether that one
// closed its open intents (closed).

func (s *sqlStore) Heartbeat(ctx context.Context, instance string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO warden_audit_instances (instance, heartbeat) VALUES ($1, $2)
		ON CONFLICT (instance) DO UPDATE SET heartbeat = excluded.heartbeat, closed_by = '', closed = FALSE`,
		instance, s.db.Dialect.Time(at))
	if err != nil {
		return fmt.Errorf("recording the heartbeat of audit instance %s: %w", instance, err)
	}
	return nil
}

// ClaimDead claims in one statement, so that of two instances claiming
// together each dead instance goes to one: the other's UPDATE finds its
// closed_by taken by an instance that is alive.
func (s *sqlStore) ClaimDead(ctx context.Context, claimer string, before time.Time) ([]string, error) {
	b := s.db.Dialect.Time(before)
	rows, err := s.db.QueryContext(ctx, `UPDATE warden_audit_instances SET closed_by = $1
		WHERE instance <> $1 AND NOT closed AND heartbeat < $2
		AND (closed_by = '' OR closed_by NOT IN (SELECT instance FROM warden_audit_instances WHERE heartbeat >= $3))
		RETURNING instance`, claimer, b, b)
	dead, err := scanStrings(rows, err)
	if err != nil {
		return nil, fmt.Errorf("claiming audit instances that ended: %w", err)
	}
	return dead, nil
}

func (s *sqlStore) Closed(ctx context.Context, instance, claimer string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE warden_audit_instances SET closed = TRUE WHERE instance = $1 AND closed_by = $2`, instance, claimer)
	if err != nil {
		return fmt.Errorf("recording that the intents of audit instance %s are closed: %w", instance, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("audit instance %s: %w", instance, errNoClaim)
	}
	return nil
}

func (s *sqlStore) Release(ctx context.Context, instance, claimer string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE warden_audit_instances SET closed_by = '' WHERE instance = $1 AND closed_by = $2 AND NOT closed`, instance, claimer)
	return err
}

func (s *sqlStore) ClosedThrough(ctx context.Context, instance string) (int64, error) {
	var seq int64
	err := s.db.QueryRowContext(ctx, `SELECT closed_through FROM warden_audit_instances WHERE instance = $1`, instance).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading how far the intents of audit instance %s are closed: %w", instance, err)
	}
	return seq, nil
}

func (s *sqlStore) SetClosedThrough(ctx context.Context, instance string, seq int64) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO warden_audit_instances (instance, heartbeat, closed_through) VALUES ($1, $2, $3)
		ON CONFLICT (instance) DO UPDATE SET closed_through = excluded.closed_through`,
		instance, s.db.Dialect.Time(time.Now()), seq)
	if err != nil {
		return fmt.Errorf("recording how far the intents of audit instance %s are closed: %w", instance, err)
	}
	return nil
}

// Orphans finds the open intents of instance after seq: the intents whose
// trace has no record other than an intent, in any chain.
func (s *sqlStore) Orphans(ctx context.Context, instance string, after int64) ([]*Record, error) {
	rows, err := s.db.QueryContext(ctx, orphansQuery(s.db.Dialect), instance, after)
	if err != nil {
		return nil, fmt.Errorf("finding open intents of %s: %w", instance, err)
	}
	defer rows.Close()
	var open []*Record
	for rows.Next() {
		var (
			r    Record
			args sql.NullString
		)
		if err := rows.Scan(fields(&r, state.ScanTime(&r.Time), &args)...); err != nil {
			return nil, fmt.Errorf("finding open intents of %s: %w", instance, err)
		}
		if args.Valid {
			r.Args = []byte(args.String)
		}
		open = append(open, &r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("finding open intents of %s: %w", instance, err)
	}
	return open, nil
}

// orphansQuery selects the open intents of an instance ($1) after a seq
// ($2). No index covers trace_id (see schema), so the query must read the
// table a bounded number of times, not once per intent. SQLite runs a
// correlated NOT EXISTS as a scan of the table per intent (measured: more
// than 4 minutes for 4,000 open intents in a log of 76,000 records), and
// an uncorrelated NOT IN as one scan into a temporary index (90ms there).
// PostgreSQL runs NOT EXISTS as one hash anti-join, and would run NOT IN,
// once its hash outgrew work_mem, once per intent.
func orphansQuery(d state.Dialect) string {
	closed := d.Pick(
		`trace_id IN (SELECT trace_id FROM warden_audit WHERE phase <> 'intent')`,
		`EXISTS (SELECT 1 FROM warden_audit o WHERE o.trace_id = i.trace_id AND o.phase <> 'intent')`)
	return `SELECT ` + columns + ` FROM warden_audit i
		WHERE instance = $1 AND seq > $2 AND phase = 'intent' AND NOT ` + closed + `
		ORDER BY seq`
}

// Outcomes asks about up to outcomesChunk traces at a time, each time in
// one read of the table: SQLite looks each row's trace up in the list, made
// a temporary index; PostgreSQL in the array, hashed.
func (s *sqlStore) Outcomes(ctx context.Context, traces []string) (map[string]bool, error) {
	q := outcomesQuery(s.db.Dialect)
	done := make(map[string]bool)
	for len(traces) > 0 {
		n := min(len(traces), outcomesChunk)
		rows, err := s.db.QueryContext(ctx, q, s.db.Dialect.List(traces[:n]))
		found, err := scanStrings(rows, err)
		if err != nil {
			return nil, fmt.Errorf("finding the outcomes of spooled records: %w", err)
		}
		for _, t := range found {
			done[t] = true
		}
		traces = traces[n:]
	}
	return done, nil
}

// outcomesChunk bounds the traces one query of Outcomes asks about.
const outcomesChunk = 1000

// outcomesQuery selects which of a list of traces ($1, a Dialect.List)
// have an outcome or refusal.
func outcomesQuery(d state.Dialect) string {
	return `SELECT DISTINCT trace_id FROM warden_audit WHERE phase <> 'intent' AND ` +
		d.Pick(`trace_id IN (SELECT value FROM json_each($1))`, `trace_id = ANY($1)`)
}
