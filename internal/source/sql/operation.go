package sql

import (
	"context"
	"fmt"
	"slices"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/pipeline"
)

// Operation is a declared statement with its named parameters.
type Operation struct {
	Name      string
	Statement string
	Mode      pipeline.Mode
	MaxRows   int
	Params    []string                 // declared parameter names
	Columns   map[string]config.Column // declared result columns, if any
	// Sample holds a harmless value per parameter (its default, or the zero
	// value of its type), for sources that must run a read statement once
	// at load time to learn its result columns.
	Sample map[string]any
}

// sample returns a harmless value for each declared parameter: its default,
// or the zero value of its type.
func sample(params map[string]config.Param) map[string]any {
	out := make(map[string]any, len(params))
	for name, p := range params {
		switch {
		case p.Default != nil:
			out[name] = p.Default
		case p.Type == "string":
			out[name] = ""
		case p.Type == "boolean":
			out[name] = false
		default:
			out[name] = 0
		}
	}
	return out
}

// Statement is a prepared operation. Run is safe for concurrent use.
type Statement interface {
	// Columns are the result columns, in order, with their JSON types
	// ("string", "integer", "number", "boolean" or "any").
	Columns() []Column
	// Run executes the operation with validated arguments. Errors that are
	// the caller's to fix are *pipeline.Error; others are internal.
	Run(ctx context.Context, args map[string]any) (*Rows, error)
}

// DryRunner is implemented by statements that can show what a write would
// do without doing it, so that whoever approves a risky call sees its
// effect first. Write statements of the SQL kinds implement it; a caller
// finds out with a type assertion. DryRun is safe for concurrent use.
type DryRunner interface {
	// DryRun executes the operation with validated arguments inside a
	// transaction that is always rolled back, and reports its effect. It
	// never commits, whatever happens (errors, panics, context
	// cancellation). A write that would fail fails here with the error the
	// real run would return.
	DryRun(ctx context.Context, args map[string]any) (*Effect, error)
}

// Effect is what a write would do.
type Effect struct {
	// RowsAffected is what the real run would report as its RowsAffected.
	RowsAffected int64 `json:"rows_affected"`
	// Changes are the touched rows, in the order they were changed, at most
	// a bounded number; Truncated says whether there were more. They may
	// include rows changed by the database itself on the statement's behalf
	// (triggers, foreign-key actions), so there can be more than
	// RowsAffected.
	Changes   []Change `json:"changes,omitempty"`
	Truncated bool     `json:"truncated,omitempty"`
	// Note explains a limitation: for example that before and after values
	// could not be captured and only the count is known, or that other
	// tables change too.
	Note string `json:"note,omitempty"`
}

// Change is one touched row. Values are JSON-friendly in the same way as
// those of Rows.
type Change struct {
	Table  string         `json:"table"`
	Op     string         `json:"op"`               // "insert", "update" or "delete"
	Before map[string]any `json:"before,omitempty"` // nil for insert
	After  map[string]any `json:"after,omitempty"`  // nil for delete
}

// Column is one result column.
type Column struct {
	Name        string
	Type        string
	Description string
}

// Rows is a statement's result.
type Rows struct {
	Rows         []map[string]any
	Truncated    bool  // more rows existed than the operation's MaxRows
	RowsAffected int64 // write operations only
}

// checkParams reports the first mismatch between the parameters a statement
// uses and those declared for it: both must be the same set, so that a
// declared parameter is never silently ignored and a used one never unbound.
func checkParams(used, declared []string) error {
	for _, u := range used {
		if !slices.Contains(declared, u) {
			return fmt.Errorf("the statement uses :%s, which is not declared under parameters", u)
		}
	}
	for _, d := range declared {
		if !slices.Contains(used, d) {
			return fmt.Errorf("parameter %q is declared but the statement does not use :%s", d, d)
		}
	}
	return nil
}
