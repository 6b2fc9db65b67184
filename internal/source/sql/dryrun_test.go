package sql

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/pipeline"
)

func TestPostgresTarget(t *testing.T) {
	tests := []struct {
		stmt string
		want string // "" if the table cannot be told for certain
	}{
		{"INSERT INTO customers (id) VALUES ($1)", "customers"},
		{"insert into Customers values ($1)", "Customers"},
		{"UPDATE customers SET score = 1", "customers"},
		{"UPDATE ONLY customers SET score = 1", "customers"},
		{"UPDATE customers * SET score = 1", "customers"},
		{"DELETE FROM customers WHERE id = $1", "customers"},
		{"DELETE FROM ONLY crm.customers", "crm.customers"},
		{`DELETE FROM "Crm"."Customer ""Book"""`, `"Crm"."Customer ""Book"""`},
		{`UPDATE test.crm.customers SET score = 1`, "test.crm.customers"},
		{`UPDATE crm . customers SET score = 1`, "crm.customers"},
		{"INSERT INTO customers AS c (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET id = c.id", "customers"},
		{"/* who */ -- what\nUPDATE /* nested /* comment */ */ customers SET score = 1", "customers"},
		{"UPDATE cust$omers SET score = 1", "cust$omers"},
		{
			"WITH recent AS (SELECT id FROM orders WHERE note = ')' OR note = E'\\')' OR note = $x$)$x$) DELETE FROM customers WHERE id IN (SELECT id FROM recent)",
			"customers",
		},
		{
			`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10), "m" AS NOT MATERIALIZED (SELECT 2), k AS MATERIALIZED (SELECT 3) INSERT INTO orders SELECT i FROM n`,
			"orders",
		},
		{"WITH gone AS (DELETE FROM orders RETURNING customer_id) UPDATE customers SET score = 0 WHERE id IN (SELECT customer_id FROM gone)", "customers"},
		// Not read with certainty.
		{"WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SEARCH DEPTH FIRST BY n SET o DELETE FROM customers", ""},
		{`UPDATE U&"d\0061ta" SET x = 1`, ""},
		{"SELECT 1", ""},
		{"VALUES (1)", ""},
		{"INSERT customers VALUES (1)", ""},
		{"DELETE customers", ""},
		{"UPDATE", ""},
		{"WITH x AS (SELECT 1", ""},
		{"WITH x AS SELECT 1 DELETE FROM customers", ""},
		{"UPDATE 'customers' SET x = 1", ""},
	}
	for _, tt := range tests {
		got, ok := postgresTarget(tt.stmt)
		if ok != (tt.want != "") || got != tt.want {
			t.Errorf("postgresTarget(%q) = %q, %v; want %q", tt.stmt, got, ok, tt.want)
		}
	}
}

// describe renders changes for comparison, one line each: an insert with
// its new row, a delete with its old one, an update with the row's id and
// the columns it changes.
func describe(t *testing.T, changes []Change) string {
	t.Helper()
	var lines []string
	for _, c := range changes {
		switch c.Op {
		case "insert":
			if c.Before != nil {
				t.Errorf("an insert into %s has before values %v", c.Table, c.Before)
			}
			lines = append(lines, "insert "+c.Table+" "+jsonString(t, c.After))
		case "delete":
			if c.After != nil {
				t.Errorf("a delete from %s has after values %v", c.Table, c.After)
			}
			lines = append(lines, "delete "+c.Table+" "+jsonString(t, c.Before))
		case "update":
			var diff []string
			for col, v := range c.After {
				if old := jsonString(t, c.Before[col]); old != jsonString(t, v) {
					diff = append(diff, col+": "+old+" -> "+jsonString(t, v))
				}
			}
			sort.Strings(diff)
			lines = append(lines, "update "+c.Table+" "+jsonString(t, c.Before["id"])+" "+strings.Join(diff, ", "))
		default:
			t.Errorf("change %+v has op %q", c, c.Op)
		}
	}
	return strings.Join(lines, "\n")
}

func mustDryRunner(t *testing.T, st Statement) DryRunner {
	t.Helper()
	dr, ok := st.(DryRunner)
	if !ok {
		t.Fatalf("the write statement %T cannot be dry-run", st)
	}
	return dr
}

// dryRunCase is a write, to be dry-run against the customers and their
// orders, and what it would do.
type dryRunCase struct {
	name         string
	stmt         string
	params       []string
	args         map[string]any
	wantAffected int64
	wantChanges  string // as rendered by describe
	wantNote     string // a part of the Note; "" for no Note
}

// testDryRun dry-runs tt's statement on src, checks the effect it reports,
// and that dump, the whole of the data, is as it was.
func testDryRun(t *testing.T, src database, tt dryRunCase, dump func() string) {
	t.Helper()
	st := mustPrepare(t, src, &Operation{Name: "change", Statement: tt.stmt, Mode: pipeline.Write, MaxRows: 10, Params: tt.params})
	before := dump()
	eff, err := mustDryRunner(t, st).DryRun(context.Background(), tt.args)
	if err != nil {
		t.Fatalf("DryRun: %v", err)
	}
	if eff.RowsAffected != tt.wantAffected || eff.Truncated {
		t.Errorf("RowsAffected %d, Truncated %v; want %d, false", eff.RowsAffected, eff.Truncated, tt.wantAffected)
	}
	if got := describe(t, eff.Changes); got != tt.wantChanges {
		t.Errorf("changes:\n%s\nwant:\n%s", got, tt.wantChanges)
	}
	if tt.wantNote == "" && eff.Note != "" || !strings.Contains(eff.Note, tt.wantNote) {
		t.Errorf("Note %q; want one with %q", eff.Note, tt.wantNote)
	}
	if after := dump(); after != before {
		t.Errorf("the dry run changed the data:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
