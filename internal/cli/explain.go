package cli

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wardenmcp/warden/internal/authn"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/keys"
	"github.com/wardenmcp/warden/internal/server"
	"github.com/wardenmcp/warden/pipeline"
)

func explainCmd(io *streams) *cobra.Command {
	var (
		file, key, claims, tool, args string
		asJSON                        bool
	)
	c := &cobra.Command{
		Use:   "explain --config FILE (--key KEY | --claims JSON) --tool NAME [--args JSON]",
		Short: "Say whether a caller may make a call, and why",
		Long: `Decide a would-be call the way the server would — authentication,
suspension, scope, policy, argument validation and bound parameters — without
running it, and print every reason. Exits 0 if the call would be allowed, 1 if
refused.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if (key == "") == (claims == "") {
				return usageError{errors.New("give exactly one of --key and --claims")}
			}
			cfg, err := config.Load(file)
			if err != nil {
				return err
			}
			srv, err := server.Build(c.Context(), cfg, &server.Options{Logger: discardLogger()})
			if err != nil {
				return err
			}
			defer srv.Close()
			var p *pipeline.Principal
			if key != "" {
				store := srv.Keys()
				if store == nil {
					return errors.New("API keys are disabled in this configuration")
				}
				if p, _, err = keys.Authenticate(c.Context(), store, key); err != nil {
					return fmt.Errorf("the key does not authenticate: %w", err)
				}
			} else {
				if cfg.Auth.JWT == nil {
					return errors.New("--claims needs auth.jwt in the configuration")
				}
				var m map[string]any
				if err := json.Unmarshal([]byte(claims), &m); err != nil {
					return usageError{fmt.Errorf("--claims: %v", err)}
				}
				if p, err = authn.PrincipalFromClaims(cfg.Auth.JWT, m); err != nil {
					return err
				}
			}
			ex := srv.Explain(c.Context(), p, tool, json.RawMessage(args))
			if t := cfg.Tools[tool]; ex.Allowed && t != nil {
				ex.Reasons = append(ex.Reasons, fmt.Sprintf("risk: tier %s; before it runs, a call needs %s", t.Risk, cfg.Rule(tool)))
			}
			if asJSON {
				enc := json.NewEncoder(io.out)
				enc.SetIndent("", "  ")
				enc.Encode(ex)
			} else {
				verdict := "ALLOWED"
				if !ex.Allowed {
					verdict = "REFUSED"
				}
				fmt.Fprintf(io.out, "%s: %s\n", verdict, tool)
				for _, r := range ex.Reasons {
					fmt.Fprintf(io.out, "  - %s\n", r)
				}
			}
			if !ex.Allowed {
				return errRefused
			}
			return nil
		},
	}
	c.Flags().StringVarP(&file, "config", "c", "", "the configuration file (YAML)")
	c.Flags().StringVar(&key, "key", "", "an API key, as a caller would present it")
	c.Flags().StringVar(&claims, "claims", "", "the claims of a JWT, as JSON (the signature is not checked)")
	c.Flags().StringVar(&tool, "tool", "", "the tool to call")
	c.Flags().StringVar(&args, "args", "{}", "the arguments, as a JSON object")
	c.Flags().BoolVar(&asJSON, "json", false, "print the decision as JSON")
	c.MarkFlagRequired("config")
	c.MarkFlagRequired("tool")
	return c
}

// errRefused makes explain exit 1 without printing more: the decision is
// already on standard output.
var errRefused = errors.New("refused")
