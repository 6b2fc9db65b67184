// Package sql is the source kind for SQL databases: "sqlite" (the embedded
// default, modernc.org/sqlite) and "postgres" (pgx).
//
// A tool is one parameterised statement. Its :name parameters are rewritten
// to positional placeholders at load time and values are always bound,
// never spliced. A read tool runs where the database itself refuses writes —
// a read-only, query_only SQLite connection, or a PostgreSQL READ ONLY
// transaction — so even a statement that tries to write cannot.
package sql

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/pipeline"
)

// decodeSettings decodes a source's settings strictly into dst.
func decodeSettings(raw config.RawSource, dst any) error {
	b, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("invalid settings: %s", trimJSONPrefix(err.Error()))
	}
	return nil
}

// bindArgs orders validated arguments for positional placeholders. JSON
// numbers that are whole become integers, so that LIMIT :n and integer
// comparisons behave as written.
func bindArgs(params []string, args map[string]any) []any {
	vals := make([]any, len(params))
	for i, p := range params {
		v := args[p]
		if f, ok := v.(float64); ok && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			v = int64(f)
		}
		vals[i] = v
	}
	return vals
}

// maxRows is the operation's row cap; an unset one means the configuration
// default, never "no rows".
func maxRows(op *Operation) int {
	if op.MaxRows > 0 {
		return op.MaxRows
	}
	return config.DefaultMaxRows
}

// jsonValue turns a value scanned from a database into one that encodes to
// JSON faithfully. JSON has no NaN or infinity: those become null, as a
// value that cannot be encoded would fail the whole result.
func jsonValue(v any) any {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case [16]byte:
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
	case float32:
		return jsonValue(float64(x))
	case int32:
		return int64(x)
	case int16:
		return int64(x)
	}
	return v
}

// mergeDeclared keeps the database's column order and lets declared columns
// set types and descriptions. A declared column the statement does not
// return is an error.
func mergeDeclared(found []Column, declared map[string]config.Column) ([]Column, error) {
	for name := range declared {
		if !slices.ContainsFunc(found, func(c Column) bool { return c.Name == name }) {
			return nil, fmt.Errorf("column %q is declared under columns but the statement does not return it", name)
		}
	}
	for i, c := range found {
		if d, ok := declared[c.Name]; ok {
			found[i].Type, found[i].Description = d.Type, d.Description
		}
	}
	return found, nil
}

// errConstraint is the error for values a constraint refuses, in either
// engine, whether the database refused them while writing or a dry run
// found that COMMIT would.
func errConstraint() error {
	return pipeline.Errorf(pipeline.InvalidArgument, "check the values against the tool's description (they may duplicate or reference missing records)",
		"the database refused the values: a constraint was violated")
}
