package warden

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestPlainClientMeta checks the shortcuts of clientMetaValid against the
// SDK's own decoding: every form they accept, the SDK decodes.
func TestPlainClientMeta(t *testing.T) {
	decode := func(s string) any {
		var v any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	caps := []struct {
		json  string
		plain bool
	}{
		{`{}`, true},
		{`{"roots":{"listChanged":true},"sampling":{},"elicitation":{},"experimental":{"x":[1]},"extensions":null}`, true},
		{`{"roots":null,"sampling":null}`, true},
		{`{"elicitation":true}`, false},
		{`{"elicitation":{"form":{}}}`, false},
		{`{"roots":{"listChanged":"yes"}}`, false},
		{`{"roots":{"other":true}}`, false},
		{`{"Roots":{}}`, false},
		{`{"experimental":[]}`, false},
		{`{"custom":{}}`, false},
	}
	for _, c := range caps {
		m := decode(c.json).(map[string]any)
		if got := plainCapabilities(m); got != c.plain {
			t.Errorf("plainCapabilities(%s) = %v, want %v", c.json, got, c.plain)
		}
		var v struct {
			mcp.ClientCapabilities
			//lint:ignore SA1019 clients still declare roots, and the SDK decodes them
			Roots *mcp.RootCapabilities `json:"roots,omitempty"`
		}
		if plainCapabilities(m) && !remarshals(m, &v) {
			t.Errorf("plainCapabilities accepts %s, which the SDK does not decode", c.json)
		}
	}
	infos := []struct {
		json  string
		plain bool
	}{
		{`{"name":"c","version":"1"}`, true},
		{`{"name":"c","title":"C","description":"d","version":"1","websiteUrl":"https://c.example"}`, true},
		{`{}`, true},
		{`{"name":1}`, false},
		{`{"name":null}`, false},
		{`{"icons":[]}`, false},
		{`{"Name":"c"}`, false},
		{`"c"`, false},
	}
	for _, c := range infos {
		v := decode(c.json)
		if got := plainImplementation(v); got != c.plain {
			t.Errorf("plainImplementation(%s) = %v, want %v", c.json, got, c.plain)
		}
		var impl mcp.Implementation
		if plainImplementation(v) && !remarshals(v, &impl) {
			t.Errorf("plainImplementation accepts %s, which the SDK does not decode", c.json)
		}
	}
}

// TestHeaderKeys checks that the header keys read without Header.Get are
// canonical, as Get would make them.
func TestHeaderKeys(t *testing.T) {
	for _, k := range []string{hAccept, hContentType, hLastEventID, hMethod, hName, hOrigin, hProtocolVersion, hSessionID} {
		if c := http.CanonicalHeaderKey(k); c != k {
			t.Errorf("header key %q is not canonical (%q)", k, c)
		}
	}
}
