package main

//lint:file-ignore SA1019 the suite exercises roots, sampling and logging, deprecated by SEP-2577 but still in the protocol.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/pipeline"
)

// The tools and prompt below exercise multi-round-trip requests (SEP-2322):
// instead of calling the client back, the server answers with the input it
// needs (InputRequests, plus an opaque RequestState) and the client retries
// the same request with the answers (InputResponses). The server keeps no
// memory between rounds; everything it needs travels in the request.

func addInputRequiredTools(srv *warden.Server) {
	for _, t := range []*warden.Tool{
		{Name: "test_input_required_result_elicitation", Description: "MRTR (SEP-2322): asks for the caller name via an in-band elicitation request", Handler: inputElicitation},
		{Name: "test_input_required_result_sampling", Description: "MRTR (SEP-2322): asks for an LLM completion via an in-band sampling request", Handler: inputSampling},
		{Name: "test_input_required_result_list_roots", Description: "MRTR (SEP-2322): asks for the client roots via an in-band roots/list request", Handler: inputListRoots},
		{Name: "test_input_required_result_request_state", Description: "MRTR (SEP-2322): round-trips integrity-protected requestState alongside an elicitation request", Handler: inputRequestState},
		{Name: "test_input_required_result_multiple_inputs", Description: "MRTR (SEP-2322): asks for elicitation, sampling and roots input in a single round", Handler: inputMultiple},
		{Name: "test_input_required_result_multi_round", Description: "MRTR (SEP-2322): two elicitation rounds with evolving requestState before completing", Handler: inputMultiRound},
		{Name: "test_input_required_result_tampered_state", Description: "MRTR (SEP-2322): rejects retries whose requestState fails integrity verification", Handler: inputTamperedState},
		{Name: "test_input_required_result_capabilities", Description: "MRTR (SEP-2322): only requests input kinds the declared client capabilities cover", Handler: inputCapabilities},
	} {
		t.Scope = scope
		t.Lean = !usesRequest[t.Name]
		srv.AddTool(t)
	}
}

// tamperedSuffix is what the tampered-state scenario appends to a state this
// server issued. Recognising it is enough for the fixture; a real server
// protects its state with a MAC or AEAD (SEP-2322, "Server Requirements").
const tamperedSuffix = "-TAMPERED"

func stateValid(state string) bool {
	return state != "" && !strings.HasSuffix(state, tamperedSuffix)
}

// acceptedContent returns the content of the elicitation answer under id if
// the user accepted it, or nil.
func acceptedContent(c *pipeline.Call, id string) map[string]any {
	var res struct {
		Action  string         `json:"action"`
		Content map[string]any `json:"content"`
	}
	if json.Unmarshal(c.Responses[id], &res) != nil || res.Action != "accept" {
		return nil
	}
	return res.Content
}

// samplingText returns the first text of the sampling answer under id.
func samplingText(c *pipeline.Call, id string) (string, bool) {
	var res mcp.CreateMessageWithToolsResult
	if json.Unmarshal(c.Responses[id], &res) != nil || res.Role == "" {
		return "", false
	}
	for _, b := range res.Content {
		if tc, ok := b.(*mcp.TextContent); ok {
			return tc.Text, true
		}
	}
	return "(non-text response)", true
}

// listedRoots returns the URIs of the roots/list answer under id.
func listedRoots(c *pipeline.Call, id string) ([]string, bool) {
	var res struct {
		Roots json.RawMessage `json:"roots"`
	}
	if json.Unmarshal(c.Responses[id], &res) != nil || res.Roots == nil {
		return nil, false
	}
	var roots []*mcp.Root
	if json.Unmarshal(res.Roots, &roots) != nil {
		return nil, false
	}
	uris := make([]string, 0, len(roots))
	for _, r := range roots {
		if r != nil {
			uris = append(uris, r.URI)
		}
	}
	return uris, true
}

// objectSchema is an elicitation schema of one required property.
func objectSchema(name, typ string) *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:       "object",
		Properties: map[string]*jsonschema.Schema{name: {Type: typ}},
		Required:   []string{name},
	}
}

// The input requests below take the SDK's params types, which encode to
// the params MCP defines for each request.

func askElicit(msg string, schema *jsonschema.Schema) *pipeline.InputRequest {
	return &pipeline.InputRequest{Method: "elicitation/create", Params: &mcp.ElicitParams{Message: msg, RequestedSchema: schema}}
}

func askName(msg string) *pipeline.InputRequest {
	return askElicit(msg, objectSchema("name", "string"))
}

func askConfirm() *pipeline.InputRequest {
	return askElicit("Please confirm", objectSchema("ok", "boolean"))
}

func askSampling(prompt string, maxTokens int64) *pipeline.InputRequest {
	return &pipeline.InputRequest{Method: "sampling/createMessage", Params: &mcp.CreateMessageParams{
		Messages:  []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: prompt}}},
		MaxTokens: maxTokens,
	}}
}

