package sql

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/pipeline"
)

// postgresOrders adds orders, which belong to customers and go when they
// go; notes, whose reference to a customer is checked only at COMMIT; a
// view; and a partitioned table.
const postgresOrders = `
CREATE TABLE orders (
	id          serial PRIMARY KEY,
	customer_id text NOT NULL REFERENCES customers ON DELETE CASCADE,
	total       numeric(10, 2) NOT NULL,
	placed      date NOT NULL DEFAULT '2024-01-02',
	receipt     bytea
);
INSERT INTO orders (customer_id, total, receipt) VALUES ('C-1', 10, '\x00ff'), ('C-1', 20.5, NULL), ('C-2', 5, NULL);
CREATE TABLE notes (
	id          serial PRIMARY KEY,
	customer_id text REFERENCES customers DEFERRABLE INITIALLY DEFERRED
);
CREATE VIEW big_customers AS SELECT * FROM customers WHERE score >= 40;
CREATE TABLE events (id integer, kind text, PRIMARY KEY (id, kind)) PARTITION BY LIST (kind);
CREATE TABLE events_a PARTITION OF events FOR VALUES IN ('a');
CREATE TABLE events_b PARTITION OF events FOR VALUES IN ('b');
INSERT INTO events VALUES (1, 'a'), (2, 'b');
`

func newPostgresOrders(t *testing.T, extra map[string]any) *postgresDB {
	t.Helper()
	d := newPostgres(t, extra)
	if _, err := d.admin.Exec(context.Background(), postgresOrders); err != nil {
		t.Fatal(err)
	}
	return d
}

// dump returns every row of every table, read by the admin connection.
func (d *postgresDB) dump(t *testing.T) string {
	t.Helper()
	var s string
	err := d.admin.QueryRow(context.Background(), `SELECT concat_ws(E'\n',
		(SELECT string_agg('customers ' || c::text, E'\n' ORDER BY c.id) FROM customers c),
		(SELECT string_agg('orders ' || o::text, E'\n' ORDER BY o.id) FROM orders o),
		(SELECT string_agg('notes ' || n::text, E'\n' ORDER BY n.id) FROM notes n),
		(SELECT string_agg('events ' || e::text, E'\n' ORDER BY e.id) FROM events e))`).Scan(&s)
	if err != nil {
		t.Fatalf("reading the tables back: %v", err)
	}
	return s
}

