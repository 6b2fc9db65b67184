// Command catalog shows a catalog that changes while it is served: the tool
// enable_reports registers a tool get_report, and disable_reports removes
// it. Connected 2025-11-25 clients are told (notifications/tools/list_changed);
// stateless 2026-07-28 clients see the change on their next tools/list.
// Every tool, the added one too, passes Warden's whole pipeline.
//
// Serve Streamable HTTP at http://127.0.0.1:8080/mcp:
//
//	go run ./examples/catalog --http 127.0.0.1:8080
//
// Without --http it serves stdio. e2e/clients/test/catalog.test.mjs drives
// it with the official TypeScript clients of both protocol generations.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/pipeline"
)

// The scopes of this server. The local principal holds both; a real
// deployment would give reports.admin to fewer callers than reports.read.
const (
	readScope  = "reports.read"
	adminScope = "reports.admin"
)

func main() {
	httpAddr := flag.String("http", "", "serve Streamable HTTP at this address (host:port) instead of stdio")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv := newServer(logger)

	if *httpAddr == "" {
		if err := srv.ServeStdio(ctx, os.Stdin, os.Stdout); err != nil && ctx.Err() == nil {
			log.Fatalf("catalog: %v", err)
		}
		return
	}
	// Listening before serving lets --http 127.0.0.1:0 pick a free port;
	// the log line below reports the endpoint actually bound.
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		log.Fatalf("catalog: %v", err)
	}
	hs := &http.Server{Handler: srv.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(shutdown)
	}()
	logger.Info("catalog example listening", "url", "http://"+ln.Addr().String()+"/mcp")
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("catalog: %v", err)
	}
}

// newServer returns the server with its two fixed tools.
func newServer(logger *slog.Logger) *warden.Server {
	srv := warden.New(&mcp.Implementation{Name: "warden-catalog-example", Version: "1.0.0"}, &warden.Options{
		Logger: logger,
		// An example on the user's own machine: every caller is the local
		// user, with both scopes. Nothing here reaches beyond the process.
		LocalPrincipal: func(context.Context) (*pipeline.Principal, error) {
			return &pipeline.Principal{ID: "local", Scopes: []string{readScope, adminScope}, AuthMethod: "local"}, nil
		},
	})
	srv.AddTool(&warden.Tool{
		Name:        "enable_reports",
		Description: "Make the get_report tool available.",
		Mode:        pipeline.Write,
		Scope:       adminScope,
		Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
			switch err := srv.Add(reportTool()); {
			case errors.Is(err, warden.ErrExists):
				return warden.TextResult("Reports were already enabled."), nil
			case err != nil:
				return nil, err
			}
			return warden.TextResult("Reports are enabled: get_report is available."), nil
		},
	})
	srv.AddTool(&warden.Tool{
		Name:        "disable_reports",
		Description: "Withdraw the get_report tool.",
		Mode:        pipeline.Write,
		Scope:       adminScope,
		Handler: func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
			if !srv.Remove(pipeline.CallTool, "get_report") {
				return warden.TextResult("Reports were not enabled."), nil
			}
			return warden.TextResult("Reports are disabled: get_report is gone."), nil
		},
	})
	return srv
}

// reportTool is the tool enable_reports adds. It is a fresh target (and
// spec) each time: a registered target belongs to the server.
func reportTool() *pipeline.Target {
	return &pipeline.Target{
		Spec:        &pipeline.Spec{Method: pipeline.CallTool, Name: "get_report", Mode: pipeline.Read, Scope: readScope},
		Description: "Get the sales report of one month.",
		InputSchema: &jsonschema.Schema{
			Type:     "object",
			Required: []string{"month"},
			Properties: map[string]*jsonschema.Schema{
				"month": {Type: "string", Pattern: `^[0-9]{4}-(0[1-9]|1[0-2])$`, Description: "The month, as YYYY-MM."},
			},
		},
		Handler: func(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			month := c.Args["month"].(string) // validated before the handler runs
			return warden.TextResult(fmt.Sprintf("Sales report for %s: 42 orders.", month)), nil
		},
	}
}
