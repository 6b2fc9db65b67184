package warden

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/pipeline"
)

// registryServer returns a server whose local principal holds the scopes
// in *scopes at the time of each request.
func registryServer(t *testing.T, scopes *atomic.Pointer[[]string]) *Server {
	t.Helper()
	return New(&mcp.Implementation{Name: "registry-test", Version: "1"}, &Options{
		LocalPrincipal: func(context.Context) (*pipeline.Principal, error) {
			return &pipeline.Principal{ID: "tester", Scopes: *scopes.Load(), AuthMethod: "local"}, nil
		},
	})
}

func scopes(s ...string) *atomic.Pointer[[]string] {
	var p atomic.Pointer[[]string]
	p.Store(&s)
	return &p
}

// registryConnect connects a client speaking protocol version to srv in
// memory.
func registryConnect(t *testing.T, srv *Server, opts *mcp.ClientOptions, version string) *mcp.ClientSession {
	t.Helper()
	ctx := context.Background()
	ct, st := mcp.NewInMemoryTransports()
	ss, err := srv.MCP().Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "registry-client", Version: "1"}, opts).Connect(ctx, ct, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cs.Close()
		ss.Wait()
	})
	return cs
}

// echoTool is a read tool that answers with its reply.
func echoTool(name, scope, reply string) *pipeline.Target {
	return &pipeline.Target{
		Spec:        &pipeline.Spec{Method: pipeline.CallTool, Name: name, Scope: scope},
		Description: "Answers " + reply + ".",
		Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
			return TextResult(reply), nil
		},
	}
}

func resourceAt(name, uri, scope, text string) *pipeline.Target {
	return &pipeline.Target{
		Spec: &pipeline.Spec{Method: pipeline.ReadResource, Name: name, Scope: scope},
		URI:  uri,
		Handler: func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			return &pipeline.Result{Resource: &pipeline.ResourceResult{Contents: []*pipeline.ResourceContents{{URI: c.Target, Text: text}}}}, nil
		},
	}
}

func callText(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) string {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var parts []string
	for _, c := range res.Content {
		parts = append(parts, c.(*mcp.TextContent).Text)
	}
	text := strings.Join(parts, "\n")
	if res.IsError {
		t.Fatalf("%s was refused: %s", name, text)
	}
	return text
}

func refusalCode(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) pipeline.Code {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	e, ok := res.StructuredContent.(map[string]any)
	if !res.IsError || !ok {
		t.Fatalf("%s was not refused: %+v", name, res)
	}
	code, _ := e["error_code"].(string)
	return pipeline.Code(code)
}

func listedTools(t *testing.T, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

// A name is unique per method: a second tool of a name is refused with
// ErrExists and the first keeps serving, while a prompt and a resource of
// the same name are targets of their own.
func TestAddRefusesADuplicateName(t *testing.T) {
	srv := registryServer(t, scopes("notes.read"))
	if err := srv.Add(echoTool("get_note", "notes.read", "first")); err != nil {
		t.Fatal(err)
	}
	err := srv.Add(echoTool("get_note", "notes.read", "second"))
	if !errors.Is(err, ErrExists) {
		t.Fatalf("a second tool get_note: %v, want ErrExists", err)
	}
	if !strings.Contains(err.Error(), `"get_note"`) || !strings.Contains(err.Error(), "native") {
		t.Errorf("the error does not name the tool and the registered one's source: %v", err)
	}
	prompt := &pipeline.Target{
		Spec: &pipeline.Spec{Method: pipeline.GetPrompt, Name: "get_note", Scope: "notes.read"},
		Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
			return &pipeline.Result{Prompt: &pipeline.PromptResult{Messages: []*pipeline.PromptMessage{{Role: "user", Content: pipeline.Text("the prompt")}}}}, nil
		},
	}
	if err := srv.Add(prompt); err != nil {
		t.Fatalf("a prompt named like a tool: %v", err)
	}
	if err := srv.Add(resourceAt("get_note", "note://today", "notes.read", "the resource")); err != nil {
		t.Fatalf("a resource named like a tool: %v", err)
	}

	cs := registryConnect(t, srv, nil, "")
	ctx := context.Background()
	if got := callText(t, cs, "get_note", nil); got != "first" {
		t.Errorf("get_note = %q, want the first tool's answer", got)
	}
	pr, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "get_note"})
	if err != nil || pr.Messages[0].Content.(*mcp.TextContent).Text != "the prompt" {
		t.Errorf("prompt get_note = %+v, %v", pr, err)
	}
	rr, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "note://today"})
	if err != nil || rr.Contents[0].Text != "the resource" {
		t.Errorf("resource get_note = %+v, %v", rr, err)
	}
}

