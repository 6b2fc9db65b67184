package sql

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// postgresWrite is a prepared write statement, which can also be dry-run.
// Read statements are not: they change nothing.
type postgresWrite struct{ *postgresStatement }

var _ DryRunner = postgresWrite{}

// pgTriggerLockTimeout bounds the wait for the lock CREATE TRIGGER takes.
// While a dry run waits for it, behind a long transaction that writes to
// the table, every later writer queues behind the dry run: better to give
// up on the row images soon.
const pgTriggerLockTimeout = time.Second

// DryRun runs the write in a transaction it always rolls back. First it
// puts a temporary row trigger on the table the statement writes to, which
// copies each row's before and after values into a temporary table; all of
// it, trigger included, goes with the rollback, and no other session ever
// sees it.
//
// The trigger has a cost: CREATE TRIGGER locks the table in SHARE ROW
// EXCLUSIVE mode, so other writers to it (not readers) wait until the dry
// run ends, and it needs the TRIGGER privilege on the table. Whenever the
// trigger cannot be had, the dry run still runs the statement and reports
// its count, with a Note saying why the rows are missing.
//
// Rows that other tables gain or lose on the statement's behalf (through
// triggers, foreign-key actions or data-modifying WITH queries) are counted
// from the transaction's statistics and named in the Note, not listed: a
// trigger on each of them would lock them all.
func (w postgresWrite) DryRun(ctx context.Context, args map[string]any) (_ *Effect, err error) {
	defer func() {
		if err != nil {
			err = postgresError(ctx, err)
		}
	}()
	tx, err := w.src.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadWrite})
	if err != nil {
		return nil, err
	}
	// Deferred, so that it runs on every way out, a panic's included, and
	// without ctx's cancellation, so that a cancelled call still rolls
	// back. Should the rollback fail, pgx closes the connection, and the
	// server rolls back as it goes.
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := setStatementTimeout(ctx, tx); err != nil {
		return nil, err
	}
	capture, why, err := w.capture(ctx, tx)
	if err != nil {
		return nil, err
	}
	tag, err := tx.Exec(ctx, w.c.query, bindArgs(w.c.params, args)...)
	if err != nil {
		return nil, err
	}
	// Deferred constraints are checked at COMMIT, which a dry run never
	// reaches; making them immediate checks them now, failing as that
	// COMMIT would.
	if _, err := tx.Exec(ctx, "SET CONSTRAINTS ALL IMMEDIATE"); err != nil {
		return nil, err
	}

	eff := &Effect{RowsAffected: tag.RowsAffected()}
	exclude := []uint32{}
	if capture != nil {
		if err := capture.read(ctx, tx, eff); err != nil {
			return nil, err
		}
		exclude = capture.shown
	}
	counts, tracked, err := pgChangeCounts(ctx, tx, exclude)
	if err != nil {
		return nil, err
	}
	switch {
	case capture == nil && counts != "":
		eff.Note = joinNotes("Before and after values were not captured: "+why+".", "Rows changed: "+counts+".")
	case capture == nil:
		eff.Note = "Before and after values were not captured: " + why + "; only the count is known."
	case counts != "":
		eff.Note = "Other tables change too (through triggers, foreign-key actions or WITH queries), and their rows are not shown: " + counts + "."
	}
	if !tracked {
		eff.Note = joinNotes(eff.Note, "Whether other tables change too could not be checked: the server's track_counts setting is off.")
	}
	if capture != nil && capture.sequences && slices.ContainsFunc(eff.Changes, func(c Change) bool { return c.Op == "insert" }) {
		// Sequences are not transactional: the dry run's ids are gone.
		eff.Note = joinNotes(eff.Note, "Values drawn from sequences, such as generated ids, are used up by the dry run: a real run draws new ones.")
	}
	return eff, nil
}

// pgCapture is the trigger a dry run put on the table its statement
// writes to.
type pgCapture struct {
	table string   // schema-qualified and quoted, to name its row type
	shown []uint32 // the table, its partitions, and the capture's own table
	// sequences is set if the table owns sequences (serial or identity
	// columns), whose values an insert uses up, rollback or not.
	sequences bool
}

