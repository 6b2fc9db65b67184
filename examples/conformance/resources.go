package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/pipeline"
)

func addResources(srv *warden.Server) {
	srv.AddResource(&warden.Resource{
		Lean:        true,
		Scope:       scope,
		URI:         "test://static-text",
		Name:        "static-text",
		Description: "A static text resource for testing",
		MIMEType:    "text/plain",
		Handler:     textResource("text/plain", "This is the content of the static text resource."),
	})
	srv.AddResource(&warden.Resource{
		Lean:        true,
		Scope:       scope,
		URI:         "test://static-binary",
		Name:        "static-binary",
		Description: "A static binary resource (image) for testing",
		MIMEType:    "image/png",
		Handler: func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			return resourceResult(&pipeline.ResourceContents{URI: c.Target, MIMEType: "image/png", Blob: testImage}), nil
		},
	})
	srv.AddResourceTemplate(&warden.ResourceTemplate{
		Lean:        true,
		Scope:       scope,
		URITemplate: "test://template/{id}/data",
		Name:        "template",
		Description: "A resource template with parameter substitution",
		MIMEType:    "application/json",
		Handler:     templateResource,
	})
	srv.AddResource(&warden.Resource{
		Lean:        true,
		Scope:       scope,
		URI:         watchedResourceURI,
		Name:        "watched-resource",
		Description: "A resource that auto-updates every 3 seconds",
		MIMEType:    "text/plain",
		Handler:     textResource("text/plain", "Watched resource content"),
	})
}

func resourceResult(contents ...*pipeline.ResourceContents) *pipeline.Result {
	return &pipeline.Result{Resource: &pipeline.ResourceResult{Contents: contents}}
}

// textResource serves fixed text. For a resource read, c.Target is the URI
// the client asked for.
func textResource(mimeType, text string) pipeline.Handler {
	return func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		return resourceResult(&pipeline.ResourceContents{URI: c.Target, MIMEType: mimeType, Text: text}), nil
	}
}

// templateResource answers with JSON about the id taken from the URI; Warden
// has already matched the template and put the id in the arguments.
func templateResource(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	id := c.Args["id"].(string)
	body, err := json.Marshal(struct {
		ID           string `json:"id"`
		TemplateTest bool   `json:"templateTest"`
		Data         string `json:"data"`
	}{id, true, "Data for ID: " + id})
	if err != nil {
		return nil, err
	}
	return resourceResult(&pipeline.ResourceContents{URI: c.Target, MIMEType: "application/json", Text: string(body)}), nil
}

func addPrompts(srv *warden.Server) {
	srv.AddPrompt(&warden.Prompt{
		Lean:        true,
		Scope:       scope,
		Name:        "test_simple_prompt",
		Title:       "Simple Test Prompt",
		Description: "A simple prompt without arguments",
		Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
			return promptResult("A simple test prompt", pipeline.Text("This is a simple prompt for testing.")), nil
		},
	})
	srv.AddPrompt(&warden.Prompt{
		Lean:        true,
		Scope:       scope,
		Name:        "test_prompt_with_arguments",
		Title:       "Prompt With Arguments",
		Description: "A prompt with required arguments",
		Input: &jsonschema.Schema{
			Type: "object",
			Properties: map[string]*jsonschema.Schema{
				"arg1": {Type: "string", Description: "First test argument"},
				"arg2": {Type: "string", Description: "Second test argument"},
			},
			Required: []string{"arg1", "arg2"},
		},
		Handler: func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			text := fmt.Sprintf("Prompt with arguments: arg1='%s', arg2='%s'", c.Args["arg1"], c.Args["arg2"])
			return promptResult("A prompt with arguments", pipeline.Text(text)), nil
		},
	})
	srv.AddPrompt(&warden.Prompt{
		Lean:        true,
		Scope:       scope,
		Name:        "test_prompt_with_embedded_resource",
		Title:       "Prompt With Embedded Resource",
		Description: "A prompt that includes an embedded resource",
		Input: &jsonschema.Schema{
			Type: "object",
			Properties: map[string]*jsonschema.Schema{
				"resourceUri": {Type: "string", Description: "URI of the resource to embed"},
			},
			Required: []string{"resourceUri"},
		},
		Handler: func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			return promptResult("A prompt with an embedded resource",
				embedded(c.Args["resourceUri"].(string), "Embedded resource content for testing."),
				pipeline.Text("Please process the embedded resource above."),
			), nil
		},
	})
	srv.AddPrompt(&warden.Prompt{
		Lean:        true,
		Scope:       scope,
		Name:        "test_prompt_with_image",
		Title:       "Prompt With Image",
		Description: "A prompt that includes image content",
		Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
			return promptResult("A prompt with an image",
				image(testImage, "image/png"),
				pipeline.Text("Please analyze the image above."),
			), nil
		},
	})
	srv.AddPrompt(&warden.Prompt{
		Lean:        true,
		Scope:       scope,
		Name:        "test_input_required_result_prompt",
		Description: "MRTR (SEP-2322): asks for context via an in-band elicitation request",
		Handler:     inputRequiredPrompt,
	})
}

// promptResult is a prompt of user messages, one per content.
func promptResult(description string, contents ...pipeline.Content) *pipeline.Result {
	msgs := make([]*pipeline.PromptMessage, len(contents))
	for i, c := range contents {
		msgs[i] = &pipeline.PromptMessage{Role: "user", Content: c}
	}
	return &pipeline.Result{Prompt: &pipeline.PromptResult{Description: description, Messages: msgs}}
}
