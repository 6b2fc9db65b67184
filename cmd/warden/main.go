// Command warden is a secure-by-default MCP server and gateway.
package main

import (
	"os"

	"github.com/wardenmcp/warden/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
