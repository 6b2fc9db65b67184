package httpsrc

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/pipeline"
)

// FuzzPathSegment: whatever the value, the request either is refused or
// goes to the API's host, with the value as exactly one path segment.
func FuzzPathSegment(f *testing.F) {
	for _, s := range []string{"42", "../admin", "a/b", "%2f", "..%2F", "a\x00", "evil.com:80@x", "é", "a b?c#d", "%", "%%32%66", "\\..\\", "//evil.com"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://api.example.com/v1")
	ep, _ := endpointOf(base)
	op := &operation{
		api:      &api{base: base, egress: &egress{allow: []endpoint{ep}}, auth: noAuth{}},
		method:   "GET",
		segments: []segment{{literal: "items"}, {param: "id"}, {literal: "notes"}},
	}
	f.Fuzz(func(t *testing.T, v string) {
		req, _, err := op.request(context.Background(), &pipeline.Call{Args: map[string]any{"id": v}})
		if err != nil {
			return
		}
		if req.URL.Host != "api.example.com" || req.URL.Scheme != "https" {
			t.Fatalf("%q reached %s", v, req.URL)
		}
		segs := strings.Split(req.URL.EscapedPath(), "/")
		if len(segs) != 5 || segs[1] != "v1" || segs[2] != "items" || segs[4] != "notes" {
			t.Fatalf("%q made the path %s", v, req.URL.EscapedPath())
		}
		if got, _ := url.PathUnescape(segs[3]); got != v {
			t.Fatalf("%q became the segment %q", v, got)
		}
		if u, err := url.Parse(req.URL.String()); err != nil || u.Host != "api.example.com" || u.EscapedPath() != req.URL.EscapedPath() {
			t.Fatalf("%q does not survive a round trip: %s", v, req.URL)
		}
	})
}
