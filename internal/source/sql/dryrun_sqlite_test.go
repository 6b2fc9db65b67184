package sql

import (
	"context"
	dbsql "database/sql"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardenmcp/warden/pipeline"
)

// sqliteOrders adds orders, which belong to customers and go when they go;
// notes, whose reference to a customer is checked only at COMMIT; and a
// full-text index.
const sqliteOrders = `
CREATE TABLE orders (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	customer_id TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
	total       REAL NOT NULL,
	placed      DATE NOT NULL DEFAULT '2024-01-02',
	receipt     BLOB
);
INSERT INTO orders (customer_id, total, receipt) VALUES ('C-1', 10, x'00ff'), ('C-1', 20.5, NULL), ('C-2', 5, NULL);
CREATE TABLE notes (
	id          INTEGER PRIMARY KEY,
	customer_id TEXT REFERENCES customers (id) DEFERRABLE INITIALLY DEFERRED
);
CREATE VIRTUAL TABLE docs USING fts5 (body);
`

// newSQLiteOrders is newSQLite with orders and notes.
func newSQLiteOrders(t *testing.T) *sqliteDB {
	t.Helper()
	db := newSQLite(t)
	conn, err := dbsql.Open("sqlite", db.path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Exec(sqliteOrders); err != nil {
		t.Fatal(err)
	}
	return db
}

// dump returns every row of every table, sqlite_sequence and the
// full-text index's included, sorted, read through a connection of its
// own.
func (d *sqliteDB) dump(t *testing.T) string {
	t.Helper()
	db, err := dbsql.Open("sqlite", "file:"+d.path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tables []string
	rows, err := db.Query("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		rows.Scan(&name)
		tables = append(tables, name)
	}
	rows.Close()
	var lines []string
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("%s %v", table, vals))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestSQLiteDryRun(t *testing.T) {
	tests := []dryRunCase{
		{
			name: "update of two rows", stmt: "UPDATE customers SET score = score + :by WHERE score >= :min",
			params: []string{"by", "min"}, args: map[string]any{"by": 1.0, "min": 40.0}, wantAffected: 2,
			wantChanges: `update customers "C-4" score: 40 -> 41
update customers "C-5" score: 50 -> 51`,
		},
		{
			name: "insert with generated values", stmt: "INSERT INTO orders (customer_id, total) VALUES (:customer, :total)",
			params: []string{"customer", "total"}, args: map[string]any{"customer": "C-3", "total": 7.25}, wantAffected: 1,
			wantChanges: `insert orders {"customer_id":"C-3","id":4,"placed":"2024-01-02T00:00:00Z","receipt":null,"total":7.25}`,
		},
		{
			name: "delete with what cascades from it", stmt: "DELETE FROM customers WHERE id = :id",
			params: []string{"id"}, args: map[string]any{"id": "C-1"}, wantAffected: 1,
			wantChanges: `delete customers {"balance":12.5,"email":"ada@example.com","id":"C-1","name":"Ada Lovelace","score":10,"vip":1}
delete orders {"customer_id":"C-1","id":1,"placed":"2024-01-02T00:00:00Z","receipt":"AP8=","total":10}
delete orders {"customer_id":"C-1","id":2,"placed":"2024-01-02T00:00:00Z","receipt":null,"total":20.5}`,
		},
		{
			name: "replace shows the row it deletes", stmt: "INSERT OR REPLACE INTO customers (id, name, email, score) VALUES (:id, :name, :email, 0)",
			params: []string{"email", "id", "name"}, args: map[string]any{"id": "C-2", "name": "Alan M. Turing", "email": "alan@example.com"},
			wantAffected: 1,
			wantChanges: `delete customers {"balance":0,"email":"alan@example.com","id":"C-2","name":"Alan Turing","score":20,"vip":0}
delete orders {"customer_id":"C-2","id":3,"placed":"2024-01-02T00:00:00Z","receipt":null,"total":5}
insert customers {"balance":null,"email":"alan@example.com","id":"C-2","name":"Alan M. Turing","score":0,"vip":0}`,
		},
		{
			name: "update that matches nothing", stmt: "UPDATE customers SET score = 0 WHERE id = :id",
			params: []string{"id"}, args: map[string]any{"id": "C-404"}, wantAffected: 0,
		},
		{
			name: "returning counts as the real run does", stmt: "UPDATE customers SET vip = 1 WHERE vip = 0 RETURNING id",
			wantAffected: 3,
			wantChanges: `update customers "C-2" vip: 0 -> 1
update customers "C-4" vip: 0 -> 1
update customers "C-5" vip: 0 -> 1`,
		},
		{
			name: "with query", stmt: "WITH big AS (SELECT id FROM customers WHERE score > :min) DELETE FROM orders WHERE customer_id IN (SELECT id FROM big)",
			params: []string{"min"}, args: map[string]any{"min": 15.0}, wantAffected: 1,
			wantChanges: `delete orders {"customer_id":"C-2","id":3,"placed":"2024-01-02T00:00:00Z","receipt":null,"total":5}`,
		},
		{
			name: "a full-text index: count only", stmt: "INSERT INTO docs (body) VALUES (:body)",
			params: []string{"body"}, args: map[string]any{"body": "the analytical engine"}, wantAffected: 1,
			wantNote: "SQLite counts 1 affected rows but only 0 row changes could be seen",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newSQLiteOrders(t)
			testDryRun(t, db.src, tt, func() string { return db.dump(t) })
		})
	}
}

func TestSQLiteDryRunTruncates(t *testing.T) {
	db := newSQLiteOrders(t)
	st := mustPrepare(t, db.src, &Operation{
		Name: "add_orders", Mode: pipeline.Write, MaxRows: 10, Params: []string{"n"},
		Statement: `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :n)
			INSERT INTO orders (customer_id, total) SELECT 'C-5', i FROM n`,
	})
	for _, tt := range []struct {
		n             int
		wantTruncated bool
	}{{maxChanges, false}, {maxChanges + 1, true}, {1000, true}} {
		eff, err := mustDryRunner(t, st).DryRun(context.Background(), map[string]any{"n": float64(tt.n)})
		if err != nil {
			t.Fatalf("DryRun: %v", err)
		}
		if eff.RowsAffected != int64(tt.n) || len(eff.Changes) != maxChanges || eff.Truncated != tt.wantTruncated {
			t.Errorf("%d rows: RowsAffected %d, %d changes, Truncated %v; want %d, %d, %v",
				tt.n, eff.RowsAffected, len(eff.Changes), eff.Truncated, tt.n, maxChanges, tt.wantTruncated)
		}
		if last := eff.Changes[len(eff.Changes)-1].After["total"]; last != float64(maxChanges) {
			t.Errorf("%d rows: the last change shown has total %v, want the %dth row's", tt.n, last, maxChanges)
		}
	}
	if n := strings.Count(db.dump(t), "\norders ["); n != 3 {
		t.Errorf("orders has %d rows afterwards, want 3", n)
	}
}

// A dry run of a write that would fail fails with the error the real run
// returns, deferred constraints included, and leaves nothing behind.
func TestSQLiteDryRunConstraintViolation(t *testing.T) {
	db := newSQLiteOrders(t)
	tests := []struct {
		name, stmt string
		params     []string
		args       map[string]any
	}{
		{"duplicate primary key", "INSERT INTO customers (id, name, email, score) VALUES (:id, 'Again', 'again@example.com', 1)",
			[]string{"id"}, map[string]any{"id": "C-1"}},
		{"duplicate unique value", "UPDATE customers SET email = :email WHERE id = 'C-2'",
			[]string{"email"}, map[string]any{"email": "ada@example.com"}},
		{"check constraint", "UPDATE customers SET score = score - :by", []string{"by"}, map[string]any{"by": 15.0}},
		{"missing reference", "INSERT INTO orders (customer_id, total) VALUES (:id, 1)", []string{"id"}, map[string]any{"id": "C-404"}},
		{"reference checked at commit", "INSERT INTO notes (customer_id) VALUES (:id)", []string{"id"}, map[string]any{"id": "C-404"}},
	}
	before := db.dump(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := mustPrepare(t, db.src, &Operation{Name: "change", Statement: tt.stmt, Mode: pipeline.Write, MaxRows: 1, Params: tt.params})
			eff, dryErr := mustDryRunner(t, st).DryRun(context.Background(), tt.args)
			_, runErr := st.Run(context.Background(), tt.args)
			if codeOf(runErr) != pipeline.InvalidArgument {
				t.Fatalf("Run: %v, want %s", runErr, pipeline.InvalidArgument)
			}
			if dryErr == nil || dryErr.Error() != runErr.Error() {
				t.Errorf("DryRun = %+v, %v; want the real run's error, %v", eff, dryErr, runErr)
			}
			if after := db.dump(t); after != before {
				t.Errorf("the data changed:\n%s", after)
			}
		})
	}
}

