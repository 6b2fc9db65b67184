package warden_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/pipeline"
)

// stdioClient is one client of a server served over a pair of pipes, as a
// process's standard input and output.
type stdioClient struct {
	t     *testing.T
	in    *io.PipeWriter
	lines chan []byte // the server's lines; closed when it stops
	done  chan error  // what serving returned
}

// startStdio serves srv to a new client: with ServeStdio (the lean path),
// or, if sdk, with the SDK's own Server.Run as Warden served stdio before.
func startStdio(t *testing.T, srv *warden.Server, sdk bool) *stdioClient {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	c := &stdioClient{t: t, in: inW, lines: make(chan []byte, 16), done: make(chan error, 1)}
	go func() {
		var err error
		if sdk {
			err = srv.MCP().Run(ctx, &mcp.IOTransport{Reader: inR, Writer: outW})
		} else {
			err = srv.ServeStdio(ctx, inR, outW)
		}
		outW.Close()
		inR.Close() // the client's writes fail, as to a process that exited
		c.done <- err
	}()
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 32<<20)
		for sc.Scan() {
			c.lines <- append([]byte(nil), sc.Bytes()...)
		}
	}()
	t.Cleanup(func() {
		cancel()
		inW.Close()
		for range c.lines {
		}
	})
	return c
}

// send writes raw bytes to the server's input.
func (c *stdioClient) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.in, raw); err != nil {
		c.t.Fatalf("writing to the server: %v", err)
	}
}

// until returns the server's lines up to and including the response with
// id, or all of them if the server stops first (ok false).
func (c *stdioClient) until(id string) (lines [][]byte, ok bool) {
	c.t.Helper()
	return c.upTo(func(m *stdioMessage) bool { return m.Method == "" && string(m.ID) == id })
}

// upTo returns the server's lines up to and including the first that
// last reports true of, or all of them if the server stops first (ok
// false).
func (c *stdioClient) upTo(last func(*stdioMessage) bool) (lines [][]byte, ok bool) {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case line, open := <-c.lines:
			if !open {
				return lines, false
			}
			lines = append(lines, line)
			var m stdioMessage
			if json.Unmarshal(line, &m) == nil && last(&m) {
				return lines, true
			}
		case <-deadline:
			c.t.Fatalf("the server did not write what was awaited; it wrote %q", lines)
		}
	}
}

// open initializes the client's 2025-11-25 session.
func (c *stdioClient) open() {
	c.t.Helper()
	c.send(initialize + "\n")
	if _, ok := c.until("1"); !ok {
		c.t.Fatal("the server stopped before answering initialize")
	}
	c.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\n")
}

