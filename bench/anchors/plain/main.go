// Command plain is the benchmark's lower anchor: the echo tool served by a
// JSON-RPC handler written directly on net/http and encoding/json, with no
// MCP SDK, the way a competent developer writes one for a single tool. It
// is not a complete MCP server — it answers only what the benchmark sends —
// but it checks what a real one must check on those requests, so that the
// gap to it is the price of a full protocol stack, not of skipped checks.
//
// Over HTTP it answers, at /mcp:
//   - stateless 2026-07-28 tools/call: the Mcp-Protocol-Version, Mcp-Method
//     and Mcp-Name headers must agree with the body; and the server/discover
//     and tools/list a client sends before it calls (Warden's gateway, which
//     serves the echo tool of this server in bench/gateway.sh);
//   - 2025-11-25 sessions: initialize makes a session (Mcp-Session-Id),
//     notifications/initialized is accepted, tools/call needs a live session,
//     DELETE ends one.
//
// With -stdio it serves one 2025-11-25 session over standard input and
// output, a message a line. Every answer is application/json.
//
//	plain -http 127.0.0.1:8081
//	plain -stdio
package main

import (
	"bufio"
	"flag"
	"log"
	"os"

	"github.com/wardenmcp/warden/bench/internal/anchor"
)

func main() {
	log.SetFlags(0)
	addr := flag.String("http", "127.0.0.1:8081", "serve Streamable HTTP on this loopback `address`")
	stdio := flag.Bool("stdio", false, "serve one client over standard input and output instead")
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	s := newServer()
	if *stdio {
		w := bufio.NewWriter(os.Stdout)
		if err := s.serveStdio(os.Stdin, w); err != nil {
			log.Fatalf("plain: %v", err)
		}
		return
	}
	if err := anchor.ServeHTTP("plain", *addr, s); err != nil {
		log.Fatalf("plain: %v", err)
	}
}
