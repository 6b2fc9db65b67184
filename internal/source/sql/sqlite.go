package sql

import (
	"context"
	dbsql "database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/source"
	"github.com/wardenmcp/warden/pipeline"
)

func init() { source.Register("sqlite", openSQLite) }

type sqliteSettings struct {
	Kind string `json:"kind"`
	// Path is the database file; it must exist (Warden never creates an
	// empty database in place of a missing one).
	Path string `json:"path"`
	// MaxReaders caps concurrent read connections; zero means 8.
	MaxReaders int `json:"max_readers"`
}

// sqliteSource keeps two pools on one file: readers open the file read-only
// with query_only set, so SQLite refuses any write from a read tool; the one
// writer serialises write tools, as SQLite allows one writer at a time.
type sqliteSource struct {
	ro, rw *dbsql.DB
	stmts  []*dbsql.Stmt // prepared at load time, closed with the source
}

func openSQLite(ctx context.Context, name string, raw config.RawSource, cfg *config.Config) (source.Source, error) {
	var s sqliteSettings
	if err := decodeSettings(raw, &s); err != nil {
		return nil, err
	}
	if s.Path == "" {
		return nil, errors.New("path: required (the SQLite database file)")
	}
	path := cfg.Resolve(s.Path)
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("path: database file %s does not exist or is not a file", path)
	}
	if s.MaxReaders <= 0 {
		s.MaxReaders = 8
	}
	file := (&url.URL{Path: path}).EscapedPath()
	ro, err := dbsql.Open("sqlite", "file:"+file+"?mode=ro&_pragma=query_only(1)&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, err
	}
	ro.SetMaxOpenConns(s.MaxReaders)
	// mode=rw: a connection opened later, after the file went missing, must
	// fail rather than create an empty database in its place.
	rw, err := dbsql.Open("sqlite", "file:"+file+"?mode=rw&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_txlock=immediate")
	if err != nil {
		ro.Close()
		return nil, err
	}
	rw.SetMaxOpenConns(1)
	src := &sqliteSource{ro: ro, rw: rw}
	if err := src.Ready(ctx); err != nil {
		src.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return src, nil
}

func (s *sqliteSource) Ready(ctx context.Context) error {
	if err := s.ro.PingContext(ctx); err != nil {
		return err
	}
	return s.rw.PingContext(ctx)
}

func (s *sqliteSource) Close() error {
	var errs []error
	for _, st := range s.stmts {
		errs = append(errs, st.Close())
	}
	return errors.Join(append(errs, s.ro.Close(), s.rw.Close())...)
}

func (s *sqliteSource) Prepare(ctx context.Context, op *Operation) (Statement, error) {
	c, err := compile(op.Statement, sqliteDialect)
	if err != nil {
		return nil, err
	}
	if err := checkParams(c.params, op.Params); err != nil {
		return nil, err
	}
	// Compiling (without running) checks the statement against the real
	// schema and names its result columns.
	cols, err := s.describe(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("the database refused the statement: %w", err)
	}
	if op.Mode == pipeline.Read && len(op.Columns) == 0 {
		// Nothing declared: run the statement once with sample values, on the
		// read-only pool. It proves the statement reads only, and yields the
		// types of columns that are expressions. Declaring the columns skips
		// this run; the read-only connection still refuses a write at run time.
		if cols, err = s.probe(ctx, c, bindArgs(c.params, op.Sample)); err != nil {
			return nil, fmt.Errorf("the database refused the statement in read-only mode: %w", err)
		}
	}
	if cols, err = mergeDeclared(cols, op.Columns); err != nil {
		return nil, err
	}
	// Prepared once on the pool the statement runs on: compiling SQL costs
	// far more than running a narrow query.
	db := s.ro
	if op.Mode == pipeline.Write {
		db = s.rw
	}
	stmt, err := db.PrepareContext(ctx, c.query)
	if err != nil {
		return nil, fmt.Errorf("the database refused the statement: %w", err)
	}
	s.stmts = append(s.stmts, stmt)
	st := &sqliteStatement{src: s, op: op, c: c, stmt: stmt, cols: cols, maxRows: maxRows(op)}
	if op.Mode == pipeline.Write {
		return sqliteWrite{st}, nil
	}
	return st, nil
}

// describe compiles c on a read-only connection, without running it, and
// returns its result columns.
func (s *sqliteSource) describe(ctx context.Context, c *compiled) ([]Column, error) {
	conn, err := s.ro.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var info []sqlite.ColumnInfo
	err = conn.Raw(func(dc any) error {
		ci, ok := dc.(interface {
			ColumnInfo(query string) ([]sqlite.ColumnInfo, error)
		})
		if !ok {
			return errors.New("the SQLite driver cannot describe statements")
		}
		info, err = ci.ColumnInfo(c.query)
		return err
	})
	if err != nil {
		return nil, err
	}
	cols := make([]Column, len(info))
	for i, ci := range info {
		cols[i] = Column{Name: ci.Name, Type: sqliteJSONType(ci.DeclType)}
	}
	return cols, nil
}

