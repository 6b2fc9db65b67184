package main

//lint:file-ignore SA1019 the suite exercises roots, sampling and logging, deprecated by SEP-2577 but still in the protocol.

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/pipeline"
)

// addTools registers the suite's fixture tools. A tool declared without an
// input schema takes no arguments; Warden makes every schema strict unless it
// says otherwise.
func addTools(srv *warden.Server) {
	for _, t := range []*warden.Tool{
		{Name: "test_simple_text", Description: "Tests simple text content response", Handler: simpleText},
		{Name: "test_image_content", Description: "Tests image content response", Handler: imageContent},
		{Name: "test_audio_content", Description: "Tests audio content response", Handler: audioContent},
		{Name: "test_embedded_resource", Description: "Tests embedded resource content response", Handler: embeddedResource},
		{Name: "test_multiple_content_types", Description: "Tests response with multiple content types (text, image, resource)", Handler: multipleContentTypes},
		{Name: "test_tool_with_logging", Description: "Tests tool that emits log messages during execution", Handler: withLogging},
		{Name: "test_tool_with_progress", Description: "Tests tool that reports progress notifications", Handler: withProgress},
		{Name: "test_error_handling", Description: "Tests error response handling", Handler: failing},
		{
			Name:        "test_sampling",
			Description: "Tests server-initiated sampling (LLM completion request)",
			InputSchema: mustSchema(`{
				"type": "object",
				"properties": {"prompt": {"type": "string", "description": "The prompt to send to the LLM"}},
				"required": ["prompt"]
			}`),
			Handler: sampling,
		},
		{
			Name:        "test_elicitation",
			Description: "Tests server-initiated elicitation (user input request)",
			InputSchema: mustSchema(`{
				"type": "object",
				"properties": {"message": {"type": "string", "description": "The message to show the user"}},
				"required": ["message"]
			}`),
			Handler: elicitation,
		},
		{Name: "test_elicitation_sep1034_defaults", Description: "Tests elicitation with default values per SEP-1034", Handler: elicitationDefaults},
		{Name: "test_elicitation_sep1330_enums", Description: "Tests elicitation with enum schema improvements per SEP-1330", Handler: elicitationEnums},
		{
			// SEP-1613 / SEP-2106: the suite checks that $schema, $defs,
			// additionalProperties and the wider 2020-12 vocabulary ($anchor,
			// allOf/anyOf, if/then/else) survive tools/list verbatim.
			Name:        "json_schema_2020_12_tool",
			Description: "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613, SEP-2106)",
			InputSchema: mustSchema(`{
				"$schema": "https://json-schema.org/draft/2020-12/schema",
				"type": "object",
				"$defs": {
					"address": {
						"$anchor": "addressDef",
						"type": "object",
						"properties": {
							"street": {"type": "string"},
							"city": {"type": "string"}
						}
					}
				},
				"properties": {
					"name": {"type": "string"},
					"address": {"$ref": "#/$defs/address"},
					"contactMethod": {"type": "string", "enum": ["phone", "email"]},
					"phone": {"type": "string"},
					"email": {"type": "string"}
				},
				"allOf": [
					{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}
				],
				"if": {
					"properties": {"contactMethod": {"const": "phone"}},
					"required": ["contactMethod"]
				},
				"then": {"required": ["phone"]},
				"else": {"required": ["email"]},
				"additionalProperties": false
			}`),
			Handler: jsonSchema202012,
		},
		{
			Name:        "test_reconnection",
			Description: "Tests SSE stream disconnection and client reconnection (SEP-1699). Server will close the stream mid-call and send the result after client reconnects.",
			Handler:     reconnection,
		},
		{
			// SEP-2243: a tool with an x-mcp-header annotation arms the
			// http-custom-header-server-validation scenario.
			Name:        "test_x_mcp_header",
			Description: "Tests SEP-2243 Mcp-Param-* server-side validation",
			InputSchema: mustSchema(`{
				"type": "object",
				"properties": {
					"region": {"type": "string", "description": "mirrored into Mcp-Param-Region", "x-mcp-header": "Region"},
					"level": {"type": "integer", "description": "non-mirrored argument"}
				}
			}`),
			Handler: xMcpHeader,
		},
		// SEP-2575 diagnostic tools for the stateless scenario.
		{
			Name:        "test_missing_capability",
			Description: "Requires the sampling client capability; used to verify MissingRequiredClientCapabilityError (-32021) (SEP-2575)",
			Handler:     missingCapability,
		},
		{
			Name:        "test_streaming_elicitation",
			Description: "Streams progress notifications while a call is in flight; used to verify response streams carry only notifications, never independent JSON-RPC requests (SEP-2575)",
			Handler:     streamingElicitation,
		},
		{
			Name:        "test_logging_tool",
			Description: "Attempts to emit a log message; the framework must drop it when the client did not set _meta.../logLevel (SEP-2575)",
			Handler:     loggingTool,
		},
		{
			Name:        "test_trigger_tool_change",
			Description: "Mutates the tool list to trigger a notifications/tools/list_changed on active subscription streams (SEP-2575)",
			Mode:        pipeline.Write,
			Handler:     triggerToolChange(srv),
		},
		{
			Name:        "test_trigger_prompt_change",
			Description: "Mutates the prompt list to trigger a notifications/prompts/list_changed on active subscription streams (SEP-2575)",
			Mode:        pipeline.Write,
			Handler:     triggerPromptChange(srv),
		},
	} {
		t.Scope = scope
		t.Lean = !usesRequest[t.Name]
		srv.AddTool(t)
	}
	addInputRequiredTools(srv)
}