// capture puts the capture trigger on the statement's table, inside a
// savepoint, so that a failed attempt can be undone and the dry run carry
// on without it. If it cannot, why says so and the error is nil; an error
// means the transaction cannot go on.
func (w postgresWrite) capture(ctx context.Context, tx pgx.Tx) (_ *pgCapture, why string, _ error) {
	name, ok := postgresTarget(w.c.query)
	if !ok {
		return nil, "the table the statement writes to could not be told from its text", nil
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, "", err
	}
	c, err := installCapture(ctx, sp, name)
	if err == nil {
		return c, "", sp.Commit(ctx)
	}
	if ctx.Err() != nil {
		return nil, "", err
	}
	if err := sp.Rollback(ctx); err != nil {
		return nil, "", err
	}
	var refused noCapture
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &refused):
		return nil, string(refused), nil
	case errors.As(err, &pe) && pe.Code == "42501": // insufficient_privilege
		return nil, "the database role lacks TRIGGER on " + name + " or TEMPORARY on the database (" + pe.Message + ")", nil
	case errors.As(err, &pe) && pe.Code == "55P03": // lock_not_available
		return nil, "another transaction was writing to " + name + " and the dry run did not wait for it", nil
	case errors.As(err, &pe):
		return nil, "a trigger could not be created on " + name + ": " + pe.Message, nil
	}
	return nil, "", err
}

// noCapture is why the capture trigger cannot be put on a relation.
type noCapture string

func (n noCapture) Error() string { return string(n) }

// pgCaptureSQL creates the capture: a temporary table for the row images,
// a temporary sequence that counts every row change, and a trigger on %s
// that calls a temporary function to fill them. Every row is counted, only
// the first maxChanges are copied. to_jsonb keys the values by column name,
// so rows of any partition read back as the partitioned table's row type.
var pgCaptureSQL = `
CREATE TEMP SEQUENCE warden_dry_run_seq;
CREATE TEMP TABLE warden_dry_run_changes (seq bigint, relid oid, op text, before jsonb, after jsonb);
CREATE FUNCTION pg_temp.warden_dry_run_capture() RETURNS trigger LANGUAGE plpgsql AS $capture$
DECLARE
	n bigint := nextval('pg_temp.warden_dry_run_seq');
BEGIN
	IF n <= ` + strconv.Itoa(maxChanges) + ` THEN
		IF TG_OP = 'INSERT' THEN
			INSERT INTO pg_temp.warden_dry_run_changes VALUES (n, TG_RELID, 'insert', NULL, to_jsonb(NEW));
		ELSIF TG_OP = 'UPDATE' THEN
			INSERT INTO pg_temp.warden_dry_run_changes VALUES (n, TG_RELID, 'update', to_jsonb(OLD), to_jsonb(NEW));
		ELSE
			INSERT INTO pg_temp.warden_dry_run_changes VALUES (n, TG_RELID, 'delete', to_jsonb(OLD), NULL);
		END IF;
	END IF;
	RETURN NULL;
END
$capture$;
CREATE TRIGGER warden_dry_run AFTER INSERT OR UPDATE OR DELETE ON %s
	FOR EACH ROW EXECUTE FUNCTION pg_temp.warden_dry_run_capture();
`

func installCapture(ctx context.Context, tx pgx.Tx, name string) (*pgCapture, error) {
	var (
		c           pgCapture
		oid         uint32
		kind        string
		lockTimeout string
		parts       []uint32
	)
	// to_regclass resolves the name under the session's search_path,
	// exactly as the statement does.
	err := tx.QueryRow(ctx, `SELECT c.oid, c.relkind::text, format('%I.%I', n.nspname, c.relname),
			current_setting('lock_timeout'), ARRAY(SELECT relid::oid FROM pg_partition_tree(c.oid)),
			EXISTS (SELECT FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
				WHERE d.classid = 'pg_class'::regclass AND d.refobjid = c.oid AND s.relkind = 'S')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = to_regclass($1)`, name).Scan(&oid, &kind, &c.table, &lockTimeout, &parts, &c.sequences)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, noCapture("there is no table " + name)
	}
	if err != nil {
		return nil, err
	}
	if kind != "r" && kind != "p" { // an ordinary or a partitioned table
		return nil, noCapture("the statement writes to " + name + ", which is not a table (a view, say)")
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('lock_timeout', $1, true)", strconv.FormatInt(pgTriggerLockTimeout.Milliseconds(), 10)); err != nil {
		return nil, err
	}
	// Several statements in one round trip, which only the simple protocol
	// allows; c.table was quoted by the server, and nothing else varies.
	if _, err := tx.Exec(ctx, fmt.Sprintf(pgCaptureSQL, c.table), pgx.QueryExecModeSimpleProtocol); err != nil {
		return nil, err
	}
	var capTable uint32
	err = tx.QueryRow(ctx, "SELECT 'pg_temp.warden_dry_run_changes'::regclass::oid FROM set_config('lock_timeout', $1, true)",
		pgx.QueryExecModeDescribeExec, lockTimeout).Scan(&capTable)
	if err != nil {
		return nil, err
	}
	c.shown = append(append(parts, oid), capTable)
	return &c, nil
}