func (s *sqliteSource) probe(ctx context.Context, c *compiled, args []any) ([]Column, error) {
	tx, err := s.ro.BeginTx(ctx, &dbsql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, c.query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, err
	}
	cols := make([]Column, len(types))
	for i, t := range types {
		cols[i] = Column{Name: t.Name(), Type: sqliteJSONType(t.DatabaseTypeName())}
	}
	return cols, rows.Err()
}

// sqliteJSONType maps a declared column type to a JSON type by SQLite's own
// affinity rules. SQLite is dynamically typed, so values may still be NULL.
func sqliteJSONType(decl string) string {
	d := strings.ToUpper(decl)
	switch {
	case d == "":
		return "any"
	case strings.Contains(d, "INT"):
		return "integer"
	case strings.Contains(d, "CHAR"), strings.Contains(d, "CLOB"), strings.Contains(d, "TEXT"),
		strings.Contains(d, "DATE"), strings.Contains(d, "TIME"), strings.Contains(d, "BLOB"):
		return "string"
	case strings.Contains(d, "REAL"), strings.Contains(d, "FLOA"), strings.Contains(d, "DOUB"),
		strings.Contains(d, "NUM"), strings.Contains(d, "DEC"):
		return "number"
	case strings.Contains(d, "BOOL"):
		return "boolean"
	}
	return "any"
}

type sqliteStatement struct {
	src     *sqliteSource
	op      *Operation
	c       *compiled
	stmt    *dbsql.Stmt
	cols    []Column
	maxRows int
}

func (st *sqliteStatement) Columns() []Column { return st.cols }

func (st *sqliteStatement) Run(ctx context.Context, args map[string]any) (_ *Rows, err error) {
	defer func() {
		if err != nil {
			err = sqliteError(ctx, err)
		}
	}()
	vals := bindArgs(st.c.params, args)
	if st.op.Mode == pipeline.Read {
		// One statement on a read-only, query_only connection: SQLite itself
		// refuses any write, and a single statement needs no transaction.
		rows, err := st.stmt.QueryContext(ctx, vals...)
		if err != nil {
			return nil, err
		}
		return collect(rows, st.maxRows, false)
	}
	tx, err := st.src.rw.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	stmt := tx.StmtContext(ctx, st.stmt)
	var out *Rows
	if !st.c.returning {
		res, err := stmt.ExecContext(ctx, vals...)
		if err != nil {
			return nil, err
		}
		n, _ := res.RowsAffected()
		out = &Rows{Rows: []map[string]any{}, RowsAffected: n}
	} else {
		rows, err := stmt.QueryContext(ctx, vals...)
		if err != nil {
			return nil, err
		}
		// A write's changes all happen on the first step, and every row it
		// touched is returned: read them all, to count them.
		if out, err = collect(rows, st.maxRows, true); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return out, nil
}

// collect reads at most max rows, noting whether more existed. If all is
// set it reads past max, counting every row in RowsAffected.
func collect(rows *dbsql.Rows, max int, all bool) (*Rows, error) {
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := &Rows{Rows: []map[string]any{}}
	vals := make([]any, len(names))
	ptrs := make([]any, len(names))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if all {
			out.RowsAffected++
		}
		if len(out.Rows) == max {
			out.Truncated = true
			if all {
				continue
			}
			break
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make(map[string]any, len(names))
		for i, n := range names {
			row[n] = jsonValue(vals[i])
		}
		out.Rows = append(out.Rows, row)
	}
	return out, rows.Err()
}

// sqliteError classifies a database error. What the caller can act on
// becomes a *pipeline.Error; anything else stays internal. An error caused
// by ctx ending is returned as ctx's error, for the execute stage to report
// as a timeout.
func sqliteError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w (%v)", ctxErr, err)
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_READONLY:
		return pipeline.Errorf(pipeline.PermissionDenied, "use a tool declared with mode: write for changes",
			"the database refused a write: this tool is read-only")
	case sqlite3.SQLITE_CONSTRAINT:
		return errConstraint()
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return pipeline.Errorf(pipeline.Unavailable, "retry shortly", "the database is busy").WithRetryAfter(time.Second)
	case sqlite3.SQLITE_MISMATCH:
		return pipeline.Errorf(pipeline.InvalidArgument, "", "the database refused a value of the wrong type")
	}
	return err
}
