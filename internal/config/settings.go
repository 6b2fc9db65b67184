package config

import (
	"reflect"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// Settings are the keys of one declaration (a tool or a resource) that
// belong to its source's kind rather than to every declaration: a SQL
// statement and its parameters, an HTTP operation, a command line. The
// kind decodes them into a type of its own with Decode, and reports what is
// wrong with them with Errorf; either way the error names the file, line
// and path, like every other configuration error.
type Settings struct {
	path []string // of the declaration: tools.NAME or resources.NAME
	node *ast.MappingNode
	c    *checker
}

// Path is the declaration's path from the document root.
func (s *Settings) Path() []string { return slices.Clone(s.path) }

// Keys lists the keys present, in file order.
func (s *Settings) Keys() []string {
	if s == nil || s.node == nil {
		return nil
	}
	keys := make([]string, 0, len(s.node.Values))
	for _, mv := range s.node.Values {
		keys = append(keys, mv.Key.GetToken().Value)
	}
	return keys
}

// Decode decodes the settings into v, a pointer to a struct with yaml
// tags: strictly, so that an unknown key or a value of the wrong type is an
// error. The error is recorded with the configuration's other problems and
// also returned.
func (s *Settings) Decode(v any) error {
	if s == nil || s.node == nil || len(s.node.Values) == 0 {
		return nil
	}
	err := yaml.NodeToValue(s.node, v, yaml.Strict(), yaml.DisallowUnknownField())
	if err == nil {
		return nil
	}
	errs := yamlError(s.c.file, s.c.ast, err).(Errors)
	for _, e := range errs {
		if e.Path == "" {
			e.Path = strings.Join(s.path, ".")
		}
	}
	s.c.errs = append(s.c.errs, errs...)
	return errs
}

// Errorf records a problem at key, a path below the declaration (nil for
// the declaration itself).
func (s *Settings) Errorf(key []string, format string, args ...any) {
	s.c.errorf(append(s.Path(), key...), format, args...)
}

// CheckParams checks parameters declared under key, as every kind with
// typed parameters declares them; it reports whether they are sound.
func (s *Settings) CheckParams(key string, params map[string]Param) bool {
	n := len(s.c.errs)
	s.c.checkParams(append(s.Path(), key), params, false)
	return len(s.c.errs) == n
}

// sharedKeys lists the yaml keys of a declaration type's own fields.
func sharedKeys(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

var (
	toolKeys     = sharedKeys(reflect.TypeFor[Tool]())
	resourceKeys = sharedKeys(reflect.TypeFor[Resource]())
)

// splitSettings moves, in the document body, the keys of each tool and
// resource that are not shared by every declaration into Settings of their
// own, so that the document decodes strictly into Config and each kind
// decodes its own keys. It returns the settings by section and name.
func (c *checker) splitSettings(body ast.Node) map[string]map[string]*Settings {
	out := map[string]map[string]*Settings{}
	root, ok := body.(*ast.MappingNode)
	if !ok {
		return out
	}
	for _, section := range root.Values {
		name := section.Key.GetToken().Value
		var shared []string
		switch name {
		case "tools":
			shared = toolKeys
		case "resources":
			shared = resourceKeys
		default:
			continue
		}
		decls, ok := section.Value.(*ast.MappingNode)
		if !ok {
			continue
		}
		out[name] = map[string]*Settings{}
		for _, decl := range decls.Values {
			m, ok := decl.Value.(*ast.MappingNode)
			if !ok {
				continue
			}
			own := &ast.MappingNode{BaseNode: &ast.BaseNode{}, Start: m.Start, End: m.End}
			kept := m.Values[:0:0]
			for _, mv := range m.Values {
				if slices.Contains(shared, mv.Key.GetToken().Value) {
					kept = append(kept, mv)
				} else {
					own.Values = append(own.Values, mv)
				}
			}
			m.Values = kept
			declName := decl.Key.GetToken().Value
			out[name][declName] = &Settings{path: []string{name, declName}, node: own, c: c}
		}
	}
	return out
}
