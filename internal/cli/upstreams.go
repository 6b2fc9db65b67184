package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/pin"
	"github.com/wardenmcp/warden/internal/state"
)

func upstreamsCmd(io *streams) *cobra.Command {
	var (
		file    string
		useDemo bool
	)
	c := &cobra.Command{
		Use:   "upstreams",
		Short: "List, scan, diff, approve and reject the pinned definitions of upstream MCP servers",
		Long: `Warden pins every definition an upstream MCP server lists (tools, resources,
templates, prompts, instructions) by the hash of its canonical JSON. A
definition that changes is quarantined — neither version is served — until
an operator approves the new version, by its hash, after reading the diff.
A rejected version stays refused. Running servers follow a decision within
seconds.`,
	}
	c.PersistentFlags().StringVarP(&file, "config", "c", "", "the configuration file (YAML)")
	c.PersistentFlags().BoolVar(&useDemo, "demo", false, "use the demo's configuration and store")

	// withStore opens the pin store, never creating the state, for the
	// duration of f.
	withStore := func(c *cobra.Command, f func(*config.Config, pin.Store) error) error {
		cfg, err := operatorConfig(file, useDemo)
		if err != nil {
			return err
		}
		if err := requireState(cfg, false); err != nil {
			return err
		}
		store, err := state.Open(c.Context(), cfg, pin.OpenPostgres, pin.OpenSQLite)
		if err != nil {
			return err
		}
		defer store.Close()
		return f(cfg, store)
	}

	var (
		upstream, st string
		asJSON       bool
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List pinned definitions, their state and scan findings",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			f := pin.Filter{Upstream: upstream, State: pin.State(st)}
			switch f.State {
			case "", pin.Approved, pin.Quarantined, pin.Rejected:
			default:
				return usageError{fmt.Errorf("--state %q: want approved, quarantined or rejected", st)}
			}
			return withStore(c, func(_ *config.Config, store pin.Store) error {
				pins, err := store.List(c.Context(), f)
				if err != nil {
					return err
				}
				if asJSON {
					return json.NewEncoder(io.out).Encode(pinsJSON(pins))
				}
				if len(pins) == 0 {
					fmt.Fprintln(io.out, "No pinned definition.")
					return nil
				}
				tw := tabwriter.NewWriter(io.out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "UPSTREAM\tKIND\tNAME\tSTATE\tREASON\tAPPROVED\tPENDING\tFINDINGS\tUPDATED")
				for _, p := range pins {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", p.Upstream, p.Kind, p.Name, p.State, dash(p.Reason),
						short(p.Approved.Hash), short(p.Pending.Hash), len(p.Approved.Findings)+len(p.Pending.Findings), p.Updated.Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&upstream, "upstream", "", "only this upstream's definitions")
	list.Flags().StringVar(&st, "state", "", "only definitions in this state: approved, quarantined or rejected")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var maxDescription int
	scan := &cobra.Command{
		Use:   "scan",
		Short: "Scan the stored definitions again for poisoning, and print the findings",
		Long: `Scan runs the current poisoning rules over every stored version (approved and
pending) and prints what they find. It changes nothing: a definition is
quarantined for its findings when the server first sees it or sees it change.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return withStore(c, func(_ *config.Config, store pin.Store) error {
				all, err := store.List(c.Context(), pin.Filter{})
				if err != nil {
					return err
				}
				found := scanPins(all, upstream, maxDescription)
				if asJSON {
					return json.NewEncoder(io.out).Encode(found)
				}
				if len(found) == 0 {
					fmt.Fprintln(io.out, "No findings.")
					return nil
				}
				tw := tabwriter.NewWriter(io.out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "UPSTREAM\tKIND\tNAME\tVERSION\tHASH\tRULE\tFIELD\tEXCERPT")
				for _, f := range found {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Upstream, f.Kind, f.Name, f.Version, short(f.Hash), f.Rule, f.Field, f.Excerpt)
				}
				return tw.Flush()
			})
		},
	}
	scan.Flags().StringVar(&upstream, "upstream", "", "only this upstream's definitions")
	scan.Flags().IntVar(&maxDescription, "max-description", pin.DefaultMaxDescription, "the largest description, in bytes, that is not a finding")
	scan.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	diff := &cobra.Command{
		Use:   "diff UPSTREAM KIND [NAME]",
		Short: "Show the approved and the pending version of a definition, and what changed",
		Long: `Diff prints the hashes of the approved and the pending version of one
definition, the pending version's scan findings, and a line diff of the two
as indented canonical JSON. KIND is tool, resource, resource_template, prompt
or instructions (which has no NAME). Approve or reject by the hash shown.`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(c *cobra.Command, args []string) error {
			ref, err := refArgs(args)
			if err != nil {
				return err
			}
			return withStore(c, func(_ *config.Config, store pin.Store) error {
				p, err := findPin(c.Context(), store, ref)
				if err != nil {
					return err
				}
				writeDiff(io.out, p)
				return nil
			})
		},
	}

	c.AddCommand(list, scan, diff, pinDecideCmd(io, withStore, true), pinDecideCmd(io, withStore, false))
	return c
}

// pinDecideCmd is approve, or reject.
func pinDecideCmd(io *streams, withStore func(*cobra.Command, func(*config.Config, pin.Store) error) error, approve bool) *cobra.Command {
	var as, hash string
	verb, short := "approve", "Approve the version of a definition with this hash; running servers serve it within seconds"
	if !approve {
		verb, short = "reject", "Reject the version of a definition with this hash; it stays refused"
	}
	c := &cobra.Command{
		Use:   verb + " UPSTREAM KIND [NAME] --hash HASH --as PRINCIPAL",
		Short: short,
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(c *cobra.Command, args []string) error {
			ref, err := refArgs(args)
			if err != nil {
				return err
			}
			if as == "" {
				return usageError{errors.New("--as PRINCIPAL is required: who is deciding")}
			}
			if hash == "" {
				return usageError{errors.New("--hash is required: the full hash warden upstreams diff shows, so that you decide on exactly what you read")}
			}
			return withStore(c, func(cfg *config.Config, store pin.Store) error {
				auditStore, secret, err := openAudit(c.Context(), cfg)
				if err != nil {
					return err
				}
				defer auditStore.Close()
				w, err := audit.NewWriter(auditStore, secret, "", audit.WriterOptions{})
				if err != nil {
					return err
				}
				defer w.Close()
				g := pin.NewGuard(store, w.Write)
				decide := g.Reject
				if approve {
					decide = g.Approve
				}
				p, err := decide(c.Context(), ref, hash, as, "operator")
				if err != nil {
					return err
				}
				if err := w.Close(); err != nil {
					return err
				}
				if approve {
					fmt.Fprintf(io.out, "Approved %s of %s: running servers serve it within seconds.\n", hash, ref)
				} else {
					fmt.Fprintf(io.out, "Rejected %s of %s: refused whenever %s lists it; the approved version is %s.\n", hash, ref, ref.Upstream, orNone(p.Approved.Hash))
				}
				return nil
			})
		},
	}
	c.Flags().StringVar(&as, "as", "", "the operator's principal id, recorded in the audit log")
	c.Flags().StringVar(&hash, "hash", "", "the hash of the version decided on, as warden upstreams diff shows it")
	return c
}

// refArgs reads UPSTREAM KIND [NAME].
func refArgs(args []string) (pin.Ref, error) {
	ref := pin.Ref{Upstream: args[0], Kind: pin.Kind(args[1])}
	if len(args) == 3 {
		ref.Name = args[2]
	}
	switch {
	case !ref.Kind.Valid():
		return ref, usageError{fmt.Errorf("kind %q: want tool, resource, resource_template, prompt or instructions", args[1])}
	case ref.Kind == pin.Instructions && ref.Name != "":
		return ref, usageError{errors.New("instructions have no NAME")}
	case ref.Kind != pin.Instructions && ref.Name == "":
		return ref, usageError{fmt.Errorf("give the %s's NAME (a resource's URI, a template's URI template)", ref.Kind)}
	}
	return ref, nil
}

func findPin(ctx context.Context, store pin.Store, ref pin.Ref) (*pin.Pin, error) {
	pins, err := store.List(ctx, pin.Filter{Upstream: ref.Upstream})
	if err != nil {
		return nil, err
	}
	for i := range pins {
		if pins[i].Ref == ref {
			return &pins[i], nil
		}
	}
	return nil, fmt.Errorf("no pin for %s (see warden upstreams list)", ref)
}

// writeDiff prints p's versions and their diff.
func writeDiff(w io.Writer, p *pin.Pin) {
	fmt.Fprintf(w, "%s: %s", p.Ref, p.State)
	if p.Reason != "" {
		fmt.Fprintf(w, " (%s)", p.Reason)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "approved: %s\n", orNone(p.Approved.Hash))
	label := "pending: "
	if p.State == pin.Rejected {
		label = "rejected:"
	}
	fmt.Fprintf(w, "%s %s\n", label, orNone(p.Pending.Hash))
	for _, f := range p.Pending.Findings {
		fmt.Fprintf(w, "finding:  %s\n", f)
	}
	if p.Pending.Hash == "" {
		for _, f := range p.Approved.Findings {
			fmt.Fprintf(w, "finding:  %s\n", f)
		}
		fmt.Fprintln(w, "\nNothing is pending: the approved version is")
		fmt.Fprintln(w, pin.Pretty(p.Kind, p.Approved.Body))
		return
	}
	fmt.Fprintf(w, "\n--- approved %s\n+++ %s %s\n", orNone(short(p.Approved.Hash)), strings.TrimSuffix(label, ":"), short(p.Pending.Hash))
	io.WriteString(w, pin.String(pin.Diff(pin.Pretty(p.Kind, p.Approved.Body), pin.Pretty(p.Kind, p.Pending.Body))))
}

// scanFinding is one finding of warden upstreams scan.
type scanFinding struct {
	Upstream string   `json:"upstream"`
	Kind     pin.Kind `json:"kind"`
	Name     string   `json:"name"`
	Version  string   `json:"version"` // approved or pending
	Hash     string   `json:"hash"`
	pin.Finding
}

// scanPins scans every version of the pins of upstream ("" for all), with
// the names of the other upstreams' targets as others.
func scanPins(all []pin.Pin, upstream string, maxDescription int) []scanFinding {
	var out []scanFinding
	for _, p := range all {
		if upstream != "" && p.Upstream != upstream {
			continue
		}
		var others []string
		for _, q := range all {
			if q.Upstream != p.Upstream && q.Kind != pin.Instructions {
				others = append(others, q.Name)
			}
		}
		sc := pin.NewScanner(pin.ScanOptions{MaxDescription: maxDescription, OtherTargets: others})
		for _, v := range []struct {
			name string
			v    pin.Version
		}{{"approved", p.Approved}, {"pending", p.Pending}} {
			if v.v.Hash == "" {
				continue
			}
			for _, f := range sc.Scan(pin.Definition{Upstream: p.Upstream, Kind: p.Kind, Name: p.Name, Body: v.v.Body}) {
				out = append(out, scanFinding{Upstream: p.Upstream, Kind: p.Kind, Name: p.Name, Version: v.name, Hash: v.v.Hash, Finding: f})
			}
		}
	}
	return out
}

// pinJSON is a pin as warden upstreams list --json prints it.
type pinJSON struct {
	Upstream  string      `json:"upstream"`
	Kind      pin.Kind    `json:"kind"`
	Name      string      `json:"name"`
	State     pin.State   `json:"state"`
	Reason    string      `json:"reason,omitempty"`
	Approved  pin.Version `json:"approved,omitzero"`
	Pending   pin.Version `json:"pending,omitzero"`
	Rejected  []string    `json:"rejected,omitempty"`
	FirstSeen time.Time   `json:"first_seen"`
	Updated   time.Time   `json:"updated"`
	DecidedBy string      `json:"decided_by,omitempty"`
}

func pinsJSON(pins []pin.Pin) []pinJSON {
	out := make([]pinJSON, 0, len(pins))
	for _, p := range pins {
		out = append(out, pinJSON{p.Upstream, p.Kind, p.Name, p.State, p.Reason, p.Approved, p.Pending, p.RejectedHashes, p.FirstSeen, p.Updated, p.DecidedBy})
	}
	return out
}

// short is the first 12 hex digits of a hash, enough to tell versions
// apart in a table; decisions take the whole hash.
func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return dash(h)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orNone(h string) string {
	if h == "" {
		return "none"
	}
	return h
}
