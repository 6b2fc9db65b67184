// Package commands_test runs the command tools of examples/commands/warden.yaml
// against real programs: jq, git and curl.
package commands_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/sandbox"
	"github.com/wardenmcp/warden/internal/server"
	"github.com/wardenmcp/warden/internal/source"
	_ "github.com/wardenmcp/warden/internal/source/command"
	"github.com/wardenmcp/warden/pipeline"
)

// The test binary is the sandbox helper of the commands it runs.
func TestMain(m *testing.M) {
	sandbox.Main()
	os.Exit(m.Run())
}

// env is the example's world, in a temporary directory: the data file, a
// repository, and two HTTP services of which the example may reach one.
type env struct {
	dir     string
	cfg     *config.Config
	tools   map[string]*pipeline.Target
	allowed string // host:port the example declares
	other   string // another local service
}

func setup(t *testing.T) *env {
	t.Helper()
	for _, p := range []string{"/usr/bin/jq", "/usr/bin/git", "/usr/bin/curl"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s is not installed (scripts/test.sh installs it)", p)
		}
	}
	s := sandbox.Check()
	for _, l := range []sandbox.Layer{sandbox.Namespaces, sandbox.Filesystem, sandbox.Network, sandbox.Landlock, sandbox.Seccomp} {
		if !s.Has(l) {
			t.Skipf("this host lacks the sandbox layer %s (%s); see `warden sandbox check`", l, s.Missing[l])
		}
	}
	e := &env{dir: t.TempDir(), tools: map[string]*pipeline.Target{}}
	data, err := os.ReadFile("data/customers.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "customers.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(e.dir, "repo")
	git := func(args ...string) {
		t.Helper()
		args = append([]string{"-C", repo, "-c", "user.name=Ada", "-c", "user.email=ada@example.com"}, args...)
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	git("init", "-q")
	for _, msg := range []string{"First commit", "Second commit"} {
		if err := os.WriteFile(filepath.Join(repo, "README"), []byte(msg), 0o644); err != nil {
			t.Fatal(err)
		}
		git("add", "README")
		git("commit", "-q", "-m", msg)
	}
	e.allowed, e.other = serve(t, "status: ok"), serve(t, "status: secret")

	yaml, err := os.ReadFile("warden.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(e.allowed)
	doc := strings.ReplaceAll(string(yaml), "/srv/warden-examples", e.dir)
	doc = strings.ReplaceAll(doc, "127.0.0.1:8931", "127.0.0.1:"+port)
	// The state database and audit key go beside the configuration: in
	// the temporary directory, never in the source tree.
	cfg, err := config.Parse([]byte(doc), filepath.Join(e.dir, "warden.yaml"), e.dir)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg
	src, err := source.Open(context.Background(), "programs", cfg.Sources["programs"], cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, tool := range cfg.Tools {
		targets := src.Targets(context.Background(), &source.Declaration{
			Name: name, Spec: &pipeline.Spec{Method: pipeline.CallTool, Name: name, Timeout: 10e9}, Tool: tool, Settings: tool.Settings, Config: cfg,
		})
		if len(targets) == 1 {
			e.tools[name] = targets[0]
		}
	}
	if err := cfg.Problems().Err(); err != nil {
		t.Fatal(err)
	}
	return e
}

func serve(t *testing.T, body string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(body)) })}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func (e *env) call(t *testing.T, tool string, args map[string]any) (string, error) {
	t.Helper()
	target := e.tools[tool]
	c := &pipeline.Call{Spec: target.Spec, Target: tool, Args: args}
	r, err := target.Handler(context.Background(), c)
	t.Logf("%s %v: audit flags %q", tool, args, c.Flags)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, c := range r.Tool.Content {
		b.WriteString(c.Text)
	}
	if r.Tool.IsError {
		return b.String(), errors.New("tool error: " + b.String())
	}
	return b.String(), nil
}

