package sql

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/yosida95/uritemplate/v3"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/source"
	"github.com/wardenmcp/warden/pipeline"
)

// database is a SQL source: it prepares statements.
type database interface {
	source.Source
	// Prepare checks and compiles an operation. Its error is shown to the
	// operator against the operation's statement.
	Prepare(ctx context.Context, op *Operation) (Statement, error)
}

var (
	_ database = (*sqliteSource)(nil)
	_ database = (*postgresSource)(nil)
)

// toolSettings are the keys of a SQL tool's declaration.
type toolSettings struct {
	Statement  string                   `yaml:"statement"`
	Parameters map[string]config.Param  `yaml:"parameters"`
	Columns    map[string]config.Column `yaml:"columns"`
	MaxRows    int                      `yaml:"max_rows"`
}

// templateSettings are the keys of a SQL resource template's declaration.
type templateSettings struct {
	Statement  string                  `yaml:"statement"`
	Parameters map[string]config.Param `yaml:"parameters"`
}

var columnTypes = []string{"string", "integer", "number", "boolean", "any"}

// targets makes the target of one declaration naming db, a source of the
// named kind: a tool is one statement; a resource is a template whose
// variables are the statement's parameters.
func targets(ctx context.Context, db database, kind string, d *source.Declaration) []*pipeline.Target {
	d.Spec.Source = kind
	if d.Resource != nil {
		if t := template(ctx, db, d); t != nil {
			return []*pipeline.Target{t}
		}
		return nil
	}
	if t := tool(ctx, db, kind, d); t != nil {
		return []*pipeline.Target{t}
	}
	return nil
}

func tool(ctx context.Context, db database, kind string, d *source.Declaration) *pipeline.Target {
	s := d.Settings
	var ts toolSettings
	if s.Decode(&ts) != nil {
		return nil
	}
	ok := true
	if strings.TrimSpace(ts.Statement) == "" {
		s.Errorf([]string{"statement"}, "required")
		ok = false
	}
	if ts.MaxRows == 0 {
		ts.MaxRows = config.DefaultMaxRows
	}
	if ts.MaxRows < 1 || ts.MaxRows > config.MaxMaxRows {
		s.Errorf([]string{"max_rows"}, "must be between 1 and %d", config.MaxMaxRows)
		ok = false
	}
	ok = s.CheckParams("parameters", ts.Parameters) && ok
	for _, col := range config.SortedKeys(ts.Columns) {
		if !slices.Contains(columnTypes, ts.Columns[col].Type) {
			s.Errorf([]string{"columns", col, "type"}, "must be string, integer, number, boolean or any")
			ok = false
		}
	}
	if !ok {
		return nil
	}
	spec := d.Spec
	op := &Operation{
		Name:      d.Name,
		Statement: ts.Statement,
		Mode:      spec.Mode,
		MaxRows:   ts.MaxRows,
		Params:    config.SortedKeys(ts.Parameters),
		Columns:   ts.Columns,
		Sample:    sample(ts.Parameters),
	}
	st, err := db.Prepare(ctx, op)
	if err != nil {
		s.Errorf([]string{"statement"}, "%v", err)
		return nil
	}
	dr, _ := st.(DryRunner)
	if op.Mode != pipeline.Write {
		dr = nil
	}
	if g := spec.Gate; dr == nil && g != nil && (g.Require == pipeline.RequireDryRun || g.DryRun) {
		s.Errorf([]string{"require"}, "the %s source cannot dry-run this statement", kind)
		return nil
	}
	write := op.Mode == pipeline.Write
	spec.Bound = config.Bound(ts.Parameters)
	t := &pipeline.Target{
		Spec:         spec,
		Title:        d.Tool.Title,
		Description:  strings.TrimSpace(d.Tool.Description),
		InputSchema:  config.ObjectSchema(ts.Parameters),
		OutputSchema: outputSchema(st.Columns(), write, dr != nil),
		Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			rows, err := st.Run(ctx, c.Args)
			if err != nil {
				return nil, err
			}
			return toolResult(rows, write), nil
		},
	}
	if dr != nil {
		t.DryRun = func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			eff, err := dr.DryRun(ctx, c.Args)
			if err != nil {
				return nil, err
			}
			return dryRunResult(eff), nil
		}
	}
	return t
}

