package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/examples/demo"
	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/keys"
	"github.com/wardenmcp/warden/internal/server"
)

// The golden tests pin what the demo serves and what its audit log says
// about a fixed script of calls, so that a refactoring of the core shows
// every change of behaviour as a diff. After a change that is meant,
// rewrite the files with
//
//	go test ./internal/cli -run Golden -update
//
// and review the diff of testdata/golden like code.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func TestGoldenCheck(t *testing.T) {
	code, out, errOut := runCLI(t, nil, "check", "--config", demoConfig(t), "--json")
	if code != exitOK {
		t.Fatalf("check: exit %d: %s", code, errOut)
	}
	assertGolden(t, "check.json", []byte(out))
}

// TestGoldenAudit runs a fixed script against the demo through real MCP
// client sessions — in memory as the local stdio principal, and over HTTP
// with the demo's API keys — and compares the audit log it leaves behind.
func TestGoldenAudit(t *testing.T) {
	ctx := context.Background()
	cfg, err := config.Load(demoConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.Build(ctx, cfg, &server.Options{Stdio: true, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	// Over stdio (pipes standing in for the process's standard input and
	// output), as the demo's local principal (demo-local, acme), from a
	// client that cannot ask its user anything.
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	served := make(chan error, 1)
	go func() { served <- srv.ServeStdio(ctx, inR, outW); outW.Close() }()
	t.Cleanup(func() { inW.Close(); <-served })
	local, err := mcp.NewClient(&mcp.Implementation{Name: "golden-local", Version: "1"}, nil).Connect(ctx, &mcp.IOTransport{Reader: outR, Writer: inW}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	runGoldenScript(t, local, []goldenStep{
		{"list tools", listTools},
		{"get_customer of its own tenant", callStep("get_customer", map[string]any{"customer_id": "C-1001"})},
		{"get_customer of another tenant", callStep("get_customer", map[string]any{"customer_id": "C-2001"})},
		{"an unknown argument", callStep("get_customer", map[string]any{"customer_id": "C-1001", "tenant": "globex"})},
		{"a bound parameter supplied", callStep("get_customer", map[string]any{"customer_id": "C-1001", "tenant_id": "globex"})},
		{"an argument off its pattern", callStep("get_customer", map[string]any{"customer_id": "C-1002' OR 1=1 --"})},
		{"search_orders with a default", callStep("search_orders", map[string]any{"customer_id": "C-1001", "status": "delivered"})},
		{"read a record holding an injection", readStep("crm://customers/C-1002")},
		{"read the schema", readStep("crm://schema")},
		{"get a prompt", promptStep("summarize_customer_history", map[string]string{"customer_id": "C-1001", "focus": "orders"})},
		{"a refund needs approval", callStep("request_refund", map[string]any{"order_id": "O-5004"})},
		{"a dry run of a write", callStep("close_ticket", map[string]any{"ticket_id": 3, "dry_run": true})},
		{"a critical tool only dry-runs", callStep("delete_closed_tickets", map[string]any{})},
		{"a confirmation the client cannot ask for", callStep("update_ticket_priority", map[string]any{"ticket_id": 3, "priority": "low"})},
		{"an unknown tool", protocolError(callStep("no_such_tool", map[string]any{}))},
	})

	// Over HTTP, with the demo's API keys, from the go-sdk client: stateless
	// (2026-07-28) by default, and one session of the 2025-11-25 protocol.
	ts := httptest.NewServer(srv.HTTPHandler(srv.HTTPOptions()))
	defer ts.Close()
	clients := map[string]*http.Client{}
	for _, spec := range demoKeySpecs[:2] { // acme-support, globex-analyst
		plaintext, k, hash := keys.Generate(spec.Name, spec.Tenant, spec.Scopes, spec.Groups, 0)
		if err := srv.Keys().Create(ctx, k, hash); err != nil {
			t.Fatal(err)
		}
		clients[spec.Name] = &http.Client{Transport: bearer{plaintext, ts.Client().Transport}}
	}
	connect := func(name, version string) *mcp.ClientSession {
		t.Helper()
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "golden-http", Version: "1"}, nil).Connect(ctx,
			&mcp.StreamableClientTransport{Endpoint: ts.URL + "/mcp", HTTPClient: clients[name], DisableStandaloneSSE: true},
			&mcp.ClientSessionOptions{ProtocolVersion: version})
		if err != nil {
			t.Fatalf("connecting as %s: %v", name, err)
		}
		return cs
	}
	acme, globex := connect("acme-support", ""), connect("globex-analyst", "")
	defer acme.Close()
	defer globex.Close()
	runGoldenScript(t, acme, []goldenStep{
		{"list tools", listTools},
		{"get_customer of its own tenant", callStep("get_customer", map[string]any{"customer_id": "C-1002"})},
		{"draft a ticket: dry run", callStep("create_support_ticket_draft", map[string]any{
			"customer_id": "C-1002", "subject": "Card declined", "body": "Reach me at grace@example.com or +1 415 555 0102.", "dry_run": true})},
	})
	runGoldenScript(t, globex, []goldenStep{
		{"list tools", listTools},
		{"get_customer of another tenant", callStep("get_customer", map[string]any{"customer_id": "C-1001"})},
		{"get_customer of its own tenant", callStep("get_customer", map[string]any{"customer_id": "C-2001"})},
		{"a write without the scope", callStep("create_support_ticket_draft", map[string]any{
			"customer_id": "C-2001", "subject": "Hello", "body": "Hi"})},
		{"a refund without the scope", callStep("request_refund", map[string]any{"order_id": "O-6001"})},
	})
	legacy := connect("acme-support", "2025-11-25")
	runGoldenScript(t, legacy, []goldenStep{
		{"list tools", listTools},
		{"get_customer of its own tenant", callStep("get_customer", map[string]any{"customer_id": "C-1003"})},
		{"an unknown argument", callStep("get_customer", map[string]any{"customer_id": "C-1003", "verbose": true})},
	})
	if err := legacy.Close(); err != nil {
		t.Fatal(err)
	}

	store, secret := srv.Audit()
	rep, err := audit.Verify(ctx, store, secret)
	if err != nil || !rep.OK {
		t.Fatalf("the audit log does not verify: %v %+v", err, rep)
	}
	var recs []*audit.Record
	if err := store.Scan(ctx, audit.Query{}, func(r *audit.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(recs, func(a, b *audit.Record) int { return int(a.Seq - b.Seq) })
	assertGolden(t, "audit.json", normaliseAudit(t, recs, os.Getenv(demo.DirEnv)))
}

// bearer presents an API key on every request.
type bearer struct {
	key  string
	next http.RoundTripper
}

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+b.key)
	return b.next.RoundTrip(req)
}

// goldenStep is one request of the script. Its answer is not compared
// here (other tests assert answers); an error fails the test, since a step
// that does not do what it is meant to pins nothing.
type goldenStep struct {
	name string
	do   func(ctx context.Context, cs *mcp.ClientSession) error
}

func runGoldenScript(t *testing.T, cs *mcp.ClientSession, steps []goldenStep) {
	t.Helper()
	for _, s := range steps {
		if err := s.do(context.Background(), cs); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
}

// protocolError expects step to fail with a JSON-RPC error.
func protocolError(step func(context.Context, *mcp.ClientSession) error) func(context.Context, *mcp.ClientSession) error {
	return func(ctx context.Context, cs *mcp.ClientSession) error {
		if err := step(ctx, cs); err == nil {
			return fmt.Errorf("succeeded, want a protocol error")
		}
		return nil
	}
}

func listTools(ctx context.Context, cs *mcp.ClientSession) error {
	_, err := cs.ListTools(ctx, nil)
	return err
}

func callStep(name string, args map[string]any) func(context.Context, *mcp.ClientSession) error {
	return func(ctx context.Context, cs *mcp.ClientSession) error {
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		return err
	}
}

func readStep(uri string) func(context.Context, *mcp.ClientSession) error {
	return func(ctx context.Context, cs *mcp.ClientSession) error {
		_, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri})
		return err
	}
}

func promptStep(name string, args map[string]string) func(context.Context, *mcp.ClientSession) error {
	return func(ctx context.Context, cs *mcp.ClientSession) error {
		_, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: name, Arguments: args})
		return err
	}
}

