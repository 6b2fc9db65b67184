// Command conformance serves, through Warden, every tool, resource and prompt
// that the official MCP conformance suite (@modelcontextprotocol/conformance)
// expects of a server under test. It is a port of the SDK's own
// conformance/everything-server to Warden's API — same names, same behaviour —
// so that the suite exercises Warden's pipeline and HTTP transport guard, not
// a bare SDK server.
//
// Serve Streamable HTTP at http://127.0.0.1:8080/mcp:
//
//	go run ./examples/conformance --http 127.0.0.1:8080
//
// Without --http it serves stdio. e2e/conformance/run.sh runs the suite
// against it.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/pipeline"
)

// watchedResourceURI names the resource whose subscribers are notified of an
// update every few seconds (the resources-subscribe scenario).
const watchedResourceURI = "test://watched-resource"

// scope is the one scope of this server: every fixture requires it and the
// anonymous principal holds it.
const scope = "conformance"

func main() {
	httpAddr := flag.String("http", "", "serve Streamable HTTP at this address (host:port) instead of stdio")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv := warden.New(&mcp.Implementation{Name: "mcp-conformance-test-server", Version: "1.0.0"}, &warden.Options{
		Logger: logger,
		// The suite sends no credentials, so this server declares anonymous
		// access explicitly, with exactly one scope, which every fixture
		// requires. Nothing else in Warden is reachable anonymously.
		LocalPrincipal: func(context.Context) (*pipeline.Principal, error) {
			return &pipeline.Principal{ID: "anonymous", Scopes: []string{scope}, AuthMethod: "anonymous"}, nil
		},
		// Completion and subscriptions are protocol features Warden does not
		// wrap; the SDK tracks subscriptions itself.
		MCP: &mcp.ServerOptions{
			CompletionHandler:  complete,
			SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
			UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
		},
	})
	addTools(srv)
	addResources(srv)
	addPrompts(srv)
	go notifyWatched(ctx, srv.MCP())

	if *httpAddr == "" {
		if err := srv.ServeStdio(ctx, os.Stdin, os.Stdout); err != nil && ctx.Err() == nil {
			log.Fatalf("conformance: %v", err)
		}
		return
	}
	// Listening before serving lets --http 127.0.0.1:0 pick a free port;
	// the log line below reports the endpoint actually bound.
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		log.Fatalf("conformance: %v", err)
	}
	hs := &http.Server{Handler: srv.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		// A fixture need not drain its open event streams on the way out.
		hs.Close()
	}()
	logger.Info("conformance server listening", "url", "http://"+ln.Addr().String()+"/mcp")
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("conformance: %v", err)
	}
}

// notifyWatched tells subscribers of the watched resource that it changed,
// every three seconds, until ctx is done.
func notifyWatched(ctx context.Context, s *mcp.Server) {
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: watchedResourceURI})
		}
	}
}

// complete acknowledges the completion capability with no suggestions.
func complete(context.Context, *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: []string{}}}, nil
}
