package pin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"strings"
	"time"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/state"
)

// schema is created idempotently on open. Bodies and findings are JSON
// text; times are the dialect's (see state.Dialect.Time).
var schema = state.Schema{
	Table: "warden_pins",
	DDL: `
CREATE TABLE IF NOT EXISTS warden_pins (
	upstream          TEXT   NOT NULL,
	kind              TEXT   NOT NULL,
	name              TEXT   NOT NULL,
	state             TEXT   NOT NULL,
	reason            TEXT   NOT NULL,
	approved_hash     TEXT   NOT NULL,
	approved_body     TEXT   NOT NULL,
	approved_findings TEXT   NOT NULL,
	pending_hash      TEXT   NOT NULL,
	pending_body      TEXT   NOT NULL,
	pending_findings  TEXT   NOT NULL,
	rejected          TEXT   NOT NULL,
	first_seen        {time} NOT NULL,
	updated           {time} NOT NULL,
	decided_by        TEXT   NOT NULL,
	PRIMARY KEY (upstream, kind, name)
);
CREATE INDEX IF NOT EXISTS warden_pins_state ON warden_pins (state);
CREATE TABLE IF NOT EXISTS warden_pin_events (
	id       TEXT   PRIMARY KEY,
	upstream TEXT   NOT NULL,
	record   TEXT   NOT NULL,
	claimed  {time} NOT NULL
);
CREATE INDEX IF NOT EXISTS warden_pin_events_upstream ON warden_pin_events (upstream, claimed);
`,
}