// Fields of an audit record that differ from run to run, by the placeholder
// they are replaced with. Ids that correlate records (a trace's intent and
// outcome, a session's calls) are numbered in order of appearance, so the
// golden file still shows which records belong together; the rest only
// keep whether they were present.
var (
	numberedFields    = map[string]string{"trace_id": "trace", "session_id": "session"}
	placeholderFields = map[string]string{
		"instance":    "<instance>",    // random per writer
		"prev_hash":   "<hash>",        // keyed with a random secret; audit.Verify checks the chain
		"hash":        "<hash>",        //
		"args_hash":   "<hash>",        //
		"time":        "<time>",        //
		"duration_ns": "<duration>",    //
		"remote_addr": "<remote_addr>", // an ephemeral port
	}
	approvalID = regexp.MustCompile(`apr_[A-Za-z0-9_-]+`)
)

// normaliseAudit renders recs as indented JSON, one object per record, with
// what varies between runs replaced by placeholders.
func normaliseAudit(t *testing.T, recs []*audit.Record, dir string) []byte {
	t.Helper()
	seen := map[string]map[string]string{}
	var out []map[string]any
	for _, r := range recs {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		for field, prefix := range numberedFields {
			v, ok := m[field].(string)
			if !ok {
				continue
			}
			ids := seen[field]
			if ids == nil {
				ids = map[string]string{}
				seen[field] = ids
			}
			if ids[v] == "" {
				ids[v] = fmt.Sprintf("<%s-%d>", prefix, len(ids)+1)
			}
			m[field] = ids[v]
		}
		for field, placeholder := range placeholderFields {
			if _, ok := m[field]; ok {
				m[field] = placeholder
			}
		}
		for field, v := range m {
			if s, ok := v.(string); ok {
				s = approvalID.ReplaceAllString(s, "<approval_id>")
				if dir != "" {
					s = strings.ReplaceAll(s, dir, "<dir>")
				}
				m[field] = s
			}
		}
		out = append(out, m)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // placeholders stay readable: <hash>, not \u003chash\u003e
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// assertGolden compares got with testdata/golden/name, or rewrites the file
// under -update.
func assertGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the code does now (- golden, + now); if the change is meant, run go test -run Golden -update:\n%s",
			path, lineDiff(string(want), string(got)))
	}
}

// lineDiff shows the lines that differ between a and b, with line numbers
// and a line of context, from a longest common subsequence of lines.
func lineDiff(a, b string) string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	// lcs[i][j] is the length of the LCS of x[i:] and y[j:].
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte
		n    int // line number in a for ' ' and '-', in b for '+'
		text string
	}
	var lines []line
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			lines = append(lines, line{' ', i + 1, x[i]})
			i, j = i+1, j+1
		case i < len(x) && (j == len(y) || lcs[i+1][j] >= lcs[i][j+1]):
			lines = append(lines, line{'-', i + 1, x[i]})
			i++
		default:
			lines = append(lines, line{'+', j + 1, y[j]})
			j++
		}
	}
	var sb strings.Builder
	const around = 1
	last := -1
	for k, l := range lines {
		near := false
		for d := max(0, k-around); d <= min(len(lines)-1, k+around); d++ {
			near = near || lines[d].op != ' '
		}
		if !near {
			continue
		}
		if last >= 0 && k > last+1 {
			sb.WriteString("   ...\n")
		}
		fmt.Fprintf(&sb, "%c %4d %s\n", l.op, l.n, l.text)
		last = k
	}
	return sb.String()
}