// Add refuses, with an error and without a panic, a target it could not
// serve safely; nothing of it is registered.
func TestAddRefusesInvalidTargets(t *testing.T) {
	ok := func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return TextResult("ok"), nil }
	tool := func(change func(*pipeline.Target)) *pipeline.Target {
		t := echoTool("get_note", "notes.read", "ok")
		change(t)
		return t
	}
	tests := []struct {
		name   string
		target *pipeline.Target
		want   string
	}{
		{"nil", nil, "spec"},
		{"no spec", &pipeline.Target{Handler: ok}, "spec"},
		{"no handler", tool(func(t *pipeline.Target) { t.Handler = nil }), "handler"},
		{"no name", tool(func(t *pipeline.Target) { t.Spec.Name = "" }), "name"},
		{"no scope", tool(func(t *pipeline.Target) { t.Spec.Scope = "" }), "scope"},
		{"wildcard scope", tool(func(t *pipeline.Target) { t.Spec.Scope = "notes.*" }), "scope"},
		{"everything scope", tool(func(t *pipeline.Target) { t.Spec.Scope = "*" }), "scope"},
		{"bad tool name", tool(func(t *pipeline.Target) { t.Spec.Name = "get note!" }), "tool name"},
		{"long tool name", tool(func(t *pipeline.Target) { t.Spec.Name = strings.Repeat("x", 129) }), "tool name"},
		{"input not an object", tool(func(t *pipeline.Target) { t.InputSchema = &jsonschema.Schema{Type: "string"} }), `"object"`},
		{"invalid input schema", tool(func(t *pipeline.Target) {
			t.InputSchema = &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{"n": {Type: "integer", Pattern: "("}}}
		}), "input schema"},
		{"dry run on a read tool", tool(func(t *pipeline.Target) { t.DryRun = ok }), "dry run"},
		{"dry run required, none", tool(func(t *pipeline.Target) {
			t.Spec.Mode = pipeline.Write
			t.Spec.Gate = &pipeline.Gate{Require: pipeline.RequireDryRun}
		}), "dry run"},
		{"resource with uri and template", &pipeline.Target{
			Spec: &pipeline.Spec{Method: pipeline.ReadResource, Name: "notes", Scope: "notes.read"},
			URI:  "note://a", URITemplate: "note://{id}", Handler: ok,
		}, "not both"},
		{"bad uri template", &pipeline.Target{
			Spec:        &pipeline.Spec{Method: pipeline.ReadResource, Name: "notes", Scope: "notes.read"},
			URITemplate: "note://{id", Handler: ok,
		}, "URI template"},
		{"unknown method", &pipeline.Target{Spec: &pipeline.Spec{Method: pipeline.Method(99), Name: "x", Scope: "notes.read"}, Handler: ok}, "method"},
		{"resource without uri or template", &pipeline.Target{
			Spec:    &pipeline.Spec{Method: pipeline.ReadResource, Name: "notes", Scope: "notes.read"},
			Handler: ok,
		}, "URI"},
		{"unparsable uri", &pipeline.Target{
			Spec: &pipeline.Spec{Method: pipeline.ReadResource, Name: "notes", Scope: "notes.read"},
			URI:  "note://[today", Handler: ok,
		}, "URI"},
		{"bad prompt name", &pipeline.Target{Spec: &pipeline.Spec{Method: pipeline.GetPrompt, Name: "f f", Scope: "notes.read"}, Handler: ok}, "prompt name"},
	}
	// problems are what is wrong with how srv.Add treats target.
	problems := func(target *pipeline.Target, want string) (out []string) {
		srv := registryServer(t, scopes("notes.read"))
		func() {
			defer func() {
				if p := recover(); p != nil {
					out = append(out, fmt.Sprintf("Add panicked: %v", p))
				}
			}()
			if err := srv.Add(target); err == nil || !strings.Contains(err.Error(), want) {
				out = append(out, fmt.Sprintf("Add = %v, want an error mentioning %q", err, want))
			}
		}()
		if n := len(srv.Tools()) + len(srv.Resources()) + len(srv.ResourceTemplates()) + len(srv.Prompts()); n != 0 {
			out = append(out, fmt.Sprintf("%d targets registered after a refused Add", n))
		}
		return out
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range problems(tt.target, tt.want) {
				t.Error(p)
			}
		})
	}
}