func askRoots() *pipeline.InputRequest {
	return &pipeline.InputRequest{Method: "roots/list", Params: &mcp.ListRootsParams{}}
}

type inputs = map[string]*pipeline.InputRequest

// inputElicitation asks for the caller's name. It also serves the
// result-type, missing-input-response, ignore-extra-params and validate-input
// scenarios: anything without an accepted, non-empty "user_name" answer is
// asked again.
func inputElicitation(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	if name, _ := acceptedContent(c, "user_name")["name"].(string); name != "" {
		return warden.TextResult(fmt.Sprintf("Hello, %s!", name)), nil
	}
	return inputRequired(inputs{"user_name": askName("What is your name?")}, ""), nil
}

func inputSampling(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	if text, ok := samplingText(c, "capital_question"); ok {
		return warden.TextResult("Sampling response: " + text), nil
	}
	return inputRequired(inputs{"capital_question": askSampling("What is the capital of France?", 100)}, ""), nil
}

func inputListRoots(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	if uris, ok := listedRoots(c, "client_roots"); ok {
		return warden.TextResult(fmt.Sprintf("Client exposed %d root(s): %s", len(uris), strings.Join(uris, ", "))), nil
	}
	return inputRequired(inputs{"client_roots": askRoots()}, ""), nil
}

func inputRequestState(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	if acceptedContent(c, "confirm") != nil {
		if !stateValid(c.State) {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "invalid requestState"}
		}
		return warden.TextResult("state-ok: requestState received and confirmation accepted"), nil
	}
	return inputRequired(inputs{"confirm": askConfirm()}, "request_state"), nil
}

func inputMultiple(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	name, _ := acceptedContent(c, "user_name")["name"].(string)
	greeting, hasGreeting := samplingText(c, "greeting")
	roots, hasRoots := listedRoots(c, "client_roots")
	if name != "" && hasGreeting && hasRoots {
		return warden.TextResult(fmt.Sprintf("%s %s — %d root(s) visible", greeting, name, len(roots))), nil
	}
	return inputRequired(inputs{
		"user_name":    askName("What is your name?"),
		"greeting":     askSampling("Generate a greeting", 50),
		"client_roots": askRoots(),
	}, "multiple_inputs"), nil
}

// inputMultiRound runs two elicitation rounds. The state carries the round
// and the name from round one: "round=1", then "round=2;name=<name>".
func inputMultiRound(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	switch c.State {
	case "":
		return inputRequired(inputs{"step1": askName("Step 1: What is your name?")}, "round=1"), nil
	case "round=1":
		name, _ := acceptedContent(c, "step1")["name"].(string)
		if name == "" {
			name = "unknown"
		}
		return inputRequired(inputs{"step2": askElicit("Step 2: What is your favorite color?", objectSchema("color", "string"))}, "round=2;name="+name), nil
	default:
		color, _ := acceptedContent(c, "step2")["color"].(string)
		if color == "" {
			color = "unknown"
		}
		name := strings.TrimPrefix(c.State, "round=2;name=")
		return warden.TextResult(fmt.Sprintf("Multi-round complete: %s likes %s", name, color)), nil
	}
}

func inputTamperedState(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	if c.State != "" {
		if !stateValid(c.State) {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "invalid requestState: tampered"}
		}
		if acceptedContent(c, "confirm") != nil {
			return warden.TextResult("state-ok: requestState received and confirmation accepted"), nil
		}
	}
	return inputRequired(inputs{"confirm": askConfirm()}, "tampered_state"), nil
}

// inputCapabilities asks only for the kinds of input the client declared it
// can give, read from the capabilities in the request's _meta.
func inputCapabilities(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	if len(c.Responses) > 0 {
		return warden.TextResult("Capability-aware input requests fulfilled"), nil
	}
	caps := toolRequest(ctx).ClientCapabilities()
	if caps == nil {
		caps = &mcp.ClientCapabilities{}
	}
	reqs := inputs{}
	if caps.Elicitation != nil {
		reqs["user_name"] = askName("What is your name?")
	}
	if caps.Sampling != nil {
		reqs["greeting"] = askSampling("Generate a short greeting", 50)
	}
	if caps.RootsV2 != nil || caps.Roots.ListChanged {
		reqs["client_roots"] = askRoots()
	}
	if len(reqs) == 0 {
		return warden.TextResult("No declared client capability supports an in-band input request"), nil
	}
	return inputRequired(reqs, ""), nil
}

// inputRequiredPrompt is the prompts/get analogue: it asks for context, then
// answers with a message that includes it.
func inputRequiredPrompt(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	if content := acceptedContent(c, "user_context"); content != nil {
		ctxText, _ := content["context"].(string)
		return promptResult("A prompt with elicited context", pipeline.Text("Context: "+ctxText)), nil
	}
	return &pipeline.Result{Prompt: &pipeline.PromptResult{InputRequests: inputs{
		"user_context": askElicit("Please provide context for the prompt", objectSchema("context", "string")),
	}}}, nil
}
