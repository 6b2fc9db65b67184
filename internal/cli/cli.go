// Package cli is the warden command line: serve, demo, check and version.
package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/observe"
	"github.com/wardenmcp/warden/internal/server"
	"github.com/wardenmcp/warden/internal/state"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed (bad configuration, unreachable source, ...)
	exitUsage   = 2 // the command line itself was wrong
)

// usageError marks an error in how the command was invoked.
type usageError struct{ error }

// Main runs the command line with args and returns the process exit code.
func Main(args []string) int {
	return run(context.Background(), args, os.Stdin, os.Stdout, os.Stderr)
}

// streams are the process's standard streams, replaceable in tests.
type streams struct {
	in       io.Reader
	out, err io.Writer
	// outTerminal is whether out is a terminal, where a person reads it,
	// rather than a pipe or a file that may end up in a log.
	outTerminal bool
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	io := &streams{in: stdin, out: stdout, err: stderr}
	if f, ok := stdout.(*os.File); ok {
		io.outTerminal = term.IsTerminal(int(f.Fd()))
	}
	root := &cobra.Command{
		Use:   "warden",
		Short: "A secure-by-default MCP server and gateway",
		Long: `Warden serves narrow, typed tools over your databases to any MCP client, and
enforces on every call the controls that must never be left to the model.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(serveCmd(io), demoCmd(io), checkCmd(io), keysCmd(io), explainCmd(io), importCmd(io), auditCmd(io), suspensionsCmd(io), approvalsCmd(io), upstreamsCmd(io), sandboxCmd(io), versionCmd(io))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "required flag") {
		fmt.Fprintf(stderr, "warden: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
		return exitUsage
	}
	if errors.Is(err, errRefused) {
		return exitFailure
	}
	var cerrs config.Errors
	if errors.As(err, &cerrs) {
		fmt.Fprintf(stderr, "warden: the configuration has %d problem(s):\n", len(cerrs))
		for _, e := range cerrs {
			fmt.Fprintf(stderr, "  %s\n", e)
		}
		return exitFailure
	}
	fmt.Fprintf(stderr, "warden: %v\n", err)
	return exitFailure
}

// transportFlags are the flags shared by serve and demo.
type transportFlags struct {
	http      string
	stdio     bool
	legacySSE bool
	logLevel  string
	logFormat string
}

func (f *transportFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.http, "http", "", "serve Streamable HTTP on this address (default: server.http.addr, or 127.0.0.1:8080)")
	c.Flags().BoolVar(&f.stdio, "stdio", false, "serve one client over standard input and output")
	c.Flags().BoolVar(&f.legacySSE, "legacy-sse", false, "also serve the 2024-11-05 HTTP+SSE transport at /sse, for old clients")
	c.Flags().StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	c.Flags().StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
}

// logger checks the flags and returns the logger they ask for. Logs go to
// standard error: over stdio, standard output carries the protocol.
func (f *transportFlags) logger(w io.Writer) (*slog.Logger, error) {
	if f.http != "" && f.stdio {
		return nil, usageError{errors.New("--http and --stdio are mutually exclusive: choose one transport")}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level: %w", err)}
	}
	if f.logFormat != "text" && f.logFormat != "json" {
		return nil, usageError{fmt.Errorf("--log-format: %q is not text or json", f.logFormat)}
	}
	// Logs carry trace ids and never a token, key or password.
	return observe.NewLogger(w, f.logFormat, lvl), nil
}

func serveCmd(io *streams) *cobra.Command {
	var (
		file string
		tf   transportFlags
	)
	c := &cobra.Command{
		Use:   "serve --config FILE [--http ADDR | --stdio]",
		Short: "Serve the tools, resources and prompts a configuration declares",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			log, err := tf.logger(io.err)
			if err != nil {
				return err
			}
			cfg, err := config.Load(file)
			if err != nil {
				return err
			}
			return serve(c.Context(), cfg, &tf, log, io, nil)
		},
	}
	c.Flags().StringVarP(&file, "config", "c", "", "the configuration file (YAML)")
	c.MarkFlagRequired("config")
	tf.register(c)
	return c
}

// serve builds the server and serves it until ctx ends. banner, if set, is
// called with the endpoint once the server is listening.
func serve(ctx context.Context, cfg *config.Config, tf *transportFlags, log *slog.Logger, io *streams, banner func(endpoint string, stdio bool)) error {
	applyRuntime(cfg.Server.Runtime, log)
	if !tf.stdio {
		// One HTTP server per SQLite state file. A stdio server is a
		// client's own child, started and stopped with it; it takes no lock.
		release, err := state.Lock(cfg)
		if err != nil {
			return err
		}
		defer release()
	}
	srv, err := server.Build(ctx, cfg, &server.Options{Logger: log, Stdio: tf.stdio, APIKey: os.Getenv("WARDEN_API_KEY")})
	if err != nil {
		return err
	}
	// The shutdown's deadline, once it starts: calls finish and stores
	// close within server.shutdown_grace.
	var grace context.Context // nil until a shutdown of HTTP starts it
	defer func() { closeWithin(grace, cfg.Server.ShutdownGrace, srv, log) }()

	if tf.stdio {
		if banner != nil {
			banner("", true)
		}
		log.Info("serving MCP over stdio", "tools", len(srv.Tools()))
		err := srv.ServeStdio(ctx, io.in, io.out)
		if err != nil && ctx.Err() == nil && !errors.Is(err, mcp.ErrConnectionClosed) {
			return err
		}
		return nil
	}

	if tf.legacySSE {
		cfg.Server.HTTP.LegacySSE = true
	}
	addr := cfg.Server.HTTP.Addr
	if tf.http != "" {
		addr = tf.http
	}
	if err := checkBind(addr, cfg.Server.HTTP.AllowedHosts); err != nil {
		return err
	}
	tc, err := srv.TLSConfig()
	if err != nil {
		return err
	}
	ln, err := srv.Listen(addr)
	if err != nil {
		return err
	}
	scheme := "http"
	if tc != nil {
		ln = tls.NewListener(ln, tc)
		scheme = "https"
	}
	hs := srv.HTTPServer(srv.HTTPHandler(srv.HTTPOptions()), log)
	endpoint := scheme + "://" + ln.Addr().String() + "/mcp"
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("serving MCP over Streamable HTTP", "endpoint", endpoint, "tools", len(srv.Tools()))
	if banner != nil {
		banner(endpoint, false)
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing calls in flight", "grace", cfg.Server.ShutdownGrace)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Server.ShutdownGrace)
	defer cancel()
	grace = sctx
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	return nil
}

// closeWithin closes srv, flushing the audit log and closing the stores,
// and returns when that is done or ctx ends — if ctx is nil, once grace
// has passed — whichever is first. A store
// that stopped answering can hold a close for long (a PostgreSQL
// connection's cancel request waits 15 s); past the shutdown grace the
// process exits without it, which closes every connection all the same.
// What the audit log had not stored by then was either refused to its
// caller or kept in the spool.
func closeWithin(ctx context.Context, grace time.Duration, srv *server.Server, log *slog.Logger) {
	if ctx == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), grace)
		defer cancel()
	}
	done := make(chan struct{})
	go func() {
		srv.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		log.Warn("shutdown grace over with stores still closing; exiting without waiting for them")
	}
}

// checkBind refuses to listen beyond loopback unless the operator listed the
// host names clients use: without that list, Host checks could not stop DNS
// rebinding.
func checkBind(addr string, allowedHosts []string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usageError{fmt.Errorf("--http %q: want host:port, such as 127.0.0.1:8080", addr)}
	}
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" || len(allowedHosts) > 0 {
		return nil
	}
	return fmt.Errorf("refusing to listen on %s: set server.http.allowed_hosts to the host names clients use before serving beyond loopback", addr)
}

func versionCmd(io *streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of warden, the commit it was built from and its Go version",
		Args:  cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			b := readBuild()
			fmt.Fprintf(io.out, "warden %s\ncommit %s\ngo %s\ngo-sdk %s\n", b.version, b.commit, b.goVersion, b.sdk)
		},
	}
}

// build is what `warden version` prints: the stamped version and commit
// (scripts/build.sh sets server.Version and server.Commit), else what the Go
// toolchain recorded — the module version of `go install …@v1.2.3`, the
// commit of the checkout `go build` ran in.
type build struct{ version, commit, goVersion, sdk string }

func readBuild() build {
	b := build{version: server.Version, commit: server.Commit, goVersion: "unknown", sdk: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if b.commit == "" {
			b.commit = "unknown"
		}
		return b
	}
	b.goVersion = strings.TrimPrefix(bi.GoVersion, "go")
	if b.version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.version = bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/modelcontextprotocol/go-sdk" {
			b.sdk = d.Version
		}
	}
	if b.commit == "" {
		b.commit = "unknown"
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && b.commit != "unknown" {
			b.commit += "-dirty"
		}
	}
	return b
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
