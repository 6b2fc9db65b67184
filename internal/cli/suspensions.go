package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardenmcp/warden/internal/anomaly"
)

func suspensionsCmd(io *streams) *cobra.Command {
	var (
		file    string
		useDemo bool
		asJSON  bool
	)
	c := &cobra.Command{
		Use:   "suspensions",
		Short: "List and lift principals suspended by anomaly rules",
	}
	c.PersistentFlags().StringVarP(&file, "config", "c", "", "the configuration file (YAML)")
	c.PersistentFlags().BoolVar(&useDemo, "demo", false, "use the demo's configuration and store")
	list := &cobra.Command{
		Use:   "list",
		Short: "List suspended principals",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := operatorConfig(file, useDemo)
			if err != nil {
				return err
			}
			if err := requireState(cfg, false); err != nil {
				return err
			}
			store, err := anomaly.OpenStore(c.Context(), cfg)
			if err != nil {
				return err
			}
			defer store.Close()
			all, err := store.List(c.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(io.out).Encode(all)
			}
			if len(all) == 0 {
				fmt.Fprintln(io.out, "No principal is suspended.")
				return nil
			}
			tw := tabwriter.NewWriter(io.out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "PRINCIPAL\tSINCE\tREASON")
			for _, s := range all {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Principal, s.Since.UTC().Format(time.RFC3339), s.Reason)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	lift := &cobra.Command{
		Use:   "lift PRINCIPAL",
		Short: "Lift a principal's suspension; it takes effect on the next call",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := operatorConfig(file, useDemo)
			if err != nil {
				return err
			}
			if err := requireState(cfg, false); err != nil {
				return err
			}
			store, err := anomaly.OpenStore(c.Context(), cfg)
			if err != nil {
				return err
			}
			defer store.Close()
			if err := store.Lift(c.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(io.out, "Lifted the suspension of %s.\n", args[0])
			return nil
		},
	}
	c.AddCommand(list, lift)
	return c
}
