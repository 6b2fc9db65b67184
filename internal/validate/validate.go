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
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"
	segjson "github.com/segmentio/encoding/json"

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
	for name := range c.Spec.Bound {
		if _, ok := args[name]; ok {
			return pipeline.Errorf(pipeline.PermissionDenied, "leave "+name+" out: Warden fills it in",
				"argument %q is bound to your verified identity and cannot be supplied", name)
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
		var perr *pipeline.Error
		if errors.As(err, &perr) && perr.Suggestion == "" {
			perr.Suggestion = "check the value against " + whose(c.Spec)
		}
		return err
	}
	if err := bind(c, args); err != nil {
		return err
	}
	if c.Spec.DryRun {
		// The flag is taken out of the arguments, so that a call and its dry
		// run have the same canonical arguments (and approval binding).
		if dry, _ := args[pipeline.DryRunArg].(bool); dry {
			c.DryRun = true
			c.Flags = append(c.Flags, "dry run")
		}
		delete(args, pipeline.DryRunArg)
	}
	c.Args = args
	return nil
}

// bind fills bound parameters from the principal, after validation, so that
// row-level filters cannot be escaped by anything the client sends.
func bind(c *pipeline.Call, args map[string]any) error {
	for name, attr := range c.Spec.Bound {
		v := ""
		if c.Principal != nil {
			v = c.Principal.Attribute(attr)
		}
		if v == "" {
			return pipeline.Errorf(pipeline.PermissionDenied, "use a credential that carries a "+attr,
				"%s needs your %s, and your credential has none", c.Spec.Name, attr)
		}
		args[name] = v
	}
	return nil
}

func whose(s *pipeline.Spec) string {
	switch s.Method {
	case pipeline.ReadResource:
		return "the resource template's parameters"
	case pipeline.GetPrompt:
		return "the prompt's arguments"
	}
	return "the tool's input schema"
}

// Arguments applies defaults to args and validates them against rs. The
// returned error is an INVALID_ARGUMENT *pipeline.Error that names the field
// and the rule broken.
func Arguments(rs *jsonschema.Resolved, args map[string]any) error {
	s := rs.Schema()
	fi := flatness(rs)
	// The checks a model most often trips are done here, by hand, so that the
	// message names the field plainly; the schema validator covers the rest.
	if fi.strict {
		for name := range args {
			if _, ok := s.Properties[name]; !ok {
				if len(s.Properties) == 0 {
					return invalid(fmt.Sprintf("unknown argument %q", name), "this target takes no arguments")
				}
				return invalid(fmt.Sprintf("unknown argument %q", name), "use only the documented arguments: "+strings.Join(sortedKeys(s.Properties), ", "))
			}
		}
	}
	if fi.flat {
		for name, d := range fi.defaults {
			if _, ok := args[name]; !ok {
				args[name] = d
			}
		}
	} else if err := rs.ApplyDefaults(&args); err != nil {
		return invalid(fmt.Sprintf("applying defaults: %v", err), "")
	}
	for _, name := range s.Required {
		if _, ok := args[name]; !ok {
			return invalid(fmt.Sprintf("missing required argument %q", name), describe(s, name))
		}
	}
	var buf [16]string
	for _, name := range appendSorted(buf[:0], args) {
		v := args[name]
		if str, ok := v.(string); ok && (!utf8.ValidString(str) || strings.ContainsRune(str, 0)) {
			return invalid(fmt.Sprintf("argument %q is not valid UTF-8 text or contains a NUL byte", name), "")
		}
		if prop := s.Properties[name]; prop != nil {
			if msg := checkScalar(prop, v); msg != "" {
				return invalid(fmt.Sprintf("argument %q %s", name, msg), describe(s, name))
			}
		}
	}
	// The schema validator is the backstop for everything checkScalar does
	// not cover (nested objects, arrays, composition keywords). A flat
	// schema has nothing left for it, and skipping it keeps the common call
	// cheap.
	if fi.flat {
		return nil
	}
	if err := rs.Validate(args); err != nil {
		return invalid(cleanMessage(err), "")
	}
	return nil
}

