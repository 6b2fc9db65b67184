package sql

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestCompile(t *testing.T) {
	tests := []struct {
		name      string
		stmt      string
		sqlite    string // the SQLite rewrite; "" if the case is PostgreSQL only
		postgres  string // the PostgreSQL rewrite; "" if the case is SQLite only
		params    []string
		returning bool
	}{
		{
			name:     "params in order of first use",
			stmt:     "SELECT * FROM t WHERE a = :a AND b = :b_2",
			sqlite:   "SELECT * FROM t WHERE a = ?1 AND b = ?2",
			postgres: "SELECT * FROM t WHERE a = $1 AND b = $2",
			params:   []string{"a", "b_2"},
		},
		{
			name:     "a repeated name reuses its index",
			stmt:     "SELECT * FROM t WHERE (:status IS NULL OR status = :status) AND id = :id LIMIT :n",
			sqlite:   "SELECT * FROM t WHERE (?1 IS NULL OR status = ?1) AND id = ?2 LIMIT ?3",
			postgres: "SELECT * FROM t WHERE ($1 IS NULL OR status = $1) AND id = $2 LIMIT $3",
			params:   []string{"status", "id", "n"},
		},
		{
			name:     "casts are not parameters",
			stmt:     "SELECT :id::int, x::text FROM t",
			postgres: "SELECT $1::int, x::text FROM t",
			params:   []string{"id"},
		},
		{
			name:     "string literals with doubled quotes are left alone",
			stmt:     "SELECT 'it''s :fake', :real, '' FROM t",
			sqlite:   "SELECT 'it''s :fake', ?1, '' FROM t",
			postgres: "SELECT 'it''s :fake', $1, '' FROM t",
			params:   []string{"real"},
		},
		{
			name:     "quoted identifiers are left alone",
			stmt:     `SELECT "col:fake", "a""b:fake" FROM t WHERE x = :x`,
			sqlite:   `SELECT "col:fake", "a""b:fake" FROM t WHERE x = ?1`,
			postgres: `SELECT "col:fake", "a""b:fake" FROM t WHERE x = $1`,
			params:   []string{"x"},
		},
		{
			name:     "comments are left alone",
			stmt:     "SELECT a -- :fake ; DELETE\nFROM t /* :fake; ' */ WHERE a = :a",
			sqlite:   "SELECT a -- :fake ; DELETE\nFROM t /* :fake; ' */ WHERE a = ?1",
			postgres: "SELECT a -- :fake ; DELETE\nFROM t /* :fake; ' */ WHERE a = $1",
			params:   []string{"a"},
		},
		{
			name:     "dollar-quoted bodies are left alone",
			stmt:     "SELECT $$ :fake; ' $$, $fn$ :fake $$ $fn$, :real",
			postgres: "SELECT $$ :fake; ' $$, $fn$ :fake $$ $fn$, $1",
			params:   []string{"real"},
		},
		{
			name:     "escape strings end where PostgreSQL ends them",
			stmt:     `SELECT E'it\'s :fake; \\', :real`,
			postgres: `SELECT E'it\'s :fake; \\', $1`,
			params:   []string{"real"},
		},
		{
			name:     "PostgreSQL block comments nest",
			stmt:     "SELECT /* a /* b */ :fake; */ :real",
			postgres: "SELECT /* a /* b */ :fake; */ $1",
			params:   []string{"real"},
		},
		{
			name:     "PostgreSQL identifiers may contain $",
			stmt:     "SELECT a$1, b$x$ FROM t WHERE c = :c",
			postgres: "SELECT a$1, b$x$ FROM t WHERE c = $1",
			params:   []string{"c"},
		},
		{
			name:   "SQLite bracket and backtick identifiers are left alone",
			stmt:   "SELECT [a:fake;'], `b:fake;'` FROM t WHERE c = :c",
			sqlite: "SELECT [a:fake;'], `b:fake;'` FROM t WHERE c = ?1",
			params: []string{"c"},
		},
		{
			name:     "a trailing semicolon and comment are allowed",
			stmt:     "  SELECT :a ; -- done\n /* really */ ",
			sqlite:   "SELECT ?1  -- done\n /* really */",
			postgres: "SELECT $1  -- done\n /* really */",
			params:   []string{"a"},
		},
		{
			name:      "RETURNING is detected",
			stmt:      "DELETE FROM t WHERE id = :id Returning id",
			sqlite:    "DELETE FROM t WHERE id = ?1 Returning id",
			postgres:  "DELETE FROM t WHERE id = $1 Returning id",
			params:    []string{"id"},
			returning: true,
		},
		{
			name:     "returning inside quotes and as part of a word is not",
			stmt:     `UPDATE t SET note = 'returning', "returning" = 1, returning_at = :at`,
			sqlite:   `UPDATE t SET note = 'returning', "returning" = 1, returning_at = ?1`,
			postgres: `UPDATE t SET note = 'returning', "returning" = 1, returning_at = $1`,
			params:   []string{"at"},
		},
		{
			name:     "no parameters",
			stmt:     "SELECT count(*) FROM t",
			sqlite:   "SELECT count(*) FROM t",
			postgres: "SELECT count(*) FROM t",
		},
	}
	for _, tt := range tests {
		for _, d := range []struct {
			name string
			d    *dialect
			want string
		}{{"sqlite", sqliteDialect, tt.sqlite}, {"postgres", postgresDialect, tt.postgres}} {
			if d.want == "" {
				continue
			}
			t.Run(d.name+"/"+tt.name, func(t *testing.T) {
				c, err := compile(tt.stmt, d.d)
				if err != nil {
					t.Fatalf("compile(%q): %v", tt.stmt, err)
				}
				if c.query != d.want {
					t.Errorf("query:\n got %q\nwant %q", c.query, d.want)
				}
				if !slices.Equal(c.params, tt.params) {
					t.Errorf("params = %q, want %q", c.params, tt.params)
				}
				if c.returning != tt.returning {
					t.Errorf("returning = %v, want %v", c.returning, tt.returning)
				}
			})
		}
	}
}

