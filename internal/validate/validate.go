// Package validate is the pipeline stage that checks a call's arguments
// against the target's schema before anything else may rely on them.
//
// Validation is strict: the arguments must be a JSON object, unknown fields
// are refused, and every keyword of the schema (type, enum, bounds, pattern,
// length, format) is enforced. Defaults are applied first, so a handler sees
// the same arguments whether or not the client spelled them out.
package validate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/wardenmcp/warden/pipeline"
)

// Stage validates c.Raw (or c.Args, when the transport already decoded
// them) against c.Spec.Input and leaves the result in c.Args.
func Stage(next pipeline.Handler) pipeline.Handler {
	return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		if err := Call(c); err != nil {
			return nil, err
		}
		return next(ctx, c)
	}
}

// Call validates the arguments of c in place.
func Call(c *pipeline.Call) error {
	args := c.Args
	if args == nil {
		var err error
		if args, err = decodeObject(c.Raw); err != nil {
			return err
		}
	}
	if c.Spec.Input == nil {
		if len(args) > 0 {
			return pipeline.Errorf(pipeline.InvalidArgument, "call it with no arguments", "%s takes no arguments", c.Spec.Name)
		}
		c.Args = args
		return nil
	}
	if err := Arguments(c.Spec.Input, args); err != nil {
		return err
	}
	c.Args = args
	return nil
}

// Arguments applies defaults to args and validates them against rs. The
// returned error is an INVALID_ARGUMENT *pipeline.Error that names the field
// and the rule broken.
func Arguments(rs *jsonschema.Resolved, args map[string]any) error {
	s := rs.Schema()
	// The checks a model most often trips are done here, by hand, so that the
	// message names the field plainly; the schema validator covers the rest.
	if s.AdditionalProperties != nil && isFalse(s.AdditionalProperties) {
		for name := range args {
			if _, ok := s.Properties[name]; !ok {
				if len(s.Properties) == 0 {
					return invalid(fmt.Sprintf("unknown argument %q", name), "this target takes no arguments")
				}
				return invalid(fmt.Sprintf("unknown argument %q", name), "use only the documented arguments: "+strings.Join(sortedKeys(s.Properties), ", "))
			}
		}
	}
	if err := rs.ApplyDefaults(&args); err != nil {
		return invalid(fmt.Sprintf("applying defaults: %v", err), "")
	}
	for _, name := range s.Required {
		if _, ok := args[name]; !ok {
			return invalid(fmt.Sprintf("missing required argument %q", name), describe(s, name))
		}
	}
	for name, v := range args {
		if str, ok := v.(string); ok && (!utf8.ValidString(str) || strings.ContainsRune(str, 0)) {
			return invalid(fmt.Sprintf("argument %q is not valid UTF-8 text or contains a NUL byte", name), "")
		}
	}
	if err := rs.Validate(args); err != nil {
		return invalid(cleanMessage(err), "check the argument against the tool's input schema")
	}
	for name, prop := range s.Properties {
		if prop.Format == "" {
			continue
		}
		if str, ok := args[name].(string); ok {
			if err := checkFormat(prop.Format, str); err != nil {
				return invalid(fmt.Sprintf("argument %q: %v", name, err), describe(s, name))
			}
		}
	}
	return nil
}

func decodeObject(raw json.RawMessage) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return map[string]any{}, nil
	}
	if raw[0] != '{' {
		return nil, invalid("arguments must be a JSON object", "pass the arguments as an object of named values")
	}
	var args map[string]any
	if err := json.Unmarshal(raw, &args); err != nil {
		return nil, invalid("arguments are not valid JSON", "")
	}
	return args, nil
}

func invalid(msg, suggestion string) error {
	return &pipeline.Error{Code: pipeline.InvalidArgument, Message: msg, Suggestion: suggestion}
}

func describe(s *jsonschema.Schema, name string) string {
	p := s.Properties[name]
	if p == nil || p.Description == "" {
		return ""
	}
	return name + ": " + p.Description
}

// isFalse reports whether s is the schema false, which jsonschema-go
// represents as {"not": {}}.
func isFalse(s *jsonschema.Schema) bool {
	return s.Not != nil && reflect.DeepEqual(*s.Not, jsonschema.Schema{})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// cleanMessage turns the validator's nested message ("validating root:
// validating /properties/x: ...") into "argument x: ...".
func cleanMessage(err error) string {
	msg := err.Error()
	field := ""
	for {
		rest, ok := strings.CutPrefix(msg, "validating ")
		if !ok {
			break
		}
		loc, tail, ok := strings.Cut(rest, ": ")
		if !ok {
			break
		}
		if p, ok := strings.CutPrefix(loc, "/properties/"); ok {
			field = strings.SplitN(p, "/", 2)[0]
		}
		msg = tail
	}
	if field != "" {
		return fmt.Sprintf("argument %q: %s", field, msg)
	}
	return msg
}
