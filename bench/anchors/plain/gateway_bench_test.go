package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/internal/config"
	wardensrv "github.com/wardenmcp/warden/internal/server"
	"github.com/wardenmcp/warden/pipeline"
)

// BenchmarkGatewayEcho is one stateless 2026-07-28 tools/call of this
// server's echo tool through Warden's gateway (bench/gateway.yaml: every
// default control, durable audit included), over loopback HTTP on both
// hops, in process: run it with -cpuprofile to see where a gateway call's
// time goes. The upstream is this plain handler, so that little of the
// time is the upstream's.
func BenchmarkGatewayEcho(b *testing.B) {
	up := httptest.NewServer(newServer())
	defer up.Close()
	b.Setenv("WARDEN_BENCH_DIR", b.TempDir())
	b.Setenv("WARDEN_BENCH_UPSTREAM", up.URL)
	cfg, err := config.Load("../../gateway.yaml")
	if err != nil {
		b.Fatal(err)
	}
	local := func(context.Context) (*pipeline.Principal, error) {
		return &pipeline.Principal{ID: "bench", Tenant: "bench", Scopes: []string{"bench.echo"}, AuthMethod: "test"}, nil
	}
	srv, err := wardensrv.Build(b.Context(), cfg, &wardensrv.Options{Local: local})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	o := srv.HTTPOptions()
	o.Authenticate = nil // the local principal: this measures the call, not the key lookup
	gw := httptest.NewServer(srv.HTTPHandler(o))
	defer gw.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	call := func(b *testing.B) bool {
		const body = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo__echo","arguments":{"message":"hello"},` +
			`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`
		req, _ := http.NewRequest(http.MethodPost, gw.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "tools/call")
		req.Header.Set("Mcp-Name", "echo__echo")
		resp, err := client.Do(req)
		if err != nil {
			b.Error(err)
			return false
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), `"hello"`) || strings.Contains(string(out), `"isError"`) {
			b.Errorf("HTTP %d %s", resp.StatusCode, out)
			return false
		}
		return true
	}
	b.Run("c=1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !call(b) {
				return
			}
		}
	})
	b.Run("c=32", func(b *testing.B) {
		// 32 clients, as in bench/gateway.sh's c=32 runs.
		b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !call(b) {
					return
				}
			}
		})
	})
}
