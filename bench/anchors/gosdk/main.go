// Command gosdk is the benchmark's go-sdk anchor: the echo tool on a bare
// server of the official MCP Go SDK (the version in Warden's go.mod), written
// the way its documentation shows — mcp.AddTool with a typed input, whose
// schema the SDK infers and enforces — with no control of any kind.
//
// Over HTTP it uses the SDK's Streamable HTTP handler, stateless by default
// (each 2026-07-28 request on its own) or, with -session, with 2025-11-25
// sessions; either way it answers application/json rather than an event
// stream, the cheaper of the two (-sse for the SDK's default). With -stdio
// it serves one client over standard input and output.
//
//	gosdk -http 127.0.0.1:8081
//	gosdk -http 127.0.0.1:8081 -session
//	gosdk -stdio
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/bench/internal/anchor"
)

// input is the echo tool's arguments; the SDK infers its schema (message
// required, a string).
type input struct {
	Message string `json:"message" jsonschema:"the text to return"`
}

func newServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "gosdk-anchor", Version: "v0.0.1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: anchor.Tool, Description: anchor.Description},
		func(_ context.Context, _ *mcp.CallToolRequest, in input) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Message}}}, nil, nil
		})
	return s
}

// newHandler is the Streamable HTTP handler: stateless unless session.
func newHandler(session, sse bool) http.Handler {
	s := newServer()
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
		&mcp.StreamableHTTPOptions{Stateless: !session, JSONResponse: !sse})
}

func main() {
	log.SetFlags(0)
	addr := flag.String("http", "127.0.0.1:8081", "serve Streamable HTTP on this loopback `address`")
	session := flag.Bool("session", false, "serve 2025-11-25 sessions instead of stateless requests")
	sse := flag.Bool("sse", false, "answer with text/event-stream (the SDK's default) instead of application/json")
	stdio := flag.Bool("stdio", false, "serve one client over standard input and output instead")
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *stdio {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := newServer().Run(ctx, &mcp.StdioTransport{})
		if err != nil && ctx.Err() == nil && !errors.Is(err, mcp.ErrConnectionClosed) {
			log.Fatalf("gosdk: %v", err)
		}
		return
	}
	if err := anchor.ServeHTTP("gosdk", *addr, newHandler(*session, *sse)); err != nil {
		log.Fatalf("gosdk: %v", err)
	}
}
