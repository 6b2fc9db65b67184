package command

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/sandbox"
	"github.com/wardenmcp/warden/internal/source"
	"github.com/wardenmcp/warden/pipeline"
)

// The test binary is the sandbox helper of the commands it runs.
func TestMain(m *testing.M) {
	sandbox.Main()
	os.Exit(m.Run())
}

// load declares one tool named t of kind command, with the given settings
// (YAML indented under the tool), and returns its target or the
// configuration's error.
func load(t *testing.T, support *sandbox.Support, settings string) (*pipeline.Target, error) {
	t.Helper()
	doc := `
server:
  name: test
sources:
  cmd:
    kind: command
tools:
  run_t:
    description: A command.
    scope: test.run
    source: cmd
` + settings
	cfg, err := config.Parse([]byte(doc), "warden.yaml", t.TempDir())
	if err != nil {
		return nil, err
	}
	src, err := source.Open(context.Background(), "cmd", cfg.Sources["cmd"], cfg)
	if err != nil {
		return nil, err
	}
	if support != nil {
		src.(*commands).support = support
	}
	tool := cfg.Tools["run_t"]
	targets := src.Targets(context.Background(), &source.Declaration{
		Name: "run_t", Spec: &pipeline.Spec{Method: pipeline.CallTool, Name: "run_t", Timeout: tool.Timeout}, Tool: tool, Settings: tool.Settings, Config: cfg,
	})
	if err := cfg.Problems().Err(); err != nil {
		return nil, err
	}
	if len(targets) != 1 {
		t.Fatalf("%d targets", len(targets))
	}
	return targets[0], nil
}

// requireSandbox skips when the host lacks the layers these tests need.
func requireSandbox(t *testing.T) {
	t.Helper()
	s := sandbox.Check()
	for _, l := range []sandbox.Layer{sandbox.Namespaces, sandbox.Filesystem, sandbox.Landlock, sandbox.Seccomp} {
		if !s.Has(l) {
			t.Skipf("this host lacks the sandbox layer %s (%s); see `warden sandbox check`", l, s.Missing[l])
		}
	}
}

func mustLoad(t *testing.T, settings string) *pipeline.Target {
	t.Helper()
	requireSandbox(t)
	target, err := load(t, nil, settings)
	if err != nil {
		t.Fatal(err)
	}
	return target
}

func call(t *testing.T, target *pipeline.Target, args map[string]any) (*pipeline.Result, *pipeline.Call, error) {
	t.Helper()
	c := &pipeline.Call{Spec: target.Spec, Target: "t", Args: args}
	r, err := target.Handler(context.Background(), c)
	return r, c, err
}

func text(r *pipeline.Result) string {
	var b strings.Builder
	for _, c := range r.Tool.Content {
		b.WriteString(c.Text)
	}
	return b.String()
}

