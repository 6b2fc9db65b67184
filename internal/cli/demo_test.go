package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/wardenmcp/warden/examples/demo"
)

func TestTemporaryBuild(t *testing.T) {
	for _, tt := range []struct {
		exe  string
		want bool
	}{
		{"/tmp/go-build2148841777/b001/exe/warden", true},
		{filepath.Join(t.TempDir(), "go-build1/b001/exe/warden"), true},
		{"/var/folders/x1/T/go-build99/b001/exe/warden", true},
		{"/root/.cache/go-build/55/555d7d41e004dbb7ced6147ee77c6ec8fa29c57e815b6ea98728e2582b959821-d/warden", true},
		{"/srv/gocache/0a/0a5d7d41e004dbb7ced6147ee77c6ec8fa29c57e815b6ea98728e2582b959821-d/warden", true},
		{"/usr/local/bin/warden", false},
		{"/home/ann/go/bin/warden", false},
		{"/home/ann/src/warden/warden", false},
		{"/opt/go-builds/exe-tools/warden", false},
	} {
		if got := temporaryBuild(tt.exe); got != tt.want {
			t.Errorf("temporaryBuild(%q) = %v, want %v", tt.exe, got, tt.want)
		}
	}
}

// claudeCommand returns the command of the Claude Desktop snippet in a
// banner.
func claudeCommand(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)claude_desktop_config\.json.*?\n  (\{.*?\n  \})\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no Claude Desktop snippet in\n%s", out)
	}
	var cfg struct {
		MCPServers map[string]struct{ Command string } `json:"mcpServers"`
	}
	if err := json.Unmarshal([]byte(m[1]), &cfg); err != nil {
		t.Fatalf("the Claude Desktop snippet is not JSON: %v\n%s", err, m[1])
	}
	return cfg.MCPServers["warden-demo"].Command
}

func TestBannerNamesALastingBinary(t *testing.T) {
	keys := []demoKey{{Name: "acme-support", Tenant: "acme", Scopes: []string{"crm.read"}, Key: "wdn_test"}}
	t.Run("go run", func(t *testing.T) {
		var out bytes.Buffer
		printConnect(&out, banner{endpoint: "http://127.0.0.1:8080/mcp", db: "crm.db", keys: keys,
			exe: "/tmp/go-build2148841777/b001/exe/warden", goBin: "/home/ann/go/bin"})
		if got := claudeCommand(t, out.String()); got != "/home/ann/go/bin/warden" {
			t.Errorf("Claude Desktop starts %q, want the installed /home/ann/go/bin/warden", got)
		}
		for _, want := range []string{
			"This demo runs from a temporary build that Go deletes (/tmp/go-build2148841777/b001/exe/warden)",
			"go install ./cmd/warden",
			"which writes /home/ann/go/bin/warden",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("the banner does not say %q:\n%s", want, out.String())
			}
		}
	})
	t.Run("installed binary", func(t *testing.T) {
		var out bytes.Buffer
		printConnect(&out, banner{endpoint: "http://127.0.0.1:8080/mcp", db: "crm.db", keys: keys,
			exe: "/usr/local/bin/warden", goBin: "/home/ann/go/bin"})
		if got := claudeCommand(t, out.String()); got != "/usr/local/bin/warden" {
			t.Errorf("Claude Desktop starts %q, want this executable", got)
		}
		if strings.Contains(out.String(), "temporary build") || strings.Contains(out.String(), "go install") {
			t.Errorf("the banner asks to install a binary that is already lasting:\n%s", out.String())
		}
	})
}

func TestBannerWithoutKeys(t *testing.T) {
	keys := []demoKey{
		{Name: "acme-support", Tenant: "acme", Scopes: []string{"crm.read"}, Key: "wdn_support_secret"},
		{Name: "acme-finance", Tenant: "acme", Scopes: []string{"warden.console"}, Key: "wdn_finance_secret"},
	}
	var out bytes.Buffer
	printConnect(&out, banner{endpoint: "http://127.0.0.1:8080/mcp", db: "crm.db", keys: keys,
		exe: "/usr/local/bin/warden", keysFile: "/home/ann/.local/share/warden/demo/keys.txt"})
	if strings.Contains(out.String(), "secret") {
		t.Errorf("the banner shows a key:\n%s", out.String())
	}
	for _, want := range []string{
		"API keys (every HTTP call needs one), in /home/ann/.local/share/warden/demo/keys.txt, readable only by you:",
		"  acme-finance    tenant acme    scopes warden.console\n",
		"replace wdn_… with the acme-support key from /home/ann/.local/share/warden/demo/keys.txt",
		`"Authorization": "Bearer wdn_…"`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the banner does not say %q:\n%s", want, out.String())
		}
	}
	if got := claudeCommand(t, out.String()); got != "/usr/local/bin/warden" {
		t.Errorf("Claude Desktop starts %q", got)
	}
}

// bannerWriter collects what the demo writes and says when its banner is
// complete.
type bannerWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

