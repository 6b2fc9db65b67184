package httpsrc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// egress decides where a source may connect. A request's URL must match an
// allowed endpoint (scheme, host and port); its host is resolved once, every
// address it resolves to is checked, and the connection is made to a
// checked address — never by a second lookup, so DNS rebinding between
// check and use cannot happen. Addresses that reach the host itself or its
// network (loopback, private, link-local and the metadata service, CGNAT,
// multicast, unspecified, reserved), in any spelling, are refused unless a
// CIDR allows them.
type egress struct {
	allow    []endpoint
	cidrs    []netip.Prefix
	resolver resolver
	timeout  time.Duration // to connect
}

// resolver is net.Resolver's method, replaced in tests.
type resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

type endpoint struct {
	scheme, host, port string
}

// refusedError is an egress refusal: the operator's to lift, not the
// caller's.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

func refused(format string, args ...any) error {
	return &refusedError{fmt.Sprintf(format, args...)}
}

// parseEndpoint reads an allow-list entry: scheme://host[:port].
func parseEndpoint(s string) (endpoint, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return endpoint{}, fmt.Errorf("%q: must be scheme://host or scheme://host:port", s)
	}
	return endpointOf(u)
}

func endpointOf(u *url.URL) (endpoint, error) {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return endpoint{}, fmt.Errorf("scheme %q: only http and https are allowed", u.Scheme)
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "" {
		return endpoint{}, errors.New("no host")
	}
	if err := canonicalHost(host); err != nil {
		return endpoint{}, err
	}
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.String()
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return endpoint{}, fmt.Errorf("port %q is not a port", port)
	}
	return endpoint{scheme, host, port}, nil
}

// canonicalHost refuses host names that some resolvers read as IPv4
// addresses in a spelling other than dotted decimal — 2130706433,
// 0x7f000001, 0177.0.0.1, 127.1 — and IPv6 zones. Such a name can only be
// an attempt to slip an address past a check.
func canonicalHost(host string) error {
	if strings.Contains(host, "%") {
		return refused("host %q: zoned addresses are not allowed", host)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	numeric := true
	for _, label := range strings.Split(host, ".") {
		l := strings.ToLower(label)
		if strings.HasPrefix(l, "0x") {
			l = l[2:]
			if strings.Trim(l, "0123456789abcdef") != "" {
				numeric = false
			}
			continue
		}
		if l == "" || strings.Trim(l, "0123456789") != "" {
			numeric = false
		}
	}
	if numeric {
		return refused("host %q: an IP address must be written in dotted decimal (or as IPv6)", host)
	}
	return nil
}

// checkURL checks a URL against the allow-list.
func (e *egress) checkURL(u *url.URL) error {
	ep, err := endpointOf(u)
	if err != nil {
		var r *refusedError
		if errors.As(err, &r) {
			return err
		}
		return refused("%v", err)
	}
	for _, a := range e.allow {
		if a == ep {
			return nil
		}
	}
	return refused("%s://%s:%s is not on the source's egress allow-list", ep.scheme, ep.host, ep.port)
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	nat64l    = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour = netip.MustParsePrefix("2002::/16")
	teredo    = netip.MustParsePrefix("2001::/32")
	special4  = []struct {
		p    netip.Prefix
		what string
	}{
		{netip.MustParsePrefix("0.0.0.0/8"), "this-network"},
		{netip.MustParsePrefix("100.64.0.0/10"), "shared (CGNAT)"},
		{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol"},
		{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
		{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
		{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
		{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
		{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	}
	special6 = []struct {
		p    netip.Prefix
		what string
	}{
		{netip.MustParsePrefix("100::/64"), "discard"},
		{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
		{netip.MustParsePrefix("fec0::/10"), "site-local"},
	}
)

// classify names why an address is not a public unicast address, or
// returns "" for one that is. IPv6 spellings of an IPv4 address
// (IPv4-mapped, NAT64, 6to4, Teredo) are judged by the address they embed.
func classify(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		b := a.As16()
		var embedded netip.Addr
		var via string
		switch {
		case nat64.Contains(a):
			embedded, via = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), "NAT64"
		case nat64l.Contains(a):
			return "NAT64 (local use)"
		case sixToFour.Contains(a):
			embedded, via = netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), "6to4"
		case teredo.Contains(a):
			embedded, via = netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), "Teredo"
		}
		if embedded.IsValid() {
			if w := classify(embedded); w != "" {
				return w + " (as " + via + ")"
			}
			return ""
		}
		if a.Is4In6() {
			return classify(a.Unmap())
		}
	}
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return "link-local"
	case a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return "multicast"
	case a.IsPrivate():
		return "private"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast"
	}
	list := special6
	if a.Is4() {
		list = special4
	}
	for _, s := range list {
		if s.p.Contains(a) {
			return s.what
		}
	}
	return ""
}

// checkAddr refuses an address that is not public unicast, unless an
// allowed CIDR holds it.
func (e *egress) checkAddr(a netip.Addr) error {
	for _, p := range e.cidrs {
		if p.Contains(a) || p.Contains(a.Unmap()) {
			return nil
		}
	}
	if w := classify(a); w != "" {
		return refused("address %s is %s; allow it with egress.allow_cidrs if the API really lives there", a, w)
	}
	return nil
}

// dial is the transport's DialContext: resolve once, check every
// address, connect to a checked one.
func (e *egress) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	host = strings.TrimSuffix(host, ".")
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		if err := canonicalHost(host); err != nil {
			return nil, err
		}
		addrs, err = e.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", host, err)
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolving %s: no addresses", host)
	}
	// One refused address refuses the name: an attacker who controls a
	// name's records must not get a choice of targets.
	for _, a := range addrs {
		if err := e.checkAddr(a); err != nil {
			return nil, refused("%s resolves to %v", host, err)
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port %q", port)
	}
	d := net.Dialer{
		Timeout: e.timeout,
		// The address actually connected to is checked once more: the
		// check and the connection can never disagree.
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			return e.checkAddr(ap.Addr())
		},
	}
	var errs []error
	for _, a := range addrs {
		c, err := d.DialContext(ctx, network, netip.AddrPortFrom(a, uint16(p)).String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}
