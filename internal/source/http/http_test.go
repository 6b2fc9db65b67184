package httpsrc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/server"
	"github.com/wardenmcp/warden/pipeline"
)

// token is the API's credential in these tests; it must never reach a
// result, an error or the audit log.
const token = "tok-7Hq2Lx9PzR4mW8vN"

// serve builds a Warden server from cfg and connects a client to it.
func serve(t *testing.T, cfg string) (*mcp.ClientSession, *server.Server) {
	t.Helper()
	srv := build(t, cfg, nil)
	return connect(t, srv), srv
}

// connect connects an in-memory client to srv.
func connect(t *testing.T, srv *server.Server) *mcp.ClientSession {
	t.Helper()
	st, ct := mcp.NewInMemoryTransports()
	if _, err := srv.MCP().Connect(context.Background(), st, nil); err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(context.Background(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// build builds a Warden server from cfg, whose local principal holds the
// scopes api.read and api.write.
func build(t testing.TB, cfg string, log *slog.Logger) *server.Server {
	t.Helper()
	c, err := config.Parse([]byte(cfg), "warden.yaml", t.TempDir())
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	local := func(context.Context) (*pipeline.Principal, error) {
		return &pipeline.Principal{ID: "agent", Tenant: "acme", Scopes: []string{"api.read", "api.write"}, AuthMethod: "local"}, nil
	}
	srv, err := server.Build(context.Background(), c, &server.Options{Local: local, Logger: log})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func call(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

func callMeta(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any, meta map[string]any) *mcp.CallToolResult {
	t.Helper()
	p := &mcp.CallToolParams{Name: name, Arguments: args}
	p.SetMeta(meta)
	res, err := cs.CallTool(context.Background(), p)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

func text(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	s, _ := json.Marshal(r.StructuredContent)
	return b.String() + string(s)
}

// refusal decodes a tool error's structured content.
func refusal(t *testing.T, r *mcp.CallToolResult) pipeline.Error {
	t.Helper()
	if !r.IsError {
		t.Fatalf("not refused: %s", text(r))
	}
	var e pipeline.Error
	b, _ := json.Marshal(r.StructuredContent)
	if err := json.Unmarshal(b, &e); err != nil || e.Code == "" {
		t.Fatalf("no refusal shape in %s", text(r))
	}
	return e
}

// api is a test API: it echoes each request's method, path, query,
// headers and body, and records the requests it got.
type api struct {
	*httptest.Server
	hits atomic.Int32
	last atomic.Pointer[http.Request]
}

func newAPI(t *testing.T, h http.HandlerFunc) *api {
	a := &api{}
	if h == nil {
		h = echo
	}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		a.last.Store(r)
		h(w, r)
	}))
	t.Cleanup(a.Close)
	return a
}

func echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h := map[string]string{}
	for k, v := range r.Header {
		h[k] = strings.Join(v, ", ")
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "path": r.URL.EscapedPath(), "query": r.URL.RawQuery, "headers": h, "body": string(body)})
}

// source declares an http source for a, with loopback allowed as the
// tests need, and bearer auth from the environment.
func source(a *api, extra string) string {
	return fmt.Sprintf(`
server: {name: test}
sources:
  api:
    kind: http
    base_url: %s/v1
    auth: {bearer: "${env:TEST_API_TOKEN}"}
    egress: {allow_cidrs: [127.0.0.1/32]%s}
`, a.URL, extra)
}

const tools = `
tools:
  get_item:
    description: Get one item.
    source: api
    scope: api.read
    method: GET
    path: /items/{item_id}
    parameters:
      item_id: {description: d, type: string, required: true}
      tenant: {description: d, type: string, bind: tenant}
      verbose: {description: d, type: boolean}
      trace: {description: d, type: string}
    query: {tenant: tenant, verbose: verbose}
    headers: {X-Trace: trace}
  create_item:
    description: Create an item.
    source: api
    scope: api.write
    mode: write
    method: POST
    path: /items
    idempotency_key: true
    parameters:
      name: {description: d, type: string, required: true}
      price: {description: d, type: number}
      tenant: {description: d, type: string, bind: tenant}
    body: {name: name, details: {price: price}, owner: tenant}
`

func TestSecretNeverLeaves(t *testing.T) {
	t.Setenv("TEST_API_TOKEN", token)
	a := newAPI(t, nil)
	var logs bytes.Buffer
	srv := build(t, source(a, "")+tools, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	cs := connect(t, srv)

	res := call(t, cs, "get_item", map[string]any{"item_id": "42", "verbose": true})
	if res.IsError {
		t.Fatalf("get_item: %s", text(res))
	}
	if got := a.last.Load().Header.Get("Authorization"); got != "Bearer "+token {
		t.Fatalf("the API got Authorization %q", got)
	}
	out := text(res)
	if strings.Contains(out, token) {
		t.Fatalf("the token reached the result: %s", out)
	}
	if !strings.Contains(out, "REDACTED") || !strings.Contains(out, `/v1/items/42`) || !strings.Contains(out, "tenant=acme") {
		t.Errorf("the echo is not there, redacted: %s", out)
	}

	store, _ := srv.Audit()
	err := store.Scan(context.Background(), audit.Query{}, func(r *audit.Record) error {
		b, _ := json.Marshal(r)
		if strings.Contains(string(b), token) {
			t.Errorf("the token is in the audit log: %s", b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A refused call and a failing one are logged too.
	call(t, cs, "get_item", map[string]any{"item_id": "../x"})
	a.Close()
	call(t, cs, "get_item", map[string]any{"item_id": "1"})
	if strings.Contains(logs.String(), token) {
		t.Errorf("the token is in the log: %s", logs.String())
	}
}

// A secret is a reference; a value written in the file is refused, and
// the error does not repeat it.
func TestSecretsAreReferences(t *testing.T) {
	cfg := `
server: {name: test}
sources:
  api:
    kind: http
    base_url: https://api.example.com
    auth: {bearer: ` + token + `}
`
	c, err := config.Parse([]byte(cfg), "warden.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = server.Build(context.Background(), c, nil)
	if err == nil || !strings.Contains(err.Error(), "secret reference") {
		t.Fatalf("a literal token was accepted: %v", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Errorf("the error repeats the secret: %v", err)
	}
}

// Loopback is refused unless a CIDR allows it: the tests' own allowance is
// what lets them reach their test API.
func TestLoopbackIsRefusedByDefault(t *testing.T) {
	t.Setenv("TEST_API_TOKEN", token)
	a := newAPI(t, nil)
	cfg := strings.Replace(source(a, ""), "allow_cidrs: [127.0.0.1/32]", "allow_cidrs: []", 1) + tools
	cs, _ := serve(t, cfg)
	e := refusal(t, call(t, cs, "get_item", map[string]any{"item_id": "1"}))
	if e.Code != pipeline.PermissionDenied || !strings.Contains(e.Message, "loopback") {
		t.Errorf("refusal = %+v", e)
	}
	if a.hits.Load() != 0 {
		t.Error("the API was contacted")
	}

	// A name that resolves to loopback (the system resolver's localhost)
	// is refused like the address.
	port := a.URL[strings.LastIndex(a.URL, ":")+1:]
	cs, _ = serve(t, strings.Replace(cfg, a.URL, "http://localhost:"+port, 1))
	if e := refusal(t, call(t, cs, "get_item", map[string]any{"item_id": "1"})); e.Code != pipeline.PermissionDenied || !strings.Contains(e.Message, "localhost resolves to") {
		t.Errorf("localhost: %+v", e)
	}
	// Other spellings of an address do not even load.
	for _, host := range []string{"2130706433", "0x7f000001", "0177.0.0.1", "127.1"} {
		c, err := config.Parse([]byte(strings.Replace(source(a, ""), a.URL, "http://"+host+":"+port, 1)), "warden.yaml", t.TempDir())
		if err == nil {
			_, err = server.Build(context.Background(), c, nil)
		}
		if err == nil || !strings.Contains(err.Error(), "dotted decimal") {
			t.Errorf("base_url with host %s: %v", host, err)
		}
	}
	if a.hits.Load() != 0 {
		t.Error("the API was contacted")
	}
}

func TestArgumentsCannotReshapeTheRequest(t *testing.T) {
	t.Setenv("TEST_API_TOKEN", token)
	a := newAPI(t, nil)
	cs, _ := serve(t, source(a, "")+tools)
	for _, id := range []string{"../admin", "..", "a/b", "%2e%2e%2fadmin", "x%2Fy", "evil.com:80@x", "a\x00b"} {
		e := refusal(t, call(t, cs, "get_item", map[string]any{"item_id": id}))
		if e.Code != pipeline.InvalidArgument {
			t.Errorf("item_id %q: %+v", id, e)
		}
	}
	for _, v := range []string{"x\r\nX-Evil: 1", "x\nHost: evil", "x\r"} {
		e := refusal(t, call(t, cs, "get_item", map[string]any{"item_id": "1", "trace": v}))
		if e.Code != pipeline.InvalidArgument {
			t.Errorf("trace %q: %+v", v, e)
		}
	}
	if a.hits.Load() != 0 {
		t.Errorf("the API was contacted %d times", a.hits.Load())
	}
	// An ordinary value with reserved characters is one escaped segment.
	res := call(t, cs, "get_item", map[string]any{"item_id": "a b?c#d"})
	if res.IsError || a.last.Load().URL.EscapedPath() != "/v1/items/a%20b%3Fc%23d" {
		t.Errorf("got %s for %s", a.last.Load().URL.EscapedPath(), text(res))
	}
}

func TestRedirects(t *testing.T) {
	t.Setenv("TEST_API_TOKEN", token)
	var target atomic.Pointer[string]
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/items/here" {
			echo(w, r)
			return
		}
		http.Redirect(w, r, *target.Load(), http.StatusFound)
	})
	meta := "http://169.254.169.254/latest/meta-data/"
	target.Store(&meta)

	cs, _ := serve(t, source(a, "")+tools)
	e := refusal(t, call(t, cs, "get_item", map[string]any{"item_id": "1"}))
	if e.Code != pipeline.Unavailable || !strings.Contains(e.Message, "302") {
		t.Errorf("a redirect with redirects off: %+v", e)
	}

	cs, _ = serve(t, source(a, ", max_redirects: 3")+tools)
	e = refusal(t, call(t, cs, "get_item", map[string]any{"item_id": "1"}))
	if e.Code != pipeline.PermissionDenied {
		t.Errorf("a redirect to the metadata address: %+v", e)
	}
	// Even on the allow-list, the metadata address is refused when the
	// hop is dialled: its address is checked like any other.
	cs2, _ := serve(t, strings.Replace(source(a, ", max_redirects: 3"), "egress: {", `egress: {allow: ["`+a.URL+`", "http://169.254.169.254"], `, 1)+tools)
	e = refusal(t, call(t, cs2, "get_item", map[string]any{"item_id": "1"}))
	if e.Code != pipeline.PermissionDenied || !strings.Contains(e.Message, "link-local") {
		t.Errorf("an allow-listed redirect to the metadata address: %+v", e)
	}
	// A redirect on the same host is followed.
	here := a.URL + "/v1/items/here"
	target.Store(&here)
	res := call(t, cs, "get_item", map[string]any{"item_id": "1"})
	if res.IsError || !strings.Contains(text(res), "/v1/items/here") {
		t.Errorf("a same-host redirect was not followed: %s", text(res))
	}
}

// The second source's API redirects to the first's on another port:
// allowed, but the credential is not carried across.
func TestCredentialsStayOnTheSourcesHost(t *testing.T) {
	t.Setenv("TEST_API_TOKEN", token)
	other := newAPI(t, nil)
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/elsewhere", http.StatusTemporaryRedirect)
	})
	cfg := fmt.Sprintf(`
server: {name: test}
sources:
  api:
    kind: http
    base_url: %s/v1
    auth: {bearer: "${env:TEST_API_TOKEN}"}
    egress: {allow: ["%s", "%s"], allow_cidrs: [127.0.0.1/32], max_redirects: 2}
`, a.URL, a.URL, other.URL) + tools
	cs, _ := serve(t, cfg)
	res := call(t, cs, "get_item", map[string]any{"item_id": "1"})
	if res.IsError {
		t.Fatal(text(res))
	}
	if got := other.last.Load().Header.Get("Authorization"); got != "" {
		t.Errorf("the credential followed the redirect to another host: %q", got)
	}
}

func TestWritesBodyDryRunAndIdempotencyKey(t *testing.T) {
	t.Setenv("TEST_API_TOKEN", token)
	a := newAPI(t, nil)
	cs, _ := serve(t, source(a, "")+tools)

	res := call(t, cs, "create_item", map[string]any{"name": "lamp", "price": 19.5, "dry_run": true})
	if res.IsError {
		t.Fatal(text(res))
	}
	if a.hits.Load() != 0 {
		t.Fatal("a dry run sent the request")
	}
	out := text(res)
	for _, want := range []string{`"method":"POST"`, `/v1/items`, `"Authorization":"Bearer [secret]"`, `"owner":"acme"`, `"price":19.5`, "nothing was sent"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %s: %s", want, out)
		}
	}
	if strings.Contains(out, token) {
		t.Error("the dry run shows the token")
	}

	res = callMeta(t, cs, "create_item", map[string]any{"name": "lamp", "price": 19.5},
		map[string]any{"io.wardenmcp/idempotency_key": "order-1"})
	if res.IsError {
		t.Fatal(text(res))
	}
	r := a.last.Load()
	if r.Header.Get("Idempotency-Key") != "order-1" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("headers: %v", r.Header)
	}
	if !strings.Contains(text(res), `{\"details\":{\"price\":19.5},\"name\":\"lamp\",\"owner\":\"acme\"}`) {
		t.Errorf("body: %s", text(res))
	}
}

func TestStatusesBecomeRefusals(t *testing.T) {
	t.Setenv("TEST_API_TOKEN", token)
	cases := []struct {
		status int
		header string
		body   string
		code   pipeline.Code
		retry  int
		msg    string
	}{
		{404, "", `{"message":"no item 9"}`, pipeline.NotFound, 0, "no item 9"},
		{422, "", `{"error":{"message":"name too long"}}`, pipeline.InvalidArgument, 0, "name too long"},
		{400, "", `bad ` + token + ` input`, pipeline.InvalidArgument, 0, "[REDACTED"},
		{429, "17", `slow down`, pipeline.RateLimited, 17, "slow down"},
		{503, "5", ``, pipeline.Unavailable, 5, "503"},
		{500, "", `stack trace`, pipeline.Unavailable, 0, "500"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			a := newAPI(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.header != "" {
					w.Header().Set("Retry-After", tc.header)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			cs, _ := serve(t, source(a, "")+tools)
			e := refusal(t, call(t, cs, "get_item", map[string]any{"item_id": "9"}))
			if e.Code != tc.code || e.RetryAfter != tc.retry || !strings.Contains(e.Message, tc.msg) || strings.Contains(e.Message, token) {
				t.Errorf("got %+v", e)
			}
		})
	}
}

func TestProjectionAndMaxItems(t *testing.T) {
	t.Setenv("TEST_API_TOKEN", token)
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		var items []map[string]any
		for i := range 5 {
			items = append(items, map[string]any{"id": i, "name": fmt.Sprint("item", i), "internal_cost": 3})
		}
		json.NewEncoder(w).Encode(map[string]any{"data": items})
	})
	cs, _ := serve(t, source(a, "")+`
tools:
  list_items:
    description: List items.
    source: api
    scope: api.read
    method: GET
    path: /items
    projection: "data[].{id: id, name: name}"
    max_items: 3
    output_schema:
      type: array
      items: {description: d, type: object, properties: {id: {description: d, type: integer}, name: {description: d, type: string}}}
`)
	res := call(t, cs, "list_items", nil)
	if res.IsError {
		t.Fatal(text(res))
	}
	var out struct {
		Body      []map[string]any `json:"body"`
		Truncated bool             `json:"truncated"`
		Total     int              `json:"total_items"`
	}
	b, _ := json.Marshal(res.StructuredContent)
	json.Unmarshal(b, &out)
	if len(out.Body) != 3 || !out.Truncated || out.Total != 5 || out.Body[0]["internal_cost"] != nil || out.Body[2]["name"] != "item2" {
		t.Errorf("got %s", b)
	}
	if !strings.Contains(text(res), "Only the first 3 of 5 items") {
		t.Errorf("the truncation is not stated: %s", text(res))
	}
}