func template(ctx context.Context, db database, d *source.Declaration) *pipeline.Target {
	s, r := d.Settings, d.Resource
	var ts templateSettings
	if s.Decode(&ts) != nil {
		return nil
	}
	if r.URITemplate == "" {
		s.Errorf([]string{"uri_template"}, "a resource served by a SQL source is a template: its variables are the statement's parameters")
		return nil
	}
	if strings.TrimSpace(ts.Statement) == "" {
		s.Errorf([]string{"statement"}, "required with uri_template")
		return nil
	}
	if !s.CheckParams("parameters", ts.Parameters) {
		return nil
	}
	tmpl, err := uritemplate.New(r.URITemplate)
	if err != nil {
		s.Errorf([]string{"uri_template"}, "invalid URI template: %v", err)
		return nil
	}
	vars := slices.Sorted(slices.Values(tmpl.Varnames()))
	bound := config.Bound(ts.Parameters)
	var unbound []string
	for _, name := range config.SortedKeys(ts.Parameters) {
		if _, ok := bound[name]; !ok {
			unbound = append(unbound, name)
		}
	}
	if !slices.Equal(vars, unbound) {
		s.Errorf([]string{"parameters"}, "declare exactly the template's variables (%s), plus any bound parameters; declared: %s",
			strings.Join(vars, ", "), strings.Join(unbound, ", "))
		return nil
	}
	st, err := db.Prepare(ctx, &Operation{
		Name: d.Name, Statement: ts.Statement, Mode: pipeline.Read, MaxRows: config.DefaultMaxRows,
		Params: config.SortedKeys(ts.Parameters), Sample: sample(ts.Parameters),
	})
	if err != nil {
		s.Errorf([]string{"statement"}, "%v", err)
		return nil
	}
	mt := r.MIMEType
	if mt == "" {
		mt = "application/json"
	}
	d.Spec.Bound = bound
	return &pipeline.Target{
		Spec:        d.Spec,
		Title:       r.Title,
		Description: strings.TrimSpace(r.Description),
		URITemplate: r.URITemplate,
		MIMEType:    mt,
		InputSchema: config.ObjectSchema(ts.Parameters),
		Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			rows, err := st.Run(ctx, c.Args)
			if err != nil {
				return nil, err
			}
			if len(rows.Rows) == 0 {
				return nil, pipeline.Errorf(pipeline.NotFound, "check the identifier in the URI", "no resource at %s", c.Target)
			}
			text, _ := json.Marshal(toolOutput{Rows: rows.Rows, RowCount: len(rows.Rows), Truncated: rows.Truncated})
			return &pipeline.Result{
				Resource: &pipeline.ResourceResult{Contents: []*pipeline.ResourceContents{{URI: c.Target, MIMEType: mt, Text: string(text)}}},
				Rows:     len(rows.Rows), Truncated: rows.Truncated,
			}, nil
		},
	}
}

// toolOutput is the structured content of a SQL tool's result.
type toolOutput struct {
	Rows         []map[string]any `json:"rows"`
	RowCount     int              `json:"row_count"`
	Truncated    bool             `json:"truncated"`
	RowsAffected *int64           `json:"rows_affected,omitempty"`
	// DryRun is set on a dry run's result: what the call would change.
	DryRun *Effect `json:"dry_run,omitempty"`
}

// dryRunResult reports a dry run: nothing changed, and what would have.
func dryRunResult(eff *Effect) *pipeline.Result {
	out := &toolOutput{Rows: []map[string]any{}, RowsAffected: &eff.RowsAffected, DryRun: eff}
	text, _ := json.Marshal(out)
	return &pipeline.Result{Tool: &pipeline.ToolResult{
		Content: []pipeline.Content{
			pipeline.Text(fmt.Sprintf("Dry run: nothing was changed. The call would affect %d row(s).", eff.RowsAffected)),
			pipeline.Text(string(text)),
		},
		StructuredContent: out,
	}}
}

func toolResult(rows *Rows, write bool) *pipeline.Result {
	out := &toolOutput{Rows: rows.Rows, RowCount: len(rows.Rows), Truncated: rows.Truncated}
	if write {
		out.RowsAffected = &rows.RowsAffected
	}
	text, _ := json.Marshal(out)
	content := []pipeline.Content{pipeline.Text(string(text))}
	if rows.Truncated {
		content = append(content, pipeline.Text(fmt.Sprintf(
			"Only the first %d rows are shown; more matched. Narrow the request to see the rest.", len(rows.Rows))))
	}
	return &pipeline.Result{
		Tool:      &pipeline.ToolResult{Content: content, StructuredContent: out},
		Rows:      len(rows.Rows),
		Truncated: rows.Truncated,
	}
}

// outputSchema describes toolOutput for the given columns.
func outputSchema(cols []Column, write, dryRun bool) *jsonschema.Schema {
	row := &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{}}
	for _, c := range cols {
		p := &jsonschema.Schema{Description: c.Description}
		if c.Type != "any" {
			p.Types = []string{c.Type, "null"}
		}
		row.Properties[c.Name] = p
	}
	s := &jsonschema.Schema{
		Type: "object",
		Properties: map[string]*jsonschema.Schema{
			"rows":      {Type: "array", Items: row, Description: "The result rows, one object per row."},
			"row_count": {Type: "integer", Description: "How many rows are in rows."},
			"truncated": {Type: "boolean", Description: "True if more rows matched than the tool returns; narrow the request to see them."},
		},
		Required: []string{"rows", "row_count", "truncated"},
	}
	if write {
		s.Properties["rows_affected"] = &jsonschema.Schema{Type: "integer", Description: "How many rows the change touched."}
		s.Required = append(s.Required, "rows_affected")
	}
	if dryRun {
		s.Properties["dry_run"] = &jsonschema.Schema{
			Type:        "object",
			Description: "Set only on a dry run: what the call would change (rows_affected, and the touched rows before and after); nothing was changed.",
		}
	}
	return s
}

func (s *sqliteSource) Targets(ctx context.Context, d *source.Declaration) []*pipeline.Target {
	return targets(ctx, s, "sqlite", d)
}

func (s *postgresSource) Targets(ctx context.Context, d *source.Declaration) []*pipeline.Target {
	return targets(ctx, s, "postgres", d)
}
