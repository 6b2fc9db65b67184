package warden_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/wardenmcp/warden"
)

// BenchmarkStatelessCall measures one stateless 2026-07-28 tools/call over
// loopback HTTP, client included, on the lean path and through the SDK
// (DisableLeanPath), with the policy stages of a server without stores
// (scope, validation, execution): what the protocol path itself costs.
func BenchmarkStatelessCall(b *testing.B) {
	for _, path := range []struct {
		name string
		opts *warden.HTTPOptions
	}{
		{"lean", nil},
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
