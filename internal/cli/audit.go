package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardenmcp/warden/examples/demo"
	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
)

// operatorConfig loads the configuration an operator command names: a file,
// or the demo's own.
func operatorConfig(file string, useDemo bool) (*config.Config, error) {
	switch {
	case file != "" && useDemo:
		return nil, usageError{errors.New("give --config or --demo, not both")}
	case useDemo:
		dir, err := demo.DefaultDir()
		if err != nil {
			return nil, err
		}
		os.Setenv(demo.DirEnv, dir)
		return config.Parse(demo.Config, "examples/demo/warden.yaml (embedded)", dir)
	case file != "":
		return config.Load(file)
	}
	return nil, usageError{errors.New("give --config FILE, or --demo for the demo's configuration")}
}

// openAudit opens the audit store and secret of the configuration.
func openAudit(ctx context.Context, cfg *config.Config) (audit.Store, []byte, error) {
	if err := requireState(cfg, true); err != nil {
		return nil, nil, err
	}
	secret, err := audit.LoadSecret(cfg)
	if err != nil {
		return nil, nil, err
	}
	store, err := audit.Open(ctx, cfg)
	return store, secret, err
}

func auditCmd(io *streams) *cobra.Command {
	var (
		file    string
		useDemo bool
	)
	c := &cobra.Command{
		Use:   "audit",
		Short: "Verify and read the audit log",
	}
	c.PersistentFlags().StringVarP(&file, "config", "c", "", "the configuration file (YAML)")
	c.PersistentFlags().BoolVar(&useDemo, "demo", false, "use the demo's configuration and store")

	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the hash chain; report the first modified, deleted or reordered record",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := operatorConfig(file, useDemo)
			if err != nil {
				return err
			}
			store, secret, err := openAudit(c.Context(), cfg)
			if err != nil {
				return err
			}
			defer store.Close()
			rep, err := audit.Verify(c.Context(), store, secret)
			if err != nil {
				return err
			}
			for _, ch := range rep.Chains {
				state := "verified"
				if ch.Problem != nil {
					state = "BROKEN at seq " + fmt.Sprint(ch.Problem.Seq) + ": " + ch.Problem.Message
				}
				fmt.Fprintf(io.out, "chain %s: %d records %s (head seq %d, hash %.16s…)\n", ch.Instance, ch.Verified, state, ch.Head, ch.HeadHash)
			}
			if !rep.OK {
				return errors.New("the audit log does not verify")
			}
			fmt.Fprintf(io.out, "OK: %d chain(s) verified\n", len(rep.Chains))
			return nil
		},
	}

	var (
		q      audit.Query
		since  string
		asJSON bool
		follow bool
	)
	show := func(c *cobra.Command, q audit.Query) error {
		cfg, err := operatorConfig(file, useDemo)
		if err != nil {
			return err
		}
		if since != "" {
			d, err := time.ParseDuration(since)
			if err != nil {
				return usageError{fmt.Errorf("--since: %v (use a duration such as 1h)", err)}
			}
			q.Since = time.Now().Add(-d)
		}
		store, _, err := openAudit(c.Context(), cfg)
		if err != nil {
			return err
		}
		defer store.Close()
		var recs []*audit.Record
		if err := store.Scan(c.Context(), q, func(r *audit.Record) error { recs = append(recs, r); return nil }); err != nil {
			return err
		}
		if q.Desc { // tail: newest last on screen
			for i, j := 0, len(recs)-1; i < j; i, j = i+1, j-1 {
				recs[i], recs[j] = recs[j], recs[i]
			}
		}
		printRecords(io, recs, asJSON)
		if !follow {
			return nil
		}
		last := time.Now()
		if len(recs) > 0 {
			last = recs[len(recs)-1].Time
		}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-c.Context().Done():
				return nil
			case <-tick.C:
			}
			nq := q
			nq.Desc, nq.Limit, nq.Since = false, 0, last.Add(time.Microsecond)
			var more []*audit.Record
			if err := store.Scan(c.Context(), nq, func(r *audit.Record) error { more = append(more, r); return nil }); err != nil {
				return err
			}
			printRecords(io, more, asJSON)
			if len(more) > 0 {
				last = more[len(more)-1].Time
			}
		}
	}
	addFilters := func(c *cobra.Command) {
		c.Flags().StringVar(&q.Principal, "principal", "", "only this principal")
		c.Flags().StringVar(&q.Tenant, "tenant", "", "only this tenant")
		c.Flags().StringVar(&q.Target, "tool", "", "only this tool, resource or prompt")
		c.Flags().StringVar((*string)(&q.Decision), "decision", "", "only allow or deny")
		c.Flags().StringVar(&q.ErrorCode, "error-code", "", "only this error code, such as RATE_LIMITED")
		c.Flags().StringVar(&since, "since", "", "only records newer than this, such as 1h")
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON lines")
	}
	tail := &cobra.Command{
		Use:   "tail",
		Short: "Show the newest records (-f to keep following)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			q.Desc = true
			if q.Limit <= 0 {
				q.Limit = 20
			}
			return show(c, q)
		},
	}
	addFilters(tail)
	tail.Flags().IntVarP(&q.Limit, "lines", "n", 20, "how many records")
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new records")
	query := &cobra.Command{
		Use:   "query",
		Short: "Search the audit log",
		Args:  cobra.NoArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return show(c, q) },
	}
	addFilters(query)
	query.Flags().IntVar(&q.Limit, "limit", 1000, "the most records to print")
	c.AddCommand(verify, tail, query)
	return c
}

func printRecords(io *streams, recs []*audit.Record, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(io.out)
		for _, r := range recs {
			enc.Encode(r)
		}
		return
	}
	tw := tabwriter.NewWriter(io.out, 0, 0, 2, ' ', 0)
	for _, r := range recs {
		outcome := r.Status
		if r.ErrorCode != "" {
			outcome += " " + r.ErrorCode
		}
		if r.Late {
			outcome += " (late)" // stored after the fact: from the spool, or an intent's closing
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.UTC().Format(time.RFC3339Nano), r.Phase, r.Principal, r.Tenant,
			r.Method, r.Target, strings.TrimSpace(string(r.Decision)+" "+outcome), r.TraceID)
	}
	tw.Flush()
}
