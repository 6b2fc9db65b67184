package sql

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/source"
	"github.com/wardenmcp/warden/pipeline"
)

func init() { source.Register("postgres", openPostgres) }

type postgresSettings struct {
	Kind string `json:"kind"`
	// DSN is a libpq connection string or URL; use ${VAR} to keep the
	// password out of the file.
	DSN string `json:"dsn"`
	// MaxConns caps the pool; zero means 8.
	MaxConns int32 `json:"max_conns"`
}

type postgresSource struct {
	pool *pgxpool.Pool
}

func openPostgres(ctx context.Context, name string, raw config.RawSource, cfg *config.Config) (source.Source, error) {
	var s postgresSettings
	if err := decodeSettings(raw, &s); err != nil {
		return nil, err
	}
	if s.DSN == "" {
		return nil, errors.New("dsn: required (a PostgreSQL connection string)")
	}
	pc, err := pgxpool.ParseConfig(s.DSN)
	if err != nil {
		// The parse error may echo the DSN, password included; say less.
		return nil, errors.New("dsn: not a valid PostgreSQL connection string")
	}
	if pc.ConnConfig.DefaultQueryExecMode == pgx.QueryExecModeSimpleProtocol {
		// The simple protocol splices values into the text on the client and
		// lets one text carry several statements; Warden binds on the server.
		return nil, errors.New("dsn: default_query_exec_mode=simple_protocol is not supported: Warden binds every value on the server")
	}
	pc.MaxConns = 8
	if s.MaxConns > 0 {
		pc.MaxConns = s.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, err
	}
	src := &postgresSource{pool: pool}
	if err := src.Ready(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to %s: %w", pc.ConnConfig.Host, err)
	}
	return src, nil
}

func (s *postgresSource) Ready(ctx context.Context) error { return s.pool.Ping(ctx) }

func (s *postgresSource) Close() error { s.pool.Close(); return nil }

func (s *postgresSource) Prepare(ctx context.Context, op *Operation) (Statement, error) {
	c, err := compile(op.Statement, postgresDialect)
	if err != nil {
		return nil, err
	}
	if err := checkParams(c.params, op.Params); err != nil {
		return nil, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	// Preparing (without executing) checks the statement against the real
	// schema and describes its result columns.
	sd, err := conn.Conn().Prepare(ctx, "", c.query)
	if err != nil {
		return nil, fmt.Errorf("the database refused the statement: %w", err)
	}
	cols := make([]Column, len(sd.Fields))
	for i, f := range sd.Fields {
		cols[i] = Column{Name: f.Name, Type: pgJSONType(f.DataTypeOID)}
	}
	if cols, err = mergeDeclared(cols, op.Columns); err != nil {
		return nil, err
	}
	st := &postgresStatement{src: s, op: op, c: c, cols: cols, maxRows: maxRows(op)}
	if op.Mode == pipeline.Write {
		return postgresWrite{st}, nil
	}
	return st, nil
}

func pgJSONType(oid uint32) string {
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID:
		return "integer"
	case pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID:
		return "number"
	case pgtype.BoolOID:
		return "boolean"
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.UUIDOID, pgtype.DateOID,
		pgtype.TimestampOID, pgtype.TimestamptzOID, pgtype.ByteaOID, pgtype.NameOID:
		return "string"
	}
	return "any"
}

type postgresStatement struct {
	src     *postgresSource
	op      *Operation
	c       *compiled
	cols    []Column
	maxRows int
}

func (st *postgresStatement) Columns() []Column { return st.cols }

func (st *postgresStatement) Run(ctx context.Context, args map[string]any) (_ *Rows, err error) {
	defer func() {
		if err != nil {
			err = postgresError(ctx, err)
		}
	}()
	write := st.op.Mode == pipeline.Write
	mode := pgx.ReadOnly
	if write {
		mode = pgx.ReadWrite
	}
	tx, err := st.src.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: mode})
	if err != nil {
		return nil, err
	}
	// A read ends in a rollback, so that nothing it did (a SET, say)
	// outlives the call on the pooled connection.
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := setStatementTimeout(ctx, tx); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, st.c.query, bindArgs(st.c.params, args)...)
	if err != nil {
		return nil, err
	}
	out := &Rows{Rows: []map[string]any{}}
	fields := rows.FieldDescriptions()
	for rows.Next() {
		if len(out.Rows) == st.maxRows {
			out.Truncated = true
			break
		}
		vals, err := rows.Values()
		if err != nil {
			rows.Close()
			return nil, err
		}
		row := make(map[string]any, len(vals))
		for i, v := range vals {
			row[fields[i].Name] = pgValue(v, fields[i].DataTypeOID)
		}
		out.Rows = append(out.Rows, row)
	}
	// Close reads what is left, so the command tag counts every row.
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if write {
		out.RowsAffected = rows.CommandTag().RowsAffected()
		if err := tx.Commit(ctx); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// setStatementTimeout has the server enforce ctx's deadline too, so that a
// query keeps no backend busy after its caller gave up.
func setStatementTimeout(ctx context.Context, tx pgx.Tx) error {
	dl, ok := ctx.Deadline()
	if !ok {
		return nil
	}
	ms := max(time.Until(dl).Milliseconds(), 1)
	_, err := tx.Exec(ctx, "SELECT set_config('statement_timeout', $1, true)", strconv.FormatInt(ms, 10))
	return err
}

func pgValue(v any, oid uint32) any {
	switch x := v.(type) {
	case pgtype.Numeric:
		// Exact digits, as a JSON number; NaN and infinities have no JSON form.
		if !x.Valid || x.NaN || x.InfinityModifier != pgtype.Finite {
			return nil
		}
		b, err := x.MarshalJSON()
		if err != nil {
			return nil
		}
		return json.Number(b)
	case pgtype.InfinityModifier: // an infinite date or timestamp
		return x.String()
	case time.Time:
		if oid == pgtype.DateOID {
			return x.Format(time.DateOnly)
		}
	}
	return jsonValue(v)
}

// postgresError classifies a database error by SQLSTATE. An error caused
// by ctx ending is returned as ctx's error, for the execute stage to report
// as a timeout.
func postgresError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w (%v)", ctxErr, err)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		if pgconn.SafeToRetry(err) || errors.Is(err, pgx.ErrTxClosed) {
			return pipeline.Errorf(pipeline.Unavailable, "retry shortly", "the database connection failed").WithRetryAfter(time.Second)
		}
		return err
	}
	switch {
	case pe.Code == "25006": // read_only_sql_transaction
		return pipeline.Errorf(pipeline.PermissionDenied, "use a tool declared with mode: write for changes",
			"the database refused a write: this tool is read-only")
	case pe.Code == "57014": // query_canceled (statement_timeout)
		return pipeline.Errorf(pipeline.Timeout, "narrow the request or retry later", "the database cancelled the statement when its time ran out")
	case len(pe.Code) == 5 && pe.Code[:2] == "23": // integrity constraint violation
		return errConstraint()
	case len(pe.Code) == 5 && pe.Code[:2] == "22": // data exception
		return pipeline.Errorf(pipeline.InvalidArgument, "check the form of each value", "the database refused a value: %s", pe.Message)
	case len(pe.Code) == 5 && (pe.Code[:2] == "08" || pe.Code[:2] == "53" || pe.Code[:2] == "57"):
		return pipeline.Errorf(pipeline.Unavailable, "retry shortly", "the database is unavailable").WithRetryAfter(time.Second)
	}
	return err
}
