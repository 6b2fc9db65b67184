package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/wardenmcp/warden/internal/sandbox"
)

// What each layer does, for the report.
var layerDoc = map[sandbox.Layer]string{
	sandbox.Namespaces:   "new user, PID, mount, network, IPC and UTS namespaces",
	sandbox.Filesystem:   "only the executable, libraries, declared paths and scratch are visible",
	sandbox.Network:      "empty network namespace; egress only to declared host:port",
	sandbox.Cgroup:       "memory and pids limits",
	sandbox.Rlimits:      "CPU, address space, file size, open files, processes",
	sandbox.Capabilities: "every capability dropped; runs as nobody",
	sandbox.NoNewPrivs:   "no privilege from setuid binaries or file capabilities",
	sandbox.Landlock:     "filesystem access rules",
	sandbox.LandlockNet:  "TCP connect and bind rules",
	sandbox.Seccomp:      "ptrace, mount, kexec, modules, bpf, keyctl, namespaces ... refused",
	sandbox.Timeout:      "wall-clock limit kills the whole process tree",
}

func sandboxCmd(io *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Inspect the sandbox command tools run in",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Print which sandbox layers this host supports, and try them",
		Long: `Check probes which isolation layers this host supports, then runs a program
in a sandbox with all of them to prove they apply. Command tools require every
supported layer by default; a tool that requires a missing layer is refused
unless it declares sandbox.best_effort.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return sandboxCheck(cmd.Context(), io)
		},
	})
	return cmd
}

func sandboxCheck(ctx context.Context, io *streams) error {
	s := sandbox.Check()
	w := tabwriter.NewWriter(io.out, 0, 4, 2, ' ', 0)
	for _, l := range sandbox.Layers {
		state, note := "ok", layerDoc[l]
		if d := s.Detail[l]; d != "" {
			note += " (" + d + ")"
		}
		if !s.Has(l) {
			state, note = "MISSING", s.Missing[l]
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", l, state, note)
	}
	w.Flush()
	dir, err := os.MkdirTemp("", "warden-sandbox-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	limits := sandbox.DefaultLimits
	cmd, err := sandbox.Command(&sandbox.Config{Path: "/bin/sh", Args: []string{"sh", "-c", ":"}, Dir: dir, Limits: limits, Layers: s.Supported()})
	if err == nil {
		err = cmd.Run(ctx)
	}
	if err != nil {
		var se *sandbox.SetupError
		if errors.As(err, &se) {
			return fmt.Errorf("a sandbox with every supported layer could not be built: %w", err)
		}
		return fmt.Errorf("a program in a sandbox with every supported layer failed: %w", err)
	}
	fmt.Fprintf(io.out, "\n%d of %d layers supported; a program ran in a sandbox with all of them.\n", len(s.Supported()), len(sandbox.Layers))
	return nil
}