func code(err error) pipeline.Code {
	var pe *pipeline.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestSearchCustomersWithJQ(t *testing.T) {
	e := setup(t)
	out, err := e.call(t, "search_customers", map[string]any{"name": "Ada Lovelace"})
	if err != nil || !strings.Contains(out, `"id":"C-1001"`) || strings.Contains(out, "C-1002") {
		t.Fatalf("err %v, out %s", err, out)
	}
	// A name is data for jq, never program text.
	for _, name := range []string{`") or true or ("`, `$(id)`, `; cat /etc/shadow`, "`id`"} {
		out, err := e.call(t, "search_customers", map[string]any{"name": name})
		if err != nil || out != "[]" {
			t.Errorf("%q: err %v, out %s", name, err, out)
		}
	}
	if _, err := e.call(t, "search_customers", map[string]any{"name": "--from-file=/etc/passwd"}); code(err) != pipeline.InvalidArgument {
		t.Errorf("an option as a name: err %v", err)
	}
}

func TestListCommitsWithGit(t *testing.T) {
	e := setup(t)
	out, err := e.call(t, "list_commits", map[string]any{"count": 5.0, "path": "."})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], " Second commit") {
		t.Fatalf("out %q", out)
	}
	// After the literal --, an option-like value is only a path.
	out, err = e.call(t, "list_commits", map[string]any{"count": 5.0, "path": "--output=" + filepath.Join(e.dir, "pwned")})
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("err %v, out %q", err, out)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "pwned")); err == nil {
		t.Fatal("git wrote a file")
	}
	if _, err := e.call(t, "list_commits", map[string]any{"count": "-1", "path": "."}); code(err) != pipeline.InvalidArgument {
		t.Fatalf("an option as a count: err %v", err)
	}
}

func TestServiceStatusReachesOnlyTheDeclaredPort(t *testing.T) {
	e := setup(t)
	out, err := e.call(t, "get_service_status", map[string]any{"url": "http://" + e.allowed + "/status"})
	if err != nil || out != "status: ok" {
		t.Fatalf("the declared port: err %v, out %q", err, out)
	}
	for _, url := range []string{"http://" + e.other + "/status", "http://127.0.0.1:5432/", "http://127.0.0.1:6379/", "http://169.254.169.254/latest/meta-data/"} {
		out, err := e.call(t, "get_service_status", map[string]any{"url": url})
		if code(err) != pipeline.Unavailable || strings.Contains(out, "secret") {
			t.Errorf("%s: err %v, out %q", url, err, out)
		}
	}
}

// TestThroughTheServer serves the example and calls its tools over MCP,
// through every stage: validation refuses what the schema forbids before
// any program runs.
func TestThroughTheServer(t *testing.T) {
	e := setup(t)
	t.Chdir(e.dir)
	srv, err := server.Build(context.Background(), e.cfg, &server.Options{
		Local: func(context.Context) (*pipeline.Principal, error) {
			return &pipeline.Principal{ID: "tester", Tenant: "acme", Scopes: []string{"data.read", "repo.read", "status.read"}, AuthMethod: "local"}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ctx := context.Background()
	st, ct := mcp.NewInMemoryTransports()
	if _, err := srv.MCP().Connect(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })

	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "search_customers", Arguments: map[string]any{"name": "Grace Hopper"}})
	if err != nil || res.IsError || len(res.Content) == 0 || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, "C-1002") {
		t.Fatalf("search_customers: %v %+v", err, res)
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "list_commits", Arguments: map[string]any{"path": "README"}})
	if err != nil || res.IsError || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, "Second commit") {
		t.Fatalf("list_commits: %v %+v", err, res)
	}
	for _, args := range []map[string]any{
		{"url": "http://169.254.169.254/latest/meta-data/"},
		{"url": "file:///etc/passwd"},
	} {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "get_service_status", Arguments: args})
		if err != nil || !res.IsError {
			t.Fatalf("%v: %v %+v", args, err, res)
		}
	}
}