// TestStdioAnswersAsTheSDK sends the same lines over stdio to Warden's
// stdio connection (the lean path) and to the SDK's stdio server Warden
// ran before, each on a fresh initialized session, and wants the same
// lines back: the same results, the same errors (code and data), the same
// refusals of lines that are not messages, and the connection ended where
// the SDK ends it.
func TestStdioAnswersAsTheSDK(t *testing.T) {
	req := func(method, params string) string {
		return `{"jsonrpc":"2.0","id":7,"method":"` + method + `","params":` + params + `}`
	}
	call := func(name, args string) string { return req("tools/call", `{"name":"`+name+`","arguments":`+args+`}`) }
	valid := call("create_order", `{"sku":"SKU-123","quantity":1}`)
	tests := []struct {
		name, line string
		id         string // the response awaited; "" for a line that has none
	}{
		{"a valid call", valid, "7"},
		{"a string id", strings.Replace(valid, `"id":7`, `"id":"c-7"`, 1), `"c-7"`},
		{"invalid arguments", call("create_order", `{"sku":"SKU-123","quantity":99}`), "7"},
		{"an unknown argument", call("create_order", `{"sku":"SKU-123","quantity":1,"admin":true}`), "7"},
		{"arguments that are not an object", call("create_order", `[1]`), "7"},
		{"a panicking tool", call("explode", `{}`), "7"},
		{"a tool past its deadline", call("wait_forever", `{}`), "7"},
		{"an unknown tool", call("nope", `{}`), "7"},
		{"a key in other case smuggles a name", strings.Replace(valid, `"name":"create_order"`, `"name":"create_order","Name":"explode"`, 1), "7"},
		{"a key in other case smuggles the method", strings.Replace(valid, `"method":"tools/call"`, `"method":"tools/call","Method":"tools/list"`, 1), "7"},
		{"the stateless protocol's _meta", req("tools/call", `{"name":"create_order","arguments":{"sku":"SKU-123","quantity":1},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}`), "7"},
		{"invalid UTF-8", strings.Replace(valid, "SKU-123", "SKU-\xff23", 1), "7"},
		{"an escaped NUL", strings.Replace(valid, "SKU-123", `SKU-\u000023`, 1), "7"},
		{"a raw NUL", strings.Replace(valid, "SKU-123", "SKU-\x0023", 1), ""},
		{"nesting past the limit", call("create_order", `{"deep":`+strings.Repeat("[", 1001)+strings.Repeat("]", 1001)+`}`), "7"},
		{"a null id", strings.Replace(valid, `"id":7`, `"id":null`, 1), ""},
		{"a batch", "[" + valid + "]", "7"},
		{"a line that is not JSON", `{"jsonrpc":"2.0","id":7,`, ""},
		{"two messages on a line", valid + " " + valid, ""},
		{"spaces after the message", valid + "  ", ""},
		{"a message over two lines", strings.Replace(valid, `"params":`, "\n\"params\":", 1), "7"},
		{"a line past the frame limit", call("create_order", `{"sku":"`+strings.Repeat("A", mcp.DefaultMaxLineLength)+`"}`), ""},
		{"a ping", `{"jsonrpc":"2.0","id":8,"method":"ping"}`, "8"},
		{"a ping with the stateless protocol's _meta", `{"jsonrpc":"2.0","id":8,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, "8"},
		{"a tool list", req("tools/list", `{}`), "7"},
		{"a tool list with a cursor", req("tools/list", `{"cursor":"bm9wZQ"}`), "7"},
		{"a resource list", req("resources/list", `{}`), "7"},
		{"a template list", req("resources/templates/list", `{}`), "7"},
		{"a prompt list", req("prompts/list", `{}`), "7"},
		{"a resource read", req("resources/read", `{"uri":"orders://catalog"}`), "7"},
		{"a template read", req("resources/read", `{"uri":"orders://order/O-1234"}`), "7"},
		{"a template variable that fails validation", req("resources/read", `{"uri":"orders://order/nope"}`), "7"},
		{"a read the handler refuses as not found", req("resources/read", `{"uri":"orders://missing/O-1234"}`), "7"},
		{"an unknown URI", req("resources/read", `{"uri":"orders://nothing-here"}`), "7"},
		{"a resource the principal lacks the scope for", req("resources/read", `{"uri":"orders://secret"}`), "7"},
		{"a prompt", req("prompts/get", `{"name":"greet","arguments":{"name":"Ada"}}`), "7"},
		{"a prompt argument that fails validation", req("prompts/get", `{"name":"greet","arguments":{"name":"ada!"}}`), "7"},
		{"an unknown prompt", req("prompts/get", `{"name":"nope","arguments":{}}`), "7"},
		{"a prompt the principal lacks the scope for", req("prompts/get", `{"name":"secret_prompt","arguments":{}}`), "7"},
		{"a second initialize", initialize, "1"},
	}
	const sentinel = `{"jsonrpc":"2.0","id":"end","method":"ping"}` + "\n"
	exchange := func(t *testing.T, sdk bool, line, id string) (lines [][]byte, open bool) {
		c := startStdio(t, withCatalog(newServer(t)), sdk)
		c.open()
		io.WriteString(c.in, line+"\n") // fails if the server ends the connection while reading it
		if id == "" {
			io.WriteString(c.in, sentinel) // fails if the server ended the connection
			id = `"end"`
		}
		return c.until(id)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, gotOpen := exchange(t, false, tt.line, tt.id)
			want, wantOpen := exchange(t, true, tt.line, tt.id)
			if gotOpen != wantOpen {
				t.Fatalf("connection open %v on the lean path (%q), %v through the SDK (%q)", gotOpen, got, wantOpen, want)
			}
			if len(got) != len(want) {
				t.Fatalf("lean path wrote %q; SDK %q", got, want)
			}
			for i := range got {
				var g, w stdioMessage
				if json.Unmarshal(got[i], &g) != nil || json.Unmarshal(want[i], &w) != nil {
					t.Fatalf("lean path wrote %q; SDK %q", got[i], want[i])
				}
				if string(g.ID) != string(w.ID) || g.Method != w.Method {
					t.Fatalf("lean path wrote %s; SDK %s", got[i], want[i])
				}
				if (g.Error == nil) != (w.Error == nil) || g.Error != nil && g.Error.Code != w.Error.Code {
					t.Fatalf("lean error %s; SDK error %s", got[i], want[i])
				}
				if g.Error != nil && !sameErrorData(t, got[i], want[i]) {
					t.Errorf("errors differ:\nlean %s\nSDK  %s", got[i], want[i])
				}
				if !sameResult(t, g.Result, w.Result) {
					t.Errorf("results differ:\nlean %s\nSDK  %s", g.Result, w.Result)
				}
			}
		})
	}
}

// stdioMessage is a JSON-RPC line the server wrote.
type stdioMessage struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// TestStdioIsLean checks that stdio requests the lean path serves are not
// the SDK's (the handler sees no SDK request), that a target that needs
// the SDK still gets it, and that the server's own messages still reach
// the client: a list_changed notification when a tool is added.
func TestStdioIsLean(t *testing.T) {
	srv := newServer(t)
	via := func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		if warden.Request(ctx) == nil {
			return warden.TextResult("lean " + c.ClientName), nil
		}
		return warden.TextResult("sdk " + c.ClientName), nil
	}
	srv.AddTool(&warden.Tool{Name: "via", Description: "Says which path served it.", Scope: "orders.read", Lean: true, Handler: via})
	srv.AddTool(&warden.Tool{Name: "via_sdk", Description: "Says which path served it.", Scope: "orders.read", Handler: via})
	c := startStdio(t, srv, false)
	c.open()
	for _, tt := range []struct{ tool, want string }{{"via", "lean t"}, {"via_sdk", "sdk t"}} {
		c.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"` + tt.tool + `","arguments":{}}}` + "\n")
		lines, _ := c.until("2")
		if last := string(lines[len(lines)-1]); !strings.Contains(last, `"text":"`+tt.want+`"`) {
			t.Errorf("%s: %s, want %q", tt.tool, last, tt.want)
		}
	}
	srv.AddTool(&warden.Tool{Name: "later", Description: "Added while serving.", Scope: "orders.read", Lean: true, Handler: via})
	if _, ok := c.upTo(func(m *stdioMessage) bool { return m.Method == "notifications/tools/list_changed" }); !ok {
		t.Error("no list_changed notification after a tool was added")
	}
}

