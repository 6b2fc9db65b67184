// Package command is the source kind for allowlisted commands: each tool
// runs one executable, declared by absolute path, with an argv made of
// literals and whole parameters — never through a shell — in a sandbox
// (package sandbox) with exactly the declared environment, files and
// network.
//
//	sources:
//	  tools:
//	    kind: command
//	tools:
//	  customer_by_name:
//	    source: tools
//	    scope: crm.read
//	    executable: /usr/bin/jq
//	    args: [-c, --arg, name, "{name}", '.[] | select(.name == $name)', /srv/data/customers.json]
//	    parameters:
//	      name: {type: string, required: true, max_length: 100}
//	    read_only: [/srv/data/customers.json]
//	    stdout: json
//
// A parameter's value that starts with "-" is refused unless the parameter
// is declared allow_leading_dash or placed after a literal "--"; a value
// with NUL is refused. Each call gets a scratch directory as its working
// directory, removed afterwards. stdout is the result (text, or JSON
// checked against output_schema); stderr, capped and redacted, goes to the
// audit record with the exit code, in the call's Flags; never to the
// model.
package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/sandbox"
	"github.com/wardenmcp/warden/internal/secret"
	"github.com/wardenmcp/warden/internal/source"
	"github.com/wardenmcp/warden/pipeline"
)

func init() { source.Register(Kind, open) }

// Kind names this kind in sources and in audit records.
const Kind = "command"

// Defaults for what a tool does not declare.
const (
	defaultMaxOutput = 64 << 10
	maxStderr        = 2 << 10
	defaultTimeout   = 10 * time.Second
)

// commands is a source of kind command. It holds what the host's sandbox
// supports, checked once when the source opens.
type commands struct {
	support *sandbox.Support
	// scratch is where per-call directories are made.
	scratch string
}

func open(_ context.Context, _ string, raw config.RawSource, _ *config.Config) (source.Source, error) {
	for k := range raw {
		if k != "kind" {
			return nil, fmt.Errorf("unknown setting %q (a command source takes none: each tool declares its command)", k)
		}
	}
	return &commands{support: sandbox.Check(), scratch: os.TempDir()}, nil
}

func (c *commands) Ready(context.Context) error { return nil }
func (c *commands) Close() error                { return nil }

// param is a parameter of a command tool: a scalar, as every kind declares
// them, and whether its value may start with "-".
type param struct {
	config.Param     `yaml:",inline"`
	AllowLeadingDash bool `yaml:"allow_leading_dash"`
}

// exitCode says what an exit status means: an error with a public code and
// a message for the model, or a result (ok) like exit status 0.
type exitCode struct {
	OK      bool   `yaml:"ok"`
	Error   string `yaml:"error"`
	Message string `yaml:"message"`
}

type limits struct {
	CPU       time.Duration `yaml:"cpu"`
	Memory    string        `yaml:"memory"`
	FileSize  string        `yaml:"file_size"`
	OpenFiles int           `yaml:"open_files"`
	Processes int           `yaml:"processes"`
}

type sandboxSettings struct {
	// Require lists the layers the tool needs; empty means every layer the
	// host supports.
	Require    []string `yaml:"require"`
	BestEffort bool     `yaml:"best_effort"`
}

// toolSettings are the keys of a command tool's declaration.
type toolSettings struct {
	Executable   string            `yaml:"executable"`
	Args         []string          `yaml:"args"`
	Parameters   map[string]param  `yaml:"parameters"`
	Env          map[string]string `yaml:"env"`
	Stdin        string            `yaml:"stdin"`
	ReadOnly     []string          `yaml:"read_only"`
	Egress       []string          `yaml:"egress"`
	Stdout       string            `yaml:"stdout"`
	OutputSchema map[string]any    `yaml:"output_schema"`
	MaxOutput    int               `yaml:"max_output"`
	ExitCodes    map[int]exitCode  `yaml:"exit_codes"`
	Limits       limits            `yaml:"limits"`
	Sandbox      sandboxSettings   `yaml:"sandbox"`
}

// exitErrors are the codes an exit status may map to.
var exitErrors = []pipeline.Code{pipeline.InvalidArgument, pipeline.NotFound, pipeline.PermissionDenied, pipeline.Unavailable, pipeline.Internal}