// A dry run that is cancelled, before or while its statement runs, fails
// and leaves nothing behind, and the writer connection serves the next
// write.
func TestSQLiteDryRunCancelled(t *testing.T) {
	db := newSQLiteOrders(t)
	endless := mustPrepare(t, db.src, &Operation{
		Name: "add_orders", Mode: pipeline.Write, MaxRows: 10,
		Statement: `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)
			INSERT INTO orders (customer_id, total) SELECT 'C-5', i FROM n`,
	})
	bump := mustPrepare(t, db.src, &Operation{
		Name: "bump", Mode: pipeline.Write, MaxRows: 10, Statement: "UPDATE customers SET score = score + 1 WHERE id = 'C-1'",
	})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	midway, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	before := db.dump(t)
	for name, ctx := range map[string]context.Context{"before it starts": cancelled, "while it runs": midway} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			eff, err := mustDryRunner(t, endless).DryRun(ctx, nil)
			if err == nil {
				t.Fatalf("DryRun = %+v, want an error", eff)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("the dry run took %s: it was not interrupted", d)
			}
			if after := db.dump(t); after != before {
				t.Errorf("the data changed:\n%s", after)
			}
		})
	}
	res, err := bump.Run(context.Background(), nil)
	if err != nil || res.RowsAffected != 1 {
		t.Fatalf("a write after the cancelled dry runs = %+v, %v; want 1 row affected", res, err)
	}
	if !strings.Contains(db.dump(t), "C-1 Ada Lovelace ada@example.com 11") {
		t.Errorf("the write after the cancelled dry runs did not persist:\n%s", db.dump(t))
	}
}

