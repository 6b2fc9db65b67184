package sql

import (
	"context"
	dbsql "database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/execute"
	"github.com/wardenmcp/warden/internal/source"
	"github.com/wardenmcp/warden/pipeline"
)

const sqliteSchema = `
CREATE TABLE customers (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	email      TEXT NOT NULL UNIQUE,
	score      INTEGER NOT NULL CHECK (score >= 0),
	balance    REAL,
	vip        BOOLEAN NOT NULL DEFAULT 0
);
INSERT INTO customers VALUES
	('C-1', 'Ada Lovelace',    'ada@example.com',    10, 12.5, 1),
	('C-2', 'Alan Turing',     'alan@example.com',   20, 0,    0),
	('C-3', 'Grace Hopper',    'grace@example.com',  30, NULL, 1),
	('C-4', 'Edsger Dijkstra', 'edsger@example.com', 40, 3.25, 0),
	('C-5', 'Barbara Liskov',  'barbara@example.com', 50, 99,  0);
`

// sqliteDB is a real database file with the customers table, and a source
// opened on it the way the server opens one.
type sqliteDB struct {
	path string
	src  database
}

func newSQLite(t testing.TB) *sqliteDB {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "crm.db")
	db, err := dbsql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(sqliteSchema); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	src, err := openDB(context.Background(), "crm", config.RawSource{"kind": "sqlite", "path": "crm.db"}, &config.Config{Dir: dir})
	if err != nil {
		t.Fatalf("opening the source: %v", err)
	}
	t.Cleanup(func() { src.Close() })
	return &sqliteDB{path: path, src: src}
}

