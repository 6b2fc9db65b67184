package pipeline

import "encoding/json"

// Result is what a target produced. Exactly one of Tool, Resource and
// Prompt is set, matching the call's method.
//
// The result types are Warden's own: each encodes (encoding/json) to
// exactly the MCP wire shape of its result, so a stage may store or measure
// one by marshalling it, and a stored one decodes back with json.Unmarshal.
// The protocol SDK is adapted at one boundary (package warden).
type Result struct {
	Tool     *ToolResult
	Resource *ResourceResult
	Prompt   *PromptResult

	// Facts about the result, for audit and metrics.
	Rows      int
	Truncated bool
}

// ToolResult is the result of a tools/call.
//
// A result that asks the client for input (MCP multi round-trip) sets
// InputRequests, and RequestState if it needs state back, and no content.
type ToolResult struct {
	Meta map[string]any `json:"_meta,omitempty"`
	// Content is always an array on the wire, never null.
	Content []Content `json:"content"`
	// StructuredContent is any value that encodes to JSON, such as a
	// json.RawMessage already encoded.
	StructuredContent any                      `json:"structuredContent,omitempty"`
	IsError           bool                     `json:"isError,omitempty"`
	InputRequests     map[string]*InputRequest `json:"inputRequests,omitempty"`
	RequestState      string                   `json:"requestState,omitempty"`
}

// MarshalJSON encodes r in the MCP wire shape.
func (r ToolResult) MarshalJSON() ([]byte, error) {
	type wire ToolResult // without this method
	if r.Content == nil {
		r.Content = []Content{}
	}
	return json.Marshal(wire(r))
}

// Content is one content block of a tool result or prompt message. Type is
// "text", "image", "audio", "resource_link" or "resource", and says which of
// the other fields the block uses:
//
//   - text: Text
//   - image, audio: Data and MIMEType
//   - resource_link: URI, Name, Title, Description, MIMEType and Size
//   - resource: Resource, the embedded resource
//
// Raw, if set, is a block already encoded, written as is in place of the
// other fields: it lets a result pass upstream bytes through. Decoding a
// block sets the fields, never Raw.
type Content struct {
	Type        string            `json:"type"`
	Text        string            `json:"text,omitempty"`
	MIMEType    string            `json:"mimeType,omitempty"`
	Data        []byte            `json:"data,omitempty"` // base64 on the wire
	Resource    *ResourceContents `json:"resource,omitempty"`
	URI         string            `json:"uri,omitempty"`
	Name        string            `json:"name,omitempty"`
	Title       string            `json:"title,omitempty"`
	Description string            `json:"description,omitempty"`
	Size        *int64            `json:"size,omitempty"`
	Meta        map[string]any    `json:"_meta,omitempty"`
	Annotations *Annotations      `json:"annotations,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// Text returns a text content block.
func Text(s string) Content { return Content{Type: "text", Text: s} }

// MarshalJSON encodes c in the MCP wire shape: Raw as is, or the fields of
// its type, with the fields MCP requires of the type present even when
// empty.
func (c Content) MarshalJSON() ([]byte, error) {
	switch {
	case c.Raw != nil:
		return c.Raw, nil
	case c.Type == "text":
		return json.Marshal(struct {
			Type        string         `json:"type"`
			Text        string         `json:"text"`
			Meta        map[string]any `json:"_meta,omitempty"`
			Annotations *Annotations   `json:"annotations,omitempty"`
		}{c.Type, c.Text, c.Meta, c.Annotations})
	case c.Type == "image" || c.Type == "audio":
		data := c.Data
		if data == nil {
			data = []byte{}
		}
		return json.Marshal(struct {
			Type        string         `json:"type"`
			MIMEType    string         `json:"mimeType"`
			Data        []byte         `json:"data"`
			Meta        map[string]any `json:"_meta,omitempty"`
			Annotations *Annotations   `json:"annotations,omitempty"`
		}{c.Type, c.MIMEType, data, c.Meta, c.Annotations})
	}
	type wire Content // without this method
	return json.Marshal(wire(c))
}

// Annotations tell the client how a content block is meant to be used.
type Annotations struct {
	Audience     []string `json:"audience,omitempty"` // "user", "assistant"
	LastModified string   `json:"lastModified,omitempty"`
	Priority     float64  `json:"priority,omitempty"`
}

// ResourceResult is the result of a resources/read.
type ResourceResult struct {
	Meta          map[string]any           `json:"_meta,omitempty"`
	Contents      []*ResourceContents      `json:"contents"`
	InputRequests map[string]*InputRequest `json:"inputRequests,omitempty"`
	RequestState  string                   `json:"requestState,omitempty"`
}

// ResourceContents is the content of one resource: Text, or Blob for
// binary content (base64 on the wire).
type ResourceContents struct {
	URI      string         `json:"uri"`
	MIMEType string         `json:"mimeType,omitempty"`
	Text     string         `json:"text,omitempty"`
	Blob     []byte         `json:"blob,omitzero"`
	Meta     map[string]any `json:"_meta,omitempty"`
}

// PromptResult is the result of a prompts/get.
type PromptResult struct {
	Meta          map[string]any           `json:"_meta,omitempty"`
	Description   string                   `json:"description,omitempty"`
	Messages      []*PromptMessage         `json:"messages"`
	InputRequests map[string]*InputRequest `json:"inputRequests,omitempty"`
	RequestState  string                   `json:"requestState,omitempty"`
}

// PromptMessage is one message of a prompt; Role is "user" or "assistant".
type PromptMessage struct {
	Role    string  `json:"role"`
	Content Content `json:"content"`
}

// InputRequest asks the client for input during a call (MCP multi
// round-trip). Method is "elicitation/create", "sampling/createMessage" or
// "roots/list", and Params its params, in the shape MCP defines for that
// request, encoded as is. The client answers under the request's id in the
// result's InputRequests, and the answer reaches the next round as
// Call.Responses[id].
type InputRequest struct {
	Method string `json:"method"`
	Params any    `json:"params,omitempty"`
}
