package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/wardenmcp/warden/pipeline"
)

// The media fixtures the suite checks for, as in the TypeScript and Go
// reference servers: a 1×1 red PNG and a silent WAV.
var (
	testImage = mustDecode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
	testAudio = mustDecode("UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=")
)

func mustDecode(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(fmt.Sprintf("conformance: bad base64 fixture: %v", err))
	}
	return b
}

// mustSchema parses a JSON Schema written out literally, for fixtures whose
// exact wire form the suite inspects.
func mustSchema(src string) *jsonschema.Schema {
	var s jsonschema.Schema
	if err := json.Unmarshal([]byte(src), &s); err != nil {
		panic(fmt.Sprintf("conformance: bad schema fixture: %v", err))
	}
	return &s
}

// toolResult answers a tool call with the given content.
func toolResult(content ...pipeline.Content) *pipeline.Result {
	return &pipeline.Result{Tool: &pipeline.ToolResult{Content: content}}
}

// inputRequired answers a tool call with a multi-round-trip request for
// client input (SEP-2322) instead of a result.
func inputRequired(reqs map[string]*pipeline.InputRequest, state string) *pipeline.Result {
	return &pipeline.Result{Tool: &pipeline.ToolResult{InputRequests: reqs, RequestState: state}}
}

func image(data []byte, mimeType string) pipeline.Content {
	return pipeline.Content{Type: "image", Data: data, MIMEType: mimeType}
}

func audio(data []byte, mimeType string) pipeline.Content {
	return pipeline.Content{Type: "audio", Data: data, MIMEType: mimeType}
}

// embedded is an embedded text resource.
func embedded(uri, text string) pipeline.Content {
	return pipeline.Content{Type: "resource", Resource: &pipeline.ResourceContents{URI: uri, MIMEType: "text/plain", Text: text}}
}