// TestStdioCancels checks that a client's notifications/cancelled ends a
// call the lean path is serving, as it ends one the SDK serves, and that
// the client is answered the same way on both paths.
func TestStdioCancels(t *testing.T) {
	answers := map[bool]stdioResult{}
	for _, sdk := range []bool{false, true} {
		srv := newServer(t)
		started, ended := make(chan struct{}), make(chan error, 1)
		srv.AddTool(&warden.Tool{Name: "block", Description: "Waits for its end.", Scope: "orders.read", Lean: true, Timeout: time.Minute,
			Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
				close(started)
				<-ctx.Done()
				ended <- ctx.Err()
				return nil, ctx.Err()
			}})
		c := startStdio(t, srv, sdk)
		c.open()
		c.send(`{"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"block","arguments":{}}}` + "\n")
		<-started
		c.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"b"}}` + "\n")
		select {
		case err := <-ended:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("sdk %v: the call ended with %v, want it cancelled", sdk, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("sdk %v: the call was not cancelled", sdk)
		}
		lines, ok := c.until(`"b"`)
		if !ok {
			t.Fatalf("sdk %v: no answer to the cancelled call: %q", sdk, lines)
		}
		var m struct {
			Result stdioResult `json:"result"`
		}
		json.Unmarshal(lines[len(lines)-1], &m)
		answers[sdk] = m.Result
	}
	if answers[false] != answers[true] {
		t.Errorf("the cancelled call was answered %+v on the lean path, %+v through the SDK", answers[false], answers[true])
	}
}

// stdioResult is what a client reads of a refused call.
type stdioResult struct {
	IsError           bool `json:"isError"`
	StructuredContent struct {
		ErrorCode string `json:"error_code"`
	} `json:"structuredContent"`
}

// TestStdioChecksThePrincipalOnEveryCall checks that the local principal
// (over stdio, the API key in the environment) is looked up for every
// call on the lean path: once it is refused (the key revoked), the next
// call is refused.
func TestStdioChecksThePrincipalOnEveryCall(t *testing.T) {
	var revoked atomic.Bool
	srv := warden.New(&mcp.Implementation{Name: "warden-test", Version: "1.0.0"}, &warden.Options{
		LocalPrincipal: func(ctx context.Context) (*pipeline.Principal, error) {
			if revoked.Load() {
				return nil, errors.New("key revoked")
			}
			return reader(ctx)
		}})
	srv.AddTool(&warden.Tool{Name: "hello", Description: "Says hello.", Scope: "orders.read", Lean: true,
		Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
			return warden.TextResult("hello"), nil
		}})
	c := startStdio(t, srv, false)
	c.open()
	callHello := func(id string) string {
		c.send(`{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"hello","arguments":{}}}` + "\n")
		lines, _ := c.until(id)
		return string(lines[len(lines)-1])
	}
	if got := callHello("2"); !strings.Contains(got, `"text":"hello"`) || strings.Contains(got, `"isError":true`) {
		t.Fatalf("before revocation: %s", got)
	}
	revoked.Store(true)
	if got := callHello("3"); strings.Contains(got, `"text":"hello"`) || !strings.Contains(got, `"isError":true`) {
		t.Fatalf("after revocation the call was served: %s", got)
	}
}
