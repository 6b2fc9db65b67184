package httpsrc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"
	jmespath "github.com/jmespath-community/go-jmespath"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/source"
	"github.com/wardenmcp/warden/pipeline"
)

// toolSettings are the keys of an HTTP tool's declaration.
type toolSettings struct {
	Method     string                  `yaml:"method"`
	Path       string                  `yaml:"path"`
	Parameters map[string]config.Param `yaml:"parameters"`
	// Query and Headers map a query parameter or header name to the
	// declared parameter that supplies it.
	Query   map[string]string `yaml:"query"`
	Headers map[string]string `yaml:"headers"`
	// Body is the JSON body's shape: an object whose leaves name declared
	// parameters, whose values are put there.
	Body map[string]any `yaml:"body"`
	// Success lists the statuses that are a success; default any 2xx.
	Success []int `yaml:"success"`
	// Projection is a JMESPath expression that picks what the agent is
	// given from the response body.
	Projection   string         `yaml:"projection"`
	OutputSchema map[string]any `yaml:"output_schema"`
	// MaxItems caps a list result; default DefaultMaxItems.
	MaxItems int `yaml:"max_items"`
	// IdempotencyKey forwards the call's idempotency key (its _meta
	// io.wardenmcp/idempotency_key) as the Idempotency-Key header.
	IdempotencyKey bool `yaml:"idempotency_key"`
}

// Limits of a tool's results.
const (
	DefaultMaxItems = 100
	MaxMaxItems     = 10000
	// MaxErrorMessage caps the API's message in a tool error, in bytes.
	MaxErrorMessage = 512
)

// operation is one compiled HTTP tool.
type operation struct {
	api        *api
	method     string
	segments   []segment
	query      [][2]string // name, parameter
	headers    [][2]string
	body       map[string]any
	success    []int
	projection jmespath.JMESPath
	maxItems   int
	idemKey    bool
}

// segment is one path segment: literal text, or a parameter's value.
type segment struct {
	literal string
	param   string
}

func (a *api) Targets(_ context.Context, d *source.Declaration) []*pipeline.Target {
	s := d.Settings
	if d.Tool == nil {
		s.Errorf([]string{"source"}, "an http source serves tools, not resources")
		return nil
	}
	var ts toolSettings
	if s.Decode(&ts) != nil {
		return nil
	}
	d.Spec.Source = Kind
	op, ok := a.compile(s, &ts, d.Spec)
	if !ok {
		return nil
	}
	d.Spec.Bound = config.Bound(ts.Parameters)
	t := &pipeline.Target{
		Spec:         d.Spec,
		Title:        d.Tool.Title,
		Description:  strings.TrimSpace(d.Tool.Description),
		InputSchema:  config.ObjectSchema(ts.Parameters),
		OutputSchema: outputSchema(ts.OutputSchema, d.Spec.Mode == pipeline.Write),
		Handler:      op.call,
	}
	if d.Spec.Mode == pipeline.Write {
		t.DryRun = op.dryRun
	}
	return []*pipeline.Target{t}
}