func code(err error) pipeline.Code {
	var pe *pipeline.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

const printfTool = `
    executable: /usr/bin/printf
    args: ['%s\n', "{text}"]
    parameters:
      text: {type: string, description: Text., required: true}
`

func TestArgumentInjectionIsInert(t *testing.T) {
	target := mustLoad(t, printfTool)
	for _, v := range []string{"; rm -rf /", "$(id)", "`id`", "a && cat /etc/shadow", "x | sh", "'\"; echo pwned"} {
		r, _, err := call(t, target, map[string]any{"text": v})
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if got := text(r); got != v+"\n" {
			t.Errorf("%q came out as %q: it was interpreted", v, got)
		}
	}
}

func TestOptionInjectionIsRefused(t *testing.T) {
	target := mustLoad(t, printfTool)
	for _, v := range []string{"--output=/etc/passwd", "-o/tmp/x", "-", "--"} {
		if _, _, err := call(t, target, map[string]any{"text": v}); code(err) != pipeline.InvalidArgument {
			t.Errorf("%q: err %v, want INVALID_ARGUMENT", v, err)
		}
	}
	if _, _, err := call(t, target, map[string]any{"text": "a\x00b"}); code(err) != pipeline.InvalidArgument {
		t.Errorf("NUL: err %v, want INVALID_ARGUMENT", err)
	}
}

func TestLeadingDashAllowedWhenDeclaredOrAfterDashes(t *testing.T) {
	for name, settings := range map[string]string{
		"after --": `
    executable: /usr/bin/printf
    args: ['--', '%s\n', "{text}"]
    parameters:
      text: {type: string, description: Text., required: true}
`,
		"declared": `
    executable: /usr/bin/printf
    args: ['%s\n', "{text}"]
    parameters:
      text: {type: string, description: Text., required: true, allow_leading_dash: true}
`,
	} {
		t.Run(name, func(t *testing.T) {
			r, _, err := call(t, mustLoad(t, settings), map[string]any{"text": "-o/tmp/x"})
			if err != nil || text(r) != "-o/tmp/x\n" {
				t.Fatalf("err %v, out %q", err, text(r))
			}
		})
	}
}

func TestDeclarationErrors(t *testing.T) {
	writable := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(writable, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(writable, 0o777); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, settings, want string }{
		{"relative executable", "    executable: printf\n", "absolute path"},
		{"missing executable", "    executable: /no/such/tool\n", "no such file"},
		{"directory", "    executable: /usr/bin\n", "not a regular file"},
		{"writable by others", "    executable: " + writable + "\n", "writable by group or others"},
		{"parameter inside a literal", `
    executable: /usr/bin/printf
    args: ["--name={text}"]
    parameters:
      text: {type: string, description: Text., required: true}
`, "one whole parameter"},
		{"undeclared parameter", `
    executable: /usr/bin/printf
    args: ["{nope}"]
`, "not declared"},
		{"optional parameter in args", `
    executable: /usr/bin/printf
    args: ["{text}"]
    parameters:
      text: {type: string, description: Text.}
`, "required or have a default"},
		{"unknown key", "    executable: /usr/bin/printf\n    shell: true\n", `unknown field "shell"`},
		{"secret not set", "    executable: /usr/bin/printf\n    env: {TOKEN: '${env:WARDEN_TEST_UNSET_SECRET}'}\n", "not set"},
		{"unknown layer", "    executable: /usr/bin/printf\n    sandbox: {require: [docker]}\n", "unknown sandbox layer"},
		{"duplicate egress port", "    executable: /usr/bin/printf\n    egress: ['127.0.0.1:80', '10.0.0.1:80']\n", "declared twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, nil, tt.settings)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

func TestMissingRequiredLayerRefusesTheTool(t *testing.T) {
	lacking := &sandbox.Support{Missing: map[sandbox.Layer]string{sandbox.Seccomp: "not in this kernel"}}
	_, err := load(t, lacking, "    executable: /usr/bin/printf\n    sandbox: {require: [seccomp]}\n")
	if err == nil || !strings.Contains(err.Error(), "seccomp (not in this kernel)") {
		t.Fatalf("err %v, want the tool refused", err)
	}
	if _, err := load(t, lacking, "    executable: /usr/bin/printf\n    sandbox: {require: [seccomp], best_effort: true}\n"); err != nil {
		t.Fatalf("best_effort: %v", err)
	}
}

func TestEnvironmentIsExactlyDeclared(t *testing.T) {
	t.Setenv("WARDEN_TEST_TOKEN", "s3cr3t-value")
	t.Setenv("WARDEN_PARENT_ONLY", "leak")
	target := mustLoad(t, `
    executable: /usr/bin/env
    env:
      LANG: C.UTF-8
      TOKEN: '${env:WARDEN_TEST_TOKEN}'
`)
	r, _, err := call(t, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := text(r); got != "LANG=C.UTF-8\nTOKEN=s3cr3t-value\n" {
		t.Fatalf("environment %q", got)
	}
}

func TestStdinFromAParameter(t *testing.T) {
	target := mustLoad(t, `
    executable: /usr/bin/cat
    stdin: body
    parameters:
      body: {type: string, description: Body., required: true}
`)
	r, _, err := call(t, target, map[string]any{"body": "-rf / ; $(id)"})
	if err != nil || text(r) != "-rf / ; $(id)" {
		t.Fatalf("err %v, out %q", err, text(r))
	}
}

func TestJSONOutputIsValidated(t *testing.T) {
	tool := func(out string) string {
		return `
    executable: /usr/bin/printf
    args: ['` + out + `']
    stdout: json
    output_schema:
      type: object
      properties: {n: {type: integer}}
      required: [n]
`
	}
	r, _, err := call(t, mustLoad(t, tool(`{"n": 1}`)), nil)
	if err != nil || r.Tool.StructuredContent == nil {
		t.Fatalf("err %v, result %+v", err, r)
	}
	if _, _, err := call(t, mustLoad(t, tool(`{"n": "one"}`)), nil); code(err) != pipeline.Internal {
		t.Fatalf("a result against the schema: err %v", err)
	}
	if _, _, err := call(t, mustLoad(t, tool(`not json`)), nil); code(err) != pipeline.Internal {
		t.Fatalf("a result that is not JSON: err %v", err)
	}
}

func TestOutputIsCappedWithAMarker(t *testing.T) {
	target := mustLoad(t, `
    executable: /usr/bin/seq
    args: ['1', '100000']
    max_output: 100
`)
	r, _, err := call(t, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := text(r); !r.Truncated || !strings.HasSuffix(got, "[output truncated at 100 bytes]") || len(got) > 200 {
		t.Fatalf("truncated %v, out %q", r.Truncated, got)
	}
}

func TestExitCodesAndStderrForTheAudit(t *testing.T) {
	t.Setenv("WARDEN_TEST_TOKEN", "unused")
	target := mustLoad(t, `
    executable: /bin/sh
    args: ['-c', 'echo "failed: token=abc123 for s3cr3t-value" >&2; exit $0', "{status}"]
    parameters:
      status: {type: string, description: Exit status., required: true, enum: ["0", "3", "4"]}
    env: {TOKEN: '${env:WARDEN_TEST_TOKEN}'}
    exit_codes:
      3: {error: NOT_FOUND, message: no such thing}
`)
	_, c, err := call(t, target, map[string]any{"status": "3"})
	if code(err) != pipeline.NotFound || !strings.Contains(err.Error(), "no such thing") {
		t.Fatalf("mapped exit: err %v", err)
	}
	flags := strings.Join(c.Flags, "\n")
	if !strings.Contains(flags, "command.exit_code=3") || !strings.Contains(flags, "command.stderr=failed: token=[REDACTED]") || strings.Contains(flags, "abc123") {
		t.Fatalf("flags %q", flags)
	}
	r, _, err := call(t, target, map[string]any{"status": "4"})
	if err != nil || !r.Tool.IsError || !strings.Contains(text(r), "exit code 4") || strings.Contains(text(r), "token") {
		t.Fatalf("unmapped exit: err %v, result %q", err, text(r))
	}
}

func TestSecretsAreRedactedFromStderr(t *testing.T) {
	t.Setenv("WARDEN_TEST_TOKEN", "s3cr3t-value")
	target := mustLoad(t, `
    executable: /bin/sh
    args: ['-c', 'echo "using $TOKEN" >&2']
    env: {TOKEN: '${env:WARDEN_TEST_TOKEN}'}
`)
	_, c, err := call(t, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if flags := strings.Join(c.Flags, "\n"); strings.Contains(flags, "s3cr3t") || !strings.Contains(flags, "using [REDACTED]") {
		t.Fatalf("flags %q", flags)
	}
}

func TestScratchDirectoryIsTheWorkingDirectoryAndIsRemoved(t *testing.T) {
	target := mustLoad(t, `
    executable: /bin/sh
    args: ['-c', 'pwd; echo data > file && read x < file && echo $x']
`)
	r, _, err := call(t, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(text(r)), "\n")
	if len(lines) != 2 || lines[1] != "data" || !strings.Contains(lines[0], "warden-call-") {
		t.Fatalf("out %q", text(r))
	}
	if _, err := os.Stat(lines[0]); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the scratch directory %s remains: %v", lines[0], err)
	}
}

func TestTimeoutStopsTheCommand(t *testing.T) {
	target := mustLoad(t, `
    executable: /bin/sh
    args: ['-c', 'while :; do :; done']
    timeout: 300ms
`)
	if _, _, err := call(t, target, nil); code(err) != pipeline.Timeout {
		t.Fatalf("err %v, want TIMEOUT", err)
	}
}
