package main

//lint:file-ignore SA1019 the suite exercises roots, sampling and logging, deprecated by SEP-2577 but still in the protocol.

import (
	"context"
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

// acceptedContent returns the content of the elicitation answer under key if
// the user accepted it, or nil.
func acceptedContent(responses mcp.InputResponseMap, key string) map[string]any {
	res, ok := responses[key].(*mcp.ElicitResult)
	if !ok || res == nil || res.Action != "accept" {
		return nil
	}
	return res.Content
}

// samplingText returns the first text of the sampling answer under key. The
// SDK decodes an answer that has a role as the richer
// CreateMessageWithToolsResult.
func samplingText(responses mcp.InputResponseMap, key string) (string, bool) {
	res, ok := responses[key].(*mcp.CreateMessageWithToolsResult)
	if !ok || res == nil {
		return "", false
	}
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			return tc.Text, true
		}
	}
	return "(non-text response)", true
}

// objectSchema is an elicitation schema of one required property.
func objectSchema(name, typ string) *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:       "object",
		Properties: map[string]*jsonschema.Schema{name: {Type: typ}},
		Required:   []string{name},
	}
}

func askName(msg string) *mcp.ElicitParams {
	return &mcp.ElicitParams{Message: msg, RequestedSchema: objectSchema("name", "string")}
}

func askConfirm() *mcp.ElicitParams {
	return &mcp.ElicitParams{Message: "Please confirm", RequestedSchema: objectSchema("ok", "boolean")}
}

func askSampling(prompt string, maxTokens int64) *mcp.CreateMessageParams {
	return &mcp.CreateMessageParams{
		Messages:  []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: prompt}}},
		MaxTokens: maxTokens,
	}
}

// inputElicitation asks for the caller's name. It also serves the
// result-type, missing-input-response, ignore-extra-params and validate-input
// scenarios: anything without an accepted, non-empty "user_name" answer is
// asked again.
func inputElicitation(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	if name, _ := acceptedContent(toolRequest(c).Params.InputResponses, "user_name")["name"].(string); name != "" {
		return warden.TextResult(fmt.Sprintf("Hello, %s!", name)), nil
	}
	return inputRequired(mcp.InputRequestMap{"user_name": askName("What is your name?")}, ""), nil
}

func inputSampling(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	if text, ok := samplingText(toolRequest(c).Params.InputResponses, "capital_question"); ok {
		return warden.TextResult("Sampling response: " + text), nil
	}
	return inputRequired(mcp.InputRequestMap{"capital_question": askSampling("What is the capital of France?", 100)}, ""), nil
}

func inputListRoots(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	if res, ok := toolRequest(c).Params.InputResponses["client_roots"].(*mcp.ListRootsResult); ok && res != nil {
		uris := make([]string, len(res.Roots))
		for i, r := range res.Roots {
			uris[i] = r.URI
		}
		return warden.TextResult(fmt.Sprintf("Client exposed %d root(s): %s", len(res.Roots), strings.Join(uris, ", "))), nil
	}
	return inputRequired(mcp.InputRequestMap{"client_roots": &mcp.ListRootsParams{}}, ""), nil
}

func inputRequestState(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	p := toolRequest(c).Params
	if acceptedContent(p.InputResponses, "confirm") != nil {
		if !stateValid(p.RequestState) {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "invalid requestState"}
		}
		return warden.TextResult("state-ok: requestState received and confirmation accepted"), nil
	}
	return inputRequired(mcp.InputRequestMap{"confirm": askConfirm()}, "request_state"), nil
}

func inputMultiple(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	responses := toolRequest(c).Params.InputResponses
	name, _ := acceptedContent(responses, "user_name")["name"].(string)
	greeting, hasGreeting := samplingText(responses, "greeting")
	roots, hasRoots := responses["client_roots"].(*mcp.ListRootsResult)
	if name != "" && hasGreeting && hasRoots {
		n := 0
		if roots != nil {
			n = len(roots.Roots)
		}
		return warden.TextResult(fmt.Sprintf("%s %s — %d root(s) visible", greeting, name, n)), nil
	}
	return inputRequired(mcp.InputRequestMap{
		"user_name":    askName("What is your name?"),
		"greeting":     askSampling("Generate a greeting", 50),
		"client_roots": &mcp.ListRootsParams{},
	}, "multiple_inputs"), nil
}

// inputMultiRound runs two elicitation rounds. The state carries the round
// and the name from round one: "round=1", then "round=2;name=<name>".
func inputMultiRound(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	p := toolRequest(c).Params
	switch p.RequestState {
	case "":
		return inputRequired(mcp.InputRequestMap{"step1": askName("Step 1: What is your name?")}, "round=1"), nil
	case "round=1":
		name, _ := acceptedContent(p.InputResponses, "step1")["name"].(string)
		if name == "" {
			name = "unknown"
		}
		return inputRequired(mcp.InputRequestMap{"step2": &mcp.ElicitParams{
			Message:         "Step 2: What is your favorite color?",
			RequestedSchema: objectSchema("color", "string"),
		}}, "round=2;name="+name), nil
	default:
		color, _ := acceptedContent(p.InputResponses, "step2")["color"].(string)
		if color == "" {
			color = "unknown"
		}
		name := strings.TrimPrefix(p.RequestState, "round=2;name=")
		return warden.TextResult(fmt.Sprintf("Multi-round complete: %s likes %s", name, color)), nil
	}
}

func inputTamperedState(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	p := toolRequest(c).Params
	if p.RequestState != "" {
		if !stateValid(p.RequestState) {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "invalid requestState: tampered"}
		}
		if acceptedContent(p.InputResponses, "confirm") != nil {
			return warden.TextResult("state-ok: requestState received and confirmation accepted"), nil
		}
	}
	return inputRequired(mcp.InputRequestMap{"confirm": askConfirm()}, "tampered_state"), nil
}

// inputCapabilities asks only for the kinds of input the client declared it
// can give, read from the capabilities in the request's _meta.
func inputCapabilities(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	req := toolRequest(c)
	if len(req.Params.InputResponses) > 0 {
		return warden.TextResult("Capability-aware input requests fulfilled"), nil
	}
	caps := req.ClientCapabilities()
	if caps == nil {
		caps = &mcp.ClientCapabilities{}
	}
	reqs := mcp.InputRequestMap{}
	if caps.Elicitation != nil {
		reqs["user_name"] = askName("What is your name?")
	}
	if caps.Sampling != nil {
		reqs["greeting"] = askSampling("Generate a short greeting", 50)
	}
	if caps.RootsV2 != nil || caps.Roots.ListChanged {
		reqs["client_roots"] = &mcp.ListRootsParams{}
	}
	if len(reqs) == 0 {
		return warden.TextResult("No declared client capability supports an in-band input request"), nil
	}
	return inputRequired(reqs, ""), nil
}

// inputRequiredPrompt is the prompts/get analogue: it asks for context, then
// answers with a message that includes it.
func inputRequiredPrompt(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	req := c.Request.(*mcp.GetPromptRequest)
	if content := acceptedContent(req.Params.InputResponses, "user_context"); content != nil {
		ctxText, _ := content["context"].(string)
		return &pipeline.Result{Prompt: &mcp.GetPromptResult{
			Description: "A prompt with elicited context",
			Messages:    []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "Context: " + ctxText}}},
		}}, nil
	}
	return &pipeline.Result{Prompt: &mcp.GetPromptResult{InputRequests: mcp.InputRequestMap{
		"user_context": &mcp.ElicitParams{
			Message:         "Please provide context for the prompt",
			RequestedSchema: objectSchema("context", "string"),
		},
	}}}, nil
}