// usesRequest names the fixture tools whose handlers use the protocol
// SDK's request (its session, progress, logging, headers, capabilities);
// the others declare Lean, so that their stateless calls are served on
// Warden's lean path and the suite checks that path too.
var usesRequest = map[string]bool{
	"test_tool_with_logging": true, "test_tool_with_progress": true, "test_sampling": true,
	"test_elicitation": true, "test_elicitation_sep1034_defaults": true, "test_elicitation_sep1330_enums": true,
	"test_reconnection": true, "test_missing_capability": true, "test_streaming_elicitation": true,
	"test_logging_tool": true, "test_input_required_result_capabilities": true,
}

func simpleText(context.Context, *pipeline.Call) (*pipeline.Result, error) {
	return warden.TextResult("This is a simple text response for testing."), nil
}

func imageContent(context.Context, *pipeline.Call) (*pipeline.Result, error) {
	return toolResult(image(testImage, "image/png")), nil
}

func audioContent(context.Context, *pipeline.Call) (*pipeline.Result, error) {
	return toolResult(audio(testAudio, "audio/wav")), nil
}

func embeddedResource(context.Context, *pipeline.Call) (*pipeline.Result, error) {
	return toolResult(embedded("test://embedded-resource", "This is an embedded resource")), nil
}

func multipleContentTypes(context.Context, *pipeline.Call) (*pipeline.Result, error) {
	return toolResult(
		pipeline.Text("This is text content"),
		image(testImage, "image/png"),
		embedded("test://embedded-in-multiple", "This is an embedded resource"),
	), nil
}

// toolRequest returns the SDK request behind a tool call, for the protocol
// features (logging, progress, sampling, elicitation) the fixtures exercise.
func toolRequest(ctx context.Context) *mcp.CallToolRequest {
	return warden.Request(ctx).(*mcp.CallToolRequest)
}

func withLogging(ctx context.Context, _ *pipeline.Call) (*pipeline.Result, error) {
	sess := toolRequest(ctx).Session
	for i, msg := range []string{"Tool execution started", "Tool processing data", "Tool execution completed"} {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		sess.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Data: msg})
	}
	return warden.TextResult("Tool with logging executed successfully"), nil
}

// withProgress reports 0, 50 and 100 of 100 and answers with the progress
// token it was given, as the TypeScript reference server does.
func withProgress(ctx context.Context, _ *pipeline.Call) (*pipeline.Result, error) {
	req := toolRequest(ctx)
	token := req.Params.GetProgressToken()
	const total = 100.0
	for _, p := range []float64{0, 50, 100} {
		req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
			ProgressToken: token,
			Progress:      p,
			Total:         total,
			Message:       fmt.Sprintf("Completed step %.0f of %.0f", p, total),
		})
		time.Sleep(50 * time.Millisecond)
	}
	return warden.TextResult(fmt.Sprint(token)), nil
}