// flatInfo says whether checkScalar alone enforces a schema completely: an
// object of scalar properties using only the keywords checkScalar checks.
type flatInfo struct {
	flat     bool
	strict   bool           // additionalProperties is false
	defaults map[string]any // decoded, for flat schemas
}

var flatCache sync.Map // *jsonschema.Resolved -> *flatInfo

func flatness(rs *jsonschema.Resolved) *flatInfo {
	if fi, ok := flatCache.Load(rs); ok {
		return fi.(*flatInfo)
	}
	s := rs.Schema()
	fi := &flatInfo{flat: isFlat(s), strict: s.AdditionalProperties != nil && isFalse(s.AdditionalProperties)}
	if fi.flat {
		for name, p := range rs.Schema().Properties {
			if len(p.Default) > 0 {
				var d any
				if json.Unmarshal(p.Default, &d) != nil {
					fi.flat = false
					break
				}
				if fi.defaults == nil {
					fi.defaults = map[string]any{}
				}
				fi.defaults[name] = d
			}
		}
	}
	flatCache.Store(rs, fi)
	return fi
}

func isFlat(s *jsonschema.Schema) bool {
	// Compare the schema with the same schema rebuilt from only the keywords
	// this package checks: anything else present makes it not flat.
	root := jsonschema.Schema{Type: "object", Description: s.Description, Title: s.Title,
		Properties: s.Properties, Required: s.Required, AdditionalProperties: s.AdditionalProperties}
	if !reflect.DeepEqual(*s, root) || s.AdditionalProperties == nil || !isFalse(s.AdditionalProperties) {
		return false
	}
	for _, p := range s.Properties {
		if p == nil || !slices.Contains([]string{"string", "number", "integer", "boolean"}, p.Type) {
			return false
		}
		if _, ok := Formats[p.Format]; p.Format != "" && !ok {
			return false
		}
		scalar := jsonschema.Schema{Type: p.Type, Title: p.Title, Description: p.Description, Enum: p.Enum,
			Minimum: p.Minimum, Maximum: p.Maximum, MinLength: p.MinLength, MaxLength: p.MaxLength,
			Pattern: p.Pattern, Format: p.Format, Default: p.Default}
		if !reflect.DeepEqual(*p, scalar) {
			return false
		}
	}
	return true
}

// checkScalar checks the common keywords of a property and says, in plain
// words, what is wrong; "" means nothing it checks is wrong.
func checkScalar(p *jsonschema.Schema, v any) string {
	types := p.Types
	if p.Type != "" {
		types = []string{p.Type}
	}
	if len(types) > 0 && !slices.ContainsFunc(types, func(t string) bool { return hasType(t, v) }) {
		return fmt.Sprintf("must be %s, not %s", article(strings.Join(types, " or ")), kind(v))
	}
	if len(p.Enum) > 0 && !slices.ContainsFunc(p.Enum, func(e any) bool { return reflect.DeepEqual(e, v) || equalNumber(e, v) }) {
		opts := make([]string, len(p.Enum))
		for i, e := range p.Enum {
			opts[i] = fmt.Sprint(e)
		}
		return "must be one of: " + strings.Join(opts, ", ")
	}
	if f, ok := v.(float64); ok {
		if p.Minimum != nil && f < *p.Minimum {
			return fmt.Sprintf("must be at least %v", *p.Minimum)
		}
		if p.Maximum != nil && f > *p.Maximum {
			return fmt.Sprintf("must be at most %v", *p.Maximum)
		}
	}
	if str, ok := v.(string); ok {
		n := utf8.RuneCountInString(str)
		if p.MinLength != nil && n < *p.MinLength {
			return fmt.Sprintf("must be at least %d characters long", *p.MinLength)
		}
		if p.MaxLength != nil && n > *p.MaxLength {
			return fmt.Sprintf("must be at most %d characters long", *p.MaxLength)
		}
		if p.Pattern != "" {
			if re := compiled(p.Pattern); re != nil && !re.MatchString(str) {
				return "does not have the required form (pattern " + p.Pattern + ")"
			}
		}
		if p.Format != "" {
			if err := checkFormat(p.Format, str); err != nil {
				return err.Error()
			}
		}
	}
	return ""
}

