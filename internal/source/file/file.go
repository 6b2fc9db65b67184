// Package file is the source kind for files: resources read from a
// directory, which no path can leave — not by "..", not by a symbolic link
// (os.Root refuses both).
//
// Resources that name no source are served by the built-in source "file",
// over server.resources_dir:
//
//	resources:
//	  schema:
//	    uri: crm://schema
//	    file: schema.md           # one file, relative to the directory
//	  docs:
//	    uri_template: docs://{+path}
//	    directory: docs           # every file below it, by the one variable
//
// A source of kind file may also be declared under sources, with its own
// directory (dir).
package file

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/yosida95/uritemplate/v3"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/source"
	"github.com/wardenmcp/warden/pipeline"
)

func init() { source.Register("file", open) }

// Kind names this kind in sources and in audit records.
const Kind = "file"

type files struct {
	root *os.Root

	mu    sync.Mutex
	roots []*os.Root // of directory templates, closed with the source
}

func open(_ context.Context, name string, raw config.RawSource, cfg *config.Config) (source.Source, error) {
	dir, _ := raw["dir"].(string)
	for k := range raw {
		if k != "kind" && k != "dir" {
			return nil, fmt.Errorf("unknown setting %q (a file source takes dir)", k)
		}
	}
	if dir == "" {
		return nil, errors.New("dir: required (the directory the resources are read from)")
	}
	root, err := os.OpenRoot(cfg.Resolve(dir))
	if err != nil {
		return nil, err
	}
	return &files{root: root}, nil
}

func (f *files) Ready(context.Context) error {
	_, err := f.root.Stat(".")
	return err
}

func (f *files) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	errs := []error{f.root.Close()}
	for _, r := range f.roots {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}

// fileSettings are the keys of a file resource's declaration: file with a
// uri, directory with a uri_template.
type fileSettings struct {
	File      string `yaml:"file"`
	Directory string `yaml:"directory"`
}

func (f *files) Targets(_ context.Context, d *source.Declaration) []*pipeline.Target {
	s := d.Settings
	r := d.Resource
	if r == nil {
		s.Errorf([]string{"source"}, "a file source serves resources, not tools")
		return nil
	}
	var fs fileSettings
	if s.Decode(&fs) != nil {
		return nil
	}
	d.Spec.Source = Kind
	t := &pipeline.Target{Spec: d.Spec, Title: r.Title, Description: strings.TrimSpace(r.Description)}
	switch {
	case r.URI != "":
		if fs.Directory != "" {
			s.Errorf([]string{"directory"}, "a resource with uri is one file: set file, or use uri_template with directory")
			return nil
		}
		if !local(s, "file", fs.File, "required with uri: the file, relative to the source's directory") {
			return nil
		}
		if _, err := f.root.Stat(fs.File); err != nil {
			s.Errorf([]string{"file"}, "cannot read %s inside the source's directory: %v", fs.File, err)
			return nil
		}
		t.URI, t.MIMEType = r.URI, mimeType(r.MIMEType, fs.File)
		name := fs.File
		t.Handler = handler(f.root, func(*pipeline.Call) string { return name }, r.MIMEType)
	default:
		if fs.File != "" {
			s.Errorf([]string{"file"}, "a template serves a directory: set directory, or use uri with file")
			return nil
		}
		tmpl, err := uritemplate.New(r.URITemplate)
		if err != nil || len(tmpl.Varnames()) != 1 {
			s.Errorf([]string{"uri_template"}, "a directory template has exactly one variable, such as docs://{+path}")
			return nil
		}
		if !local(s, "directory", fs.Directory, "required with uri_template: the directory, relative to the source's directory") {
			return nil
		}
		// The template gets a root of its own, so that a path cannot reach
		// the rest of the source's directory either.
		dir, err := f.root.OpenRoot(fs.Directory)
		if err != nil {
			s.Errorf([]string{"directory"}, "%s is not a directory inside the source's directory", fs.Directory)
			return nil
		}
		f.mu.Lock()
		f.roots = append(f.roots, dir)
		f.mu.Unlock()
		v := tmpl.Varnames()[0]
		t.URITemplate, t.MIMEType = r.URITemplate, r.MIMEType
		t.InputSchema = &jsonschema.Schema{
			Type:                 "object",
			Required:             []string{v},
			Properties:           map[string]*jsonschema.Schema{v: {Type: "string", MinLength: jsonschema.Ptr(1), MaxLength: jsonschema.Ptr(1024)}},
			AdditionalProperties: &jsonschema.Schema{Not: &jsonschema.Schema{}},
		}
		t.Handler = handler(dir, func(c *pipeline.Call) string { return c.Args[v].(string) }, r.MIMEType)
	}
	return []*pipeline.Target{t}
}

// local checks that a declared path is set, relative and inside.
func local(s *config.Settings, key, path, missing string) bool {
	switch {
	case path == "":
		s.Errorf([]string{key}, "%s", missing)
	case filepath.IsAbs(path) || !filepath.IsLocal(path):
		s.Errorf([]string{key}, "must be a relative path inside the source's directory")
	default:
		return true
	}
	return false
}

// handler reads a file through root, which refuses any path that leaves
// its directory, by ".." or by symlink.
func handler(root *os.Root, file func(*pipeline.Call) string, mimeOverride string) pipeline.Handler {
	return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		name := file(c)
		data, err := root.ReadFile(filepath.FromSlash(name))
		if err != nil {
			return nil, pipeline.Errorf(pipeline.NotFound, "list the resources to see what exists", "no resource at %s", c.Target)
		}
		rc := &pipeline.ResourceContents{URI: c.Target, MIMEType: mimeType(mimeOverride, name)}
		if utf8.Valid(data) {
			rc.Text = string(data)
		} else {
			rc.Blob = data
		}
		return &pipeline.Result{Resource: &pipeline.ResourceResult{Contents: []*pipeline.ResourceContents{rc}}}, nil
	}
}

func mimeType(declared, file string) string {
	if declared != "" {
		return declared
	}
	if t := mime.TypeByExtension(filepath.Ext(file)); t != "" {
		return t
	}
	return "text/plain"
}
