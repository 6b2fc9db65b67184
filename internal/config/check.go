package config

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/wardenmcp/warden/internal/validate"
)

var (
	snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	uriScheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*://`)
)

// Verbs are the words a tool name may start with. Names such as
// get_customer or search_orders tell the model what a call does; a noun
// (customer_data) or a generic runner (execute_sql) does not pass.
var Verbs = []string{
	"add", "approve", "archive", "assign", "book", "calculate", "cancel", "check", "close",
	"compare", "count", "create", "deactivate", "delete", "describe", "draft", "escalate",
	"estimate", "export", "fetch", "find", "get", "list", "lookup", "mark", "notify", "open",
	"preview", "publish", "read", "record", "refund", "register", "reject", "remove", "rename",
	"reopen", "request", "reserve", "resolve", "retry", "schedule", "search", "send", "set",
	"start", "stop", "submit", "summarize", "suspend", "tag", "transfer", "update", "validate",
	"verify",
}

func (c *checker) check(cfg *Config) {
	c.checkServer(&cfg.Server)
	for _, name := range SortedKeys(cfg.Sources) {
		if cfg.Sources[name].Kind() == "" {
			c.errorf([]string{"sources", name, "kind"}, "required: the kind of source (sqlite, postgres)")
		}
	}
	for _, name := range SortedKeys(cfg.Tools) {
		c.checkTool(cfg, name, cfg.Tools[name])
	}
	for _, name := range SortedKeys(cfg.Resources) {
		c.checkResource(cfg, name, cfg.Resources[name])
	}
	for _, name := range SortedKeys(cfg.Prompts) {
		c.checkPrompt(name, cfg.Prompts[name])
	}
}

func (c *checker) checkServer(s *Server) {
	p := []string{"server"}
	if s.DefaultTimeout < 0 || s.DefaultTimeout > MaxTimeout {
		c.errorf(append(p, "default_timeout"), "must be between 0 and %s", MaxTimeout)
	}
	h := s.HTTP
	host, _, err := net.SplitHostPort(h.Addr)
	if err != nil {
		c.errorf(append(p, "http", "addr"), "%q is not host:port", h.Addr)
	} else if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" && len(h.AllowedHosts) == 0 {
		c.errorf(append(p, "http", "allowed_hosts"),
			"required when binding to a non-loopback address (%s): list the host names clients use, so that DNS rebinding is refused", h.Addr)
	}
	if h.MaxBodyBytes < 0 {
		c.errorf(append(p, "http", "max_body_bytes"), "must not be negative")
	}
	if h.SessionIdleTimeout < 0 {
		c.errorf(append(p, "http", "session_idle_timeout"), "must not be negative")
	}
}

func (c *checker) checkTool(cfg *Config, name string, t *Tool) {
	p := []string{"tools", name}
	if t == nil {
		c.errorf(p, "empty tool declaration")
		return
	}
	if !snakeCase.MatchString(name) {
		c.errorf(p, "tool names are snake_case (lower-case words joined by _), like get_customer")
	} else if verb, _, _ := strings.Cut(name, "_"); !slices.Contains(Verbs, verb) {
		c.errorf(p, "tool names start with a verb that says what the call does (get_, list_, search_, create_, …); %q is not one", verb)
	}
	if strings.TrimSpace(t.Description) == "" {
		c.errorf(append(p, "description"), "required: tell the model what the tool does and when to use it")
	}
	c.checkSourceRef(cfg, append(p, "source"), t.Source)
	if strings.TrimSpace(t.Statement) == "" {
		c.errorf(append(p, "statement"), "required")
	}
	if t.Mode != "read" && t.Mode != "write" {
		c.errorf(append(p, "mode"), "must be read or write, not %q", t.Mode)
	}
	if t.MaxRows < 1 || t.MaxRows > MaxMaxRows {
		c.errorf(append(p, "max_rows"), "must be between 1 and %d", MaxMaxRows)
	}
	if t.Timeout <= 0 || t.Timeout > MaxTimeout {
		c.errorf(append(p, "timeout"), "must be more than 0 and at most %s", MaxTimeout)
	}
	c.checkParams(append(p, "parameters"), t.Parameters, false)
	for _, col := range SortedKeys(t.Columns) {
		if !slices.Contains([]string{"string", "integer", "number", "boolean", "any"}, t.Columns[col].Type) {
			c.errorf(append(p, "columns", col, "type"), "must be string, integer, number, boolean or any")
		}
	}
}

