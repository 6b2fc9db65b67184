package main

import (
	"context"
	"fmt"

	"github.com/wardenmcp/warden/bench/internal/anchor"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/source"
	"github.com/wardenmcp/warden/pipeline"
)

func init() { source.Register(kind, open) }

// kind is the source kind of the in-memory echo tool: a source of it
// takes no settings, and each tool that names it returns its message
// argument as text, the same tool the anchors serve.
const kind = "echo"

type echo struct{}

func open(_ context.Context, _ string, raw config.RawSource, _ *config.Config) (source.Source, error) {
	for k := range raw {
		if k != "kind" {
			return nil, fmt.Errorf("unknown setting %q (an echo source takes none)", k)
		}
	}
	return echo{}, nil
}

func (echo) Ready(context.Context) error { return nil }

func (echo) Close() error { return nil }

// params is the echo tool's one parameter, declared the way a SQL tool
// declares its own, so that Warden validates it as strictly.
var params = map[string]config.Param{
	anchor.Arg: {Type: "string", Description: "The text to return.", Required: true},
}

func (echo) Targets(_ context.Context, d *source.Declaration) []*pipeline.Target {
	if d.Tool == nil {
		d.Settings.Errorf([]string{"source"}, "an echo source serves tools, not resources")
		return nil
	}
	var none struct{}
	if d.Settings.Decode(&none) != nil {
		return nil
	}
	d.Spec.Source = kind
	return []*pipeline.Target{{
		Spec:        d.Spec,
		Title:       d.Tool.Title,
		Description: d.Tool.Description,
		InputSchema: config.ObjectSchema(params),
		Handler: func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			msg, _ := c.Args[anchor.Arg].(string) // validated: a string, present
			return &pipeline.Result{Tool: &pipeline.ToolResult{Content: []pipeline.Content{pipeline.Text(msg)}}}, nil
		},
	}}
}