// snapshot returns every row of customers, as text, through a connection
// of its own: what a later reader of the database would see.
func (d *sqliteDB) snapshot(t *testing.T) string {
	t.Helper()
	db, err := dbsql.Open("sqlite", "file:"+d.path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT id, name, email, score, balance, vip FROM customers ORDER BY id")
	if err != nil {
		t.Fatalf("reading customers back: %v", err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, name, email string
		var score int
		var balance *float64
		var vip bool
		if err := rows.Scan(&id, &name, &email, &score, &balance, &vip); err != nil {
			t.Fatal(err)
		}
		bal := "null"
		if balance != nil {
			bal = jsonString(t, *balance)
		}
		b.WriteString(strings.Join([]string{id, name, email, jsonString(t, score), bal, jsonString(t, vip)}, "|") + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func (d *sqliteDB) count(t *testing.T) int {
	return strings.Count(d.snapshot(t), "\n")
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding %#v as JSON: %v", v, err)
	}
	return string(b)
}

func mustPrepare(t testing.TB, src database, op *Operation) Statement {
	t.Helper()
	st, err := src.Prepare(context.Background(), op)
	if err != nil {
		t.Fatalf("Prepare(%q): %v", op.Statement, err)
	}
	return st
}

// codeOf returns the error code a client would see for err.
func codeOf(err error) pipeline.Code {
	return pipeline.AsError(err).Code
}

func cols(names ...string) map[string]config.Column {
	m := map[string]config.Column{}
	for _, n := range names {
		m[n] = config.Column{Type: "any"}
	}
	return m
}

func TestSQLiteReadToolCannotWrite(t *testing.T) {
	tests := []struct {
		name   string
		stmt   string
		params []string
		args   map[string]any
	}{
		{"delete returning", "DELETE FROM customers WHERE id = :id RETURNING id", []string{"id"}, map[string]any{"id": "C-1"}},
		{"delete all returning", "DELETE FROM customers RETURNING id", nil, nil},
		{"update returning", "UPDATE customers SET name = :name RETURNING id", []string{"name"}, map[string]any{"name": "pwned"}},
		{"insert returning", "INSERT INTO customers (id, name, email, score) VALUES ('C-9', 'Eve', 'eve@example.com', 1) RETURNING id", nil, nil},
		{"upsert returning", "INSERT INTO customers (id, name, email, score) VALUES ('C-1', 'Eve', 'x@example.com', 1) ON CONFLICT (id) DO UPDATE SET name = excluded.name RETURNING id", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newSQLite(t)
			before := db.snapshot(t)
			// Declared columns: Prepare describes the statement without
			// running it, so the refusal must come from the database at run time.
			st := mustPrepare(t, db.src, &Operation{
				Name: "sneaky", Statement: tt.stmt, Mode: pipeline.Read, MaxRows: 10,
				Params: tt.params, Columns: cols("id"),
			})
			res, err := st.Run(context.Background(), tt.args)
			if code := codeOf(err); code != pipeline.PermissionDenied {
				t.Fatalf("Run = %+v, %v (code %s); want %s", res, err, code, pipeline.PermissionDenied)
			}
			if after := db.snapshot(t); after != before {
				t.Errorf("the data changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

func TestSQLiteReadToolThatWritesIsRefusedAtLoad(t *testing.T) {
	tests := []struct {
		name string
		stmt string
		want string
	}{
		{"delete", "DELETE FROM customers", "read-only"},
		{"delete returning", "DELETE FROM customers RETURNING id", "read-only"},
		{"update", "UPDATE customers SET name = 'pwned'", "read-only"},
		{"insert", "INSERT INTO customers (id, name, email, score) VALUES ('C-9', 'Eve', 'eve@example.com', 1)", "read-only"},
		// Statements other than queries and data changes never reach the
		// database, whatever the mode.
		{"drop", "DROP TABLE customers", "not DROP"},
		{"create", "CREATE TABLE evil (x)", "not CREATE"},
		{"attach", "ATTACH DATABASE '/tmp/evil.db' AS evil", "not ATTACH"},
		{"vacuum into", "VACUUM INTO '/tmp/copy.db'", "not VACUUM"},
		{"pragma", "PRAGMA query_only = 0", "not PRAGMA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newSQLite(t)
			before := db.snapshot(t)
			_, err := db.src.Prepare(context.Background(), &Operation{
				Name: "sneaky", Statement: tt.stmt, Mode: pipeline.Read, MaxRows: 10,
			})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Prepare = %v, want a refusal that says %q", err, tt.want)
			}
			if after := db.snapshot(t); after != before {
				t.Errorf("the data changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

func TestSQLiteInjectionIsInert(t *testing.T) {
	db := newSQLite(t)
	byName := mustPrepare(t, db.src, &Operation{
		Name: "find_customer", Statement: "SELECT id, name FROM customers WHERE name = :name", MaxRows: 10, Params: []string{"name"},
	})
	byID := mustPrepare(t, db.src, &Operation{
		Name: "get_customer", Statement: "SELECT id, name FROM customers WHERE id = :id", MaxRows: 10, Params: []string{"id"},
	})
	rename := mustPrepare(t, db.src, &Operation{
		Name: "rename_customer", Statement: "UPDATE customers SET name = :name WHERE id = :id", Mode: pipeline.Write, MaxRows: 10,
		Params: []string{"id", "name"},
	})
	tests := []struct {
		name    string
		st      Statement
		args    map[string]any
		wantIDs []string
	}{
		{"the real name", byName, map[string]any{"name": "Ada Lovelace"}, []string{"C-1"}},
		{"or 1=1", byName, map[string]any{"name": "' OR 1=1 --"}, nil},
		{"drop table", byName, map[string]any{"name": "x'; DROP TABLE customers; --"}, nil},
		{"stacked delete", byID, map[string]any{"id": "1; DELETE FROM customers"}, nil},
		{"union", byID, map[string]any{"id": "C-1' UNION SELECT name, email FROM customers --"}, nil},
		{"the real id", byID, map[string]any{"id": "C-2"}, []string{"C-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tt.st.Run(context.Background(), tt.args)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			var ids []string
			for _, r := range res.Rows {
				ids = append(ids, r["id"].(string))
			}
			if strings.Join(ids, ",") != strings.Join(tt.wantIDs, ",") {
				t.Errorf("rows %v, want ids %v", res.Rows, tt.wantIDs)
			}
			if n := db.count(t); n != 5 {
				t.Errorf("customers has %d rows afterwards, want 5", n)
			}
		})
	}
	t.Run("a write stores the text as given", func(t *testing.T) {
		evil := "x'; DROP TABLE customers; --"
		res, err := rename.Run(context.Background(), map[string]any{"id": "C-3", "name": evil})
		if err != nil || res.RowsAffected != 1 {
			t.Fatalf("Run = %+v, %v; want one row affected", res, err)
		}
		got, err := byID.Run(context.Background(), map[string]any{"id": "C-3"})
		if err != nil || len(got.Rows) != 1 || got.Rows[0]["name"] != evil {
			t.Fatalf("reading C-3 back = %+v, %v; want the name %q", got, err, evil)
		}
		if n := db.count(t); n != 5 {
			t.Errorf("customers has %d rows afterwards, want 5", n)
		}
	})
}

func TestSQLiteMaxRows(t *testing.T) {
	db := newSQLite(t)
	tests := []struct {
		maxRows       int
		wantRows      int
		wantTruncated bool
	}{
		{1, 1, true},
		{4, 4, true},
		{5, 5, false},
		{100, 5, false},
		{0, 5, false}, // unset: the configuration default, not "no rows"
	}
	for _, tt := range tests {
		t.Run(jsonString(t, tt.maxRows), func(t *testing.T) {
			st := mustPrepare(t, db.src, &Operation{Name: "list_customers", Statement: "SELECT id FROM customers ORDER BY id", MaxRows: tt.maxRows})
			res, err := st.Run(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Rows) != tt.wantRows || res.Truncated != tt.wantTruncated {
				t.Errorf("got %d rows, truncated %v; want %d, %v", len(res.Rows), res.Truncated, tt.wantRows, tt.wantTruncated)
			}
			if len(res.Rows) > 0 && res.Rows[0]["id"] != "C-1" {
				t.Errorf("first row %v, want C-1", res.Rows[0])
			}
		})
	}
}

func TestSQLiteWrite(t *testing.T) {
	tests := []struct {
		name          string
		stmt          string
		params        []string
		columns       map[string]config.Column
		maxRows       int
		args          map[string]any
		wantAffected  int64
		wantRows      int
		wantTruncated bool
		wantCount     int
	}{
		{
			name: "update without returning", stmt: "UPDATE customers SET score = score + 1 WHERE score >= :min",
			params: []string{"min"}, maxRows: 10, args: map[string]any{"min": 30.0},
			wantAffected: 3, wantCount: 5,
		},
		{
			name: "insert returning", stmt: "INSERT INTO customers (id, name, email, score) VALUES (:id, :name, :email, 0) RETURNING id, name",
			params: []string{"email", "id", "name"}, maxRows: 10,
			args:         map[string]any{"id": "C-6", "name": "Ken Thompson", "email": "ken@example.com"},
			wantAffected: 1, wantRows: 1, wantCount: 6,
		},
		{
			name: "returning with declared columns", stmt: "DELETE FROM customers WHERE id = :id RETURNING id",
			params: []string{"id"}, columns: map[string]config.Column{"id": {Type: "string", Description: "The deleted id."}}, maxRows: 10,
			args: map[string]any{"id": "C-5"}, wantAffected: 1, wantRows: 1, wantCount: 4,
		},
		{
			name: "returning more rows than max_rows counts them all", stmt: "DELETE FROM customers WHERE score > :min RETURNING id",
			params: []string{"min"}, maxRows: 2, args: map[string]any{"min": 15.0},
			wantAffected: 4, wantRows: 2, wantTruncated: true, wantCount: 1,
		},
		{
			name: "nothing matched", stmt: "UPDATE customers SET score = 0 WHERE id = :id",
			params: []string{"id"}, maxRows: 10, args: map[string]any{"id": "C-404"},
			wantAffected: 0, wantCount: 5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newSQLite(t)
			st := mustPrepare(t, db.src, &Operation{
				Name: "change", Statement: tt.stmt, Mode: pipeline.Write, MaxRows: tt.maxRows, Params: tt.params, Columns: tt.columns,
			})
			res, err := st.Run(context.Background(), tt.args)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Rows == nil {
				t.Error("Rows is nil: clients would see \"rows\": null")
			}
			if res.RowsAffected != tt.wantAffected || len(res.Rows) != tt.wantRows || res.Truncated != tt.wantTruncated {
				t.Errorf("got %d affected, %d rows, truncated %v; want %d, %d, %v",
					res.RowsAffected, len(res.Rows), res.Truncated, tt.wantAffected, tt.wantRows, tt.wantTruncated)
			}
			if n := db.count(t); n != tt.wantCount {
				t.Errorf("customers has %d rows afterwards, want %d", n, tt.wantCount)
			}
		})
	}
}

func TestSQLiteConstraintViolation(t *testing.T) {
	db := newSQLite(t)
	insert := mustPrepare(t, db.src, &Operation{
		Name: "add_customer", Statement: "INSERT INTO customers (id, name, email, score) VALUES (:id, :name, :email, :score)",
		Mode: pipeline.Write, MaxRows: 1, Params: []string{"email", "id", "name", "score"},
	})
	tests := []struct {
		name string
		args map[string]any
	}{
		{"duplicate primary key", map[string]any{"id": "C-1", "name": "Again", "email": "again@example.com", "score": 1.0}},
		{"duplicate unique value", map[string]any{"id": "C-7", "name": "Copy", "email": "ada@example.com", "score": 1.0}},
		{"null in a not-null column", map[string]any{"id": "C-8", "email": "n@example.com", "score": 1.0}},
		{"check constraint", map[string]any{"id": "C-9", "name": "Neg", "email": "neg@example.com", "score": -1.0}},
	}
	before := db.snapshot(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := insert.Run(context.Background(), tt.args)
			if code := codeOf(err); code != pipeline.InvalidArgument {
				t.Fatalf("Run: %v (code %s), want %s", err, code, pipeline.InvalidArgument)
			}
			if after := db.snapshot(t); after != before {
				t.Errorf("the data changed:\n%s", after)
			}
		})
	}
}

func TestSQLitePrepareRefuses(t *testing.T) {
	db := newSQLite(t)
	tests := []struct {
		name    string
		op      Operation
		wantErr string
	}{
		{"a declared parameter the statement does not use",
			Operation{Statement: "SELECT id FROM customers WHERE id = :id", Params: []string{"id", "name"}},
			`parameter "name" is declared but the statement does not use :name`},
		{"a used parameter that is not declared",
			Operation{Statement: "SELECT id FROM customers WHERE id = :id AND name = :name", Params: []string{"id"}},
			"uses :name, which is not declared"},
		{"an unknown table",
			Operation{Statement: "SELECT id FROM no_such_table", Columns: cols("id")},
			"no such table"},
		{"an unknown column in a write",
			Operation{Statement: "UPDATE customers SET no_such_column = 1", Mode: pipeline.Write},
			"no such column"},
		{"a declared column the statement does not return",
			Operation{Statement: "SELECT id FROM customers", Columns: cols("id", "nickname")},
			`column "nickname" is declared`},
		{"a declared column on a write without RETURNING",
			Operation{Statement: "UPDATE customers SET score = 0", Mode: pipeline.Write, Columns: cols("id")},
			`column "id" is declared`},
		{"two statements",
			Operation{Statement: "SELECT 1; DELETE FROM customers", Mode: pipeline.Write},
			"single SQL statement"},
		{"two statements hidden by a bracket identifier",
			Operation{Statement: "SELECT 1 AS [a'b]; DELETE FROM customers; SELECT 1 AS [c'd]", Mode: pipeline.Write},
			"single SQL statement"},
	}
	before := db.snapshot(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := tt.op
			op.Name, op.MaxRows = "tool", 10
			_, err := db.src.Prepare(context.Background(), &op)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Prepare = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	if after := db.snapshot(t); after != before {
		t.Errorf("the data changed:\n%s", after)
	}
}

func TestSQLiteColumns(t *testing.T) {
	db := newSQLite(t)
	tests := []struct {
		name    string
		op      Operation
		want    []Column
		wantRow string
	}{
		{
			name: "types from the schema",
			op:   Operation{Statement: "SELECT id, score, balance, vip, 1 + 1 AS two FROM customers WHERE id = 'C-1'"},
			want: []Column{
				{Name: "id", Type: "string"}, {Name: "score", Type: "integer"}, {Name: "balance", Type: "number"},
				{Name: "vip", Type: "boolean"}, {Name: "two", Type: "any"},
			},
			wantRow: `{"balance":12.5,"id":"C-1","score":10,"two":2,"vip":1}`,
		},
		{
			name: "declared columns set types and descriptions",
			op: Operation{Statement: "SELECT id, 1 + 1 AS two FROM customers WHERE id = 'C-1'", Columns: map[string]config.Column{
				"two": {Type: "integer", Description: "Always two."},
			}},
			want:    []Column{{Name: "id", Type: "string"}, {Name: "two", Type: "integer", Description: "Always two."}},
			wantRow: `{"id":"C-1","two":2}`,
		},
		{
			name:    "write returning",
			op:      Operation{Statement: "UPDATE customers SET score = score WHERE id = 'C-2' RETURNING id, score", Mode: pipeline.Write},
			want:    []Column{{Name: "id", Type: "string"}, {Name: "score", Type: "integer"}},
			wantRow: `{"id":"C-2","score":20}`,
		},
		{
			name:    "values JSON cannot hold become null",
			op:      Operation{Statement: "SELECT 1e999 AS big, -1e999 AS small"},
			want:    []Column{{Name: "big", Type: "any"}, {Name: "small", Type: "any"}},
			wantRow: `{"big":null,"small":null}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := tt.op
			op.Name, op.MaxRows = "tool", 10
			st := mustPrepare(t, db.src, &op)
			if got := jsonString(t, st.Columns()); got != jsonString(t, tt.want) {
				t.Errorf("Columns:\n got %s\nwant %s", got, jsonString(t, tt.want))
			}
			res, err := st.Run(context.Background(), nil)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(res.Rows) != 1 {
				t.Fatalf("got %d rows, want 1", len(res.Rows))
			}
			if got := jsonString(t, res.Rows[0]); got != tt.wantRow {
				t.Errorf("row:\n got %s\nwant %s", got, tt.wantRow)
			}
		})
	}
}

// slowSQLite is a statement that counts to a billion, one row at a time:
// minutes of work unless it is interrupted.
const slowSQLite = `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000)
SELECT count(*) AS total FROM n`

func TestSQLiteDeadline(t *testing.T) {
	db := newSQLite(t)
	st := mustPrepare(t, db.src, &Operation{
		Name: "count_forever", Statement: slowSQLite, MaxRows: 1, Columns: map[string]config.Column{"total": {Type: "integer"}},
	})
	spec := &pipeline.Spec{Name: "count_forever", Timeout: 200 * time.Millisecond}
	h := pipeline.Chain(func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		rows, err := st.Run(ctx, c.Args)
		if err != nil {
			return nil, err
		}
		return &pipeline.Result{Rows: len(rows.Rows)}, nil
	}, execute.Stage(0, slog.New(slog.NewTextHandler(io.Discard, nil))))

	start := time.Now()
	_, err := h(context.Background(), &pipeline.Call{Spec: spec, Target: spec.Name})
	if code := codeOf(err); code != pipeline.Timeout {
		t.Fatalf("call: %v (code %s), want %s", err, code, pipeline.Timeout)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the call took %s: the query was not interrupted at its deadline", d)
	}
	// The reader connection is usable again afterwards.
	quick := mustPrepare(t, db.src, &Operation{Name: "count_customers", Statement: "SELECT count(*) AS n FROM customers", MaxRows: 1})
	if res, err := quick.Run(context.Background(), nil); err != nil || res.Rows[0]["n"] != int64(5) {
		t.Errorf("a query after the timeout = %+v, %v; want n = 5", res, err)
	}
}

func TestSQLiteSettings(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		settings config.RawSource
		wantErr  string
	}{
		{"an unknown setting", config.RawSource{"kind": "sqlite", "path": "crm.db", "paht": "x"}, `unknown setting "paht"`},
		{"a setting of the wrong type", config.RawSource{"kind": "sqlite", "path": "crm.db", "max_readers": "many"}, "invalid settings"},
		{"no path", config.RawSource{"kind": "sqlite"}, "path: required"},
		{"a missing file", config.RawSource{"kind": "sqlite", "path": "missing.db"}, "does not exist"},
		{"a missing file in a missing folder", config.RawSource{"kind": "sqlite", "path": "nope/missing.db"}, "does not exist"},
		{"a directory", config.RawSource{"kind": "sqlite", "path": "adir"}, "not a file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := openDB(context.Background(), "crm", tt.settings, &config.Config{Dir: dir})
			if err == nil {
				src.Close()
				t.Fatalf("Open succeeded, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Open: %v, want an error containing %q", err, tt.wantErr)
			}
			if p, ok := tt.settings["path"].(string); ok && p != "adir" {
				if _, err := os.Stat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("after the refusal, %s exists (stat: %v): Warden must never create a database", p, err)
				}
			}
		})
	}
}

// A database file removed while the server runs is not silently replaced
// by an empty one when a new connection is opened.
func TestSQLiteNeverCreatesTheDatabase(t *testing.T) {
	db := newSQLite(t)
	write := mustPrepare(t, db.src, &Operation{
		Name: "reset_scores", Statement: "UPDATE customers SET score = 0", Mode: pipeline.Write, MaxRows: 1,
	})
	// Keep no idle connection, so that every call opens a new one.
	s := db.src.(*sqliteSource)
	s.rw.SetMaxIdleConns(0)
	s.ro.SetMaxIdleConns(0)
	if err := os.Remove(db.path); err != nil {
		t.Fatal(err)
	}
	if _, err := write.Run(context.Background(), nil); err == nil {
		t.Error("a write after the file was removed succeeded")
	}
	if err := db.src.Ready(context.Background()); err == nil {
		t.Error("Ready after the file was removed reported no error")
	}
	if _, err := os.Stat(db.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after the file was removed, %s exists again (stat: %v)", db.path, err)
	}
}

// openDB opens a SQL source as the server does, by its kind's name.
func openDB(ctx context.Context, name string, raw config.RawSource, cfg *config.Config) (database, error) {
	src, err := source.Open(ctx, name, raw, cfg)
	if err != nil {
		return nil, err
	}
	return src.(database), nil
}
