package warden

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// FuzzSessionID feeds the opening of session ids — what any client may send
// in Mcp-Session-Id — arbitrary strings: it never panics, opens only what
// this server's key sealed (each fuzzing process seals its own id, under
// the same key), and only in the one spelling sealing gives.
func FuzzSessionID(f *testing.F) {
	srv := New(&mcp.Implementation{Name: "fuzz", Version: "1"}, nil)
	ss := newSessions(srv, []byte("a secret of thirty-two bytes or more, for fuzzing"), time.Hour, time.Minute, nil)
	want := &sessionState{Version: "2025-11-25", Owner: `"api_key" "acme" "alice"`, Expires: 1 << 40, Nonce: "n"}
	valid, err := ss.seal(want)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(valid + "A")
	f.Add(sessionPrefix)
	f.Add("w1.!!!!")
	f.Add("abc")
	f.Fuzz(func(t *testing.T, id string) {
		st, ok := ss.open(id)
		if !ok {
			return
		}
		if st.Owner != want.Owner || st.Nonce != want.Nonce || st.Expires != want.Expires {
			t.Fatalf("opened %q as %+v, which this server did not seal", id, st)
		}
		raw := strings.TrimPrefix(id, sessionPrefix)
		b, _ := base64.RawURLEncoding.DecodeString(raw)
		if base64.RawURLEncoding.EncodeToString(b) != raw {
			t.Fatalf("opened %q, another spelling of a sealed id", id)
		}
	})
}
