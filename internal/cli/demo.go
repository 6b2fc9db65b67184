package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardenmcp/warden/examples/demo"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/keys"
)

func demoCmd(io *streams) *cobra.Command {
	var (
		dir       string
		quietKeys bool
		tf        transportFlags
	)
	c := &cobra.Command{
		Use:   "demo [--http ADDR | --stdio] [--quiet-keys]",
		Short: "Serve the demo CRM (created once in your data directory)",
		Long: `Serve the demo: a CRM for two fictional tenants, on an embedded SQLite
database that is created once in your data directory ($XDG_DATA_HOME/warden/demo
by default) and reused after that. The configuration is examples/demo/warden.yaml.

Over HTTP, the demo prints its API keys at the start when standard output is
a terminal. With --quiet-keys, or when standard output is not a terminal (a
pipe, a log file), it writes them to keys.txt in the data directory instead,
readable only by you, and names that file.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			log, err := tf.logger(io.err)
			if err != nil {
				return err
			}
			if dir == "" {
				if dir, err = demo.DefaultDir(); err != nil {
					return err
				}
			}
			created, err := demo.Setup(c.Context(), dir)
			if err != nil {
				return err
			}
			if created {
				log.Info("created the demo database", "path", filepath.Join(dir, "crm.db"))
			}
			os.Setenv(demo.DirEnv, dir)
			cfg, err := config.Parse(demo.Config, "examples/demo/warden.yaml (embedded)", dir)
			if err != nil {
				return err
			}
			dk, err := demoKeys(c.Context(), cfg, dir)
			if err != nil {
				return err
			}
			return serve(c.Context(), cfg, &tf, log, io, func(endpoint string, stdio bool) {
				if stdio {
					// Standard output carries the protocol; say nothing there.
					return
				}
				b := banner{endpoint: endpoint, db: filepath.Join(dir, "crm.db"), keys: dk, exe: "warden"}
				if quietKeys || !io.outTerminal {
					b.keysFile = filepath.Join(dir, "keys.txt")
					if err := writeKeysFile(b.keysFile, dk, log); err != nil {
						// Without the file, the banner would point at nothing;
						// the keys are still in demo-keys.json.
						log.Error("writing the demo's API keys", "path", b.keysFile, "err", err)
						b.keysFile = filepath.Join(dir, "demo-keys.json")
					}
				}
				if exe, err := os.Executable(); err == nil {
					b.exe = exe
				}
				if temporaryBuild(b.exe) {
					b.goBin = goBinDir(c.Context())
				}
				printConnect(io.out, b)
			})
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "the demo's data directory (default $XDG_DATA_HOME/warden/demo)")
	c.Flags().BoolVar(&quietKeys, "quiet-keys", false, "print no API keys; write them to keys.txt in the data directory (mode 0600) and name it (the default when standard output is not a terminal)")
	tf.register(c)
	return c
}

// demoKey is one of the demo's API keys. The demo keeps their plaintext in
// its data directory (mode 0600) so that it can print them at every start;
// a real deployment never stores a key, only its hash.
type demoKey struct {
	Name   string   `json:"name"`
	Tenant string   `json:"tenant"`
	Scopes []string `json:"scopes"`
	Groups []string `json:"groups"`
	Key    string   `json:"key"`
}

// demoKeySpecs are the demo's callers: a support agent at acme who may
// read, draft and close tickets and request refunds; a read-only analyst at
// globex; and an approver in acme's finance group, who may sign in to the
// console and use the approvals API.
var demoKeySpecs = []demoKey{
	{Name: "acme-support", Tenant: "acme", Scopes: []string{"crm.read", "crm.tickets.write", "crm.refunds.request"}, Groups: []string{"support"}},
	{Name: "globex-analyst", Tenant: "globex", Scopes: []string{"crm.read"}, Groups: []string{"analysts"}},
	{Name: "acme-finance", Tenant: "acme", Scopes: []string{"crm.read", "warden.console", "warden.approvals"}, Groups: []string{"finance"}},
}

// demoKeys returns the demo's API keys, creating them once.
func demoKeys(ctx context.Context, cfg *config.Config, dir string) ([]demoKey, error) {
	path := filepath.Join(dir, "demo-keys.json")
	store, err := keys.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	var dk []demoKey
	if err := keepPrivate(path); err != nil {
		return nil, err
	}
	if data, err := os.ReadFile(path); err == nil && json.Unmarshal(data, &dk) == nil && len(dk) == len(demoKeySpecs) {
		// Keys made by an older demo, with other scopes or groups, are made
		// again.
		valid := true
		for i, k := range dk {
			p, _, err := keys.Authenticate(ctx, store, k.Key)
			spec := demoKeySpecs[i]
			if err != nil || p.ID != spec.Name || !slices.Equal(p.Scopes, spec.Scopes) || !slices.Equal(p.Groups, spec.Groups) {
				valid = false
			}
		}
		if valid {
			return dk, nil
		}
	}
	dk = nil
	for _, spec := range demoKeySpecs {
		// A stale key of the same name (from a lost demo-keys.json) goes first.
		store.Revoke(ctx, spec.Name)
		plain, k, hash := keys.Generate(spec.Name, spec.Tenant, spec.Scopes, spec.Groups, 0)
		if err := store.Create(ctx, k, hash); err != nil {
			return nil, fmt.Errorf("creating the demo's API keys: %w", err)
		}
		spec.Key = plain
		dk = append(dk, spec)
	}
	data, _ := json.MarshalIndent(dk, "", "  ")
	return dk, writePrivate(path, data)
}

// keepPrivate makes the existing file at path readable by its owner only,
// and refuses anything but a regular file there: the demo's keys are not
// followed through a link.
func keepPrivate(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s holds the demo's API keys but is not a regular file; remove it", path)
	case fi.Mode().Perm()&0o077 != 0:
		return os.Chmod(path, 0o600)
	}
	return nil
}

// writePrivate replaces the file at path with data, readable and writable
// by its owner only, whatever was there before (a file of wider mode, a
// link): a new file is written beside it and renamed over it.
func writePrivate(path string, data []byte) error {
	tmp := path + ".tmp"
	os.Remove(tmp) // a leftover, of whatever mode, is never reused
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err2 := f.Close(); err == nil {
		err = err2
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// writeKeysFile writes the demo's API keys to path, for --quiet-keys, as
// the banner would show them. A file there that others could read is
// replaced, with a warning: the keys in it may have been read.
func writeKeysFile(path string, dk []demoKey, log *slog.Logger) error {
	if fi, err := os.Lstat(path); err == nil && (!fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0) {
		log.Warn("replacing a keys file other users could read; if they could, delete demo-keys.json beside it to make new keys", "path", path, "mode", fi.Mode().String())
	}
	var b strings.Builder
	b.WriteString("# The warden demo's API keys. Every HTTP call needs one, as \"Authorization: Bearer KEY\".\n")
	for _, k := range dk {
		fmt.Fprintf(&b, "%-15s tenant %-7s scopes %-44s %s\n", k.Name, k.Tenant, strings.Join(k.Scopes, ","), k.Key)
	}
	return writePrivate(path, []byte(b.String()))
}

// banner is what the demo shows at its start over HTTP.
type banner struct {
	endpoint, db string
	keys         []demoKey
	// exe is the executable clients that start Warden themselves run.
	exe string
	// goBin is where go install puts warden, shown when exe is a temporary
	// build (see temporaryBuild).
	goBin string
	// keysFile, if set, holds the keys, and the banner shows none.
	keysFile string
}

// cachedExe is the path of an executable go run keeps in Go's build cache:
// $GOCACHE/55/<64 hex digits>-d/warden.
var cachedExe = regexp.MustCompile(`/[0-9a-f]{2}/[0-9a-f]{64}-d/[^/]+$`)

// temporaryBuild reports whether exe is a build that go run made and Go
// deletes: in a go-build directory of the temporary directory
// ($TMPDIR/go-build123/b001/exe/warden), or in the build cache, which Go
// trims as it pleases.
func temporaryBuild(exe string) bool {
	slashed := filepath.ToSlash(exe)
	if strings.Contains(slashed, "/go-build") && strings.Contains(slashed, "/exe/") {
		return true
	}
	if strings.HasPrefix(slashed, filepath.ToSlash(filepath.Join(os.TempDir(), "go-build"))) {
		return true
	}
	if cache := os.Getenv("GOCACHE"); cache != "" && strings.HasPrefix(slashed, filepath.ToSlash(cache)+"/") {
		return true
	}
	return cachedExe.MatchString(slashed)
}

// goBinDir returns the directory go install writes commands to: GOBIN, or
// the first GOPATH's bin. It asks the go command, which knows what
// `go env -w` set, and falls back on the environment and Go's default.
func goBinDir(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	gobin, gopath := os.Getenv("GOBIN"), os.Getenv("GOPATH")
	if out, err := exec.CommandContext(ctx, "go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		if lines := strings.Split(string(out), "\n"); len(lines) >= 2 {
			gobin, gopath = strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1])
		}
	}
	if gobin != "" {
		return gobin
	}
	if list := filepath.SplitList(gopath); len(list) > 0 && list[0] != "" {
		return filepath.Join(list[0], "bin")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, "go", "bin")
	}
	return filepath.Join("~", "go", "bin")
}

// printConnect shows how to connect the common clients to the demo.
func printConnect(w io.Writer, b banner) {
	exe := b.exe
	claudeHow := ""
	if temporaryBuild(exe) {
		// Claude Desktop would start a file that is gone once this demo stops.
		exe = filepath.Join(b.goBin, filepath.Base(b.exe))
		claudeHow = fmt.Sprintf(`  This demo runs from a temporary build that Go deletes (%s),
  so Claude Desktop needs a lasting one. From this repository, run
    go install ./cmd/warden
  which writes %s, then paste:
`, b.exe, exe)
	}
	js := func(v any) string {
		out, _ := json.MarshalIndent(v, "  ", "  ")
		return string(out)
	}
	endpoint := b.endpoint
	fmt.Fprintf(w, "\nWarden demo is serving the CRM at %s\nDatabase: %s\n\n", endpoint, b.db)
	key := b.keys[0].Key
	if b.keysFile != "" {
		key = "wdn_…"
		fmt.Fprintf(w, "API keys (every HTTP call needs one), in %s, readable only by you:\n", b.keysFile)
	} else {
		fmt.Fprintf(w, "API keys (every HTTP call needs one):\n")
	}
	for _, k := range b.keys {
		line := fmt.Sprintf("  %-15s tenant %-7s scopes %-44s", k.Name, k.Tenant, strings.Join(k.Scopes, ","))
		if b.keysFile == "" {
			line += " " + k.Key
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	fmt.Fprintf(w, "\nWeb console: %s (sign in with the acme-finance key to approve refunds)\n",
		strings.TrimSuffix(endpoint, "/mcp")+"/console/")
	if b.keysFile != "" {
		fmt.Fprintf(w, "\nBelow, replace wdn_… with the %s key from %s.\n", b.keys[0].Name, b.keysFile)
	}
	auth := "Bearer " + key
	fmt.Fprintf(w, `
Try it with the MCP Inspector (needs Node.js):
  npx @modelcontextprotocol/inspector --cli %[1]s --transport http --header "Authorization: %[2]s" --method tools/list
  npx @modelcontextprotocol/inspector --cli %[1]s --transport http --header "Authorization: %[2]s" --method tools/call --tool-name get_customer --tool-arg customer_id=C-1001

Claude Desktop (claude_desktop_config.json; it starts Warden itself, over stdio):
%[6]s  %[3]s

Cursor (~/.cursor/mcp.json):
  %[4]s

VS Code (.vscode/mcp.json):
  %[5]s

Press Ctrl+C to stop.
`, endpoint, auth,
		js(map[string]any{"mcpServers": map[string]any{"warden-demo": map[string]any{"command": exe, "args": []string{"demo", "--stdio"}, "env": map[string]string{"WARDEN_API_KEY": key}}}}),
		js(map[string]any{"mcpServers": map[string]any{"warden-demo": map[string]any{"url": endpoint, "headers": map[string]string{"Authorization": auth}}}}),
		js(map[string]any{"servers": map[string]any{"warden-demo": map[string]any{"type": "http", "url": endpoint, "headers": map[string]string{"Authorization": auth}}}}),
		claudeHow,
	)
}
