package audit

import (
	"encoding/json"
	"testing"
	"time"
)

// TestChainHashGolden pins the bytes the chain hashes: a record with
// strings that need every kind of escaping (quotes, backslashes, control
// characters, invalid UTF-8, U+2028, non-ASCII) must hash as it did when
// chains already stored were written, or `warden audit verify` would fail
// them. The value was computed by the encoder before its fast paths.
func TestChainHashGolden(t *testing.T) {
	r := &Record{
		Instance: "host-1", Seq: 42, PrevHash: "ab",
		Time:  time.Date(2026, 12, 4, 23, 0, 0, 123456789, time.UTC),
		Phase: Outcome, TraceID: "0123456789abcdef0123456789abcdef",
		Principal: "alice \"the admin\" \\ <b>", Tenant: "acme\x00\x01\x1f\t\n\r\b\f",
		AuthMethod: "api_key", ClientName: "Claude ☃ \u2028\u2029 é", ClientVersion: "bad \xff\xfe utf8",
		ProtocolVersion: "2026-07-28", RemoteAddr: "127.0.0.1:5000", Method: "tools/call", Target: "echo",
		ToolVersion: "1.0.0", Mode: "read", Source: "mem",
		Args:     json.RawMessage(`{"message":"hello"}`),
		ArgsHash: "cd", Decision: Allow, Status: StatusOK, Duration: 1234 * time.Microsecond,
		ResultBytes: 99, ResultTokens: 7, Truncated: true, CacheHit: true,
	}
	got := newChainer([]byte("0123456789abcdef0123456789abcdef")).hash(r)
	if want := "14a4ed6bbe8ce3cf041c8e90af57b982eb46be9c1242bdec68efb359e6f70dc6"; got != want {
		t.Errorf("chain hash = %s, want %s", got, want)
	}
}