// triggers counts the triggers on the test schema's tables: a dry run's
// must be gone once it ends.
func (d *postgresDB) triggers(t *testing.T) int {
	t.Helper()
	var n int
	err := d.admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
		WHERE c.relnamespace = current_schema()::regnamespace AND NOT g.tgisinternal`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPostgresDryRun(t *testing.T) {
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
			wantChanges: `insert orders {"customer_id":"C-3","id":4,"placed":"2024-01-02","receipt":null,"total":7.25}`,
			wantNote:    "used up by the dry run: a real run draws new ones.",
		},
		{
			name: "delete with what cascades from it", stmt: "DELETE FROM customers WHERE id = :id",
			params: []string{"id"}, args: map[string]any{"id": "C-1"}, wantAffected: 1,
			wantChanges: `delete customers {"balance":12.50,"born":"1815-12-10","email":"ada@example.com","id":"C-1","name":"Ada Lovelace","score":10,"seen_at":"2024-03-01T08:30:00Z","vip":true}`,
			wantNote:    "Other tables change too (through triggers, foreign-key actions or WITH queries), and their rows are not shown: orders (2 deleted).",
		},
		{
			name: "update that matches nothing", stmt: "UPDATE customers SET score = 0 WHERE id = :id",
			params: []string{"id"}, args: map[string]any{"id": "C-404"}, wantAffected: 0,
		},
		{
			name: "returning counts as the real run does", stmt: "UPDATE customers SET vip = true WHERE NOT vip RETURNING id",
			wantAffected: 3,
			wantChanges: `update customers "C-2" vip: false -> true
update customers "C-4" vip: false -> true
update customers "C-5" vip: false -> true`,
		},
		{
			name: "data-modifying with query",
			stmt: `WITH gone AS (DELETE FROM orders WHERE customer_id = :id RETURNING customer_id)
				UPDATE customers SET score = 0 WHERE id IN (SELECT customer_id FROM gone)`,
			params: []string{"id"}, args: map[string]any{"id": "C-1"}, wantAffected: 1,
			wantChanges: `update customers "C-1" score: 10 -> 0`,
			wantNote:    "orders (2 deleted)",
		},
		{
			name: "rows moving between partitions", stmt: "UPDATE events SET kind = 'b' WHERE kind = 'a'", wantAffected: 1,
			wantChanges: `delete events_a {"id":1,"kind":"a"}
insert events_b {"id":1,"kind":"b"}`,
		},
		{
			name: "a view: counts only", stmt: "UPDATE big_customers SET score = score + 1", wantAffected: 2,
			wantNote: "Before and after values were not captured: the statement writes to big_customers, which is not a table (a view, say). Rows changed: customers (2 updated).",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newPostgresOrders(t, nil)
			testDryRun(t, d.src, tt, func() string { return d.dump(t) })
			if n := d.triggers(t); n != 0 {
				t.Errorf("%d triggers remain after the dry run", n)
			}
		})
	}
}

func TestPostgresDryRunTruncates(t *testing.T) {
	d := newPostgresOrders(t, nil)
	st := mustPrepare(t, d.src, &Operation{
		Name: "add_orders", Mode: pipeline.Write, MaxRows: 10, Params: []string{"n"},
		Statement: "INSERT INTO orders (customer_id, total) SELECT 'C-5', i FROM generate_series(1, :n) i",
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
	}
	if n := d.count(t); n != 5 {
		t.Errorf("customers has %d rows afterwards, want 5", n)
	}
	if got := strings.Count(d.dump(t), "orders ("); got != 3 {
		t.Errorf("orders has %d rows afterwards, want 3", got)
	}
}

// A dry run of a write that would fail fails with the error the real run
// returns, deferred constraints included, and leaves nothing behind.
func TestPostgresDryRunConstraintViolation(t *testing.T) {
	d := newPostgresOrders(t, nil)
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
	before := d.dump(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := mustPrepare(t, d.src, &Operation{Name: "change", Statement: tt.stmt, Mode: pipeline.Write, MaxRows: 1, Params: tt.params})
			eff, dryErr := mustDryRunner(t, st).DryRun(context.Background(), tt.args)
			_, runErr := st.Run(context.Background(), tt.args)
			if codeOf(runErr) != pipeline.InvalidArgument {
				t.Fatalf("Run: %v, want %s", runErr, pipeline.InvalidArgument)
			}
			if dryErr == nil || dryErr.Error() != runErr.Error() {
				t.Errorf("DryRun = %+v, %v; want the real run's error, %v", eff, dryErr, runErr)
			}
			if after := d.dump(t); after != before {
				t.Errorf("the data changed:\n%s", after)
			}
		})
	}
}

// A dry run that is cancelled, before or while its statement runs, fails
// and leaves nothing behind, and the pool serves the next write.
func TestPostgresDryRunCancelled(t *testing.T) {
	d := newPostgresOrders(t, map[string]any{"max_conns": 1})
	slow := mustPrepare(t, d.src, &Operation{
		Name: "slow_bump", Mode: pipeline.Write, MaxRows: 10,
		Statement: "UPDATE customers SET score = score + 1 WHERE id = 'C-1' OR id = (SELECT 'C-2' FROM pg_sleep(5))",
	})
	bump := mustPrepare(t, d.src, &Operation{
		Name: "bump", Mode: pipeline.Write, MaxRows: 10, Statement: "UPDATE customers SET score = score + 1 WHERE id = 'C-1'",
	})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	midway, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	before := d.dump(t)
	for _, tc := range []struct {
		name string
		ctx  context.Context
	}{{"before it starts", cancelled}, {"while it runs", midway}} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			eff, err := mustDryRunner(t, slow).DryRun(tc.ctx, nil)
			if err == nil {
				t.Fatalf("DryRun = %+v, want an error", eff)
			}
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("the dry run took %s: it was not interrupted", d)
			}
			if after := d.dump(t); after != before {
				t.Errorf("the data changed:\n%s", after)
			}
			if n := d.triggers(t); n != 0 {
				t.Errorf("%d triggers remain after the dry run", n)
			}
		})
	}
	res, err := bump.Run(context.Background(), nil)
	if err != nil || res.RowsAffected != 1 {
		t.Fatalf("a write after the cancelled dry runs = %+v, %v; want 1 row affected", res, err)
	}
	if !strings.Contains(d.dump(t), "(C-1,\"Ada Lovelace\",ada@example.com,11,") {
		t.Errorf("the write after the cancelled dry runs did not persist:\n%s", d.dump(t))
	}
}

// A real run after a dry run, on the same pooled connection, behaves as if
// there had been none: no trigger of the dry run's fires, and it commits.
func TestPostgresDryRunThenRun(t *testing.T) {
	d := newPostgresOrders(t, map[string]any{"max_conns": 1})
	st := mustPrepare(t, d.src, &Operation{
		Name: "bump", Mode: pipeline.Write, MaxRows: 10, Params: []string{"min"},
		Statement: "UPDATE customers SET score = score + 1 WHERE score >= :min",
	})
	args := map[string]any{"min": 40.0}
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
	if got := d.dump(t); !strings.Contains(got, ",41,") || !strings.Contains(got, ",51,") {
		t.Errorf("the real run's changes are missing:\n%s", got)
	}
	// A second dry run finds none of the first one's objects in its way.
	if _, err := mustDryRunner(t, st).DryRun(context.Background(), args); err != nil {
		t.Fatalf("a second DryRun: %v", err)
	}
	if n := d.triggers(t); n != 0 {
		t.Errorf("%d triggers remain after the dry runs", n)
	}
}

// Without the TRIGGER privilege, or while another transaction writes to
// the table, a dry run still tells the count, and says why it tells no
// more.
func TestPostgresDryRunWithoutTrigger(t *testing.T) {
	ctx := context.Background()
	d := newPostgresOrders(t, nil)
	var b [6]byte
	rand.Read(b[:])
	role := "warden_test_" + hex.EncodeToString(b[:])
	var schema string
	if err := d.admin.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT USAGE ON SCHEMA " + schema + " TO " + role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + schema + " TO " + role,
	} {
		if _, err := d.admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, q := range []string{"DROP OWNED BY " + role, "DROP ROLE " + role} {
			if _, err := d.admin.Exec(context.Background(), q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
	limited, err := openDB(ctx, "crm", config.RawSource{"kind": "postgres", "dsn": withParam(t, d.dsn, "user", role)}, &config.Config{})
	if err != nil {
		t.Fatalf("opening the source as %s: %v", role, err)
	}
	t.Cleanup(func() { limited.Close() })

	update := dryRunCase{
		stmt: "UPDATE customers SET score = score + :by WHERE score >= :min", params: []string{"by", "min"},
		args: map[string]any{"by": 1.0, "min": 40.0}, wantAffected: 2,
	}
	t.Run("no privilege", func(t *testing.T) {
		tt := update
		tt.wantNote = "Before and after values were not captured: the database role lacks TRIGGER on customers or TEMPORARY on the database (permission denied for table customers). Rows changed: customers (2 updated)."
		testDryRun(t, limited, tt, func() string { return d.dump(t) })
	})
	t.Run("table busy", func(t *testing.T) {
		other, err := d.admin.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Rollback(ctx)
		if _, err := other.Exec(ctx, "LOCK TABLE customers IN ROW EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		tt := update
		tt.wantNote = "Before and after values were not captured: another transaction was writing to customers and the dry run did not wait for it. Rows changed: customers (2 updated)."
		testDryRun(t, d.src, tt, func() string { return d.dump(t) })
	})
}

// A dry run's values read as the table's rows do through a read tool.
func TestPostgresDryRunValuesReadLikeQueries(t *testing.T) {
	d := newPostgresOrders(t, nil)
	for _, table := range []string{"customers", "orders"} {
		read := mustPrepare(t, d.src, &Operation{Name: "row", Statement: "SELECT * FROM " + table + " WHERE id::text IN ('C-1', '1')", MaxRows: 1})
		del := mustPrepare(t, d.src, &Operation{
			Name: "drop_row", Statement: "DELETE FROM " + table + " WHERE id::text IN ('C-1', '1')", Mode: pipeline.Write, MaxRows: 1,
		})
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
		if len(eff.Changes) != 1 || len(res.Rows) != 1 {
			t.Fatalf("%s: changes %+v and rows %+v, want one of each", table, eff.Changes, res.Rows)
		}
		if got, want := jsonString(t, eff.Changes[0].Before), jsonString(t, res.Rows[0]); got != want {
			t.Errorf("%s: before values %s; the query reads %s", table, got, want)
		}
	}
}