// read adds the captured rows to eff. Its queries are never cached as
// prepared statements: the temporary objects are new in every dry run, and
// the table's row type may have changed since the last.
func (c *pgCapture) read(ctx context.Context, tx pgx.Tx, eff *Effect) error {
	var total int64
	err := tx.QueryRow(ctx, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM pg_temp.warden_dry_run_seq",
		pgx.QueryExecModeDescribeExec).Scan(&total)
	if err != nil {
		return err
	}
	// Values go back through the table's row type, so that they come out
	// as the table's own rows do in a query's result. Every type's text
	// form survives jsonb unchanged, but json's: a json column's value
	// comes back normalised, as jsonb keeps it.
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT c.op, c.relid::regclass::text, b.*, a.*
		FROM pg_temp.warden_dry_run_changes c
		LEFT JOIN LATERAL jsonb_populate_record(NULL::%[1]s, c.before) b ON c.before IS NOT NULL
		LEFT JOIN LATERAL jsonb_populate_record(NULL::%[1]s, c.after) a ON c.after IS NOT NULL
		ORDER BY c.seq`, c.table), pgx.QueryExecModeDescribeExec)
	if err != nil {
		return err
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	n := (len(fields) - 2) / 2
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return err
		}
		op, _ := vals[0].(string)
		table, _ := vals[1].(string)
		ch := Change{Table: table, Op: op}
		if op != "insert" {
			ch.Before = pgImage(fields[2:2+n], vals[2:2+n])
		}
		if op != "delete" {
			ch.After = pgImage(fields[2+n:], vals[2+n:])
		}
		eff.Changes = append(eff.Changes, ch)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	eff.Truncated = total > int64(len(eff.Changes))
	return nil
}

func pgImage(fields []pgconn.FieldDescription, vals []any) map[string]any {
	row := make(map[string]any, len(vals))
	for i, v := range vals {
		row[fields[i].Name] = pgValue(v, fields[i].DataTypeOID)
	}
	return row
}

// pgChangeCounts describes the rows the transaction has changed in tables
// other than those in exclude, from its statistics, as in
// "orders (3 deleted); audit (1 inserted)". tracked is false if the server
// keeps no such statistics.
func pgChangeCounts(ctx context.Context, tx pgx.Tx, exclude []uint32) (desc string, tracked bool, _ error) {
	if err := tx.QueryRow(ctx, "SELECT current_setting('track_counts')::bool").Scan(&tracked); err != nil || !tracked {
		return "", false, err
	}
	rows, err := tx.Query(ctx, `SELECT relid::regclass::text, n_tup_ins, n_tup_upd, n_tup_del
		FROM pg_stat_xact_user_tables
		WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 AND relid <> ALL ($1::oid[])
		ORDER BY 1`, exclude)
	if err != nil {
		return "", true, err
	}
	defer rows.Close()
	var tables []string
	for rows.Next() {
		var name string
		var n [3]int64
		if err := rows.Scan(&name, &n[0], &n[1], &n[2]); err != nil {
			return "", true, err
		}
		var what []string
		for i, verb := range []string{"inserted", "updated", "deleted"} {
			if n[i] > 0 {
				what = append(what, fmt.Sprintf("%d %s", n[i], verb))
			}
		}
		tables = append(tables, name+" ("+strings.Join(what, ", ")+")")
	}
	return strings.Join(tables, "; "), true, rows.Err()
}

// postgresTarget returns the name of the table a data-changing statement
// writes to, as written (perhaps schema-qualified, perhaps quoted), for
// to_regclass to resolve. It reads only
//
//	[WITH [RECURSIVE] name [(columns)] AS [[NOT] MATERIALIZED] (query) [, ...]]
//	INSERT INTO name | UPDATE [ONLY] name | DELETE FROM [ONLY] name
//
// and reports !ok for anything else (a WITH query's SEARCH or CYCLE
// clause, a U&"" identifier), so that a dry run never watches the wrong
// table.
func postgresTarget(query string) (name string, ok bool) {
	sc := &pgScanner{s: query}
	word := sc.keyword()
	if word == "with" {
		if !sc.withQueries() {
			return "", false
		}
		word = sc.keyword()
	}
	switch word {
	case "insert":
		if sc.keyword() != "into" {
			return "", false
		}
	case "update":
		sc.optional("only")
	case "delete":
		if sc.keyword() != "from" {
			return "", false
		}
		sc.optional("only")
	default:
		return "", false
	}
	// Up to database.schema.table.
	var parts []string
	for {
		t := sc.next()
		if t.kind != pgWord && t.kind != pgQuoted {
			return "", false
		}
		if t.kind == pgWord && strings.EqualFold(t.text, "u") && sc.peek().text == "&" {
			return "", false
		}
		parts = append(parts, t.text)
		if sc.peek().text != "." || len(parts) == 3 {
			break
		}
		sc.next()
	}
	return strings.Join(parts, "."), true
}

// pgToken kinds.
const (
	pgEnd     = iota
	pgWord    // an identifier or keyword, as written
	pgQuoted  // a "quoted identifier", quotes included
	pgLiteral // a string or dollar-quoted body
	pgOther   // one byte of anything else
	pgBad     // an unterminated quote or comment
)

type pgToken struct {
	kind int
	text string
}

// pgScanner splits PostgreSQL text into tokens, skipping white space and
// comments, by the same lexical rules as compile.
type pgScanner struct {
	s string
	i int
}

func (sc *pgScanner) peek() pgToken {
	i := sc.i
	t := sc.next()
	sc.i = i
	return t
}

func (sc *pgScanner) next() pgToken {
	s := sc.s
	for sc.i < len(s) {
		switch i := sc.i; {
		case isSpace(s[i]):
			sc.i++
		case strings.HasPrefix(s[i:], "--"):
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				j = len(s) - i
			}
			sc.i += j
		case strings.HasPrefix(s[i:], "/*"):
			j := closeComment(s, i, true)
			if j < 0 {
				return pgToken{kind: pgBad}
			}
			sc.i = j
		case s[i] == '"' || s[i] == '\'':
			j := closeQuote(s, i, s[i], false)
			if j < 0 {
				return pgToken{kind: pgBad}
			}
			sc.i = j
			if s[i] == '"' {
				return pgToken{pgQuoted, s[i:j]}
			}
			return pgToken{pgLiteral, s[i:j]}
		case s[i] == '$' && dollarTag(s[i:]) != "":
			tag := dollarTag(s[i:])
			j := strings.Index(s[i+len(tag):], tag)
			if j < 0 {
				return pgToken{kind: pgBad}
			}
			sc.i = i + len(tag) + j + len(tag)
			return pgToken{pgLiteral, s[i:sc.i]}
		case isIdentStart(s[i]):
			j := i
			for j < len(s) && (isIdent(s[j]) || s[j] == '$') {
				j++
			}
			if (s[i:j] == "E" || s[i:j] == "e") && j < len(s) && s[j] == '\'' {
				// An escape string: a backslash escapes the next byte.
				k := closeQuote(s, j, '\'', true)
				if k < 0 {
					return pgToken{kind: pgBad}
				}
				sc.i = k
				return pgToken{pgLiteral, s[i:k]}
			}
			sc.i = j
			return pgToken{pgWord, s[i:j]}
		default:
			sc.i++
			return pgToken{pgOther, s[i : i+1]}
		}
	}
	return pgToken{kind: pgEnd}
}

// keyword returns the next token in lower case if it is a word, or "".
func (sc *pgScanner) keyword() string {
	if t := sc.next(); t.kind == pgWord {
		return strings.ToLower(t.text)
	}
	return ""
}

// optional consumes the next token if it is the keyword kw.
func (sc *pgScanner) optional(kw string) {
	if t := sc.peek(); t.kind == pgWord && strings.EqualFold(t.text, kw) {
		sc.next()
	}
}

// withQueries consumes the WITH queries that follow WITH, reporting
// whether they had the expected form.
func (sc *pgScanner) withQueries() bool {
	sc.optional("recursive")
	for {
		if t := sc.next(); t.kind != pgWord && t.kind != pgQuoted {
			return false
		}
		if sc.peek().text == "(" && !sc.parens() {
			return false
		}
		if sc.keyword() != "as" {
			return false
		}
		switch t := sc.peek(); {
		case t.kind == pgWord && strings.EqualFold(t.text, "not"):
			sc.next()
			if sc.keyword() != "materialized" {
				return false
			}
		case t.kind == pgWord && strings.EqualFold(t.text, "materialized"):
			sc.next()
		}
		if sc.peek().text != "(" || !sc.parens() {
			return false
		}
		if sc.peek().text != "," {
			return true
		}
		sc.next()
	}
}

// parens consumes a parenthesised group, nested groups included.
func (sc *pgScanner) parens() bool {
	depth := 0
	for {
		t := sc.next()
		switch {
		case t.kind == pgEnd || t.kind == pgBad:
			return false
		case t.kind == pgOther && t.text == "(":
			depth++
		case t.kind == pgOther && t.text == ")":
			depth--
			if depth == 0 {
				return true
			}
		}
	}
}

// joinNotes joins the sentences of an Effect's Note, skipping empty ones.
func joinNotes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, " ")
}