// A resource's URI is one target's: another name at the same URI would
// silently take its place in the protocol layer, so it is refused.
func TestAddRefusesAURIServedByAnotherName(t *testing.T) {
	srv := registryServer(t, scopes("notes.read"))
	if err := srv.Add(resourceAt("today_note", "note://today", "notes.read", "mine")); err != nil {
		t.Fatal(err)
	}
	for _, register := range []func(*pipeline.Target) error{srv.Add, srv.Replace} {
		err := register(resourceAt("other_note", "note://today", "notes.read", "theirs"))
		if err == nil || !strings.Contains(err.Error(), "today_note") {
			t.Errorf("a second resource at note://today: %v, want an error naming today_note", err)
		}
	}
	cs := registryConnect(t, srv, nil, "")
	rr, err := cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "note://today"})
	if err != nil || rr.Contents[0].Text != "mine" {
		t.Errorf("note://today = %+v, %v; want the first resource", rr, err)
	}
	if n := len(srv.Resources()); n != 1 {
		t.Errorf("%d resources listed, want 1", n)
	}
}

// Replace serves new calls with the new handler and validates them with
// the new schema; a call already running finishes on the old handler.
func TestReplaceServesNewCalls(t *testing.T) {
	srv := registryServer(t, scopes("notes.read"))
	started, release := make(chan struct{}), make(chan struct{})
	v1 := &pipeline.Target{
		Spec: &pipeline.Spec{Method: pipeline.CallTool, Name: "get_note", Scope: "notes.read"},
		InputSchema: &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{
			"title": {Type: "string"},
		}},
		Handler: func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			if c.Args["title"] == "slow" {
				close(started)
				<-release
			}
			return TextResult(fmt.Sprintf("v1 %v", c.Args["title"])), nil
		},
	}
	if err := srv.Add(v1); err != nil {
		t.Fatal(err)
	}
	cs := registryConnect(t, srv, nil, "")
	if got := callText(t, cs, "get_note", map[string]any{"title": "a"}); got != "v1 a" {
		t.Fatalf("before Replace: %q", got)
	}
	slow := make(chan string)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "get_note", Arguments: map[string]any{"title": "slow"}})
		if err != nil || res.IsError {
			slow <- fmt.Sprintf("error: %v %+v", err, res)
			return
		}
		slow <- res.Content[0].(*mcp.TextContent).Text
	}()
	<-started

	v2 := &pipeline.Target{
		Spec: &pipeline.Spec{Method: pipeline.CallTool, Name: "get_note", Scope: "notes.read"},
		InputSchema: &jsonschema.Schema{Type: "object", Required: []string{"id"}, Properties: map[string]*jsonschema.Schema{
			"id": {Type: "integer", Minimum: jsonschema.Ptr(1.0)},
		}},
		Handler: func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			return TextResult(fmt.Sprintf("v2 %v", c.Args["id"])), nil
		},
	}
	if err := srv.Replace(v2); err != nil {
		t.Fatal(err)
	}
	if got := callText(t, cs, "get_note", map[string]any{"id": 7}); got != "v2 7" {
		t.Errorf("after Replace: %q, want the new handler's answer", got)
	}
	if code := refusalCode(t, cs, "get_note", map[string]any{"title": "a"}); code != pipeline.InvalidArgument {
		t.Errorf("the old schema's arguments after Replace: %s, want INVALID_ARGUMENT", code)
	}
	tools, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tools.Tools) != 1 || !strings.Contains(lineOf(tools.Tools[0].InputSchema), `"id"`) || strings.Contains(lineOf(tools.Tools[0].InputSchema), `"title"`) {
		t.Errorf("listed after Replace: %s, want one tool with the new schema", lineOf(tools.Tools))
	}

	close(release)
	if got := <-slow; got != "v1 slow" {
		t.Errorf("the call running during Replace = %q, want it finished by the old handler", got)
	}
}

