package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/server"
)

// catalog is what a configuration serves, as clients will list it.
type catalog struct {
	Tools             []*mcp.Tool             `json:"tools"`
	Resources         []*mcp.Resource         `json:"resources"`
	ResourceTemplates []*mcp.ResourceTemplate `json:"resourceTemplates"`
	Prompts           []*mcp.Prompt           `json:"prompts"`
}

func checkCmd(io *streams) *cobra.Command {
	var (
		file   string
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "check --config FILE",
		Short: "Validate a configuration and print what it serves",
		Long: `Validate a configuration completely — the file, its sources (each is opened)
and every statement (each is prepared against its database) — and print the
catalog: tools with their input and output schemas, resources and prompts.
Exits non-zero if anything is wrong, listing every problem with its line.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := config.Load(file)
			if err != nil {
				return err
			}
			srv, err := server.Build(c.Context(), cfg, &server.Options{Logger: discardLogger()})
			if err != nil {
				return err
			}
			defer srv.Close()
			cat := catalog{srv.Tools(), srv.Resources(), srv.ResourceTemplates(), srv.Prompts()}
			if asJSON {
				enc := json.NewEncoder(io.out)
				enc.SetIndent("", "  ")
				return enc.Encode(cat)
			}
			printCatalog(io, file, &cat)
			return nil
		},
	}
	c.Flags().StringVarP(&file, "config", "c", "", "the configuration file (YAML)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the catalog as JSON")
	c.MarkFlagRequired("config")
	return c
}

func printCatalog(io *streams, file string, cat *catalog) {
	w := io.out
	js := func(v any) string {
		b, _ := json.MarshalIndent(v, "      ", "  ")
		return string(b)
	}
	fmt.Fprintf(w, "%s is valid.\n\nTools (%d):\n", file, len(cat.Tools))
	for _, t := range cat.Tools {
		mode := "write"
		if t.Annotations != nil && t.Annotations.ReadOnlyHint {
			mode = "read"
		}
		fmt.Fprintf(w, "  %s  (%s, version %v)\n    %s\n    input:\n      %s\n    output:\n      %s\n",
			t.Name, mode, t.Meta["io.wardenmcp/version"], oneLine(t.Description), js(t.InputSchema), js(t.OutputSchema))
	}
	fmt.Fprintf(w, "\nResources (%d):\n", len(cat.Resources))
	for _, r := range cat.Resources {
		fmt.Fprintf(w, "  %s  %s (%s)\n    %s\n", r.Name, r.URI, r.MIMEType, oneLine(r.Description))
	}
	fmt.Fprintf(w, "\nResource templates (%d):\n", len(cat.ResourceTemplates))
	for _, r := range cat.ResourceTemplates {
		fmt.Fprintf(w, "  %s  %s (%s)\n    %s\n", r.Name, r.URITemplate, r.MIMEType, oneLine(r.Description))
	}
	fmt.Fprintf(w, "\nPrompts (%d):\n", len(cat.Prompts))
	for _, p := range cat.Prompts {
		var args []string
		for _, a := range p.Arguments {
			s := a.Name
			if a.Required {
				s += " (required)"
			}
			args = append(args, s)
		}
		fmt.Fprintf(w, "  %s(%s)\n    %s\n", p.Name, strings.Join(args, ", "), oneLine(p.Description))
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
