// Package connlimit caps the connections a listener hands to a server:
// in all, and per client address. A connection over either cap is closed
// the moment it is accepted, before it costs a goroutine, a TLS handshake
// or a read, so that clients holding connections open (slowly sending a
// request, or not at all) cannot take every connection the process can
// keep.
//
//	ln, _ := net.Listen("tcp", addr)
//	ln = connlimit.New(ln, connlimit.Options{Max: 4096, PerClient: 256, Refused: countRefusal})
//	ln = tls.NewListener(ln, tlsConfig) // TLS inside the caps
//	httpServer.Serve(ln)
package connlimit

import (
	"net"
	"net/netip"
	"sync"
)

// Reasons a connection is refused, as Options.Refused is told them.
const (
	ReasonMax       = "max_connections"
	ReasonPerClient = "max_connections_per_client"
)

// Options are a Listener's caps. Zero means no cap.
type Options struct {
	// Max caps the connections open at once.
	Max int
	// PerClient caps the connections open at once from one client
	// address: an IPv4 address, or an IPv6 address's /64, which one
	// client usually holds whole.
	PerClient int
	// Refused, if set, is called with ReasonMax or ReasonPerClient for each
	// connection closed for being over a cap. It must not block.
	Refused func(reason string)
}

// Listener is a net.Listener under Options' caps. A connection counts
// from the moment it is accepted until it is closed (by either side: the
// server closes every connection it is done with).
type Listener struct {
	net.Listener
	opts Options

	mu   sync.Mutex
	open int
	by   map[netip.Prefix]int
}

// New returns ln under opts' caps.
func New(ln net.Listener, opts Options) *Listener {
	return &Listener{Listener: ln, opts: opts, by: map[netip.Prefix]int{}}
}

// Accept returns the next connection within the caps, closing those over
// them as it goes.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := clientOf(c.RemoteAddr())
		if reason := l.take(key); reason != "" {
			c.Close()
			if l.opts.Refused != nil {
				l.opts.Refused(reason)
			}
			continue
		}
		return &conn{Conn: c, release: func() { l.release(key) }}, nil
	}
}

// Open returns how many connections are open.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (l *Listener) take(key netip.Prefix) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.opts.Max > 0 && l.open >= l.opts.Max:
		return ReasonMax
	case l.opts.PerClient > 0 && key.IsValid() && l.by[key] >= l.opts.PerClient:
		return ReasonPerClient
	}
	l.open++
	if key.IsValid() {
		l.by[key]++
	}
	return ""
}

func (l *Listener) release(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if !key.IsValid() {
		return
	}
	if n := l.by[key]; n > 1 {
		l.by[key] = n - 1
	} else {
		delete(l.by, key) // as small as the set of clients connected
	}
}

// clientOf is the key a connection from addr counts under: the address,
// or an IPv6 address's /64. Addresses that are not IP (a Unix socket)
// have none, and only count towards Max.
func clientOf(addr net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Prefix{}
	}
	a := ap.Addr().Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.WithZone("").Prefix(64)
	return p
}

// conn releases its place under the caps when it is first closed.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite half-closes a TCP connection, as net/http does before closing
// one it refused, so that the client reads the answer rather than a reset.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