// After Remove, calls fail without reaching the handler, and the target is
// no longer listed.
func TestRemove(t *testing.T) {
	srv := registryServer(t, scopes("notes.read"))
	var ran atomic.Int32
	tool := echoTool("get_note", "notes.read", "note")
	h := tool.Handler
	tool.Handler = func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		ran.Add(1)
		return h(ctx, c)
	}
	for _, tg := range []*pipeline.Target{tool, echoTool("list_notes", "notes.read", "notes"), resourceAt("today_note", "note://today", "notes.read", "today")} {
		if err := srv.Add(tg); err != nil {
			t.Fatal(err)
		}
	}
	cs := registryConnect(t, srv, nil, "")
	ctx := context.Background()
	callText(t, cs, "get_note", nil)

	if !srv.Remove(pipeline.CallTool, "get_note") {
		t.Fatal("Remove of a registered tool = false")
	}
	if srv.Remove(pipeline.CallTool, "get_note") {
		t.Error("a second Remove = true")
	}
	if srv.Remove(pipeline.GetPrompt, "list_notes") {
		t.Error("Remove of a prompt that is not there (a tool of its name is) = true")
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "get_note"})
	if err == nil && !res.IsError {
		t.Errorf("a call after Remove succeeded: %+v", res)
	}
	if n := ran.Load(); n != 1 {
		t.Errorf("the removed handler ran %d times, want 1 (before Remove)", n)
	}
	if got := listedTools(t, cs); !slices.Equal(got, []string{"list_notes"}) {
		t.Errorf("tools after Remove = %v, want [list_notes]", got)
	}

	if !srv.Remove(pipeline.ReadResource, "today_note") {
		t.Fatal("Remove of a registered resource = false")
	}
	if _, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "note://today"}); err == nil {
		t.Error("a read after Remove succeeded")
	}
	// The name and the URI are free again.
	if err := srv.Add(resourceAt("other_note", "note://today", "notes.read", "new")); err != nil {
		t.Errorf("a new resource at a removed one's URI: %v", err)
	}
	if err := srv.Add(echoTool("get_note", "notes.read", "again")); err != nil {
		t.Errorf("a new tool of a removed one's name: %v", err)
	}
	if got := callText(t, cs, "get_note", nil); got != "again" {
		t.Errorf("get_note = %q, want the new tool", got)
	}
}

// While a client is connected, adding and removing a tool tells it
// (notifications/tools/list_changed), and its next list shows the change,
// filtered for whoever asks.
func TestCatalogChangesReachConnectedClients(t *testing.T) {
	for _, version := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(version, func(t *testing.T) {
			who := scopes("notes.read", "reports.read")
			srv := registryServer(t, who)
			if err := srv.Add(echoTool("list_notes", "notes.read", "notes")); err != nil {
				t.Fatal(err)
			}
			changed := make(chan struct{}, 16)
			cs := registryConnect(t, srv, &mcp.ClientOptions{
				ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { changed <- struct{}{} },
			}, version)
			if got := listedTools(t, cs); !slices.Equal(got, []string{"list_notes"}) {
				t.Fatalf("tools = %v", got)
			}
			notified := func(what string) {
				t.Helper()
				select {
				case <-changed:
				case <-time.After(10 * time.Second):
					t.Fatalf("no notifications/tools/list_changed after %s", what)
				}
			}

			if err := srv.Add(echoTool("get_report", "reports.read", "report")); err != nil {
				t.Fatal(err)
			}
			notified("Add")
			if got := listedTools(t, cs); !slices.Equal(got, []string{"get_report", "list_notes"}) {
				t.Errorf("tools after Add = %v, want get_report too", got)
			}
			if got := callText(t, cs, "get_report", nil); got != "report" {
				t.Errorf("get_report = %q", got)
			}

			// A caller without the new tool's scope neither sees nor calls it.
			who.Store(&[]string{"notes.read"})
			if got := listedTools(t, cs); !slices.Equal(got, []string{"list_notes"}) {
				t.Errorf("tools for a caller without reports.read = %v, want [list_notes]", got)
			}
			if code := refusalCode(t, cs, "get_report", nil); code != pipeline.PermissionDenied {
				t.Errorf("get_report without reports.read: %s, want PERMISSION_DENIED", code)
			}
			who.Store(&[]string{"notes.read", "reports.read"})

			if !srv.Remove(pipeline.CallTool, "get_report") {
				t.Fatal("Remove = false")
			}
			notified("Remove")
			if got := listedTools(t, cs); !slices.Equal(got, []string{"list_notes"}) {
				t.Errorf("tools after Remove = %v, want [list_notes]", got)
			}
		})
	}
}

func lineOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// A server that starts with no tools still has a catalog that may change:
// it must say so (tools.listChanged), or a 2026-07-28 client, which opts in
// to list_changed only when the server declares it, is never told.
func TestAnEmptyServerAnnouncesListChanges(t *testing.T) {
	srv := registryServer(t, scopes("notes.read"))
	changed := make(chan struct{}, 16)
	cs := registryConnect(t, srv, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { changed <- struct{}{} },
	}, "2026-07-28")
	if caps := cs.InitializeResult().Capabilities; caps.Tools == nil || !caps.Tools.ListChanged {
		t.Fatalf("a server with no tools yet does not say its tool list may change; declared: %s", lineOf(caps))
	}
	if err := srv.Add(echoTool("get_report", "notes.read", "report")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no notifications/tools/list_changed after the first Add")
	}
}

// TestRegistryKeepsItsOwnCopy: a refused target is left as it was, and a
// registered one cannot be changed behind the registry's back.
func TestRegistryKeepsItsOwnCopy(t *testing.T) {
	srv := registryServer(t, scopes("notes.read"))
	bad := echoTool("Bad Name", "notes.read", "x")
	if err := srv.Add(bad); err == nil {
		t.Fatal("a bad tool name was accepted")
	}
	if bad.Spec.Source != "" || bad.Spec.Input != nil {
		t.Errorf("a refused Add changed the caller's spec: %+v", bad.Spec)
	}
	good := echoTool("get_report", "notes.read", "report")
	if err := srv.Add(good); err != nil {
		t.Fatal(err)
	}
	good.Spec.Scope = "anything" // too late: the registry holds its own copy
	cs := registryConnect(t, srv, nil, "2026-07-28")
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "get_report", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("the registered tool stopped working after its caller changed its spec: %v %+v", err, res)
	}
}

// TestAddRefusesControlsTheServerDoesNotRun: a target whose own risk
// policy, rate limit or output policy this server has no stage to enforce
// is refused, rather than served without it.
func TestAddRefusesControlsTheServerDoesNotRun(t *testing.T) {
	srv := registryServer(t, scopes("notes.read")) // no gate, limiter or guard
	for name, edit := range map[string]func(*pipeline.Spec){
		"a risk policy":  func(s *pipeline.Spec) { s.Gate = &pipeline.Gate{Require: pipeline.RequireConfirmation} },
		"a rate limit":   func(s *pipeline.Spec) { s.RateLimit = &pipeline.Limit{Calls: 1, Per: time.Minute, Burst: 1} },
		"an output rule": func(s *pipeline.Spec) { s.Output.Block = true },
	} {
		tool := echoTool("get_report", "notes.read", "report")
		edit(tool.Spec)
		if err := srv.Add(tool); err == nil {
			t.Errorf("a tool with %s was registered on a server that cannot enforce it", name)
			srv.Remove(pipeline.CallTool, "get_report")
		}
	}
	if err := srv.Add(echoTool("get_report", "notes.read", "report")); err != nil {
		t.Errorf("a tool with no controls of its own: %v", err)
	}
}
