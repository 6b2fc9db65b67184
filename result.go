//lint:file-ignore SA1019 input requests of every kind the protocol still carries (sampling, roots) are converted here.

package warden

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/pipeline"
)

// This file is the SDK boundary for results: the pipeline produces
// Warden's own result types, and the SDK gets its own. Text, the common
// case, is converted field by field; only blocks already encoded (Raw) and
// input requests, which are rare, go through JSON.

// TextResult is a convenience for handlers that answer with plain text.
func TextResult(text string) *pipeline.Result {
	return &pipeline.Result{Tool: &pipeline.ToolResult{Content: []pipeline.Content{pipeline.Text(text)}}}
}

type requestKey struct{}

// Request returns the protocol SDK's request behind a call, from the
// context the call's handler receives, for native handlers that need
// protocol features (progress, logging, sampling, the client's
// capabilities). It is nil if the call did not come through the SDK.
// Policy stages must not depend on it.
func Request(ctx context.Context) mcp.Request {
	r, _ := ctx.Value(requestKey{}).(mcp.Request)
	return r
}

func withRequest(ctx context.Context, req mcp.Request) context.Context {
	return context.WithValue(ctx, requestKey{}, req)
}

// responses returns the client's answers to a previous round's input
// requests as the JSON the client sent. The SDK decoded each from JSON, so
// each encodes again; one that would not is left out, as if unanswered.
func responses(log *slog.Logger, m mcp.InputResponseMap) map[string]json.RawMessage {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]json.RawMessage, len(m))
	for id, r := range m {
		b, err := json.Marshal(r)
		if err != nil {
			log.Error("input response left out: it does not encode", "id", id, "err", err)
			continue
		}
		out[id] = b
	}
	return out
}

func toolResult(r *pipeline.ToolResult) (*mcp.CallToolResult, error) {
	out := &mcp.CallToolResult{
		Meta:              mcp.Meta(r.Meta),
		StructuredContent: r.StructuredContent,
		IsError:           r.IsError,
		RequestState:      r.RequestState,
	}
	var err error
	if out.Content, err = contents(r.Content); err != nil {
		return nil, err
	}
	if out.InputRequests, err = inputRequests(r.InputRequests); err != nil {
		return nil, err
	}
	return out, nil
}

func resourceResult(r *pipeline.ResourceResult) (*mcp.ReadResourceResult, error) {
	out := &mcp.ReadResourceResult{Meta: mcp.Meta(r.Meta), RequestState: r.RequestState}
	if r.Contents != nil {
		out.Contents = make([]*mcp.ResourceContents, len(r.Contents))
		for i, rc := range r.Contents {
			out.Contents[i] = resourceContents(rc)
		}
	}
	var err error
	if out.InputRequests, err = inputRequests(r.InputRequests); err != nil {
		return nil, err
	}
	return out, nil
}

func promptResult(r *pipeline.PromptResult) (*mcp.GetPromptResult, error) {
	out := &mcp.GetPromptResult{Meta: mcp.Meta(r.Meta), Description: r.Description, RequestState: r.RequestState}
	if r.Messages != nil {
		out.Messages = make([]*mcp.PromptMessage, len(r.Messages))
		for i, m := range r.Messages {
			if m == nil {
				return nil, fmt.Errorf("prompt message %d is nil", i)
			}
			c, err := content(&m.Content)
			if err != nil {
				return nil, err
			}
			out.Messages[i] = &mcp.PromptMessage{Role: mcp.Role(m.Role), Content: c}
		}
	}
	var err error
	if out.InputRequests, err = inputRequests(r.InputRequests); err != nil {
		return nil, err
	}
	return out, nil
}

// contents converts content blocks; nil stays nil, as the SDK treats a
// result without content (one that asks for input) apart.
func contents(cs []pipeline.Content) ([]mcp.Content, error) {
	if cs == nil {
		return nil, nil
	}
	out := make([]mcp.Content, len(cs))
	for i := range cs {
		c, err := content(&cs[i])
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

func content(c *pipeline.Content) (mcp.Content, error) {
	if c.Raw != nil {
		return rawContent(c.Raw)
	}
	meta, ann := mcp.Meta(c.Meta), annotations(c.Annotations)
	switch c.Type {
	case "text":
		return &mcp.TextContent{Text: c.Text, Meta: meta, Annotations: ann}, nil
	case "image":
		return &mcp.ImageContent{Data: c.Data, MIMEType: c.MIMEType, Meta: meta, Annotations: ann}, nil
	case "audio":
		return &mcp.AudioContent{Data: c.Data, MIMEType: c.MIMEType, Meta: meta, Annotations: ann}, nil
	case "resource_link":
		return &mcp.ResourceLink{URI: c.URI, Name: c.Name, Title: c.Title, Description: c.Description,
			MIMEType: c.MIMEType, Size: c.Size, Meta: meta, Annotations: ann}, nil
	case "resource":
		if c.Resource == nil {
			return nil, fmt.Errorf("embedded resource content without a resource")
		}
		return &mcp.EmbeddedResource{Resource: resourceContents(c.Resource), Meta: meta, Annotations: ann}, nil
	}
	return nil, fmt.Errorf("content of unknown type %q", c.Type)
}

// rawContent decodes a block already encoded, as the SDK decodes blocks,
// so that every field the SDK knows survives.
func rawContent(raw json.RawMessage) (mcp.Content, error) {
	var r struct {
		Content []json.RawMessage `json:"content"`
	}
	r.Content = []json.RawMessage{raw}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoded content: %w", err)
	}
	var res mcp.CallToolResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("encoded content: %w", err)
	}
	return res.Content[0], nil
}

func resourceContents(rc *pipeline.ResourceContents) *mcp.ResourceContents {
	if rc == nil {
		return nil
	}
	return &mcp.ResourceContents{URI: rc.URI, MIMEType: rc.MIMEType, Text: rc.Text, Blob: rc.Blob, Meta: mcp.Meta(rc.Meta)}
}

func annotations(a *pipeline.Annotations) *mcp.Annotations {
	if a == nil {
		return nil
	}
	out := &mcp.Annotations{LastModified: a.LastModified, Priority: a.Priority}
	if a.Audience != nil {
		out.Audience = make([]mcp.Role, len(a.Audience))
		for i, r := range a.Audience {
			out.Audience[i] = mcp.Role(r)
		}
	}
	return out
}

// inputRequests converts a result's input requests through their JSON, as
// the SDK decodes them from the wire. Nil stays nil and empty stays empty:
// to the SDK, an empty map means "busy, retry" (load shedding).
func inputRequests(m map[string]*pipeline.InputRequest) (mcp.InputRequestMap, error) {
	if m == nil {
		return nil, nil
	}
	out := make(mcp.InputRequestMap, len(m))
	for id, r := range m {
		if r == nil {
			return nil, fmt.Errorf("input request %q is nil", id)
		}
		var p mcp.InputRequest
		switch r.Method {
		case "elicitation/create":
			p = new(mcp.ElicitParams)
		case "sampling/createMessage":
			p = new(mcp.CreateMessageWithToolsParams)
		case "roots/list":
			p = new(mcp.ListRootsParams)
		default:
			return nil, fmt.Errorf("input request %q: unknown method %q", id, r.Method)
		}
		b, err := json.Marshal(r.Params)
		if err == nil {
			err = json.Unmarshal(b, p)
		}
		if err != nil {
			return nil, fmt.Errorf("input request %q (%s): %w", id, r.Method, err)
		}
		out[id] = p
	}
	return out, nil
}
