package sql

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/execute"
	"github.com/wardenmcp/warden/pipeline"
)

const postgresSchema = `
CREATE TABLE customers (
	id       text PRIMARY KEY,
	name     text NOT NULL,
	email    text NOT NULL UNIQUE,
	score    integer NOT NULL CHECK (score >= 0),
	balance  numeric(12, 2),
	vip      boolean NOT NULL DEFAULT false,
	born     date,
	seen_at  timestamptz
);
INSERT INTO customers VALUES
	('C-1', 'Ada Lovelace',    'ada@example.com',     10, 12.50, true,  '1815-12-10', '2024-03-01 09:30:00+01'),
	('C-2', 'Alan Turing',     'alan@example.com',    20, 0,     false, '1912-06-23', NULL),
	('C-3', 'Grace Hopper',    'grace@example.com',   30, NULL,  true,  NULL,         NULL),
	('C-4', 'Edsger Dijkstra', 'edsger@example.com',  40, 3.25,  false, NULL,         NULL),
	('C-5', 'Barbara Liskov',  'barbara@example.com', 50, 99,    false, NULL,         NULL);
`

// postgresDB is a schema of its own on the test server, with the customers
// table, and a source whose connections use it.
type postgresDB struct {
	admin *pgx.Conn
	dsn   string // connects with search_path set to the schema
	src   database
}

// newPostgres needs a PostgreSQL server the test may create schemas on,
// named by WARDEN_TEST_POSTGRES_URL, for example
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
func newPostgres(t *testing.T, extra map[string]any) *postgresDB {
	t.Helper()
	base := os.Getenv("WARDEN_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("set WARDEN_TEST_POSTGRES_URL (such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the PostgreSQL tests")
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connecting to WARDEN_TEST_POSTGRES_URL: %v", err)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "warden_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
		admin.Close(context.Background())
	})
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "SET search_path TO "+schema); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, postgresSchema); err != nil {
		t.Fatal(err)
	}
	d := &postgresDB{admin: admin, dsn: withParam(t, base, "search_path", schema)}
	settings := config.RawSource{"kind": "postgres", "dsn": d.dsn}
	for k, v := range extra {
		settings[k] = v
	}
	d.src, err = openDB(ctx, "crm", settings, &config.Config{})
	if err != nil {
		t.Fatalf("opening the source: %v", err)
	}
	t.Cleanup(func() { d.src.Close() })
	return d
}

// withParam adds a connection parameter to a URL or keyword/value DSN.
func withParam(t *testing.T, dsn, key, value string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("WARDEN_TEST_POSTGRES_URL: %v", err)
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " " + key + "=" + value
}

func (d *postgresDB) snapshot(t *testing.T) string {
	t.Helper()
	var s string
	err := d.admin.QueryRow(context.Background(),
		"SELECT coalesce(string_agg(c::text, E'\\n' ORDER BY id), '') FROM customers c").Scan(&s)
	if err != nil {
		t.Fatalf("reading customers back: %v", err)
	}
	return s
}

func (d *postgresDB) count(t *testing.T) int {
	t.Helper()
	var n int
	if err := d.admin.QueryRow(context.Background(), "SELECT count(*) FROM customers").Scan(&n); err != nil {
		t.Fatalf("counting customers: %v", err)
	}
	return n
}

