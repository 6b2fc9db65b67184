package server

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/pipeline"
)

const testConfig = `
server:
  name: test
  resources_dir: res
sources:
  db:
    kind: sqlite
    path: test.db
tools:
  get_item:
    description: Look up one item.
    scope: items.read
    source: db
    statement: SELECT id, name, price FROM items WHERE id = :id
    parameters:
      id: {type: integer, description: Item id., required: true, minimum: 1}
  list_items:
    description: List items.
    scope: items.read
    source: db
    max_rows: 2
    statement: SELECT id, name FROM items ORDER BY id
resources:
  readme:
    description: The readme.
    scope: docs.read
    uri: test://readme
    file: readme.md
  docs:
    description: Any document.
    scope: docs.read
    uri_template: docs://{+path}
    directory: docs
  item_record:
    description: One item.
    scope: items.read
    uri_template: items://{id}
    source: db
    statement: SELECT id, name FROM items WHERE id = :id
    parameters:
      id: {type: string, description: Item id., pattern: "^[0-9]+$"}
prompts:
  describe_item:
    description: Describe an item.
    scope: items.read
    arguments:
      id: {type: string, description: Item id., required: true}
      tone: {type: string, description: Tone., enum: [plain, friendly], default: plain}
    messages:
      - role: user
        text: "Describe item {{.id}} in a {{.tone}} tone."
`

// fixture writes a configuration, its database and its resources into a
// temporary directory, with a secret outside the resources directory and a
// symlink pointing at it.
func fixture(t *testing.T, yaml string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", filepath.Join(dir, "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL);
		INSERT INTO items VALUES (1, 'lamp', 19.5), (2, 'desk', 120), (3, 'chair', 45)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for name, body := range map[string]string{
		"res/readme.md":      "# Readme\n",
		"res/docs/guide.txt": "guide",
		"secret.txt":         "top secret",
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "secret.txt"), filepath.Join(dir, "res/docs/link.txt")); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(yaml), "warden.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func connect(t *testing.T, cfg *config.Config) *mcp.ClientSession {
	t.Helper()
	return connectAs(t, cfg, principal("tester", "t1", "items.read", "docs.read"))
}

func TestTools(t *testing.T) {
	cs := connect(t, fixture(t, testConfig))
	ctx := context.Background()

	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "get_item", Arguments: map[string]any{"id": 2}})
	if err != nil || res.IsError {
		t.Fatalf("get_item: %v %v", err, res)
	}
	var out struct {
		Rows     []map[string]any `json:"rows"`
		RowCount int              `json:"row_count"`
	}
	remarshal(t, res.StructuredContent, &out)
	if out.RowCount != 1 || out.Rows[0]["name"] != "desk" || out.Rows[0]["price"] != 120.0 {
		t.Errorf("get_item(2) = %+v", out)
	}

	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "list_items", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("list_items: %v %v", err, res)
	}
	var list struct {
		Rows      []map[string]any `json:"rows"`
		Truncated bool             `json:"truncated"`
	}
	remarshal(t, res.StructuredContent, &list)
	if len(list.Rows) != 2 || !list.Truncated {
		t.Errorf("list_items with max_rows 2 over 3 rows = %+v, want 2 rows, truncated", list)
	}
	if len(res.Content) != 2 || !strings.Contains(res.Content[1].(*mcp.TextContent).Text, "more matched") {
		t.Errorf("a truncated result does not say so in text: %v", res.Content)
	}

	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools.Tools {
		if tool.OutputSchema == nil || !tool.Annotations.ReadOnlyHint {
			t.Errorf("%s: want an output schema and readOnlyHint", tool.Name)
		}
	}
}

func TestFileResourcesStayInsideTheDirectory(t *testing.T) {
	cs := connect(t, fixture(t, testConfig))
	ctx := context.Background()

	for uri, want := range map[string]string{"test://readme": "# Readme\n", "docs://guide.txt": "guide"} {
		res, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri})
		if err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
		if got := res.Contents[0].Text; got != want {
			t.Errorf("%s = %q, want %q", uri, got, want)
		}
	}
	for _, uri := range []string{"docs://../readme.md", "docs://../secret.txt", "docs://../../secret.txt", "docs://link.txt", "docs://%2e%2e/secret.txt", "docs:///etc/passwd", "docs://missing.txt"} {
		res, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri})
		if err == nil {
			t.Errorf("%s was served: %q", uri, res.Contents[0].Text)
			continue
		}
		if strings.Contains(err.Error(), "top secret") {
			t.Errorf("%s leaked the secret in its error: %v", uri, err)
		}
	}
}