func (w *bannerWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), "Press Ctrl+C to stop.") && w.done != nil {
		close(w.done)
		w.done = nil
	}
	return len(p), nil
}

func (w *bannerWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// runDemo serves the demo in dir over HTTP on loopback until its banner is
// out, stops it, and returns what it wrote.
func runDemo(t *testing.T, dir string, terminal bool, args ...string) (stdout, stderr string) {
	t.Helper()
	t.Setenv(demo.DirEnv, "") // the demo sets it; restore it after the test
	out := &bannerWriter{done: make(chan struct{})}
	banner := out.done
	var errOut bannerWriter
	c := demoCmd(&streams{in: strings.NewReader(""), out: out, err: &errOut, outTerminal: terminal})
	c.SetArgs(append([]string{"--http", "127.0.0.1:0", "--dir", dir}, args...))
	c.SetOut(out)
	c.SetErr(&errOut)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.ExecuteContext(ctx) }()
	select {
	case <-banner:
	case err := <-errc:
		cancel()
		t.Fatalf("the demo stopped before its banner: %v\n%s\n%s", err, out, errOut.String())
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("demo: %v", err)
	}
	return out.String(), errOut.String()
}

// storedKeys returns the demo's keys, as it keeps them in dir.
func storedKeys(t *testing.T, dir string) []demoKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "demo-keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dk []demoKey
	if err := json.Unmarshal(data, &dk); err != nil || len(dk) == 0 {
		t.Fatalf("demo-keys.json: %v", err)
	}
	return dk
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func TestDemoQuietKeys(t *testing.T) {
	dir := t.TempDir()
	keysFile := filepath.Join(dir, "keys.txt")

	// In a terminal, the keys are shown, as on a first run.
	out, _ := runDemo(t, dir, true)
	dk := storedKeys(t, dir)
	for _, k := range dk {
		if !strings.Contains(out, k.Key) {
			t.Errorf("in a terminal, the banner does not show %s's key:\n%s", k.Name, out)
		}
	}
	if _, err := os.Lstat(keysFile); err == nil {
		t.Errorf("keys.txt written though the keys were shown")
	}
	if m := mode(t, filepath.Join(dir, "demo-keys.json")); m.Perm() != 0o600 {
		t.Errorf("demo-keys.json has mode %v, want 0600", m)
	}

	for _, tt := range []struct {
		name     string
		terminal bool
		args     []string
	}{
		{"--quiet-keys in a terminal", true, []string{"--quiet-keys"}},
		{"output to a pipe or a log", false, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(keysFile)
			out, errOut := runDemo(t, dir, tt.terminal, tt.args...)
			for _, k := range dk {
				if strings.Contains(out, k.Key) || strings.Contains(errOut, k.Key) {
					t.Errorf("%s's key is in the output:\n%s\n%s", k.Name, out, errOut)
				}
			}
			if !strings.Contains(out, "in "+keysFile+", readable only by you") {
				t.Errorf("the banner does not name %s:\n%s", keysFile, out)
			}
			if m := mode(t, keysFile); !m.IsRegular() || m.Perm() != 0o600 {
				t.Errorf("keys.txt has mode %v, want a regular file of mode 0600", m)
			}
			data, _ := os.ReadFile(keysFile)
			for _, k := range dk {
				if !strings.Contains(string(data), k.Name) || !strings.Contains(string(data), k.Key) {
					t.Errorf("keys.txt lacks %s's key:\n%s", k.Name, data)
				}
			}
		})
	}

	t.Run("files others could read are made private", func(t *testing.T) {
		os.Chmod(keysFile, 0o644)
		os.Chmod(filepath.Join(dir, "demo-keys.json"), 0o644)
		_, errOut := runDemo(t, dir, false)
		if m := mode(t, keysFile); m.Perm() != 0o600 {
			t.Errorf("keys.txt has mode %v after the start, want 0600", m)
		}
		if m := mode(t, filepath.Join(dir, "demo-keys.json")); m.Perm() != 0o600 {
			t.Errorf("demo-keys.json has mode %v after the start, want 0600", m)
		}
		if !strings.Contains(errOut, "other users could read") {
			t.Errorf("no warning about the keys file others could read:\n%s", errOut)
		}
		if got := storedKeys(t, dir); got[0].Key != dk[0].Key {
			t.Errorf("the keys changed")
		}
	})

	t.Run("a link is replaced, not followed", func(t *testing.T) {
		target := filepath.Join(t.TempDir(), "elsewhere")
		os.WriteFile(target, []byte("untouched"), 0o644)
		os.Remove(keysFile)
		if err := os.Symlink(target, keysFile); err != nil {
			t.Skip("no symbolic links here:", err)
		}
		runDemo(t, dir, false)
		if m := mode(t, keysFile); !m.IsRegular() || m.Perm() != 0o600 {
			t.Errorf("keys.txt is %v, want a regular file of mode 0600", m)
		}
		if data, _ := os.ReadFile(target); string(data) != "untouched" {
			t.Errorf("the link's target was written: %q", data)
		}
	})
}
