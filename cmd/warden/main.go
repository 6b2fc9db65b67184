// Command warden is a secure-by-default MCP server and gateway.
package main

import (
	"os"

	"github.com/wardenmcp/warden/internal/cli"
	"github.com/wardenmcp/warden/internal/sandbox"
)

func main() {
	sandbox.Main() // in a sandbox helper (warden re-executed), never returns
	os.Exit(cli.Main(os.Args[1:]))
}
