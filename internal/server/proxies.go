package server

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// clientAddr is the address of the client of r: the direct peer, unless
// the peer is one of the trusted proxies, in which case the rightmost
// address in X-Forwarded-For that is not itself a trusted proxy — the one
// the first trusted proxy saw connect. Addresses further left were written
// by whoever sent the request and prove nothing. A forwarded address that
// does not parse leaves the peer's own: a proxy that sends garbage is not
// believed.
//
// It is the one function every record of a client's address goes through:
// the server puts its answer in r.RemoteAddr before anything reads it (see
// trustProxies), for the console's sign-in limits, the audit log's
// remote_addr and anything else keyed by address.
func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	peer, ok := addrOf(r.RemoteAddr)
	if !ok || !inAny(peer, trusted) {
		return r.RemoteAddr
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for h := range strings.SplitSeq(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	client := peer
	for _, h := range slices.Backward(hops) {
		a, err := netip.ParseAddr(h)
		if err != nil {
			return r.RemoteAddr
		}
		client = a.Unmap()
		if !inAny(client, trusted) {
			break
		}
	}
	if client == peer {
		return r.RemoteAddr
	}
	return client.String()
}

// addrOf parses the IP of a host:port, or of a bare address.
func addrOf(hostport string) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	a, err := netip.ParseAddr(host)
	return a.Unmap(), err == nil
}

func inAny(a netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// trustProxies sets each request's RemoteAddr to its client's address (see
// clientAddr). Without trusted proxies, X-Forwarded-For is never read.
func trustProxies(next http.Handler, trusted []netip.Prefix) http.Handler {
	if len(trusted) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.RemoteAddr = clientAddr(r, trusted)
		next.ServeHTTP(w, r)
	})
}
