package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/keys"
)

func keysCmd(io *streams) *cobra.Command {
	c := &cobra.Command{
		Use:   "keys",
		Short: "Create, list and revoke API keys",
		Long: `Manage the API keys clients present as Authorization: Bearer <key> (or, over
stdio, in WARDEN_API_KEY). Keys live in server.state: SQLite beside the
configuration by default, PostgreSQL when configured. Only a hash of each
key is stored, so a key is shown once, when it is created.`,
	}
	c.AddCommand(keysCreateCmd(io), keysListCmd(io), keysRevokeCmd(io))
	return c
}

// openKeys loads the configuration and opens its key store, which must
// exist unless create is set.
func openKeys(ctx context.Context, file string, create bool) (*config.Config, keys.Store, error) {
	cfg, err := config.Load(file)
	if err != nil {
		return nil, nil, err
	}
	if !create {
		if err := requireState(cfg, false); err != nil {
			return nil, nil, fmt.Errorf("%w (keys create --init makes a new one)", err)
		}
	}
	s, err := keys.Open(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, s, nil
}

func keysCreateCmd(io *streams) *cobra.Command {
	var (
		file, name, tenant, expires string
		scopes, groups              []string
		initStore                   bool
	)
	c := &cobra.Command{
		Use:   "create --config FILE --name NAME --scopes a,b --tenant TENANT [--groups g1,g2] [--expires 30d] [--init]",
		Short: "Create an API key and print it, once",
		Long: `Create an API key and print it, once: Warden stores only its hash.
The key alone goes to standard output, so KEY=$(warden keys create ...) works;
notes on how to use it go to standard error.

The state store must exist: a mistyped path would otherwise put the key in a
new store no server reads. For a new deployment's first key, before warden
serve has run, pass --init to create it.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ttl, err := parseTTL(expires)
			if err != nil {
				return usageError{fmt.Errorf("--expires: %w", err)}
			}
			if err := keys.ValidName(name); err != nil {
				return usageError{fmt.Errorf("--name: %w", err)}
			}
			if strings.TrimSpace(tenant) == "" {
				return usageError{errors.New("--tenant: name the tenant the key acts for")}
			}
			scopes, groups = trimAll(scopes), trimAll(groups)
			if len(scopes) == 0 {
				return usageError{errors.New("--scopes: list exactly the scopes the key grants (no scope, no call)")}
			}
			for _, sc := range scopes {
				if err := config.ValidScope(sc); err != nil {
					return usageError{fmt.Errorf("--scopes: %w", err)}
				}
			}
			for _, g := range groups {
				if g == "" {
					return usageError{errors.New("--groups: a group name may not be empty")}
				}
			}

			cfg, store, err := openKeys(c.Context(), file, initStore)
			if err != nil {
				return err
			}
			defer store.Close()
			plaintext, k, hash := keys.Generate(name, tenant, scopes, groups, ttl)
			if err := store.Create(c.Context(), k, hash); err != nil {
				return err
			}

			expiry := "never expires (pass --expires, such as 90d, for a key that does)"
			if !k.ExpiresAt.IsZero() {
				expiry = "expires " + k.ExpiresAt.Format(time.RFC3339)
			}
			fmt.Fprintf(io.err, "Created API key %q (%s) for tenant %s with scopes %s; it %s.\n\n",
				k.Name, k.ID, k.Tenant, strings.Join(k.Scopes, ", "), expiry)
			fmt.Fprintln(io.out, plaintext)
			fmt.Fprintf(io.err, `
This is the only time the key is shown: Warden keeps only a hash of it and
cannot show it again. Put it in a secret manager now; if it is lost, revoke
it and create another.

Use it over HTTP:   Authorization: Bearer <the key>
Over stdio:         WARDEN_API_KEY=<the key> in the environment of warden serve --stdio
Revoke it with:     warden keys revoke --config %s %s
`, file, k.Name)
			if cfg.Auth.APIKeys.Disabled {
				fmt.Fprintln(io.err, "\nNote: auth.api_keys.disabled is set, so Warden refuses every API key until you enable them.")
			}
			return nil
		},
	}
	c.Flags().StringVarP(&file, "config", "c", "", "the configuration file (YAML)")
	c.Flags().StringVar(&name, "name", "", "a name for the key, unique among keys not revoked (becomes the principal ID)")
	c.Flags().StringSliceVar(&scopes, "scopes", nil, "the scopes the key grants, comma-separated; exact names, no wildcards")
	c.Flags().StringVar(&tenant, "tenant", "", "the tenant the key acts for")
	c.Flags().StringSliceVar(&groups, "groups", nil, "groups the principal belongs to, comma-separated")
	c.Flags().StringVar(&expires, "expires", "", "lifetime, such as 30d, 12h or 90m (default: never expires)")
	c.Flags().BoolVar(&initStore, "init", false, "create the SQLite state store if it does not exist yet (a new deployment's first key)")
	for _, f := range []string{"config", "name", "scopes", "tenant"} {
		c.MarkFlagRequired(f)
	}
	return c
}

var days = regexp.MustCompile(`^([0-9]+)d$`)

// parseTTL reads a lifetime: whole days (30d) or a Go duration (12h, 90m,
// 1h30m). Empty means never.
func parseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	var (
		d   time.Duration
		err error
	)
	if m := days.FindStringSubmatch(s); m != nil {
		n, perr := strconv.Atoi(m[1])
		if perr != nil || n > 100*365 {
			return 0, fmt.Errorf("%q: at most %d days", s, 100*365)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, fmt.Errorf("%q is not a lifetime: use days, hours or minutes, such as 30d, 12h or 90m", s)
	}
	if d < time.Minute {
		return 0, fmt.Errorf("%q: a key must live at least a minute (omit --expires for one that never expires)", s)
	}
	return d, nil
}

func trimAll(l []string) []string {
	out := make([]string, 0, len(l))
	for _, s := range l {
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

// listedKey is a key as keys list --json prints it.
type listedKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	Tenant    string     `json:"tenant"`
	Scopes    []string   `json:"scopes"`
	Groups    []string   `json:"groups"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	Status    string     `json:"status"`
}

func keysListCmd(io *streams) *cobra.Command {
	var (
		file   string
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "list --config FILE [--json]",
		Short: "List API keys, revoked and expired ones included (never the keys themselves)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, store, err := openKeys(c.Context(), file, false)
			if err != nil {
				return err
			}
			defer store.Close()
			ks, err := store.List(c.Context())
			if err != nil {
				return err
			}
			now := time.Now()
			if asJSON {
				out := make([]listedKey, 0, len(ks))
				for _, k := range ks {
					out = append(out, listedKey{
						ID: k.ID, Name: k.Name, Prefix: k.Prefix, Tenant: k.Tenant,
						Scopes: orEmpty(k.Scopes), Groups: orEmpty(k.Groups), CreatedAt: k.CreatedAt,
						ExpiresAt: timeOrNil(k.ExpiresAt), RevokedAt: timeOrNil(k.RevokedAt), Status: k.Status(now),
					})
				}
				enc := json.NewEncoder(io.out)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			if len(ks) == 0 {
				fmt.Fprintf(io.out, "No API keys. Create one with:\n  warden keys create --config %s --name NAME --scopes SCOPE --tenant TENANT\n", file)
				return nil
			}
			tw := tabwriter.NewWriter(io.out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tTENANT\tSCOPES\tGROUPS\tCREATED\tEXPIRES\tSTATUS")
			for _, k := range ks {
				fmt.Fprintf(tw, "%s\t%s\t%s…\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, k.Tenant,
					joinOrDash(k.Scopes), joinOrDash(k.Groups), k.CreatedAt.Format(time.RFC3339),
					timeOr(k.ExpiresAt, "never"), status(k, now))
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVarP(&file, "config", "c", "", "the configuration file (YAML)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the keys as JSON")
	c.MarkFlagRequired("config")
	return c
}

func status(k *keys.Key, now time.Time) string {
	if !k.RevokedAt.IsZero() {
		return "revoked " + k.RevokedAt.Format(time.RFC3339)
	}
	return k.Status(now)
}

func keysRevokeCmd(io *streams) *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   "revoke --config FILE ID|NAME",
		Short: "Revoke an API key: running servers refuse it within auth.api_keys.cache_ttl (1s by default)",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("revoke takes one key ID or name, got %d; see warden keys list", len(args))}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			cfg, store, err := openKeys(c.Context(), file, false)
			if err != nil {
				return err
			}
			defer store.Close()
			k, err := store.Revoke(c.Context(), args[0])
			if errors.Is(err, keys.ErrNotFound) {
				return fmt.Errorf("no key has the ID %q, and no key that is not revoked has that name; see warden keys list --config %s", args[0], file)
			}
			if err != nil {
				return err
			}
			// This process cannot reach the servers' key caches: they
			// see the revocation when their entry runs out.
			fmt.Fprintf(io.out, "API key %q (%s) is revoked since %s: every call presenting it is refused%s.\n",
				k.Name, k.ID, k.RevokedAt.Format(time.RFC3339), within(cfg.Auth.APIKeys.Cache()))
			return nil
		},
	}
	c.Flags().StringVarP(&file, "config", "c", "", "the configuration file (YAML)")
	c.MarkFlagRequired("config")
	return c
}

// within says when running servers refuse a key this process revoked.
func within(ttl time.Duration) string {
	if ttl <= 0 {
		return ", from the next call on"
	}
	return fmt.Sprintf(" by running servers within %s (auth.api_keys.cache_ttl)", ttl)
}

func joinOrDash(l []string) string {
	if len(l) == 0 {
		return "-"
	}
	return strings.Join(l, ",")
}

func timeOr(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return t.Format(time.RFC3339)
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func orEmpty(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