func TestPostgresReadToolCannotWrite(t *testing.T) {
	d := newPostgres(t, nil)
	tests := []struct {
		name    string
		stmt    string
		params  []string
		columns map[string]config.Column
		args    map[string]any
	}{
		{"delete returning", "DELETE FROM customers WHERE id = :id RETURNING id", []string{"id"}, cols("id"), map[string]any{"id": "C-1"}},
		{"delete", "DELETE FROM customers", nil, nil, nil},
		{"update", "UPDATE customers SET name = :name", []string{"name"}, nil, map[string]any{"name": "pwned"}},
		{"insert", "INSERT INTO customers (id, name, email, score) VALUES ('C-9', 'Eve', 'eve@example.com', 1)", nil, nil, nil},
		{"data-modifying CTE", "WITH gone AS (DELETE FROM customers RETURNING id) SELECT count(*) AS n FROM gone", nil, nil, nil},
		{"sequence", "SELECT nextval('customers_seq') AS n", nil, nil, nil},
	}
	if _, err := d.admin.Exec(context.Background(), "CREATE SEQUENCE customers_seq"); err != nil {
		t.Fatal(err)
	}
	before := d.snapshot(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := mustPrepare(t, d.src, &Operation{
				Name: "sneaky", Statement: tt.stmt, Mode: pipeline.Read, MaxRows: 10, Params: tt.params, Columns: tt.columns,
			})
			res, err := st.Run(context.Background(), tt.args)
			if code := codeOf(err); code != pipeline.PermissionDenied {
				t.Fatalf("Run = %+v, %v (code %s); want %s", res, err, code, pipeline.PermissionDenied)
			}
			if after := d.snapshot(t); after != before {
				t.Errorf("the data changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// A read tool's session settings do not outlive its call on the pooled
// connection: its transaction is rolled back.
func TestPostgresReadLeavesNoSessionState(t *testing.T) {
	d := newPostgres(t, map[string]any{"max_conns": 1})
	set := mustPrepare(t, d.src, &Operation{
		Name: "set_name", Statement: "SELECT set_config('application_name', :v, false) AS v", MaxRows: 1, Params: []string{"v"},
	})
	get := mustPrepare(t, d.src, &Operation{
		Name: "get_name", Statement: "SELECT current_setting('application_name') AS v", MaxRows: 1,
	})
	if _, err := set.Run(context.Background(), map[string]any{"v": "leaked"}); err != nil {
		t.Fatal(err)
	}
	res, err := get.Run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Rows[0]["v"]; got == "leaked" {
		t.Errorf("application_name = %q after another call: a read's session change outlived it", got)
	}
}

func TestPostgresInjectionIsInert(t *testing.T) {
	d := newPostgres(t, nil)
	byName := mustPrepare(t, d.src, &Operation{
		Name: "find_customer", Statement: "SELECT id, name FROM customers WHERE name = :name", MaxRows: 10, Params: []string{"name"},
	})
	byID := mustPrepare(t, d.src, &Operation{
		Name: "get_customer", Statement: "SELECT id, name FROM customers WHERE id = :id", MaxRows: 10, Params: []string{"id"},
	})
	rename := mustPrepare(t, d.src, &Operation{
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
		{"dollar quote", byID, map[string]any{"id": "$$; DELETE FROM customers; --"}, nil},
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
			if n := d.count(t); n != 5 {
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
		if n := d.count(t); n != 5 {
			t.Errorf("customers has %d rows afterwards, want 5", n)
		}
	})
}

func TestPostgresMaxRows(t *testing.T) {
	d := newPostgres(t, nil)
	tests := []struct {
		maxRows       int
		wantRows      int
		wantTruncated bool
	}{
		{1, 1, true},
		{4, 4, true},
		{5, 5, false},
		{100, 5, false},
		{0, 5, false},
	}
	for _, tt := range tests {
		t.Run(jsonString(t, tt.maxRows), func(t *testing.T) {
			st := mustPrepare(t, d.src, &Operation{Name: "list_customers", Statement: "SELECT id FROM customers ORDER BY id", MaxRows: tt.maxRows})
			res, err := st.Run(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Rows) != tt.wantRows || res.Truncated != tt.wantTruncated {
				t.Errorf("got %d rows, truncated %v; want %d, %v", len(res.Rows), res.Truncated, tt.wantRows, tt.wantTruncated)
			}
		})
	}
}

func TestPostgresWrite(t *testing.T) {
	tests := []struct {
		name          string
		stmt          string
		params        []string
		maxRows       int
		args          map[string]any
		wantAffected  int64
		wantN         int    // rows returned
		wantRows      string // the rows as JSON, or "" if their order is not defined
		wantTruncated bool
		wantCount     int // customers afterwards
	}{
		{
			name: "update without returning", stmt: "UPDATE customers SET score = score + 1 WHERE score >= :min",
			params: []string{"min"}, maxRows: 10, args: map[string]any{"min": 30.0},
			wantAffected: 3, wantN: 0, wantRows: `[]`, wantCount: 5,
		},
		{
			name: "insert returning", stmt: "INSERT INTO customers (id, name, email, score) VALUES (:id, :name, :email, 0) RETURNING id, name, score",
			params: []string{"email", "id", "name"}, maxRows: 10,
			args:         map[string]any{"id": "C-6", "name": "Ken Thompson", "email": "ken@example.com"},
			wantAffected: 1, wantN: 1, wantRows: `[{"id":"C-6","name":"Ken Thompson","score":0}]`, wantCount: 6,
		},
		{
			name: "returning more rows than max_rows counts them all", stmt: "DELETE FROM customers WHERE score > :min RETURNING id",
			params: []string{"min"}, maxRows: 2, args: map[string]any{"min": 15.0},
			wantAffected: 4, wantN: 2, wantTruncated: true, wantCount: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newPostgres(t, nil)
			st := mustPrepare(t, d.src, &Operation{
				Name: "change", Statement: tt.stmt, Mode: pipeline.Write, MaxRows: tt.maxRows, Params: tt.params,
			})
			res, err := st.Run(context.Background(), tt.args)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.RowsAffected != tt.wantAffected || len(res.Rows) != tt.wantN || res.Truncated != tt.wantTruncated {
				t.Errorf("got %d affected, %d rows, truncated %v; want %d, %d, %v",
					res.RowsAffected, len(res.Rows), res.Truncated, tt.wantAffected, tt.wantN, tt.wantTruncated)
			}
			if got := jsonString(t, res.Rows); tt.wantRows != "" && got != tt.wantRows {
				t.Errorf("rows %s, want %s", got, tt.wantRows)
			}
			if n := d.count(t); n != tt.wantCount {
				t.Errorf("customers has %d rows afterwards, want %d", n, tt.wantCount)
			}
		})
	}
}

func TestPostgresConstraintViolation(t *testing.T) {
	d := newPostgres(t, nil)
	insert := mustPrepare(t, d.src, &Operation{
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
	before := d.snapshot(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := insert.Run(context.Background(), tt.args)
			if code := codeOf(err); code != pipeline.InvalidArgument {
				t.Fatalf("Run: %v (code %s), want %s", err, code, pipeline.InvalidArgument)
			}
			if after := d.snapshot(t); after != before {
				t.Errorf("the data changed:\n%s", after)
			}
		})
	}
}

func TestPostgresStatementTimeout(t *testing.T) {
	d := newPostgres(t, nil)
	st := mustPrepare(t, d.src, &Operation{Name: "sleep", Statement: "SELECT pg_sleep(5) AS slept", MaxRows: 1})
	spec := &pipeline.Spec{Name: "sleep", Timeout: 200 * time.Millisecond}
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
	if elapsed := time.Since(start); elapsed > 4*time.Second {
		t.Errorf("the call took %s: the statement was not cancelled at its deadline", elapsed)
	}
	// The pool still serves.
	quick := mustPrepare(t, d.src, &Operation{Name: "count_customers", Statement: "SELECT count(*) AS n FROM customers", MaxRows: 1})
	if res, err := quick.Run(context.Background(), nil); err != nil || res.Rows[0]["n"] != int64(5) {
		t.Errorf("a query after the timeout = %+v, %v; want n = 5", res, err)
	}
}

func TestPostgresColumnsAndValues(t *testing.T) {
	d := newPostgres(t, nil)
	tests := []struct {
		name    string
		stmt    string
		want    []Column
		wantRow string
	}{
		{
			name: "types from Prepare",
			stmt: "SELECT id, score, score::int8 AS big, score::int2 AS small, balance, balance::float8 AS approx, vip, born, seen_at FROM customers WHERE id = 'C-1'",
			want: []Column{
				{Name: "id", Type: "string"}, {Name: "score", Type: "integer"}, {Name: "big", Type: "integer"},
				{Name: "small", Type: "integer"}, {Name: "balance", Type: "number"}, {Name: "approx", Type: "number"},
				{Name: "vip", Type: "boolean"}, {Name: "born", Type: "string"}, {Name: "seen_at", Type: "string"},
			},
			wantRow: `{"approx":12.5,"balance":12.50,"big":10,"born":"1815-12-10","id":"C-1","score":10,"seen_at":"2024-03-01T08:30:00Z","small":10,"vip":true}`,
		},
		{
			name: "nulls",
			stmt: "SELECT balance, born, seen_at FROM customers WHERE id = 'C-3'",
			want: []Column{
				{Name: "balance", Type: "number"}, {Name: "born", Type: "string"}, {Name: "seen_at", Type: "string"},
			},
			wantRow: `{"balance":null,"born":null,"seen_at":null}`,
		},
		{
			name: "numeric keeps its digits",
			stmt: "SELECT 12345678901234567890.123456789::numeric AS exact, 1e-20::numeric AS tiny, 100::numeric AS whole",
			want: []Column{
				{Name: "exact", Type: "number"}, {Name: "tiny", Type: "number"}, {Name: "whole", Type: "number"},
			},
			wantRow: `{"exact":12345678901234567890.123456789,"tiny":0.00000000000000000001,"whole":100}`,
		},
		{
			name: "values JSON cannot hold",
			stmt: "SELECT 'NaN'::numeric AS n, 'Infinity'::float8 AS f, 'infinity'::date AS d, '-infinity'::timestamptz AS ts",
			want: []Column{
				{Name: "n", Type: "number"}, {Name: "f", Type: "number"}, {Name: "d", Type: "string"}, {Name: "ts", Type: "string"},
			},
			wantRow: `{"d":"infinity","f":null,"n":null,"ts":"-infinity"}`,
		},
		{
			name: "uuid, timestamp and json",
			stmt: `SELECT '6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid AS u, '2024-01-02 03:04:05'::timestamp AS ts, '{"a": [1, "x"]}'::jsonb AS j`,
			want: []Column{
				{Name: "u", Type: "string"}, {Name: "ts", Type: "string"}, {Name: "j", Type: "any"},
			},
			wantRow: `{"j":{"a":[1,"x"]},"ts":"2024-01-02T03:04:05Z","u":"6ba7b810-9dad-11d1-80b4-00c04fd430c8"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := mustPrepare(t, d.src, &Operation{Name: "tool", Statement: tt.stmt, MaxRows: 10})
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

func TestPostgresPrepareRefuses(t *testing.T) {
	d := newPostgres(t, nil)
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
			Operation{Statement: "SELECT id FROM no_such_table"},
			"does not exist"},
		{"a declared column the statement does not return",
			Operation{Statement: "SELECT id FROM customers", Columns: cols("id", "nickname")},
			`column "nickname" is declared`},
		{"two statements",
			Operation{Statement: "SELECT 1; DELETE FROM customers", Mode: pipeline.Write},
			"single SQL statement"},
	}
	before := d.snapshot(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := tt.op
			op.Name, op.MaxRows = "tool", 10
			_, err := d.src.Prepare(context.Background(), &op)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Prepare = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	if after := d.snapshot(t); after != before {
		t.Errorf("the data changed:\n%s", after)
	}
}

func TestPostgresSettings(t *testing.T) {
	base := os.Getenv("WARDEN_TEST_POSTGRES_URL")
	tests := []struct {
		name     string
		settings config.RawSource
		wantErr  string
		needsDB  bool
	}{
		{"an unknown setting", config.RawSource{"kind": "postgres", "dsn": "postgres://x@127.0.0.1/db", "max_con": 2}, `unknown setting "max_con"`, false},
		{"no dsn", config.RawSource{"kind": "postgres"}, "dsn: required", false},
		{"a malformed dsn keeps its password to itself", config.RawSource{"kind": "postgres", "dsn": "postgres://u:s3cret@127.0.0.1:notaport/db"}, "not a valid PostgreSQL connection string", false},
		{"the simple protocol", config.RawSource{"kind": "postgres", "dsn": "default_query_exec_mode=simple_protocol"}, "simple_protocol", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needsDB {
				if base == "" {
					t.Skip("set WARDEN_TEST_POSTGRES_URL (such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the PostgreSQL tests")
				}
				k, v, _ := strings.Cut(tt.settings["dsn"].(string), "=")
				tt.settings["dsn"] = withParam(t, base, k, v)
			}
			src, err := openDB(context.Background(), "crm", tt.settings, &config.Config{})
			if err == nil {
				src.Close()
				t.Fatalf("Open succeeded, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Open: %v, want an error containing %q and no password", err, tt.wantErr)
			}
		})
	}
}

// Statements other than queries and data changes are refused before they
// reach the database, in either mode.
func TestPostgresRefusesOtherStatementKinds(t *testing.T) {
	d := newPostgres(t, nil)
	for _, stmt := range []string{"DROP TABLE customers", "COPY customers TO STDOUT", "DO $$ BEGIN END $$", "SET ROLE postgres", "CALL p()"} {
		for _, mode := range []pipeline.Mode{pipeline.Read, pipeline.Write} {
			_, err := d.src.Prepare(context.Background(), &Operation{Name: "x", Statement: stmt, Mode: mode, MaxRows: 1})
			if err == nil || !strings.Contains(err.Error(), "a tool runs a query or a data change") {
				t.Errorf("Prepare(%q, %s) = %v, want a refusal", stmt, mode, err)
			}
		}
	}
}