func (c *checker) checkSourceRef(cfg *Config, path []string, name string) {
	if name == "" {
		c.errorf(path, "required: the name of a source declared under sources")
	} else if _, ok := cfg.Sources[name]; !ok {
		c.errorf(path, "no source named %q (declared: %s)", name, strings.Join(SortedKeys(cfg.Sources), ", "))
	}
}

func (c *checker) checkParams(path []string, params map[string]Param, promptArgs bool) {
	for _, name := range SortedKeys(params) {
		pp := append(slices.Clone(path), name)
		if !snakeCase.MatchString(name) {
			c.errorf(pp, "parameter names are snake_case")
		}
		prm := params[name]
		if strings.TrimSpace(prm.Description) == "" {
			c.errorf(append(pp, "description"), "required: tell the model what the value means and what form it takes")
		}
		if promptArgs && prm.Type != "string" {
			c.errorf(append(pp, "type"), "prompt arguments are strings; must be string")
			continue
		}
		if _, err := ParamSchema(prm); err != nil {
			c.errorf(append(pp, err.field), "%s", err.msg)
		}
	}
}

func (c *checker) checkResource(cfg *Config, name string, r *Resource) {
	p := []string{"resources", name}
	if r == nil {
		c.errorf(p, "empty resource declaration")
		return
	}
	if !snakeCase.MatchString(name) {
		c.errorf(p, "resource names are snake_case")
	}
	if strings.TrimSpace(r.Description) == "" {
		c.errorf(append(p, "description"), "required")
	}
	switch {
	case r.URI != "" && r.URITemplate != "":
		c.errorf(p, "set either uri (a file resource) or uri_template (a source-backed template), not both")
	case r.URI != "":
		if !uriScheme.MatchString(r.URI) {
			c.errorf(append(p, "uri"), "must be an absolute URI such as crm://schema")
		}
		if r.File == "" {
			c.errorf(append(p, "file"), "required with uri: the file, relative to server.resources_dir")
		} else if filepath.IsAbs(r.File) || !filepath.IsLocal(r.File) {
			c.errorf(append(p, "file"), "must be a relative path inside server.resources_dir")
		}
		if cfg.Server.ResourcesDir == "" {
			c.errorf([]string{"server", "resources_dir"}, "required when file resources are declared (resources.%s)", name)
		}
		if r.Source != "" || r.Statement != "" || len(r.Parameters) > 0 || r.Directory != "" {
			c.errorf(p, "a file resource takes no source, statement, parameters or directory")
		}
	case r.URITemplate != "" && r.Directory != "":
		if !uriScheme.MatchString(r.URITemplate) {
			c.errorf(append(p, "uri_template"), "must be an absolute URI template such as docs://{+path}")
		}
		if filepath.IsAbs(r.Directory) || !filepath.IsLocal(r.Directory) {
			c.errorf(append(p, "directory"), "must be a relative path inside server.resources_dir")
		}
		if cfg.Server.ResourcesDir == "" {
			c.errorf([]string{"server", "resources_dir"}, "required when file resources are declared (resources.%s)", name)
		}
		if r.Source != "" || r.Statement != "" || len(r.Parameters) > 0 || r.File != "" {
			c.errorf(p, "a directory template takes no file, source, statement or parameters")
		}
	case r.URITemplate != "":
		if !uriScheme.MatchString(r.URITemplate) {
			c.errorf(append(p, "uri_template"), "must be an absolute URI template such as crm://customers/{customer_id}")
		}
		c.checkSourceRef(cfg, append(p, "source"), r.Source)
		if strings.TrimSpace(r.Statement) == "" {
			c.errorf(append(p, "statement"), "required with uri_template")
		}
		if r.File != "" {
			c.errorf(append(p, "file"), "a template resource is served from its source, not a file")
		}
		c.checkParams(append(p, "parameters"), r.Parameters, false)
	default:
		c.errorf(p, "set uri and file (a file resource), uri_template and directory (a directory of files), or uri_template, source and statement (a source-backed template)")
	}
}

