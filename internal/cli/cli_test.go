package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/examples/demo"
)

// runCLI runs the command line and returns its exit code and output.
func runCLI(t *testing.T, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	code = run(context.Background(), args, stdin, &out, &errb)
	return code, out.String(), errb.String()
}

// demoConfig sets up the demo database in a temporary directory and returns
// the path of the demo configuration, ready for warden serve or check.
func demoConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := demo.Setup(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	t.Setenv(demo.DirEnv, dir)
	return demoConfigFile
}

// demoConfigFile is the demo's configuration, from this package's folder.
var demoConfigFile = filepath.Join("..", "..", "examples", "demo", "warden.yaml")

func TestExitCodes(t *testing.T) {
	cfg := demoConfig(t)
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	os.WriteFile(broken, []byte("tools:\n  get_x:\n    source: nowhere\n"), 0o644)

	tests := []struct {
		name       string
		args       []string
		code       int
		out, errIn string
	}{
		{"version", []string{"version"}, exitOK, "warden ", ""},
		{"help", []string{"--help"}, exitOK, "serve", ""},
		{"unknown command", []string{"frobnicate"}, exitUsage, "", "unknown command"},
		{"unknown flag", []string{"check", "--nope"}, exitUsage, "", "unknown flag"},
		{"missing config flag", []string{"serve"}, exitUsage, "", `"config" not set`},
		{"both transports", []string{"serve", "--config", cfg, "--http", "127.0.0.1:0", "--stdio"}, exitUsage, "", "mutually exclusive"},
		{"check valid", []string{"check", "--config", cfg}, exitOK, "get_customer", ""},
		{"check broken", []string{"check", "--config", broken}, exitFailure, "", "broken.yaml:3: tools.get_x.source"},
		{"check missing file", []string{"check", "--config", "no/such/file.yaml"}, exitFailure, "", "no such file"},
		{"public bind refused", []string{"serve", "--config", cfg, "--http", "0.0.0.0:0"}, exitFailure, "", "allowed_hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, nil, tt.args...)
			if code != tt.code {
				t.Errorf("exit code = %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if !strings.Contains(out, tt.out) {
				t.Errorf("stdout does not contain %q:\n%s", tt.out, out)
			}
			if !strings.Contains(errOut, tt.errIn) {
				t.Errorf("stderr does not contain %q:\n%s", tt.errIn, errOut)
			}
		})
	}
}

func TestCheckJSONCatalog(t *testing.T) {
	code, out, errOut := runCLI(t, nil, "check", "--config", demoConfig(t), "--json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var cat struct {
		Tools []struct {
			Name        string `json:"name"`
			InputSchema struct {
				AdditionalProperties *bool `json:"additionalProperties"`
			} `json:"inputSchema"`
			OutputSchema map[string]any `json:"outputSchema"`
			Annotations  struct {
				ReadOnlyHint bool `json:"readOnlyHint"`
			} `json:"annotations"`
		} `json:"tools"`
		ResourceTemplates []struct{ URITemplate string } `json:"resourceTemplates"`
		Prompts           []struct{ Name string }        `json:"prompts"`
	}
	if err := json.Unmarshal([]byte(out), &cat); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	want := map[string]bool{"close_ticket": false, "create_support_ticket_draft": false, "delete_closed_tickets": false,
		"get_customer": true, "get_order_status": true, "request_refund": false, "search_orders": true, "update_ticket_priority": false}
	if len(cat.Tools) != len(want) {
		t.Fatalf("tools = %d, want %d", len(cat.Tools), len(want))
	}
	for _, tool := range cat.Tools {
		readOnly, ok := want[tool.Name]
		if !ok {
			t.Errorf("unexpected tool %s", tool.Name)
		}
		if tool.Annotations.ReadOnlyHint != readOnly {
			t.Errorf("%s: readOnlyHint = %v, want %v", tool.Name, tool.Annotations.ReadOnlyHint, readOnly)
		}
		if ap := tool.InputSchema.AdditionalProperties; ap == nil || *ap {
			t.Errorf("%s: input schema is not strict", tool.Name)
		}
		if tool.OutputSchema == nil {
			t.Errorf("%s: no output schema", tool.Name)
		}
	}
	if len(cat.ResourceTemplates) != 1 || len(cat.Prompts) != 1 {
		t.Errorf("templates %v, prompts %v", cat.ResourceTemplates, cat.Prompts)
	}
}

func TestServeStdio(t *testing.T) {
	cfg := demoConfig(t)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan int, 1)
	var errb bytes.Buffer
	go func() {
		done <- run(context.Background(), []string{"serve", "--config", cfg, "--stdio"}, inR, outW, &errb)
		outW.Close()
		inR.Close() // a server that stopped early fails the test instead of blocking it
	}()
	send := func(s string) {
		if _, err := io.WriteString(inW, s+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	lines := bufio.NewScanner(outR)
	lines.Buffer(nil, 1<<20)
	recv := func() map[string]any {
		if !lines.Scan() {
			t.Fatalf("no response: %v\nstderr: %s", lines.Err(), errb.String())
		}
		var m map[string]any
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
			t.Fatalf("stdout carries something other than JSON-RPC: %q", lines.Text())
		}
		return m
	}
	send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if r := recv(); r["result"] == nil {
		t.Fatalf("initialize: %v", r)
	}
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_customer","arguments":{"customer_id":"C-1002"}}}`)
	r := recv()
	if !strings.Contains(lineOf(r), "Grace Hopper") {
		t.Errorf("get_customer over stdio: %v", r)
	}
	send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_customer","arguments":{"customer_id":"C-1002' OR 1=1 --"}}}`)
	if r := recv(); !strings.Contains(lineOf(r), "INVALID_ARGUMENT") {
		t.Errorf("bad argument over stdio: %v", r)
	}
	inW.Close() // the client hangs up
	if code := <-done; code != exitOK {
		t.Errorf("exit code after stdin closed = %d; stderr: %s", code, errb.String())
	}
}

func lineOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestDemoSetupIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	created, err := demo.Setup(ctx, dir)
	if err != nil || !created {
		t.Fatalf("first Setup: created=%v err=%v", created, err)
	}
	db := filepath.Join(dir, "crm.db")
	before, _ := os.Stat(db)
	created, err = demo.Setup(ctx, dir)
	if err != nil || created {
		t.Fatalf("second Setup: created=%v err=%v", created, err)
	}
	after, _ := os.Stat(db)
	if !before.ModTime().Equal(after.ModTime()) || before.Size() != after.Size() {
		t.Error("second Setup rewrote the database")
	}
	if _, err := os.Stat(filepath.Join(dir, "resources", "schema.md")); err != nil {
		t.Errorf("resources not written: %v", err)
	}
}