func TestSQLResourceTemplate(t *testing.T) {
	cs := connect(t, fixture(t, testConfig))
	ctx := context.Background()
	res, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "items://3"})
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Contents[0]; c.MIMEType != "application/json" || !strings.Contains(c.Text, `"chair"`) {
		t.Errorf("items://3 = %+v", c)
	}
	for _, uri := range []string{"items://99", "items://1%20OR%201=1"} {
		if _, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri}); err == nil {
			t.Errorf("%s: want an error", uri)
		}
	}
}

func TestPrompt(t *testing.T) {
	cs := connect(t, fixture(t, testConfig))
	ctx := context.Background()
	res, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "describe_item", Arguments: map[string]string{"id": "3"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Messages[0].Content.(*mcp.TextContent).Text; got != "Describe item 3 in a plain tone." {
		t.Errorf("prompt = %q", got)
	}
	for _, args := range []map[string]string{{}, {"id": "3", "tone": "angry"}, {"id": "3", "extra": "x"}} {
		if _, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "describe_item", Arguments: args}); err == nil {
			t.Errorf("arguments %v accepted", args)
		}
	}
	list, err := cs.ListPrompts(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if args := list.Prompts[0].Arguments; len(args) != 2 || args[0].Name != "id" || !args[0].Required || args[1].Required {
		t.Errorf("prompt arguments = %+v", args)
	}
}

func TestBuildErrorsAreLocated(t *testing.T) {
	tests := []struct {
		name string
		from string
		to   string
		want string
	}{
		{"missing table", "FROM items WHERE id = :id", "FROM nowhere WHERE id = :id", "tools.get_item.statement"},
		{"undeclared parameter", "WHERE id = :id\n", "WHERE id = :item\n", "uses :item, which is not declared"},
		{"unknown setting", "path: test.db", "path: test.db\n    pathh: x", `sources.db: invalid settings: unknown setting "pathh"`},
		{"unknown kind", "kind: sqlite", "kind: oracle", `unknown kind "oracle"`},
		{"missing database", "path: test.db", "path: missing.db", "does not exist"},
		{"template variables", "pattern: \"^[0-9]+$\"}", "pattern: \"^[0-9]+$\"}\n      other: {type: string, description: x}", "declare exactly the template's variables"},
		{"missing file", "file: readme.md", "file: nothing.md", "resources.readme.file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(testConfig, tt.from) {
				t.Fatalf("fixture does not contain %q", tt.from)
			}
			cfg := fixture(t, strings.Replace(testConfig, tt.from, tt.to, 1))
			_, err := Build(context.Background(), cfg, nil)
			if err == nil {
				t.Fatal("Build succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "warden.yaml:") {
				t.Errorf("error does not locate %q:\n%v", tt.want, err)
			}
			if tt.name == "missing database" {
				if _, err := os.Stat(filepath.Join(cfg.Dir, "missing.db")); err == nil {
					t.Error("a missing database file was created")
				}
			}
		})
	}
}

func remarshal(t *testing.T, from, to any) {
	t.Helper()
	b, err := json.Marshal(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, to); err != nil {
		t.Fatal(err)
	}
}

// principal returns a local principal with the given id, tenant and scopes.
func principal(id, tenant string, scopes ...string) func(context.Context) (*pipeline.Principal, error) {
	return func(context.Context) (*pipeline.Principal, error) {
		return &pipeline.Principal{ID: id, Tenant: tenant, Scopes: scopes, AuthMethod: "local"}, nil
	}
}

// connectAs is connect with a chosen local principal.
func connectAs(t *testing.T, cfg *config.Config, local func(context.Context) (*pipeline.Principal, error)) *mcp.ClientSession {
	t.Helper()
	srv, err := Build(context.Background(), cfg, &Options{Local: local})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return session(t, srv)
}

func errorCode(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	if !res.IsError {
		t.Fatalf("call succeeded, want a refusal: %+v", res.StructuredContent)
	}
	var e struct {
		Code string `json:"error_code"`
	}
	remarshal(t, res.StructuredContent, &e)
	return e.Code
}

