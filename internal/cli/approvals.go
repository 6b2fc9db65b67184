package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardenmcp/warden/internal/approval"
	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
)

func approvalsCmd(io *streams) *cobra.Command {
	var (
		file    string
		useDemo bool
	)
	c := &cobra.Command{
		Use:   "approvals",
		Short: "List, show, approve and deny calls waiting for approval",
		Long: `Calls to tools that need approval wait in the approval queue, in server.state.
An approver decides on a request with approve or deny; once approved, the
caller repeats the call with the approval id and it runs, once. Nobody can
decide on their own request.`,
	}
	c.PersistentFlags().StringVarP(&file, "config", "c", "", "the configuration file (YAML)")
	c.PersistentFlags().BoolVar(&useDemo, "demo", false, "use the demo's configuration and store")

	// withStore opens the approval store for the duration of f; with
	// auditKey, the audit log must be there too, since f records in it.
	withStore := func(c *cobra.Command, auditKey bool, f func(*config.Config, approval.Store) error) error {
		cfg, err := operatorConfig(file, useDemo)
		if err != nil {
			return err
		}
		if err := requireState(cfg, auditKey); err != nil {
			return err
		}
		store, err := approval.OpenStore(c.Context(), cfg)
		if err != nil {
			return err
		}
		defer store.Close()
		return f(cfg, store)
	}

	var (
		state  string
		asJSON bool
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List approval requests, pending ones by default",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if state == "all" {
				state = ""
			}
			return withStore(c, false, func(_ *config.Config, store approval.Store) error {
				all, err := store.List(c.Context(), state)
				if err != nil {
					return err
				}
				if asJSON {
					return json.NewEncoder(io.out).Encode(all)
				}
				if len(all) == 0 {
					fmt.Fprintln(io.out, "No approval request.")
					return nil
				}
				tw := tabwriter.NewWriter(io.out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATE\tPRINCIPAL\tTOOL\tAPPROVALS\tEXPIRES\tSUMMARY")
				for _, r := range all {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", r.ID, r.State, r.Principal, r.Tool,
						r.ApprovalCount(), r.Needed, r.ExpiresAt.Format(time.RFC3339), r.Summary)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&state, "state", approval.Pending, "pending, approved, denied, expired, used or all")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show an approval request, its arguments and decisions",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withStore(c, false, func(_ *config.Config, store approval.Store) error {
				r, err := store.Get(c.Context(), args[0])
				if err != nil {
					return err
				}
				enc := json.NewEncoder(io.out)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			})
		},
	}
	c.AddCommand(list, show, decideCmd(io, withStore, true), decideCmd(io, withStore, false))
	return c
}

// decideCmd is approve, or deny.
func decideCmd(io *streams, withStore func(*cobra.Command, bool, func(*config.Config, approval.Store) error) error, approve bool) *cobra.Command {
	var (
		as, reason string
		groups     []string
	)
	verb, short := "approve", "Approve a request as a member of one of its approver groups"
	if !approve {
		verb, short = "deny", "Deny a request; the call it holds will never run"
	}
	c := &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if as == "" {
				return usageError{errors.New("--as PRINCIPAL is required: who is deciding")}
			}
			if len(groups) == 0 {
				return usageError{errors.New("--groups is required: the groups the approver belongs to")}
			}
			if !approve && reason == "" {
				return usageError{errors.New("--reason is required to deny: the caller is told why")}
			}
			return withStore(c, true, func(cfg *config.Config, store approval.Store) error {
				r, err := store.Decide(c.Context(), args[0], approval.Decision{Approver: as, Approve: approve, Reason: reason}, groups)
				if err != nil {
					return err
				}
				if err := auditDecision(c.Context(), cfg, r, as, verb, reason); err != nil {
					return fmt.Errorf("the decision is recorded in the approval queue, but not in the audit log: %w", err)
				}
				switch r.State {
				case approval.Approved:
					fmt.Fprintf(io.out, "Approved %s: %s may now repeat the call, once, before %s.\n",
						r.ID, r.Principal, r.ExpiresAt.Format(time.RFC3339))
				case approval.Denied:
					fmt.Fprintf(io.out, "Denied %s.\n", r.ID)
				default:
					fmt.Fprintf(io.out, "Recorded: %s has %d of %d approvals (%s).\n",
						r.ID, r.ApprovalCount(), r.Needed, strings.Join(r.Groups, " or "))
				}
				return nil
			})
		},
	}
	c.Flags().StringVar(&as, "as", "", "the approver's principal id")
	c.Flags().StringSliceVar(&groups, "groups", nil, "the approver's groups, comma-separated")
	c.Flags().StringVar(&reason, "reason", "", "why (required to deny)")
	return c
}

// auditDecision records an approver's decision in the audit log, on a
// chain of this command's own.
func auditDecision(ctx context.Context, cfg *config.Config, r *approval.Request, as, verb, reason string) error {
	store, secret, err := openAudit(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	w, err := audit.NewWriter(store, secret, "", audit.WriterOptions{})
	if err != nil {
		return err
	}
	return errors.Join(w.Write(ctx, approval.DecisionRecord(r, as, "operator", verb, reason)), w.Close())
}
