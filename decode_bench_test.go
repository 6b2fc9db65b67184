package warden

import (
	"encoding/json"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// BenchmarkRequestDecode measures what Warden spends reading a tools/call
// body before the protocol layer does: today one decode into its own view
// of the message, which the transport guard and the scope check share;
// before, a validity scan in the guard and, for OAuth principals, a second
// parse in the scope check. The protocol SDK's own decode is measured
// beside it for scale.
func BenchmarkRequestDecode(b *testing.B) {
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_customer","arguments":{"customer_id":"C-1001"},"_meta":{"io.wardenmcp/trace":"x"}}}`)
	b.Run("warden/once", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if msg, ok := decodeMessage(body); !ok || msg.Params.Name != "get_customer" {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("before/valid+scope-parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !json.Valid(body) {
				b.Fatal("invalid")
			}
			var msg message
			if err := json.Unmarshal(body, &msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("before/valid-only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !json.Valid(body) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("sdk/decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jsonrpc.DecodeMessage(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
