// Package anchor holds what the benchmark's anchor servers share: the echo
// tool they all serve, and how each serves HTTP on loopback until it is told
// to stop. The anchors are the bare servers Warden is measured against
// (bench/ratios.sh); each is its own main package so that its binary holds
// only its own stack.
package anchor

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// The echo tool every anchor serves, and Warden too (bench/wardenecho): it
// returns its one argument, a string, as text.
const (
	Tool        = "echo"
	Description = "Return the message as text."
	Arg         = "message"
)

// ServeHTTP serves h at /mcp on addr, a loopback address, until SIGINT or
// SIGTERM, then finishes the requests in flight. It logs the endpoint to
// standard error once it is listening.
func ServeHTTP(name, addr string, h http.Handler) error {
	if err := loopback(addr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Printf("%s: serving %s on http://%s/mcp", name, Tool, ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// loopback refuses an address beyond this machine: the anchors have no
// access control and are for benchmarks only.
func loopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-http %q: want host:port, such as 127.0.0.1:8081", addr)
	}
	if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" {
		return fmt.Errorf("-http %q: the anchors listen on loopback only", addr)
	}
	return nil
}