// arg is one element of the argv template: a literal, or a parameter.
type arg struct {
	literal string
	param   string
	// dash allows a value starting with "-": declared, or after "--".
	dash bool
}

var paramRef = regexp.MustCompile(`^\{([A-Za-z_][A-Za-z0-9_]*)\}$`)
var anyRef = regexp.MustCompile(`\{[A-Za-z_][A-Za-z0-9_]*\}`)

// tool is everything a call of one command tool needs, computed at load.
type tool struct {
	name      string
	path      string
	args      []arg
	env       []string
	secrets   []string // resolved secret values, redacted from stderr
	stdin     string
	readOnly  []string
	egress    []string
	json      bool
	schema    *jsonschema.Resolved
	maxOutput int
	exitCodes map[int]exitCode
	limits    sandbox.Limits
	layers    []sandbox.Layer
	scratch   string
}

func (c *commands) Targets(_ context.Context, d *source.Declaration) []*pipeline.Target {
	s := d.Settings
	if d.Tool == nil {
		s.Errorf([]string{"source"}, "a command source serves tools, not resources")
		return nil
	}
	var ts toolSettings
	if s.Decode(&ts) != nil {
		return nil
	}
	params := make(map[string]config.Param, len(ts.Parameters))
	for n, p := range ts.Parameters {
		params[n] = p.Param
	}
	if !s.CheckParams("parameters", params) {
		return nil
	}
	t := &tool{name: d.Name, scratch: c.scratch, exitCodes: ts.ExitCodes, stdin: ts.Stdin}
	ok := t.executable(s, ts.Executable)
	ok = t.argv(s, ts.Args, ts.Parameters) && ok
	ok = t.environment(s, ts.Env) && ok
	ok = t.files(s, ts) && ok
	ok = t.output(s, ts) && ok
	ok = t.sandbox(s, c.support, d.Spec.Timeout, ts) && ok
	if ts.Stdin != "" {
		if _, declared := ts.Parameters[ts.Stdin]; !declared {
			s.Errorf([]string{"stdin"}, "names no declared parameter")
			ok = false
		}
	}
	for code, e := range ts.ExitCodes {
		if e.OK == (e.Error != "") || (e.Error != "" && !slices.Contains(exitErrors, pipeline.Code(e.Error))) {
			s.Errorf([]string{"exit_codes", strconv.Itoa(code)}, "set either ok: true or error, one of %v", exitErrors)
			ok = false
		}
	}
	if !ok {
		return nil
	}
	d.Spec.Source = Kind
	d.Spec.Bound = config.Bound(params)
	target := &pipeline.Target{
		Spec:        d.Spec,
		Title:       d.Tool.Title,
		Description: strings.TrimSpace(d.Tool.Description),
		InputSchema: config.ObjectSchema(params),
		Handler:     t.handle,
	}
	if t.schema != nil && t.schema.Schema().Type == "object" {
		target.OutputSchema = t.schema.Schema()
	}
	return []*pipeline.Target{target}
}

// executable checks the declared executable: an absolute path to a regular
// file that only its owner may change.
func (t *tool) executable(s *config.Settings, path string) bool {
	key := []string{"executable"}
	if path == "" || !filepath.IsAbs(path) {
		s.Errorf(key, "required: the absolute path of the program (no shell, no PATH lookup)")
		return false
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		s.Errorf(key, "cannot use %s: %v", path, err)
	case !fi.Mode().IsRegular():
		s.Errorf(key, "%s is not a regular file", path)
	case fi.Mode().Perm()&0o022 != 0:
		s.Errorf(key, "%s is writable by group or others (mode %v): make it writable only by its owner", path, fi.Mode().Perm())
	case fi.Mode().Perm()&0o111 == 0:
		s.Errorf(key, "%s is not executable", path)
	default:
		t.path = path
		return true
	}
	return false
}

