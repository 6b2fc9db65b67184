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
// bench/ratios.sh does exactly that. With WARDEN_BENCH_CPUPROFILE=FILE set,
// the process writes a CPU profile of its whole run to FILE when it exits
// (on SIGTERM or SIGINT, as ratios.sh stops it), for `go tool pprof`.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/wardenmcp/warden/internal/cli"
)

func main() {
	path := os.Getenv("WARDEN_BENCH_CPUPROFILE")
	if path == "" {
		os.Exit(cli.Main(os.Args[1:]))
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wardenecho:", err)
		os.Exit(1)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "wardenecho:", err)
		os.Exit(1)
	}
	code := cli.Main(os.Args[1:])
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "wardenecho:", err)
		code = 1
	}
	os.Exit(code)
}
