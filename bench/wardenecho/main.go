// Command wardenecho is Warden's own command line with one more source
// kind, echo (an in-memory tool that returns its message as text), so that
// Warden can be benchmarked serving the very tool the anchors serve
// (bench/anchors), through the code `warden serve` runs: server.Build, the
// same HTTP handler and stdio transport, every default control on.
//
// The configuration beside it, warden.yaml, keeps its state (API keys, the
// audit log) under $WARDEN_BENCH_DIR:
//
//	export WARDEN_BENCH_DIR=$(mktemp -d)
//	KEY=$(wardenecho keys create --init --config bench/wardenecho/warden.yaml \
//		--name bench --tenant bench --scopes bench.echo)
//	wardenecho serve --config bench/wardenecho/warden.yaml --http 127.0.0.1:8080
//	WARDEN_API_KEY=$KEY wardenecho serve --config bench/wardenecho/warden.yaml --stdio
//
// bench/ratios.sh does exactly that.
package main

import (
	"os"

	"github.com/wardenmcp/warden/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