// argv compiles the argv template: each element a literal or one whole
// parameter.
func (t *tool) argv(s *config.Settings, args []string, params map[string]param) bool {
	ok := true
	afterDashes := false
	t.args = append(t.args, arg{literal: filepath.Base(t.path)})
	for i, a := range args {
		key := []string{"args", strconv.Itoa(i)}
		m := paramRef.FindStringSubmatch(a)
		if m == nil {
			if anyRef.MatchString(a) {
				s.Errorf(key, "%q mixes a parameter into a literal: an argument is a literal or one whole parameter, such as \"{name}\"", a)
				ok = false
				continue
			}
			if a == "--" {
				afterDashes = true
			}
			t.args = append(t.args, arg{literal: a})
			continue
		}
		p, declared := params[m[1]]
		if !declared {
			s.Errorf(key, "parameter %s is not declared", m[1])
			ok = false
			continue
		}
		if !p.Required && p.Default == nil && p.Bind == "" {
			s.Errorf([]string{"parameters", m[1]}, "a parameter in args must be required or have a default, so that the command line never changes shape")
			ok = false
			continue
		}
		t.args = append(t.args, arg{param: m[1], dash: p.AllowLeadingDash || afterDashes})
	}
	return ok
}

// environment resolves the declared environment, secrets included: it is
// the program's whole environment.
func (t *tool) environment(s *config.Settings, env map[string]string) bool {
	ok := true
	for _, k := range config.SortedKeys(env) {
		v, isRef, err := secret.Resolve(env[k])
		switch {
		case err != nil:
			s.Errorf([]string{"env", k}, "%v", err)
			ok = false
			continue
		case k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00"):
			s.Errorf([]string{"env", k}, "names and values may not contain = (names) or NUL")
			ok = false
			continue
		}
		if isRef && v != "" {
			t.secrets = append(t.secrets, v)
		}
		t.env = append(t.env, k+"="+v)
	}
	return ok
}

// files checks the declared read-only paths and egress.
func (t *tool) files(s *config.Settings, ts toolSettings) bool {
	ok := true
	for i, p := range ts.ReadOnly {
		if !filepath.IsAbs(p) {
			s.Errorf([]string{"read_only", strconv.Itoa(i)}, "must be an absolute path")
			ok = false
		} else if _, err := os.Stat(p); err != nil {
			s.Errorf([]string{"read_only", strconv.Itoa(i)}, "cannot use %s: %v", p, err)
			ok = false
		}
	}
	t.readOnly, t.egress = ts.ReadOnly, ts.Egress
	if err := sandbox.CheckEgress(ts.Egress); err != nil {
		s.Errorf([]string{"egress"}, "%v", err)
		ok = false
	}
	return ok
}

// output compiles what the tool does with stdout.
func (t *tool) output(s *config.Settings, ts toolSettings) bool {
	t.maxOutput = ts.MaxOutput
	if t.maxOutput == 0 {
		t.maxOutput = defaultMaxOutput
	}
	if t.maxOutput < 1 {
		s.Errorf([]string{"max_output"}, "must be positive (bytes)")
		return false
	}
	switch ts.Stdout {
	case "", "text":
		if ts.OutputSchema != nil {
			s.Errorf([]string{"output_schema"}, "only with stdout: json")
			return false
		}
	case "json":
		t.json = true
		if ts.OutputSchema == nil {
			return true
		}
		b, _ := json.Marshal(ts.OutputSchema)
		var schema jsonschema.Schema
		if err := json.Unmarshal(b, &schema); err != nil {
			s.Errorf([]string{"output_schema"}, "not a JSON Schema: %v", err)
			return false
		}
		r, err := schema.Resolve(nil)
		if err != nil {
			s.Errorf([]string{"output_schema"}, "%v", err)
			return false
		}
		t.schema = r
	default:
		s.Errorf([]string{"stdout"}, "must be text or json")
		return false
	}
	return true
}

