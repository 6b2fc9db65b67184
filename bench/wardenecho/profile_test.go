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
	"github.com/wardenmcp/warden/internal/server"
	"github.com/wardenmcp/warden/pipeline"
)

// BenchmarkStatelessEcho is one stateless 2026-07-28 tools/call of the
// echo tool over loopback HTTP, through every default control of the
// benchmark's configuration (durable audit included), in process: run it
// with -cpuprofile to see where a call's time goes.
func BenchmarkStatelessEcho(b *testing.B) {
	b.Setenv("WARDEN_BENCH_DIR", b.TempDir())
	cfg, err := config.Load("warden.yaml")
	if err != nil {
		b.Fatal(err)
	}
	local := func(context.Context) (*pipeline.Principal, error) {
		return &pipeline.Principal{ID: "bench", Tenant: "bench", Scopes: []string{"bench.echo"}, AuthMethod: "test"}, nil
	}
	srv, err := server.Build(b.Context(), cfg, &server.Options{Local: local})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	o := srv.HTTPOptions()
	o.Authenticate = nil // the local principal: this measures the call, not the key lookup
	ts := httptest.NewServer(srv.HTTPHandler(o))
	defer ts.Close()
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	// 32 clients, as in bench/ratios.sh's c=32 runs, so that the audit
	// writer's batches are as large as there.
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/mcp", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
			req.Header.Set("Mcp-Method", "tools/call")
			req.Header.Set("Mcp-Name", "echo")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), `"hello"`) {
				b.Errorf("HTTP %d %s", resp.StatusCode, out)
				return
			}
		}
	})
}