func (c *checker) checkPrompt(name string, pr *Prompt) {
	p := []string{"prompts", name}
	if pr == nil {
		c.errorf(p, "empty prompt declaration")
		return
	}
	if !snakeCase.MatchString(name) {
		c.errorf(p, "prompt names are snake_case")
	}
	if strings.TrimSpace(pr.Description) == "" {
		c.errorf(append(p, "description"), "required")
	}
	c.checkParams(append(p, "arguments"), pr.Arguments, true)
	if len(pr.Messages) == 0 {
		c.errorf(append(p, "messages"), "required: at least one message")
	}
	sample := map[string]any{}
	for a := range pr.Arguments {
		sample[a] = "x"
	}
	for i, m := range pr.Messages {
		mp := append(slices.Clone(p), "messages", fmt.Sprint(i))
		if m.Role != "user" && m.Role != "assistant" {
			c.errorf(append(mp, "role"), "must be user or assistant")
		}
		tmpl, err := template.New(name).Option("missingkey=error").Parse(m.Text)
		if err != nil {
			c.errorf(append(mp, "text"), "invalid template: %v", err)
			continue
		}
		if err := tmpl.Execute(new(strings.Builder), sample); err != nil {
			c.errorf(append(mp, "text"), "the template uses something other than the declared arguments: %v", err)
		}
	}
}

// paramError locates a problem inside one parameter declaration.
type paramError struct{ field, msg string }

// ParamSchema returns the JSON Schema for one declared parameter.
func ParamSchema(p Param) (*jsonschema.Schema, *paramError) {
	s := &jsonschema.Schema{Type: p.Type, Description: p.Description}
	switch p.Type {
	case "string":
		if p.Minimum != nil || p.Maximum != nil {
			return nil, &paramError{"type", "minimum and maximum apply to numbers; use min_length and max_length for strings"}
		}
		if p.Pattern != "" {
			if _, err := regexp.Compile(p.Pattern); err != nil {
				return nil, &paramError{"pattern", fmt.Sprintf("invalid regular expression: %v", err)}
			}
			s.Pattern = p.Pattern
		}
		if p.Format != "" {
			if _, ok := validate.Formats[p.Format]; !ok {
				return nil, &paramError{"format", fmt.Sprintf("unsupported format %q (supported: %s)", p.Format, strings.Join(SortedKeys(validate.Formats), ", "))}
			}
			s.Format = p.Format
		}
		s.MinLength, s.MaxLength = p.MinLength, p.MaxLength
		if s.MaxLength == nil && len(p.Enum) == 0 {
			// An unbounded string is an unbounded cost; cap it unless the
			// declaration says otherwise.
			s.MaxLength = jsonschema.Ptr(DefaultMaxStringBytes)
		}
	case "integer", "number":
		if p.Pattern != "" || p.Format != "" || p.MinLength != nil || p.MaxLength != nil {
			return nil, &paramError{"type", "pattern, format, min_length and max_length apply to strings"}
		}
		s.Minimum, s.Maximum = p.Minimum, p.Maximum
		if p.Minimum != nil && p.Maximum != nil && *p.Minimum > *p.Maximum {
			return nil, &paramError{"minimum", "is greater than maximum"}
		}
	case "boolean":
		if p.Pattern != "" || p.Format != "" || p.MinLength != nil || p.MaxLength != nil || p.Minimum != nil || p.Maximum != nil {
			return nil, &paramError{"type", "a boolean takes no bounds, pattern or format"}
		}
	default:
		return nil, &paramError{"type", fmt.Sprintf("must be string, integer, number or boolean, not %q", p.Type)}
	}
	s.Enum = p.Enum
	if p.Default != nil {
		raw, err := json.Marshal(p.Default)
		if err != nil {
			return nil, &paramError{"default", err.Error()}
		}
		s.Default = raw
	}
	// Resolving validates the default and the enum against the type.
	if _, err := s.Resolve(&jsonschema.ResolveOptions{ValidateDefaults: true}); err != nil {
		return nil, &paramError{"default", err.Error()}
	}
	for _, v := range p.Enum {
		if err := mustResolve(&jsonschema.Schema{Type: p.Type}).Validate(v); err != nil {
			return nil, &paramError{"enum", fmt.Sprintf("value %v is not a %s", v, p.Type)}
		}
	}
	return s, nil
}

func mustResolve(s *jsonschema.Schema) *jsonschema.Resolved {
	rs, err := s.Resolve(nil)
	if err != nil {
		panic(err)
	}
	return rs
}

// ObjectSchema returns the strict object schema for a set of parameters:
// every declared property, the required ones listed, nothing else allowed.
// It assumes the parameters passed Parse.
func ObjectSchema(params map[string]Param) *jsonschema.Schema {
	s := &jsonschema.Schema{
		Type:                 "object",
		Properties:           map[string]*jsonschema.Schema{},
		AdditionalProperties: &jsonschema.Schema{Not: &jsonschema.Schema{}},
	}
	for _, name := range SortedKeys(params) {
		ps, _ := ParamSchema(params[name])
		s.Properties[name] = ps
		if params[name].Required {
			s.Required = append(s.Required, name)
		}
	}
	return s
}