// patterns caches compiled patterns: schemas are fixed at load time, so the
// set is small and each pattern is compiled once.
var patterns sync.Map // string -> *regexp.Regexp (nil if invalid)

func compiled(pattern string) *regexp.Regexp {
	if re, ok := patterns.Load(pattern); ok {
		return re.(*regexp.Regexp)
	}
	re, _ := regexp.Compile(pattern)
	patterns.Store(pattern, re)
	return re
}

func hasType(t string, v any) bool {
	switch t {
	case "string":
		_, ok := v.(string)
		return ok
	case "number":
		_, ok := v.(float64)
		return ok
	case "integer":
		f, ok := v.(float64)
		return ok && f == math.Trunc(f)
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "array":
		_, ok := v.([]any)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	}
	return false
}

func kind(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case float64:
		if x == math.Trunc(x) {
			return "the number " + fmt.Sprint(x)
		}
		return "a fractional number"
	case bool:
		return "true or false"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func article(t string) string {
	switch t {
	case "integer", "object", "array":
		return "an " + t
	}
	return "a " + t
}

func equalNumber(a, b any) bool {
	fa, ok1 := toFloat(a)
	fb, ok2 := toFloat(b)
	return ok1 && ok2 && fa == fb
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	}
	return 0, false
}

// Caps on arguments, whatever their schema says: an agent or an attacker
// can send a small request that is expensive to handle, and a cap is cheaper
// than the surprise.
const (
	MaxArgumentBytes = 64 << 10 // the whole arguments object, as sent
	MaxDepth         = 16       // nesting of objects and arrays
	MaxArrayLength   = 1000     // entries of any one array
	MaxObjectKeys    = 256      // keys of any one object
)

// checkShape refuses arguments nested too deep or with too many entries.
func checkShape(v any, depth int) error {
	if depth > MaxDepth {
		return invalid(fmt.Sprintf("arguments are nested more than %d levels deep", MaxDepth), "flatten the arguments")
	}
	switch x := v.(type) {
	case map[string]any:
		if len(x) > MaxObjectKeys {
			return invalid(fmt.Sprintf("an object in the arguments has more than %d keys", MaxObjectKeys), "")
		}
		for _, e := range x {
			if err := checkShape(e, depth+1); err != nil {
				return err
			}
		}
	case []any:
		if len(x) > MaxArrayLength {
			return invalid(fmt.Sprintf("a list in the arguments has more than %d entries", MaxArrayLength), "send fewer entries per call")
		}
		for _, e := range x {
			if err := checkShape(e, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func decodeObject(raw json.RawMessage) (map[string]any, error) {
	if len(raw) > MaxArgumentBytes {
		return nil, invalid(fmt.Sprintf("arguments are larger than %d bytes", MaxArgumentBytes), "send less data per call")
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return map[string]any{}, nil
	}
	if raw[0] != '{' {
		return nil, invalid("arguments must be a JSON object", "pass the arguments as an object of named values")
	}
	args, err := unmarshalObject(raw)
	if err != nil {
		return nil, invalid("arguments are not valid JSON", "")
	}
	return args, checkShape(args, 1)
}

// unmarshalObject decodes a JSON object exactly as encoding/json decodes
// it into a map[string]any (what it accepts, and the values it yields:
// FuzzUnmarshalObject checks both), at a fraction of the cost: segmentio's
// decoder, which takes no reflection per value.
func unmarshalObject(raw []byte) (map[string]any, error) {
	// Made here: the decoder makes a map it is not given with room for 64
	// entries, some 5 KiB for the few arguments of a call.
	args := map[string]any{}
	if err := segjson.Unmarshal(raw, &args); err != nil {
		return nil, err
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
	return appendSorted(make([]string, 0, len(m)), m)
}

// appendSorted appends the keys of m to keys, sorted: into a buffer of the
// caller's, the common call's arguments take no allocation.
func appendSorted[V any](keys []string, m map[string]V) []string {
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