func (a *api) compile(s *config.Settings, ts *toolSettings, spec *pipeline.Spec) (*operation, bool) {
	ok := s.CheckParams("parameters", ts.Parameters)
	op := &operation{api: a, method: strings.ToUpper(ts.Method), success: ts.Success, maxItems: ts.MaxItems, idemKey: ts.IdempotencyKey}
	switch op.method {
	case http.MethodGet, http.MethodHead:
		if spec.Mode != pipeline.Read {
			s.Errorf([]string{"method"}, "%s reads: a %s tool has mode read", op.method, op.method)
			ok = false
		}
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		if spec.Mode != pipeline.Write {
			s.Errorf([]string{"mode"}, "a %s tool changes data: set mode: write (and choose its risk)", op.method)
			ok = false
		}
	case "":
		s.Errorf([]string{"method"}, "required: GET, HEAD, POST, PUT, PATCH or DELETE")
		ok = false
	default:
		s.Errorf([]string{"method"}, "must be GET, HEAD, POST, PUT, PATCH or DELETE, not %q", ts.Method)
		ok = false
	}
	if op.idemKey && spec.Mode != pipeline.Write {
		s.Errorf([]string{"idempotency_key"}, "only write tools take an idempotency key")
		ok = false
	}
	used := map[string]string{} // parameter → where it is first used
	use := func(key []string, param, where string) bool {
		p, declared := ts.Parameters[param]
		switch {
		case !declared:
			s.Errorf(key, "%q is not a declared parameter", param)
		case p.Type == "" || !slices.Contains([]string{"string", "integer", "number", "boolean"}, p.Type):
			s.Errorf(key, "parameter %q has no scalar type", param)
		default:
			if used[param] == "" {
				used[param] = where
			}
			return true
		}
		return false
	}

	// The path: literal segments and whole-segment parameters.
	switch {
	case !strings.HasPrefix(ts.Path, "/"):
		s.Errorf([]string{"path"}, "required, starting with /, such as /customers/{customer_id}")
		ok = false
	case strings.ContainsAny(ts.Path, "?#%\\") || strings.Contains(ts.Path, "//"):
		s.Errorf([]string{"path"}, "a path has no query, fragment, escapes or empty segments: declare query parameters under query")
		ok = false
	default:
		for _, seg := range strings.Split(ts.Path[1:], "/") {
			switch {
			case strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}"):
				name := seg[1 : len(seg)-1]
				if use([]string{"path"}, name, "path") {
					if p := ts.Parameters[name]; !p.Required && p.Bind == "" {
						s.Errorf([]string{"parameters", name, "required"}, "a path parameter is required")
						ok = false
					}
				} else {
					ok = false
				}
				op.segments = append(op.segments, segment{param: name})
			case strings.ContainsAny(seg, "{}"):
				s.Errorf([]string{"path"}, "a parameter is a whole segment, such as /items/{id}, not %q", seg)
				ok = false
			case seg == "." || seg == "..":
				s.Errorf([]string{"path"}, "no . or .. segments")
				ok = false
			default:
				op.segments = append(op.segments, segment{literal: seg})
			}
		}
	}
	for _, q := range config.SortedKeys(ts.Query) {
		if q == "" || !use([]string{"query", q}, ts.Query[q], "query") {
			ok = false
		}
		op.query = append(op.query, [2]string{q, ts.Query[q]})
	}
	for _, h := range config.SortedKeys(ts.Headers) {
		if err := checkHeader(h, ""); err != nil {
			s.Errorf([]string{"headers", h}, "%v", err)
			ok = false
		} else if !use([]string{"headers", h}, ts.Headers[h], "headers") {
			ok = false
		}
		op.headers = append(op.headers, [2]string{http.CanonicalHeaderKey(h), ts.Headers[h]})
	}
	if ts.Body != nil {
		if op.method == http.MethodGet || op.method == http.MethodHead {
			s.Errorf([]string{"body"}, "a %s request has no body", op.method)
			ok = false
		}
		var walk func(key []string, m map[string]any) bool
		walk = func(key []string, m map[string]any) bool {
			good := true
			for _, k := range config.SortedKeys(m) {
				switch v := m[k].(type) {
				case string:
					good = use(append(slices.Clone(key), k), v, "body") && good
				case map[string]any:
					good = walk(append(slices.Clone(key), k), v) && good
				default:
					s.Errorf(append(slices.Clone(key), k), "a body leaf names a declared parameter")
					good = false
				}
			}
			return good
		}
		ok = walk([]string{"body"}, ts.Body) && ok
		op.body = ts.Body
	}
	for _, name := range config.SortedKeys(ts.Parameters) {
		if used[name] == "" {
			s.Errorf([]string{"parameters", name}, "declared but not used: put it in the path, query, headers or body")
			ok = false
		}
	}
	for i, st := range op.success {
		if st < 100 || st > 599 {
			s.Errorf([]string{"success", strconv.Itoa(i)}, "%d is not an HTTP status", st)
			ok = false
		}
	}
	if ts.Projection != "" {
		jp, err := jmespath.Compile(ts.Projection)
		if err != nil {
			s.Errorf([]string{"projection"}, "not a JMESPath expression: %v", err)
			ok = false
		}
		op.projection = jp
	}
	if ts.OutputSchema != nil {
		b, _ := json.Marshal(ts.OutputSchema)
		var sc jsonschema.Schema
		if err := json.Unmarshal(b, &sc); err != nil {
			s.Errorf([]string{"output_schema"}, "not a JSON Schema: %v", err)
			ok = false
		} else if _, err := sc.Resolve(nil); err != nil {
			s.Errorf([]string{"output_schema"}, "not a JSON Schema: %v", err)
			ok = false
		}
	}
	if op.maxItems == 0 {
		op.maxItems = DefaultMaxItems
	}
	if op.maxItems < 1 || op.maxItems > MaxMaxItems {
		s.Errorf([]string{"max_items"}, "must be between 1 and %d", MaxMaxItems)
		ok = false
	}
	return op, ok
}

// output is the structured content of an HTTP tool's result.
type output struct {
	Status int `json:"status"`
	// Body is the response body, as projected; a string if it is not JSON.
	Body      any  `json:"body"`
	Truncated bool `json:"truncated"`
	// Items is how many items a list body held before it was cut to
	// max_items; set only when it was.
	Items int `json:"total_items,omitempty"`
	// DryRun is set, and nothing was sent, on a dry run.
	DryRun *dryRequest `json:"dry_run,omitempty"`
}

// outputSchema describes output, with the body's declared schema.
func outputSchema(body map[string]any, write bool) *jsonschema.Schema {
	bs := &jsonschema.Schema{Description: "The API's response body, as the tool projects it."}
	if body != nil {
		b, _ := json.Marshal(body)
		var sc jsonschema.Schema
		if json.Unmarshal(b, &sc) == nil {
			bs = &sc
		}
	}
	s := &jsonschema.Schema{
		Type: "object",
		Properties: map[string]*jsonschema.Schema{
			"status":      {Type: "integer", Description: "The API's HTTP status."},
			"body":        bs,
			"truncated":   {Type: "boolean", Description: "True if the body's list was cut to the tool's max_items."},
			"total_items": {Type: "integer", Description: "How many items the list held before it was cut."},
		},
		Required: []string{"status", "body", "truncated"},
	}
	if write {
		s.Properties["dry_run"] = &jsonschema.Schema{Type: "object", Description: "Set only on a dry run: the exact request that would be sent (credentials masked); nothing was sent."}
	}
	return s
}

// fmtParam formats a scalar argument for a path, query or header.
func fmtParam(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64: // validated JSON numbers
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}
