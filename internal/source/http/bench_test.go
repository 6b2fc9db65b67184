package httpsrc_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardenmcp/warden"
)

// BenchmarkOverhead measures what Warden adds to a call of an HTTP API:
// the same GET of one JSON object, sent directly with net/http, and as a
// stateless tools/call of an http tool over Streamable HTTP on loopback,
// through every stage Warden runs by default (scope check, validation,
// bound tenant, rate limit, durable audit, output guard). Each runs at
// concurrency 1 and 32 and reports p50 and p99 latency in microseconds.
//
//	go test -run '^$' -bench Overhead -benchtime 5000x ./internal/source/http/
func BenchmarkOverhead(b *testing.B) {
	b.Setenv("TEST_API_TOKEN", token)
	b.Setenv("XDG_DATA_HOME", b.TempDir())
	body := []byte(`{"id":"42","name":"Ada Lovelace","plan":"pro","seats":12,"created":"2026-01-02T03:04:05Z"}`)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	b.Cleanup(api.Close)

	srv := build(b, fmt.Sprintf(`
server: {name: bench}
rate_limits:
  per_principal: {rate: 1000000/s, burst: 1000000}
  per_tool: {rate: 1000000/s, burst: 1000000}
  per_principal_tool: {rate: 1000000/s, burst: 1000000}
  max_concurrent_per_principal: 64
sources:
  api:
    kind: http
    base_url: %s/v1
    auth: {bearer: "${env:TEST_API_TOKEN}"}
    egress: {allow_cidrs: [127.0.0.1/32]}
tools:
  get_item:
    description: Get one item.
    source: api
    scope: api.read
    method: GET
    path: /items/{item_id}
    parameters:
      item_id: {type: string, description: The item id., required: true, max_length: 32}
      tenant: {type: string, description: The tenant., bind: tenant}
    query: {tenant: tenant}
`, api.URL), nil)
	mcpSrv := httptest.NewServer(srv.HTTPHandler(&warden.HTTPOptions{}))
	b.Cleanup(mcpSrv.Close)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	direct := func() error {
		req, _ := http.NewRequest(http.MethodGet, api.URL+"/v1/items/42?tenant=acme", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var v map[string]any
		return json.NewDecoder(resp.Body).Decode(&v)
	}
	var id atomic.Int64
	params := `{"name":"get_item","arguments":{"item_id":"42"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"bench","version":"0"}}}`
	viaWarden := func() error {
		msg := `{"jsonrpc":"2.0","method":"tools/call","params":` + params + `,"id":` + strconv.FormatInt(id.Add(1), 10) + `}`
		req, _ := http.NewRequest(http.MethodPost, mcpSrv.URL+"/mcp", bytes.NewBufferString(msg))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "tools/call")
		req.Header.Set("Mcp-Name", "get_item")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !bytes.Contains(out, []byte(`Ada Lovelace`)) || bytes.Contains(out, []byte(`"isError":true`)) {
			return fmt.Errorf("status %d: %s", resp.StatusCode, out)
		}
		return nil
	}
	if err := viaWarden(); err != nil {
		b.Fatal(err)
	}
	for _, c := range []int{1, 32} {
		b.Run(fmt.Sprintf("direct/c=%d", c), func(b *testing.B) { latencies(b, c, direct) })
		b.Run(fmt.Sprintf("warden/c=%d", c), func(b *testing.B) { latencies(b, c, viaWarden) })
	}
}

// latencies runs b.N calls of fn on c goroutines and reports the p50 and
// p99 of their latencies.
func latencies(b *testing.B, c int, fn func() error) {
	var next atomic.Int64
	all := make([][]time.Duration, c)
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	for g := range c {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				start := time.Now()
				if err := fn(); err != nil {
					failed.Store(err)
					return
				}
				all[g] = append(all[g], time.Since(start))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	d := slices.Concat(all...)
	slices.Sort(d)
	at := func(q float64) float64 { return float64(d[int(q*float64(len(d)-1))].Microseconds()) }
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}
