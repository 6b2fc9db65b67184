package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/wardenmcp/warden/examples/demo"
	"github.com/wardenmcp/warden/internal/config"
)

func demoCmd(io *streams) *cobra.Command {
	var (
		dir string
		tf  transportFlags
	)
	c := &cobra.Command{
		Use:   "demo [--http ADDR | --stdio]",
		Short: "Serve the demo CRM (created once in your data directory)",
		Long: `Serve the demo: a CRM for two fictional tenants, on an embedded SQLite
database that is created once in your data directory ($XDG_DATA_HOME/warden/demo
by default) and reused after that. The configuration is examples/demo/warden.yaml.`,
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
			return serve(c.Context(), cfg, &tf, log, io, func(endpoint string, stdio bool) {
				if stdio {
					// Standard output carries the protocol; say nothing there.
					return
				}
				printConnect(io, endpoint, filepath.Join(dir, "crm.db"))
			})
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "the demo's data directory (default $XDG_DATA_HOME/warden/demo)")
	tf.register(c)
	return c
}

// printConnect shows how to connect the common clients to the demo.
func printConnect(io *streams, endpoint, db string) {
	exe, err := os.Executable()
	if err != nil {
		exe = "warden"
	}
	js := func(v any) string {
		b, _ := json.MarshalIndent(v, "  ", "  ")
		return string(b)
	}
	fmt.Fprintf(io.out, `
Warden demo is serving the CRM at %[1]s
Database: %[2]s

Try it with the MCP Inspector (needs Node.js):
  npx @modelcontextprotocol/inspector --cli %[1]s --transport http --method tools/list
  npx @modelcontextprotocol/inspector --cli %[1]s --transport http --method tools/call --tool-name get_customer --tool-arg customer_id=C-1001

Claude Desktop (claude_desktop_config.json; it starts Warden itself, over stdio):
  %[3]s

Cursor (~/.cursor/mcp.json):
  %[4]s

VS Code (.vscode/mcp.json):
  %[5]s

Press Ctrl+C to stop.
`, endpoint, db,
		js(map[string]any{"mcpServers": map[string]any{"warden-demo": map[string]any{"command": exe, "args": []string{"demo", "--stdio"}}}}),
		js(map[string]any{"mcpServers": map[string]any{"warden-demo": map[string]any{"url": endpoint}}}),
		js(map[string]any{"servers": map[string]any{"warden-demo": map[string]any{"type": "http", "url": endpoint}}}),
	)
}