// sandbox decides the tool's limits and layers: a required layer the host
// lacks refuses the tool, unless best_effort.
func (t *tool) sandbox(s *config.Settings, support *sandbox.Support, timeout time.Duration, ts toolSettings) bool {
	ok := true
	l := sandbox.DefaultLimits
	if timeout > 0 {
		l.Timeout = timeout
	} else {
		l.Timeout = defaultTimeout
	}
	if ts.Limits.CPU > 0 {
		l.CPU = ts.Limits.CPU
	}
	for _, sz := range []struct {
		key string
		v   string
		to  *int64
	}{{"memory", ts.Limits.Memory, &l.Memory}, {"file_size", ts.Limits.FileSize, &l.FileSize}} {
		if sz.v == "" {
			continue
		}
		n, err := parseSize(sz.v)
		if err != nil {
			s.Errorf([]string{"limits", sz.key}, "%v", err)
			ok = false
		}
		*sz.to = n
	}
	if ts.Limits.OpenFiles > 0 {
		l.OpenFiles = ts.Limits.OpenFiles
	}
	if ts.Limits.Processes > 0 {
		l.Processes = ts.Limits.Processes
	}
	t.limits = l

	var required []sandbox.Layer
	for i, name := range ts.Sandbox.Require {
		layer, err := sandbox.ParseLayer(name)
		if err != nil {
			s.Errorf([]string{"sandbox", "require", strconv.Itoa(i)}, "%v", err)
			ok = false
		}
		required = append(required, layer)
	}
	if !ok {
		return false
	}
	layers, skipped, err := support.Resolve(required, ts.Sandbox.BestEffort)
	if err != nil {
		s.Errorf([]string{"sandbox"}, "%v", err)
		return false
	}
	if ts.Sandbox.BestEffort {
		slog.Warn("command tool runs with best_effort sandbox", "tool", t.name, "layers", layers, "missing", skipped)
	}
	// The timeout is always applied; a view of the file system without
	// namespaces is impossible, so those layers go together.
	if !slices.Contains(layers, sandbox.Timeout) {
		layers = append(layers, sandbox.Timeout)
	}
	t.layers = layers
	return true
}

// parseSize reads a size such as 256M, 1G or 65536.
func parseSize(v string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "K"):
		mult, v = 1<<10, v[:len(v)-1]
	case strings.HasSuffix(v, "M"):
		mult, v = 1<<20, v[:len(v)-1]
	case strings.HasSuffix(v, "G"):
		mult, v = 1<<30, v[:len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size (such as 256M, 1G or 65536)", v)
	}
	return n * mult, nil
}

// handle runs one call.
func (t *tool) handle(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	argv, err := t.command(c.Args)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(t.scratch, "warden-call-")
	if err != nil {
		return nil, pipeline.Errorf(pipeline.Unavailable, "try again later", "the command could not be prepared")
	}
	defer os.RemoveAll(dir)
	cmd, err := sandbox.Command(&sandbox.Config{
		Path: t.path, Args: argv, Env: t.env, Dir: dir,
		ReadOnly: t.readOnly, Egress: t.egress, Limits: t.limits, Layers: t.layers,
	})
	if err != nil {
		return nil, err
	}
	if t.stdin != "" {
		if v, ok := c.Args[t.stdin]; ok {
			cmd.Stdin = strings.NewReader(stringOf(v))
		}
	}
	stdout := &capped{max: t.maxOutput}
	stderr := &capped{max: maxStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err = cmd.Run(ctx)
	exit := -1
	if ps := cmd.ProcessState(); ps != nil {
		exit = ps.ExitCode()
	}
	c.Flags = append(c.Flags, "command.exit_code="+strconv.Itoa(exit))
	if stderr.buf.Len() > 0 {
		c.Flags = append(c.Flags, "command.stderr="+t.redact(stderr.String()))
	}
	var se *sandbox.SetupError
	var ee *exec.ExitError
	switch {
	case errors.As(err, &se):
		slog.Error("command tool: the sandbox could not be built; the command did not run", "tool", t.name, "layer", se.Layer, "error", se.Err)
		return nil, pipeline.Errorf(pipeline.Unavailable, "ask the operator to run `warden sandbox check`", "the tool is unavailable: its sandbox could not be built")
	case errors.Is(err, sandbox.ErrTimeout):
		return nil, pipeline.Errorf(pipeline.Timeout, "narrow the request", "the command did not finish within %s and was stopped", t.limits.Timeout)
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.As(err, &ee):
		if cmd.OOMKilled() {
			return errorResult("The command was stopped: it exceeded its memory limit."), nil
		}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return errorResult(fmt.Sprintf("The command was stopped by %s: it exceeded a limit (time, memory, processes or file size).", ws.Signal())), nil
		}
	case err != nil:
		return nil, err
	}
	if e, mapped := t.exitCodes[exit]; mapped && !e.OK {
		msg := e.Message
		if msg == "" {
			msg = "the command failed"
		}
		return nil, pipeline.Errorf(pipeline.Code(e.Error), "", "%s", msg)
	} else if exit != 0 && !mapped {
		return errorResult(fmt.Sprintf("The command failed with exit code %d.\n%s", exit, stdout.text())), nil
	}
	return t.result(stdout)
}