func TestScopesDecideWhatIsSeenAndCalled(t *testing.T) {
	cfg := fixture(t, testConfig)
	ctx := context.Background()

	docsOnly := connectAs(t, cfg, principal("reader", "t1", "docs.read"))
	tools, err := docsOnly.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tools.Tools) != 0 {
		t.Errorf("a caller without items.read sees tools: %v", tools.Tools)
	}
	res, err := docsOnly.CallTool(ctx, &mcp.CallToolParams{Name: "get_item", Arguments: map[string]any{"id": 1}})
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, res); code != "PERMISSION_DENIED" {
		t.Errorf("calling a tool without its scope: %s", code)
	}
	if _, err := docsOnly.ReadResource(ctx, &mcp.ReadResourceParams{URI: "test://readme"}); err != nil {
		t.Errorf("docs.read cannot read the readme: %v", err)
	}
	if _, err := docsOnly.ReadResource(ctx, &mcp.ReadResourceParams{URI: "items://1"}); err == nil {
		t.Error("docs.read can read an item template")
	}
	templates, _ := docsOnly.ListResourceTemplates(ctx, nil)
	if len(templates.ResourceTemplates) != 1 || templates.ResourceTemplates[0].Name != "docs" {
		t.Errorf("templates seen with docs.read: %v", templates.ResourceTemplates)
	}
	if prompts, _ := docsOnly.ListPrompts(ctx, nil); len(prompts.Prompts) != 0 {
		t.Errorf("prompts seen without items.read: %v", prompts.Prompts)
	}

	nobody := connectAs(t, cfg, nil)
	if tools, err := nobody.ListTools(ctx, nil); err != nil || len(tools.Tools) != 0 {
		t.Errorf("an unauthenticated caller sees %v (%v)", tools, err)
	}
	res, err = nobody.CallTool(ctx, &mcp.CallToolParams{Name: "get_item", Arguments: map[string]any{"id": 1}})
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, res); code != "PERMISSION_DENIED" {
		t.Errorf("an unauthenticated call: %s", code)
	}
}

const tenantConfig = `
server:
  name: test
sources:
  db:
    kind: sqlite
    path: test.db
tools:
  list_accounts:
    description: List the caller's accounts.
    scope: accounts.read
    source: db
    statement: SELECT id, owner FROM accounts WHERE tenant = :tenant ORDER BY id
    parameters:
      tenant: {type: string, description: The caller's tenant., bind: tenant}
  get_account:
    description: Look up one of the caller's accounts.
    scope: accounts.read
    source: db
    statement: SELECT id, owner FROM accounts WHERE id = :id AND tenant = :tenant
    parameters:
      id: {type: integer, description: Account id., required: true}
      tenant: {type: string, description: The caller's tenant., bind: tenant}
`

func TestBoundTenantCannotBeEscaped(t *testing.T) {
	cfg := fixture(t, tenantConfig)
	db, err := sql.Open("sqlite", filepath.Join(cfg.Dir, "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE accounts (id INTEGER PRIMARY KEY, tenant TEXT, owner TEXT);
		INSERT INTO accounts VALUES (1, 'acme', 'ada'), (2, 'acme', 'grace'), (3, 'globex', 'hank')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ctx := context.Background()
	acme := connectAs(t, cfg, principal("agent", "acme", "accounts.read"))

	tools, err := acme.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools.Tools {
		if strings.Contains(lineOf(tool.InputSchema), "tenant") {
			t.Errorf("%s shows its bound parameter to the model: %s", tool.Name, lineOf(tool.InputSchema))
		}
	}

	res, err := acme.CallTool(ctx, &mcp.CallToolParams{Name: "list_accounts", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("list_accounts: %v %+v", err, res)
	}
	if got := lineOf(res.StructuredContent); strings.Contains(got, "hank") || !strings.Contains(got, "grace") {
		t.Errorf("acme sees %s", got)
	}

	attempts := []map[string]any{
		{"tenant": "globex"},
		{"tenant": "acme' OR '1'='1"},
	}
	for _, args := range attempts {
		res, err := acme.CallTool(ctx, &mcp.CallToolParams{Name: "list_accounts", Arguments: args})
		if err != nil {
			t.Fatal(err)
		}
		if code := errorCode(t, res); code != "PERMISSION_DENIED" {
			t.Errorf("supplying the bound tenant %v: %s", args, code)
		}
	}
	res, err = acme.CallTool(ctx, &mcp.CallToolParams{Name: "get_account", Arguments: map[string]any{"id": 3}})
	if err != nil || res.IsError {
		t.Fatalf("get_account: %v %+v", err, res)
	}
	if got := lineOf(res.StructuredContent); strings.Contains(got, "hank") {
		t.Errorf("acme read globex's account 3: %s", got)
	}

	noTenant := connectAs(t, cfg, principal("agent", "", "accounts.read"))
	res, err = noTenant.CallTool(ctx, &mcp.CallToolParams{Name: "list_accounts", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, res); code != "PERMISSION_DENIED" {
		t.Errorf("a principal without a tenant: %s", code)
	}
}

func lineOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
