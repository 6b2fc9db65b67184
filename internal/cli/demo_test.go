package cli

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
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
