package sql

import (
	"context"
	dbsql "database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteWrite is a prepared write statement, which can also be dry-run.
// Read statements are not: they change nothing.
type sqliteWrite struct{ *sqliteStatement }

var _ DryRunner = sqliteWrite{}

// DryRun runs the write on the writer connection, in a transaction it
// always rolls back, while SQLite's pre-update hook records every row the
// database is about to change: the statement's own, and those that
// triggers, foreign-key actions and REPLACE conflict resolution change on
// its behalf. The hook reads rows as SQLite writes them, so a dry run adds
// nothing to the schema and leaves nothing on the connection; a commit hook
// that turns any COMMIT into a rollback stands guard while it runs.
func (w sqliteWrite) DryRun(ctx context.Context, args map[string]any) (_ *Effect, err error) {
	defer func() {
		if err != nil {
			err = sqliteError(ctx, err)
		}
	}()
	// A connection of its own, rather than the pool's choice for each step:
	// the hooks belong to a connection, and must be on the one the
	// transaction runs on, and off it before anyone else gets it.
	conn, err := w.src.rw.Conn(ctx)
	if err != nil {
		return nil, err
	}
	var tx *dbsql.Tx
	defer func() { endSQLiteDryRun(conn, tx) }()
	skip, err := sqliteShadowTables(ctx, conn)
	if err != nil {
		return nil, err
	}
	rec := &sqliteRecorder{skip: skip}
	if err := setSQLiteHooks(conn, rec); err != nil {
		return nil, err
	}
	if tx, err = conn.BeginTx(ctx, nil); err != nil {
		return nil, err
	}

	// As in Run, so that the count is the one a real run reports.
	stmt := tx.StmtContext(ctx, w.stmt)
	vals := bindArgs(w.c.params, args)
	var affected int64
	if !w.c.returning {
		res, err := stmt.ExecContext(ctx, vals...)
		if err != nil {
			return nil, err
		}
		affected, _ = res.RowsAffected()
	} else {
		rows, err := stmt.QueryContext(ctx, vals...)
		if err != nil {
			return nil, err
		}
		// Count every returned row, keeping none.
		out, err := collect(rows, 0, true)
		if err != nil {
			return nil, err
		}
		affected = out.RowsAffected
	}
	// A deferred foreign key is checked only at COMMIT, which a dry run
	// never reaches: ask whether that check would fail.
	pending, err := sqliteDeferredFKs(conn)
	if err != nil {
		return nil, err
	}
	if pending {
		return nil, errConstraint()
	}
	return rec.effect(ctx, tx, affected)
}

// endSQLiteDryRun rolls tx back and takes the hooks off conn. If either
// fails, the connection's state is unknown, so it is discarded rather than
// handed to the next write, which could inherit an open transaction or a
// guard that refuses its commit. tx has already ended, and the connection
// is discarded too, when ctx was cancelled: database/sql rolls back then.
func endSQLiteDryRun(conn *dbsql.Conn, tx *dbsql.Tx) {
	clean := true
	if tx != nil && tx.Rollback() != nil {
		clean = false
	}
	if setSQLiteHooks(conn, nil) != nil {
		clean = false
	}
	if !clean {
		conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	conn.Close()
}

// setSQLiteHooks puts rec's hooks on conn, or takes them off if rec is
// nil.
func setSQLiteHooks(conn *dbsql.Conn, rec *sqliteRecorder) error {
	return conn.Raw(func(dc any) error {
		h, ok := dc.(sqlite.HookRegisterer)
		if !ok {
			return errors.New("the SQLite driver cannot report row changes")
		}
		if rec == nil {
			h.RegisterPreUpdateHook(nil)
			h.RegisterCommitHook(nil)
			return nil
		}
		h.RegisterPreUpdateHook(rec.record)
		// Nothing in a dry run commits; should anything try, a non-zero
		// result turns the COMMIT into a rollback.
		h.RegisterCommitHook(func() int32 { return 1 })
		return nil
	})
}

// sqliteDeferredFKs reports whether conn's transaction has unresolved
// deferred foreign-key constraints, which would make its COMMIT fail.
func sqliteDeferredFKs(conn *dbsql.Conn) (pending bool, err error) {
	err = conn.Raw(func(dc any) error {
		s, ok := dc.(sqlite.DBStatus)
		if !ok {
			return errors.New("the SQLite driver cannot report deferred foreign keys")
		}
		cur, _, err := s.Status(sqlite.DBStatusDeferredFKs, false)
		pending = cur != 0
		return err
	})
	return pending, err
}

// sqliteShadowTables returns the tables in which virtual tables (such as
// full-text indexes) keep their data, as "schema.table". Their rows are an
// index's internals, not data anyone approves.
func sqliteShadowTables(ctx context.Context, conn *dbsql.Conn) (map[string]bool, error) {
	rows, err := conn.QueryContext(ctx, "SELECT schema, name FROM pragma_table_list WHERE type = 'shadow'")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	skip := map[string]bool{}
	for rows.Next() {
		var schema, name string
		if err := rows.Scan(&schema, &name); err != nil {
			return nil, err
		}
		skip[schema+"."+name] = true
	}
	return skip, rows.Err()
}

// sqliteRecorder collects the row changes the pre-update hook reports.
type sqliteRecorder struct {
	skip map[string]bool // tables whose changes are not recorded, as "schema.table"

	mu      sync.Mutex
	n       int64          // row changes seen
	changes []sqliteChange // the first maxChanges of them
	err     error          // the first failure to read a row
}

// effect describes the recorded changes of a statement that reported
// affected rows, reading the tables' columns in tx.
func (r *sqliteRecorder) effect(ctx context.Context, tx *dbsql.Tx, affected int64) (*Effect, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, fmt.Errorf("recording the changed rows: %w", r.err)
	}
	eff := &Effect{RowsAffected: affected, Truncated: r.n > int64(len(r.changes))}
	cols := map[string][]sqliteColumn{}
	for _, c := range r.changes {
		key := c.schema + "." + c.table
		tc, ok := cols[key]
		var err error
		if !ok {
			if tc, err = sqliteColumns(ctx, tx, c.schema, c.table); err != nil {
				return nil, err
			}
			cols[key] = tc
		}
		ch := Change{Table: c.table, Op: c.op}
		if c.schema != "main" {
			ch.Table = key
		}
		if ch.Before, err = sqliteImage(tc, c.before); err != nil {
			return nil, fmt.Errorf("reading a row of %s: %w", key, err)
		}
		if ch.After, err = sqliteImage(tc, c.after); err != nil {
			return nil, fmt.Errorf("reading a row of %s: %w", key, err)
		}
		eff.Changes = append(eff.Changes, ch)
	}
	if r.n < affected {
		eff.Note = fmt.Sprintf("SQLite counts %d affected rows but only %d row changes could be seen: "+
			"writes to virtual tables (such as full-text indexes) have no before and after values.", affected, r.n)
	}
	return eff, nil
}

// sqliteChange is one row change, its values in the table's column order.
type sqliteChange struct {
	schema, table, op string
	before, after     []any
}

// record is the pre-update hook. It runs inside SQLite, in the middle of a
// write, so it only copies values out, and never lets a panic unwind
// through SQLite's frames.
func (r *sqliteRecorder) record(d sqlite.SQLitePreUpdateData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() {
		if p := recover(); p != nil && r.err == nil {
			r.err = fmt.Errorf("%v", p)
		}
	}()
	if r.skip[d.DatabaseName+"."+d.TableName] {
		return
	}
	r.n++
	if len(r.changes) == maxChanges {
		return
	}
	c := sqliteChange{schema: d.DatabaseName, table: d.TableName}
	var err error
	switch d.Op {
	case sqlite3.SQLITE_INSERT:
		c.op, c.after = "insert", make([]any, d.Count())
		err = d.New(c.after...)
	case sqlite3.SQLITE_UPDATE:
		c.op, c.before, c.after = "update", make([]any, d.Count()), make([]any, d.Count())
		if err = d.Old(c.before...); err == nil {
			err = d.New(c.after...)
		}
	case sqlite3.SQLITE_DELETE:
		c.op, c.before = "delete", make([]any, d.Count())
		err = d.Old(c.before...)
	default:
		err = fmt.Errorf("unknown change %d to %s", d.Op, d.TableName)
	}
	if err != nil && r.err == nil {
		r.err = err
	}
	r.changes = append(r.changes, c)
}

// sqliteColumn is a table column as the pre-update hook numbers them.
type sqliteColumn struct {
	name, decl string
	// skip is set for a virtual generated column: it is not stored, and
	// what the hook reports for it is not its value.
	skip bool
}

func sqliteColumns(ctx context.Context, tx *dbsql.Tx, schema, table string) ([]sqliteColumn, error) {
	rows, err := tx.QueryContext(ctx, "SELECT name, type, hidden FROM pragma_table_xinfo(?1, ?2)", table, schema)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols []sqliteColumn
	for rows.Next() {
		var c sqliteColumn
		var hidden int
		if err := rows.Scan(&c.name, &c.decl, &hidden); err != nil {
			return nil, err
		}
		c.skip = hidden == 2
		cols = append(cols, c)
	}
	return cols, rows.Err()
}

// sqliteImage pairs a row's values with its columns; nil stays nil.
func sqliteImage(cols []sqliteColumn, vals []any) (map[string]any, error) {
	if vals == nil {
		return nil, nil
	}
	if len(vals) != len(cols) {
		return nil, fmt.Errorf("%d values for %d columns", len(vals), len(cols))
	}
	row := make(map[string]any, len(cols))
	for i, c := range cols {
		if !c.skip {
			row[c.name] = jsonValue(sqliteTime(c.decl, vals[i]))
		}
	}
	return row, nil
}

// sqliteTimeFormats are the layouts, in order, that modernc.org/sqlite
// tries when a query reads text from a DATE, DATETIME or TIMESTAMP column
// (its parseTime); the first is time.Time.String's.
var sqliteTimeFormats = []string{
	"2006-01-02 15:04:05.999999999 -0700 MST",
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02T15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04",
	"2006-01-02T15:04",
	"2006-01-02",
}

// sqliteTime turns text from a date or time column into a time.Time the
// way the driver does for a query, so that a dry run's values read the same
// as the table's rows do through a read tool. The hook hands over values as
// stored.
func sqliteTime(decl string, v any) any {
	s, ok := v.(string)
	switch strings.ToUpper(decl) {
	case "DATE", "DATETIME", "TIMESTAMP":
	default:
		return v
	}
	if !ok {
		return v
	}
	str := s
	if i := strings.Index(s, "m="); i > 0 {
		str = s[:i] // time.Time.String's monotonic clock reading
	}
	if t, err := time.Parse(sqliteTimeFormats[0], strings.TrimSpace(str)); err == nil {
		return t
	}
	ts := strings.TrimSuffix(s, "Z")
	for _, f := range sqliteTimeFormats[1:] {
		if t, err := time.Parse(f, ts); err == nil {
			return t
		}
	}
	return v
}