// command makes argv from the template and the call's arguments.
func (t *tool) command(args map[string]any) ([]string, error) {
	argv := make([]string, 0, len(t.args))
	for _, a := range t.args {
		if a.param == "" {
			argv = append(argv, a.literal)
			continue
		}
		v, ok := args[a.param]
		if !ok {
			return nil, pipeline.Errorf(pipeline.InvalidArgument, "supply "+a.param, "missing argument %s", a.param)
		}
		s := stringOf(v)
		if strings.ContainsRune(s, 0) {
			return nil, pipeline.Errorf(pipeline.InvalidArgument, "remove the NUL character", "argument %s contains a NUL character", a.param)
		}
		if strings.HasPrefix(s, "-") && !a.dash {
			return nil, pipeline.Errorf(pipeline.InvalidArgument, "pass a value that does not start with -", "argument %s may not start with \"-\": it would be read as an option", a.param)
		}
		argv = append(argv, s)
	}
	return argv, nil
}

func stringOf(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// result makes the tool result from stdout.
func (t *tool) result(out *capped) (*pipeline.Result, error) {
	if !t.json {
		return &pipeline.Result{Tool: &pipeline.ToolResult{Content: []pipeline.Content{pipeline.Text(out.text())}}, Truncated: out.truncated}, nil
	}
	if out.truncated {
		return errorResult(fmt.Sprintf("The command's JSON output exceeded %d bytes; narrow the request.", t.maxOutput)), nil
	}
	var v any
	if err := json.Unmarshal(out.buf.Bytes(), &v); err != nil {
		return nil, pipeline.Errorf(pipeline.Internal, "", "the command's output is not JSON")
	}
	if t.schema != nil {
		if err := t.schema.Validate(v); err != nil {
			return nil, pipeline.Errorf(pipeline.Internal, "", "the command's output does not match its declared schema")
		}
	}
	raw := json.RawMessage(bytes.TrimSpace(out.buf.Bytes()))
	r := &pipeline.ToolResult{Content: []pipeline.Content{pipeline.Text(string(raw))}}
	if _, isObject := v.(map[string]any); isObject {
		r.StructuredContent = raw
	}
	return &pipeline.Result{Tool: r}, nil
}

func errorResult(msg string) *pipeline.Result {
	return &pipeline.Result{Tool: &pipeline.ToolResult{Content: []pipeline.Content{pipeline.Text(msg)}, IsError: true}}
}

var secretPatterns = regexp.MustCompile(`(?i)(bearer\s+|(?:password|passwd|secret|token|api[_-]?key)\s*[=:]\s*)\S+`)

// redact removes the tool's secrets and anything that looks like one from
// stderr before it is recorded.
func (t *tool) redact(s string) string {
	for _, secret := range t.secrets {
		s = strings.ReplaceAll(s, secret, "[REDACTED]")
	}
	return secretPatterns.ReplaceAllString(s, "${1}[REDACTED]")
}

// capped keeps the first max bytes written to it and notes whether more
// came; it never fails a write, so the program is not stopped by a full
// pipe.
type capped struct {
	max       int
	buf       bytes.Buffer
	truncated bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room < len(p) {
		c.truncated = true
		c.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.buf.Write(p)
}

func (c *capped) String() string { return c.text() }

// text is what was kept, with a marker if more was written.
func (c *capped) text() string {
	if c.truncated {
		return c.buf.String() + fmt.Sprintf("\n[output truncated at %d bytes]", c.max)
	}
	return c.buf.String()
}