func TestOAuthClientCredentialsReuseTheToken(t *testing.T) {
	var fetched atomic.Int32
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		id, secret, _ := r.BasicAuth()
		if r.Form.Get("grant_type") != "client_credentials" || id != "warden" || secret != "cs-Very-Secret-99" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		n := fetched.Add(1)
		// The first token expires within the client's safety margin, so
		// it is due for refresh at once; the second lasts an hour.
		life := 3600
		if n == 1 {
			life = 5
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"at-%d-Zk3pQ8","token_type":"bearer","expires_in":%d}`, n, life)
	}))
	t.Cleanup(tokens.Close)
	t.Setenv("TEST_CLIENT_SECRET", "cs-Very-Secret-99")
	a := newAPI(t, nil)
	cfg := fmt.Sprintf(`
server: {name: test}
sources:
  api:
    kind: http
    base_url: %s/v1
    auth:
      oauth2: {token_url: %s/token, client_id: warden, client_secret: "${env:TEST_CLIENT_SECRET}", scopes: [items]}
    egress: {allow: ["%s", "%s"], allow_cidrs: [127.0.0.1/32]}
`, a.URL, tokens.URL, a.URL, tokens.URL) + tools
	cs, _ := serve(t, cfg)
	for range 5 {
		res := call(t, cs, "get_item", map[string]any{"item_id": "1"})
		if res.IsError {
			t.Fatal(text(res))
		}
		if strings.Contains(text(res), "-Zk3pQ8") {
			t.Fatalf("the access token reached the result: %s", text(res))
		}
	}
	if got := a.last.Load().Header.Get("Authorization"); got != "Bearer at-2-Zk3pQ8" {
		t.Errorf("Authorization = %q", got)
	}
	// One fetch for the short-lived token, one to refresh it, then reuse.
	if n := fetched.Load(); n != 2 {
		t.Errorf("the token endpoint was asked %d times for 5 calls, want 2", n)
	}
}

func TestDeclarationErrorsAreLocated(t *testing.T) {
	t.Setenv("TEST_API_TOKEN", token)
	a := newAPI(t, nil)
	for _, tc := range []struct{ tool, want string }{
		{"method: POST\n    path: /x", "set mode: write"},
		{"method: GET\n    path: /x/{id}", `"id" is not a declared parameter`},
		{"method: GET\n    path: /x/pre{id}\n    parameters: {id: {description: d, type: string, required: true}}", "whole segment"},
		{"method: GET\n    path: /x\n    parameters: {id: {description: d, type: string}}", "declared but not used"},
		{"method: GET\n    path: /x\n    projection: \"[[\"", "JMESPath"},
		{"method: GET\n    path: /x\n    bogus: 1", "bogus"},
	} {
		c, err := config.Parse([]byte(source(a, "")+"tools:\n  get_t:\n    description: Get t.\n    source: api\n    scope: api.read\n    "+tc.tool+"\n"), "warden.yaml", t.TempDir())
		if err == nil {
			_, err = server.Build(context.Background(), c, nil)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "warden.yaml") {
			t.Errorf("%s: %v, want %q located in the file", tc.tool, err, tc.want)
		}
	}
}

// The README's example loads as it is.
func TestExampleLoads(t *testing.T) {
	t.Setenv("BILLING_CLIENT_SECRET", "example-secret-9Qx")
	c, err := config.Load(filepath.Join("..", "..", "..", "examples", "http", "warden.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.Build(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var names []string
	for _, tl := range srv.Tools() {
		names = append(names, tl.Name)
	}
	if strings.Join(names, ",") != "list_invoices,void_invoice" {
		t.Errorf("tools = %v", names)
	}
}
