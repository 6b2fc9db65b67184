package httpsrc

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"testing"
)

// names is a resolver with fixed answers: a name an attacker controls can
// resolve to anything.
type names map[string][]string

func (n names) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range n[host] {
		out = append(out, netip.MustParseAddr(s))
	}
	if out == nil {
		return nil, errors.New("no such host")
	}
	return out, nil
}

// Every spelling of an address that reaches the host or its network is
// refused when the connection is dialled, unless a CIDR allows it.
func TestDialRefusesNonPublicAddresses(t *testing.T) {
	e := &egress{resolver: names{
		"localhost":           {"127.0.0.1", "::1"},
		"rebind.example":      {"93.184.215.14", "10.0.0.5"},
		"metadata.example":    {"169.254.169.254"},
		"public.example":      {"93.184.215.14"},
		"cgnat.example":       {"100.64.1.1"},
		"nat64.example":       {"64:ff9b::7f00:1"},
		"sixtofour.example":   {"2002:7f00:1::1"},
		"mapped.example":      {"::ffff:10.1.2.3"},
		"unspecified.example": {"0.0.0.0"},
	}}
	for _, addr := range []string{
		"127.0.0.1:80",
		"2130706433:80", // decimal
		"0177.0.0.1:80", // octal
		"0x7f000001:80", // hex
		"0x7f.0.0.1:80",
		"127.1:80",
		"[::ffff:127.0.0.1]:80", // IPv4-mapped
		"[::1]:80",
		"[64:ff9b::a9fe:a9fe]:80", // NAT64 spelling of 169.254.169.254
		"[2002:a9fe:a9fe::]:80",   // 6to4 spelling of the same
		"169.254.169.254:80",
		"10.0.0.1:80",
		"172.16.0.1:80",
		"192.168.1.1:80",
		"100.64.0.1:80",
		"224.0.0.1:80",
		"0.0.0.0:80",
		"[fe80::1]:80",
		"[fc00::1]:80",
		"localhost:80",
		"localhost.:80",
		"rebind.example:80",
		"metadata.example:80",
		"cgnat.example:80",
		"nat64.example:80",
		"sixtofour.example:80",
		"mapped.example:80",
		"unspecified.example:80",
	} {
		t.Run(addr, func(t *testing.T) {
			_, err := e.dial(context.Background(), "tcp", addr)
			var r *refusedError
			if !errors.As(err, &r) {
				t.Fatalf("dial %s: %v, want an egress refusal", addr, err)
			}
		})
	}
}

func TestAllowedCIDRLiftsTheRefusal(t *testing.T) {
	e := &egress{cidrs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	if err := e.checkAddr(netip.MustParseAddr("10.1.2.3")); err != nil {
		t.Errorf("allowed CIDR refused: %v", err)
	}
	if err := e.checkAddr(netip.MustParseAddr("::ffff:10.1.2.3")); err != nil {
		t.Errorf("allowed CIDR refused in its mapped spelling: %v", err)
	}
	if err := e.checkAddr(netip.MustParseAddr("10.2.0.1")); err == nil {
		t.Error("an address outside the allowed CIDR passed")
	}
	if err := e.checkAddr(netip.MustParseAddr("93.184.215.14")); err != nil {
		t.Errorf("a public address was refused: %v", err)
	}
}

func TestAllowListMatchesSchemeHostAndPort(t *testing.T) {
	ep, _ := parseEndpoint("https://api.example.com")
	e := &egress{allow: []endpoint{ep}}
	for raw, want := range map[string]bool{
		"https://api.example.com/v1/x":      true,
		"https://API.example.com.:443/x":    true,
		"http://api.example.com/x":          false,
		"https://api.example.com:8443/x":    false,
		"https://api.example.com.evil.io/x": false,
		"https://2130706433/x":              false,
		"gopher://api.example.com/x":        false,
	} {
		u, _ := url.Parse(raw)
		if got := e.checkURL(u) == nil; got != want {
			t.Errorf("%s: allowed = %v, want %v", raw, got, want)
		}
	}
}

func TestPathValuesStayOneSegment(t *testing.T) {
	for _, v := range []string{"", ".", "..", "a/../b", "a/b", "..%2f", "%2F", "%2e%2e", "a\\b", "a\x00b", "a\r\nb", "evil.com:80@x", "x?y=1:2"} {
		if pathValue(v) == nil {
			t.Errorf("%q accepted as a path segment", v)
		}
	}
	for _, v := range []string{"42", "cus_9Ab", "José", "a b", "a.b", "a:b"} {
		if err := pathValue(v); err != nil {
			t.Errorf("%q refused: %v", v, err)
		}
	}
}
