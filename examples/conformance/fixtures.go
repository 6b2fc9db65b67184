package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

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
func toolResult(content ...mcp.Content) *pipeline.Result {
	return &pipeline.Result{Tool: &mcp.CallToolResult{Content: content}}
}

// inputRequired answers a tool call with a multi-round-trip request for
// client input (SEP-2322) instead of a result.
func inputRequired(reqs mcp.InputRequestMap, state string) *pipeline.Result {
	return &pipeline.Result{Tool: &mcp.CallToolResult{InputRequests: reqs, RequestState: state}}
}