// failing returns a *pipeline.Error, which Warden shows to the client as a
// tool error (isError) with its message.
func failing(context.Context, *pipeline.Call) (*pipeline.Result, error) {
	return nil, &pipeline.Error{Code: pipeline.Internal, Message: "This tool intentionally returns an error for testing"}
}

func sampling(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	res, err := toolRequest(ctx).Session.CreateMessage(ctx, &mcp.CreateMessageParams{
		Messages:  []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: c.Args["prompt"].(string)}}},
		MaxTokens: 100,
	})
	if err != nil {
		return nil, pipeline.Errorf(pipeline.Unavailable, "use a client that supports sampling", "sampling failed: %v", err)
	}
	text := "(non-text response)"
	if tc, ok := res.Content.(*mcp.TextContent); ok {
		text = tc.Text
	}
	return warden.TextResult("LLM response: " + text), nil
}

func elicitation(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	return elicit(ctx, &mcp.ElicitParams{
		Message: c.Args["message"].(string),
		RequestedSchema: &jsonschema.Schema{
			Type: "object",
			Properties: map[string]*jsonschema.Schema{
				"username": {Type: "string", Description: "Your preferred username"},
			},
			Required: []string{"username"},
		},
	})
}

// elicitationDefaults asks for primitives that each carry a default
// (SEP-1034). The schema is a plain map so that it goes out exactly as
// written.
func elicitationDefaults(ctx context.Context, _ *pipeline.Call) (*pipeline.Result, error) {
	return elicit(ctx, &mcp.ElicitParams{
		Message: "Test defaults for primitives",
		RequestedSchema: map[string]any{
			"type": "object",
			"properties": map[string]any{
				"name":     map[string]any{"type": "string", "description": "User name", "default": "John Doe"},
				"age":      map[string]any{"type": "integer", "description": "User age", "default": 30},
				"score":    map[string]any{"type": "number", "description": "User score", "default": 95.5},
				"status":   map[string]any{"type": "string", "description": "User status", "enum": []string{"active", "inactive", "pending"}, "default": "active"},
				"verified": map[string]any{"type": "boolean", "description": "Verification status", "default": true},
			},
		},
	})
}

// elicitationEnums asks for every enum shape of SEP-1330: untitled, titled
// (oneOf/anyOf with const and title), legacy enumNames, single and multi.
func elicitationEnums(ctx context.Context, _ *pipeline.Call) (*pipeline.Result, error) {
	titled := []map[string]any{
		{"const": "value1", "title": "First Option"},
		{"const": "value2", "title": "Second Option"},
		{"const": "value3", "title": "Third Option"},
	}
	return elicit(ctx, &mcp.ElicitParams{
		Message: "Test enum schemas",
		RequestedSchema: map[string]any{
			"type": "object",
			"properties": map[string]any{
				"untitledSingle": map[string]any{"type": "string", "enum": []string{"option1", "option2", "option3"}},
				"titledSingle":   map[string]any{"type": "string", "oneOf": titled},
				"legacyEnum": map[string]any{
					"type":      "string",
					"enum":      []string{"opt1", "opt2", "opt3"},
					"enumNames": []string{"Option One", "Option Two", "Option Three"},
				},
				"untitledMulti": map[string]any{
					"type": "array", "minItems": 1, "maxItems": 3,
					"items": map[string]any{"type": "string", "enum": []string{"option1", "option2", "option3"}},
				},
				"titledMulti": map[string]any{
					"type": "array", "minItems": 1, "maxItems": 3,
					"items": map[string]any{"anyOf": titled},
				},
			},
		},
	})
}

// elicit asks the client for input and reports what came back.
func elicit(ctx context.Context, p *mcp.ElicitParams) (*pipeline.Result, error) {
	res, err := toolRequest(ctx).Session.Elicit(ctx, p)
	if err != nil {
		return nil, pipeline.Errorf(pipeline.Unavailable, "use a client that supports elicitation", "elicitation failed: %v", err)
	}
	return warden.TextResult(fmt.Sprintf("Elicitation result: action=%s, content=%v", res.Action, res.Content)), nil
}