func TestCompileRefuses(t *testing.T) {
	const both, sqliteOnly, postgresOnly = 0, 1, 2
	tests := []struct {
		name    string
		stmt    string
		in      int // which dialects refuse it
		wantErr string
	}{
		{"a second statement", "SELECT 1; DELETE FROM t", both, "single SQL statement"},
		{"a second statement after a comment", "SELECT 1; -- x\nDELETE FROM t", both, "single SQL statement"},
		{"a second statement after a string", "SELECT 'a;b'; DROP TABLE t", both, "single SQL statement"},
		{"two semicolons then a statement", "SELECT 1;; SELECT 2", both, "single SQL statement"},
		{"a positional ?", "SELECT * FROM t WHERE a = ?", both, "named parameters"},
		{"a numbered ?", "SELECT * FROM t WHERE a = ?1", both, "named parameters"},
		{"a positional $1", "SELECT * FROM t WHERE a = $1", both, "named parameters"},
		{"an SQLite @name", "SELECT * FROM t WHERE a = @a", sqliteOnly, "named parameters"},
		{"an SQLite $name", "SELECT * FROM t WHERE a = $a", sqliteOnly, "named parameters"},
		{"an unterminated string", "SELECT 'abc", both, "unterminated"},
		{"an unterminated identifier", `SELECT "abc`, both, "unterminated"},
		{"an unterminated comment", "SELECT 1 /* abc", both, "unterminated"},
		{"an unterminated nested comment", "SELECT 1 /* a /* b */", postgresOnly, "unterminated"},
		{"an unterminated dollar quote", "SELECT $x$ abc", postgresOnly, "unterminated"},
		{"an unterminated escape string", `SELECT E'abc\'`, postgresOnly, "unterminated"},
		{"an unterminated bracket", "SELECT [abc", sqliteOnly, "unterminated"},
		{"an empty statement", "  ", both, "empty"},
		{"only a semicolon", ";", both, "empty"},
		{"a NUL byte", "SELECT 1\x00; DELETE FROM t", both, "NUL"},
		// Each of these hides "; DELETE FROM t" from a scanner that does not
		// know the dialect's quoting rules.
		{"a bracket identifier holding a quote", "SELECT 1 AS [a'b]; DELETE FROM t; SELECT 1 AS [c'd]", sqliteOnly, "single SQL statement"},
		{"an SQLite $name that looks like a dollar quote", "SELECT $a$; DELETE FROM t; SELECT $a$", sqliteOnly, "named parameters"},
		{"an escape string holding a quote", `SELECT E'\''; DELETE FROM t; SELECT E'\''`, postgresOnly, "single SQL statement"},
	}
	for _, tt := range tests {
		for i, d := range []*dialect{sqliteDialect, postgresDialect} {
			if tt.in != both && tt.in != i+1 {
				continue
			}
			t.Run([]string{"sqlite", "postgres"}[i]+"/"+tt.name, func(t *testing.T) {
				c, err := compile(tt.stmt, d)
				if err == nil {
					t.Fatalf("compile(%q) = %q, want an error", tt.stmt, c.query)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("compile(%q): %v, want it to mention %q", tt.stmt, err, tt.wantErr)
				}
			})
		}
	}
}

// FuzzCompile checks that compile never panics and that what it accepts is
// fully rewritten: compiling its output again, with placeholders that
// cannot be mistaken for anything else, finds no parameter left and changes
// nothing.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		"SELECT * FROM t WHERE a = :a AND b = :b",
		"SELECT :id::int, 'it''s :x', \"q:x\" -- :c\n/* :d */ FROM t;",
		"SELECT $$ :x $$, $t$ :y $t$, E'\\':z', a$b FROM t WHERE c = :c",
		"SELECT [a:b], `c:d` FROM t WHERE e = :e RETURNING f",
		"SELECT /* /* :x */ */ :y",
		"SELECT 1; DELETE FROM t",
		"SELECT a:x, $:y, @:z, ::w, :::v",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stmt string) {
		for _, d := range []*dialect{sqliteDialect, postgresDialect} {
			neutral := &dialect{postgres: d.postgres, placeholder: func(i int) string { return "(_p" + strconv.Itoa(i) + ")" }}
			c, err := compile(stmt, neutral)
			if err != nil {
				continue
			}
			seen := map[string]bool{}
			for i, p := range c.params {
				if p == "" || seen[p] {
					t.Fatalf("compile(%q): params %q: empty or repeated name", stmt, c.params)
				}
				seen[p] = true
				if !strings.Contains(c.query, "(_p"+strconv.Itoa(i+1)+")") {
					t.Fatalf("compile(%q) = %q: no placeholder for %q", stmt, c.query, p)
				}
			}
			again, err := compile(c.query, neutral)
			if err != nil {
				t.Fatalf("compile(%q) = %q, which does not compile again: %v", stmt, c.query, err)
			}
			if len(again.params) > 0 || again.query != c.query {
				t.Fatalf("compile(%q) = %q, which still has parameters %q (again: %q)", stmt, c.query, again.params, again.query)
			}
		}
	})
}
