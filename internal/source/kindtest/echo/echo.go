// Package echo is a source kind that exists for tests: its tools answer
// with their own validated arguments. It is also the smallest complete
// example of how a kind is written — a folder under internal/source that
// registers itself by name, and a blank import where it is wanted:
//
//	import _ "github.com/wardenmcp/warden/internal/source/kindtest/echo"
//
//	sources:
//	  e: {kind: echo}
//	tools:
//	  echo_note:
//	    description: Repeat a note.
//	    scope: notes.read
//	    source: e
//	    prefix: "note: "            # the kind's own keys, decoded strictly
//	    parameters:
//	      text: {type: string, description: The note., required: true}
//
// A call of echo_note with {"text": "hi"} answers with the text
// `note: {"text":"hi"}` and the arguments as structured content, after the
// pipeline has checked, validated and guarded it like any other call.
package echo

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/source"
	"github.com/wardenmcp/warden/pipeline"
)

// Kind names this kind in sources and in audit records.
const Kind = "echo"

func init() { source.Register(Kind, open) }

// echo is a source of kind echo; it reaches no system.
type echo struct{}

var _ source.Source = echo{}

func open(_ context.Context, _ string, raw config.RawSource, _ *config.Config) (source.Source, error) {
	for k := range raw {
		if k != "kind" {
			return nil, fmt.Errorf("unknown setting %q (an echo source takes none)", k)
		}
	}
	return echo{}, nil
}

func (echo) Ready(context.Context) error { return nil }
func (echo) Close() error                { return nil }

// settings are the keys of an echo tool's declaration.
type settings struct {
	// Prefix starts the text of every result.
	Prefix string `yaml:"prefix"`
	// Parameters are the tool's arguments, as every kind declares them.
	Parameters map[string]config.Param `yaml:"parameters"`
}

func (echo) Targets(_ context.Context, d *source.Declaration) []*pipeline.Target {
	s := d.Settings
	if d.Tool == nil {
		s.Errorf([]string{"source"}, "an echo source serves tools, not resources")
		return nil
	}
	var es settings
	if s.Decode(&es) != nil || !s.CheckParams("parameters", es.Parameters) {
		return nil
	}
	d.Spec.Source = Kind
	d.Spec.Bound = config.Bound(es.Parameters)
	prefix := es.Prefix
	return []*pipeline.Target{{
		Spec:        d.Spec,
		Title:       d.Tool.Title,
		Description: strings.TrimSpace(d.Tool.Description),
		InputSchema: config.ObjectSchema(es.Parameters),
		Handler: func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			args, err := json.Marshal(c.Args)
			if err != nil {
				return nil, err
			}
			return &pipeline.Result{Tool: &pipeline.ToolResult{
				Content:           []pipeline.Content{pipeline.Text(prefix + string(args))},
				StructuredContent: c.Args,
			}}, nil
		},
	}}
}