// jsonSchema202012 echoes its validated arguments.
func jsonSchema202012(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	args, err := json.Marshal(c.Args)
	if err != nil {
		return nil, err
	}
	return warden.TextResult(fmt.Sprintf("JSON Schema 2020-12 tool called with: %s", args)), nil
}

// reconnection closes the response stream mid-call (SEP-1699); the client
// must reconnect to receive the result.
func reconnection(ctx context.Context, _ *pipeline.Call) (*pipeline.Result, error) {
	if extra := toolRequest(ctx).Extra; extra != nil && extra.CloseSSEStream != nil {
		extra.CloseSSEStream(mcp.CloseSSEStreamArgs{RetryAfter: 10 * time.Millisecond})
	}
	time.Sleep(100 * time.Millisecond)
	return warden.TextResult("Reconnection test completed successfully. If you received this, the client properly reconnected after stream closure."), nil
}

func xMcpHeader(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	region, _ := c.Args["region"].(string)
	return warden.TextResult("region=" + region), nil
}

// missingCapability refuses, with the protocol error SEP-2575 defines, a
// client that did not declare the sampling capability.
func missingCapability(ctx context.Context, _ *pipeline.Call) (*pipeline.Result, error) {
	if caps := toolRequest(ctx).ClientCapabilities(); caps != nil && caps.Sampling != nil {
		return warden.TextResult("Client declared the sampling capability; tool executed."), nil
	}
	data, err := json.Marshal(mcp.MissingRequiredClientCapabilityData{
		RequiredCapabilities: &mcp.ClientCapabilities{Sampling: &mcp.SamplingCapabilities{}},
	})
	if err != nil {
		return nil, err
	}
	return nil, &jsonrpc.Error{
		Code:    mcp.CodeMissingRequiredClientCapabilities,
		Message: "sampling capability required but not declared by client",
		Data:    data,
	}
}

// streamingElicitation answers plainly: SEP-2575 requires that a response
// stream carry no independent requests, which a plain result satisfies. The
// scenario declares no elicitation capability, so it must not elicit.
func streamingElicitation(context.Context, *pipeline.Call) (*pipeline.Result, error) {
	return warden.TextResult("stream observed: result frames only, no top-level requests"), nil
}

// loggingTool tries to log; the SDK drops the message unless the client
// asked for logs in the request's _meta (SEP-2575).
func loggingTool(ctx context.Context, _ *pipeline.Call) (*pipeline.Result, error) {
	toolRequest(ctx).Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Data: "test_logging_tool executed"})
	return warden.TextResult("Log attempted; framework gates on _meta.../logLevel."), nil
}

// registerMu serialises the registrations the trigger tools make while the
// server runs: Warden's Add* methods are meant for start-up and are not safe
// for concurrent use.
var registerMu sync.Mutex

// triggerToolChange (re-)registers a no-op tool. Every registration makes the
// SDK send notifications/tools/list_changed, even when it replaces a tool of
// the same name, which is what the SEP-2575 subscription checks look for.
func triggerToolChange(srv *warden.Server) pipeline.Handler {
	return func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
		registerMu.Lock()
		srv.AddTool(&warden.Tool{
			Scope:       scope,
			Name:        "__transient_tool_for_list_changed",
			Description: "Transient tool used to trigger tools/list_changed",
			Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
				return toolResult(), nil
			},
		})
		registerMu.Unlock()
		return warden.TextResult("tools_list_changed published"), nil
	}
}

// triggerPromptChange is the prompt analogue of triggerToolChange.
func triggerPromptChange(srv *warden.Server) pipeline.Handler {
	return func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
		registerMu.Lock()
		srv.AddPrompt(&warden.Prompt{
			Lean:        true,
			Scope:       scope,
			Name:        "__transient_prompt_for_list_changed",
			Description: "Transient prompt used to trigger prompts/list_changed",
			Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
				return &pipeline.Result{Prompt: &pipeline.PromptResult{}}, nil
			},
		})
		registerMu.Unlock()
		return warden.TextResult("prompts_list_changed published"), nil
	}
}
