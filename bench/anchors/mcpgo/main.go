// Command mcpgo is the benchmark's mcp-go anchor: the echo tool on a bare
// github.com/mark3labs/mcp-go server, written the way its README shows
// (mcp.NewTool with one required string, RequireString in the handler),
// with its defaults and no control of any kind.
//
// Over HTTP it uses mcp-go's Streamable HTTP server: stateless by default
// (WithStateLess: no session is minted; 2026-07-28 requests are stateless
// in any case), or with -session the library's default session handling,
// for 2025-11-25 clients that initialize. With -stdio it serves one client
// over standard input and output.
//
//	mcpgo -http 127.0.0.1:8081
//	mcpgo -http 127.0.0.1:8081 -session
//	mcpgo -stdio
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	"os"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/wardenmcp/warden/bench/internal/anchor"
)

func newServer() *server.MCPServer {
	s := server.NewMCPServer("mcpgo-anchor", "v0.0.1", server.WithToolCapabilities(false))
	s.AddTool(mcp.NewTool(anchor.Tool,
		mcp.WithDescription(anchor.Description),
		mcp.WithString(anchor.Arg, mcp.Required(), mcp.Description("the text to return")),
	), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		msg, err := req.RequireString(anchor.Arg)
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		return mcp.NewToolResultText(msg), nil
	})
	return s
}

// newHandler is the Streamable HTTP handler: stateless unless session.
func newHandler(session bool) http.Handler {
	var opts []server.StreamableHTTPOption
	if !session {
		opts = append(opts, server.WithStateLess(true))
	}
	return server.NewStreamableHTTPServer(newServer(), opts...)
}

func main() {
	log.SetFlags(0)
	addr := flag.String("http", "127.0.0.1:8081", "serve Streamable HTTP on this loopback `address`")
	session := flag.Bool("session", false, "serve 2025-11-25 sessions instead of stateless requests")
	stdio := flag.Bool("stdio", false, "serve one client over standard input and output instead")
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *stdio {
		// ServeStdio stops at the end of input, SIGINT or SIGTERM.
		if err := server.ServeStdio(newServer()); err != nil {
			log.Fatalf("mcpgo: %v", err)
		}
		return
	}
	if err := anchor.ServeHTTP("mcpgo", *addr, newHandler(*session)); err != nil {
		log.Fatalf("mcpgo: %v", err)
	}
}