// A real run after a dry run behaves as if there had been none: it
// commits, and the writer connection holds no temporary objects.
func TestSQLiteDryRunThenRun(t *testing.T) {
	db := newSQLiteOrders(t)
	st := mustPrepare(t, db.src, &Operation{
		Name: "drop_customer", Mode: pipeline.Write, MaxRows: 10, Params: []string{"id"}, Statement: "DELETE FROM customers WHERE id = :id",
	})
	args := map[string]any{"id": "C-1"}
	eff, err := mustDryRunner(t, st).DryRun(context.Background(), args)
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.Run(context.Background(), args)
	if err != nil {
		t.Fatalf("Run after DryRun: %v", err)
	}
	if res.RowsAffected != eff.RowsAffected {
		t.Errorf("Run affected %d rows, the dry run said %d", res.RowsAffected, eff.RowsAffected)
	}
	if got := db.dump(t); strings.Contains(got, "C-1") {
		t.Errorf("C-1 and its orders remain after the real run:\n%s", got)
	}
	var temp int
	if err := db.src.(*sqliteSource).rw.QueryRow("SELECT count(*) FROM sqlite_temp_master").Scan(&temp); err != nil || temp != 0 {
		t.Errorf("the writer connection holds %d temporary objects (%v), want none", temp, err)
	}
}

// Dry runs and real runs at once: only the real ones count.
func TestSQLiteDryRunConcurrent(t *testing.T) {
	db := newSQLiteOrders(t)
	st := mustPrepare(t, db.src, &Operation{
		Name: "bump", Mode: pipeline.Write, MaxRows: 10, Statement: "UPDATE customers SET score = score + 1 WHERE id = 'C-1'",
	})
	dr := mustDryRunner(t, st)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 8 {
		wg.Go(func() {
			_, err := st.Run(context.Background(), nil)
			errs <- err
		})
		wg.Go(func() {
			_, err := dr.DryRun(context.Background(), nil)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := db.dump(t); !strings.Contains(got, "C-1 Ada Lovelace ada@example.com 18") {
		t.Errorf("want C-1's score at 18 after 8 real runs:\n%s", got)
	}
}

// A dry run's values read as the table's rows do through a read tool.
func TestSQLiteDryRunValuesReadLikeQueries(t *testing.T) {
	db := newSQLiteOrders(t)
	read := mustPrepare(t, db.src, &Operation{Name: "order", Statement: "SELECT * FROM orders WHERE id = 1", MaxRows: 1})
	del := mustPrepare(t, db.src, &Operation{Name: "drop_order", Statement: "DELETE FROM orders WHERE id = 1", Mode: pipeline.Write, MaxRows: 1})
	if _, ok := read.(DryRunner); ok {
		t.Error("a read statement offers a dry run")
	}
	res, err := read.Run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	eff, err := mustDryRunner(t, del).DryRun(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(eff.Changes) != 1 {
		t.Fatalf("changes %+v, want one", eff.Changes)
	}
	if got, want := jsonString(t, eff.Changes[0].Before), jsonString(t, res.Rows[0]); got != want {
		t.Errorf("before values %s; the query reads %s", got, want)
	}
}