const (
	sqlColumns = `upstream, kind, name, state, reason, approved_hash, approved_body, approved_findings,
		pending_hash, pending_body, pending_findings, rejected, first_seen, updated, decided_by`
	sqlSelect = `SELECT ` + sqlColumns + ` FROM warden_pins`
	sqlOrder  = ` ORDER BY upstream, kind, name`
	sqlPut    = `INSERT INTO warden_pins (` + sqlColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
		ON CONFLICT (upstream, kind, name) DO UPDATE SET state = excluded.state, reason = excluded.reason,
		approved_hash = excluded.approved_hash, approved_body = excluded.approved_body, approved_findings = excluded.approved_findings,
		pending_hash = excluded.pending_hash, pending_body = excluded.pending_body, pending_findings = excluded.pending_findings,
		rejected = excluded.rejected, updated = excluded.updated, decided_by = excluded.decided_by`
	// sqlLock makes the Updates of one upstream take turns across
	// PostgreSQL instances, including the first, which finds no rows to
	// lock with FOR UPDATE. A SQLite transaction holds the write lock from
	// BEGIN already (see state.sqliteParams).
	sqlLock = `SELECT pg_advisory_xact_lock(hashtext('warden_pins'), hashtext($1))`

	// sqlVersions reads only what decides verdicts, never the bodies.
	sqlVersions = `SELECT upstream, kind, name, state, approved_hash, pending_hash, rejected FROM warden_pins` + sqlOrder

	sqlEventPut = `INSERT INTO warden_pin_events (id, upstream, record, claimed) VALUES ($1, $2, $3, $4)`
	// sqlEventStale selects, and sqlEventClaim claims for another lease,
	// the records of an upstream a caller stored and did not deliver.
	sqlEventStale  = `SELECT id, record FROM warden_pin_events WHERE upstream = $1 AND claimed < $2 ORDER BY claimed, id LIMIT 100`
	sqlEventClaim  = `UPDATE warden_pin_events SET claimed = $1 WHERE id = $2`
	sqlEventDelete = `DELETE FROM warden_pin_events WHERE id = $1`
)

// lease is how long a caller of Update has to deliver the records it was
// given before another caller may deliver them instead.
const lease = time.Minute

// sqlStore keeps pins in the table warden_pins of Warden's state database.
type sqlStore struct {
	db  *state.DB
	now func() time.Time
}

var _ Store = (*sqlStore)(nil)

// OpenSQLite returns a store in the table warden_pins of the SQLite state
// file at path (see state.OpenSQLite), creating the file and the table if
// need be.
func OpenSQLite(ctx context.Context, path string) (Store, error) {
	return open(schema.OpenSQLite(ctx, path))
}

// OpenPostgres returns a store in the table warden_pins of the PostgreSQL
// state database dsn names (see state.OpenPostgres), creating the table if
// need be. Instances sharing the database share the pins.
func OpenPostgres(ctx context.Context, dsn string) (Store, error) {
	return open(schema.OpenPostgres(ctx, dsn))
}

func open(db *state.DB, err error) (Store, error) {
	if err != nil {
		return nil, err
	}
	return &sqlStore{db: db, now: time.Now}, nil
}

func (s *sqlStore) Close() error { return s.db.Close() }

func (s *sqlStore) List(ctx context.Context, f Filter) ([]Pin, error) {
	var (
		where []string
		args  []any
	)
	if f.Upstream != "" {
		args = append(args, f.Upstream)
		where = append(where, fmt.Sprintf("upstream = $%d", len(args)))
	}
	if f.State != "" {
		args = append(args, string(f.State))
		where = append(where, fmt.Sprintf("state = $%d", len(args)))
	}
	q := sqlSelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	pins, err := scanPins(s.db.QueryContext(ctx, q+sqlOrder, args...))
	if err != nil {
		return nil, fmt.Errorf("listing pins: %w", err)
	}
	return pins, nil
}

func (s *sqlStore) Versions(ctx context.Context) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, sqlVersions)
	if err != nil {
		return nil, fmt.Errorf("reading the versions of the pins: %w", err)
	}
	defer rows.Close()
	digests := map[string]hash.Hash{}
	for rows.Next() {
		var upstream, kind, name, st, approved, pending, rejected string
		if err := rows.Scan(&upstream, &kind, &name, &st, &approved, &pending, &rejected); err != nil {
			return nil, fmt.Errorf("reading the versions of the pins: %w", err)
		}
		h := digests[upstream]
		if h == nil {
			h = sha256.New()
			digests[upstream] = h
		}
		// Each field is preceded by its length, so that no two rows digest
		// alike.
		for _, f := range []string{kind, name, st, approved, pending, rejected} {
			h.Write(binary.AppendUvarint(nil, uint64(len(f))))
			h.Write([]byte(f))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the versions of the pins: %w", err)
	}
	out := make(map[string]string, len(digests))
	for u, h := range digests {
		out[u] = hex.EncodeToString(h.Sum(nil))
	}
	return out, nil
}

func (s *sqlStore) Update(ctx context.Context, upstream string, fn func([]Pin) ([]Pin, []*audit.Record, error)) ([]Event, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("reading pins: %w", err)
	}
	defer tx.Rollback()
	if s.db.Dialect == state.Postgres {
		if _, err := tx.ExecContext(ctx, sqlLock, upstream); err != nil {
			return nil, fmt.Errorf("locking pins: %w", err)
		}
	}
	pins, err := scanPins(tx.QueryContext(ctx, sqlSelect+` WHERE upstream = $1`+sqlOrder, upstream))
	if err != nil {
		return nil, fmt.Errorf("reading pins: %w", err)
	}
	put, recs, err := fn(pins)
	if err != nil {
		return nil, err
	}
	for _, p := range put {
		if p.Upstream != upstream {
			return nil, fmt.Errorf("storing pins of upstream %s: a pin of upstream %s among them", upstream, p.Upstream)
		}
		if _, err := tx.ExecContext(ctx, sqlPut, s.values(&p)...); err != nil {
			return nil, fmt.Errorf("storing pin of %s: %w", p.Ref, err)
		}
	}
	now := s.now()
	events, err := staleEvents(ctx, tx, upstream, s.db.Dialect, now)
	if err != nil {
		return nil, fmt.Errorf("reading undelivered pin events: %w", err)
	}
	for _, e := range events {
		if _, err := tx.ExecContext(ctx, sqlEventClaim, s.db.Dialect.Time(now), e.ID); err != nil {
			return nil, fmt.Errorf("claiming undelivered pin events: %w", err)
		}
	}
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("storing pin event: %w", err)
		}
		e := Event{ID: rand.Text(), Record: r}
		if _, err := tx.ExecContext(ctx, sqlEventPut, e.ID, upstream, string(b), s.db.Dialect.Time(now)); err != nil {
			return nil, fmt.Errorf("storing pin event: %w", err)
		}
		events = append(events, e)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("storing pins: %w", err)
	}
	return events, nil
}

func staleEvents(ctx context.Context, tx *sql.Tx, upstream string, d state.Dialect, now time.Time) ([]Event, error) {
	rows, err := tx.QueryContext(ctx, sqlEventStale, upstream, d.Time(now.Add(-lease)))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var events []Event
	for rows.Next() {
		var (
			e   Event
			rec string
		)
		if err := rows.Scan(&e.ID, &rec); err != nil {
			return nil, err
		}
		e.Record = new(audit.Record)
		if err := json.Unmarshal([]byte(rec), e.Record); err != nil {
			return nil, fmt.Errorf("event %s: %w", e.ID, err)
		}
		events = append(events, e)
	}
	return events, rows.Err()
}

func (s *sqlStore) Delivered(ctx context.Context, events []Event) error {
	for _, e := range events {
		if _, err := s.db.ExecContext(ctx, sqlEventDelete, e.ID); err != nil {
			return fmt.Errorf("forgetting delivered pin events: %w", err)
		}
	}
	return nil
}

func (s *sqlStore) values(p *Pin) []any {
	d := s.db.Dialect
	return []any{
		p.Upstream, string(p.Kind), p.Name, string(p.State), p.Reason,
		p.Approved.Hash, string(p.Approved.Body), findingsJSON(p.Approved.Findings),
		p.Pending.Hash, string(p.Pending.Body), findingsJSON(p.Pending.Findings),
		listJSON(p.RejectedHashes), d.Time(p.FirstSeen), d.Time(p.Updated), p.DecidedBy,
	}
}

func findingsJSON(f []Finding) string {
	if len(f) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(f) // strings only: always encodes
	return string(b)
}

func listJSON(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(l)
	return string(b)
}

func scanPins(rows *sql.Rows, err error) ([]Pin, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var pins []Pin
	for rows.Next() {
		var (
			p                          Pin
			kind, st                   string
			aBody, aFind, pBody, pFind string
			rejected                   string
			firstSeen, updated         time.Time
		)
		if err := rows.Scan(&p.Upstream, &kind, &p.Name, &st, &p.Reason,
			&p.Approved.Hash, &aBody, &aFind, &p.Pending.Hash, &pBody, &pFind,
			&rejected, state.ScanTime(&firstSeen), state.ScanTime(&updated), &p.DecidedBy); err != nil {
			return nil, err
		}
		p.Kind, p.State, p.FirstSeen, p.Updated = Kind(kind), State(st), firstSeen, updated
		if aBody != "" {
			p.Approved.Body = json.RawMessage(aBody)
		}
		if pBody != "" {
			p.Pending.Body = json.RawMessage(pBody)
		}
		if err := decodeJSON(aFind, &p.Approved.Findings); err != nil {
			return nil, fmt.Errorf("pin of %s: findings: %w", p.Ref, err)
		}
		if err := decodeJSON(pFind, &p.Pending.Findings); err != nil {
			return nil, fmt.Errorf("pin of %s: findings: %w", p.Ref, err)
		}
		if err := decodeJSON(rejected, &p.RejectedHashes); err != nil {
			return nil, fmt.Errorf("pin of %s: rejected versions: %w", p.Ref, err)
		}
		pins = append(pins, p)
	}
	return pins, rows.Err()
}

func decodeJSON[T any](s string, v *[]T) error {
	if s == "" || s == "[]" {
		*v = nil
		return nil
	}
	return json.Unmarshal([]byte(s), v)
}
