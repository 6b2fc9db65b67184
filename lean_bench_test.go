package warden_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wardenmcp/warden"
)

// BenchmarkStatelessCall measures one stateless 2026-07-28 tools/call over
// loopback HTTP, client included, on the lean path and through the SDK
// (DisableLeanPath), with the policy stages of a server without stores
// (scope, validation, execution): what the protocol path itself costs.
// lean-auth adds HTTP authentication (a bearer token looked up in memory):
// what carrying a verified principal costs.
func BenchmarkStatelessCall(b *testing.B) {
	authenticated := &warden.HTTPOptions{Authenticate: tokens{"bench-token": {ID: "bench", Scopes: []string{"orders.read"}, AuthMethod: "api_key"}}}
	for _, path := range []struct {
		name string
		opts *warden.HTTPOptions
	}{
		{"lean", nil},
		{"lean-auth", authenticated},
		{"sdk", &warden.HTTPOptions{DisableLeanPath: true}},
	} {
		b.Run(path.name, func(b *testing.B) {
			url := serve(b, newServer(b), path.opts).URL + "/mcp"
			body, headers := statelessCall("create_order", validOrder)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Accept", "application/json, text/event-stream")
					if path.opts == authenticated {
						req.Header.Set("Authorization", "Bearer bench-token")
					}
					headers(req)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					out, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), `"ordered"`) {
						b.Errorf("HTTP %d %s", resp.StatusCode, out)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSessionCall measures one tools/call of a 2025-11-25 session
// over loopback HTTP, client included: on the lean path (the session id
// opened on every request) and through the SDK's session (DisableLeanPath).
func BenchmarkSessionCall(b *testing.B) {
	for _, path := range []struct {
		name string
		opts *warden.HTTPOptions
	}{
		{"lean", nil},
		{"sdk", &warden.HTTPOptions{DisableLeanPath: true}},
	} {
		b.Run(path.name, func(b *testing.B) {
			url := serve(b, newServer(b), path.opts).URL + "/mcp"
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			send := func(id, body string) (*http.Response, string) {
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				if id != "" {
					req.Header.Set("Mcp-Session-Id", id)
					req.Header.Set("Mcp-Protocol-Version", legacy)
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp, string(out)
			}
			init, _ := send("", initialize)
			id := init.Header.Get("Mcp-Session-Id")
			if id == "" {
				b.Fatalf("initialize: HTTP %d", init.StatusCode)
			}
			send(id, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
			// A session's requests in flight need ids of their own.
			var ids atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					call := `{"jsonrpc":"2.0","id":` + strconv.FormatInt(ids.Add(1), 10) + `,"method":"tools/call","params":{"name":"create_order","arguments":{"sku":"SKU-123","quantity":1}}}`
					req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(call))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Accept", "application/json, text/event-stream")
					req.Header.Set("Mcp-Session-Id", id)
					req.Header.Set("Mcp-Protocol-Version", legacy)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					out, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), `"ordered"`) {
						b.Errorf("HTTP %d %s", resp.StatusCode, out)
						return
					}
				}
			})
		})
	}
}
