package connlimit

import (
	"net"
	"net/netip"
	"testing"
)

func TestClientOf(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"127.0.0.1:5000", "127.0.0.1/32"},
		{"[::ffff:10.0.0.7]:80", "10.0.0.7/32"},
		{"[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:443", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
	}
	for _, tt := range tests {
		ap := netip.MustParseAddrPort(tt.addr)
		if got := clientOf(net.TCPAddrFromAddrPort(ap)); got.String() != tt.want {
			t.Errorf("clientOf(%s) = %s, want %s", tt.addr, got, tt.want)
		}
	}
	if got := clientOf(&net.UnixAddr{Name: "/run/warden.sock", Net: "unix"}); got.IsValid() {
		t.Errorf("a Unix socket has a client key %s", got)
	}
}

// A connection over either cap is closed and counted, and a closed one
// frees its place, once however often it is closed.
func TestCaps(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusals := make(chan string, 10)
	l := New(ln, Options{Max: 3, PerClient: 2, Refused: func(r string) { refusals <- r }})
	defer l.Close()
	dial := func(from string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	accept := func() net.Conn {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	dial("127.0.0.1")
	dial("127.0.0.1")
	a, b := accept(), accept()
	dial("127.0.0.1") // over PerClient: Accept skips it
	dial("127.0.0.2")
	accept()
	if r := <-refusals; r != ReasonPerClient {
		t.Fatalf("refused for %q, want %q", r, ReasonPerClient)
	}
	next := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		next <- c
	}()
	dial("127.0.0.3") // over Max
	if r := <-refusals; r != ReasonMax {
		t.Fatalf("refused for %q, want %q", r, ReasonMax)
	}
	a.Close()
	a.Close()
	dial("127.0.0.1")
	if c := <-next; c == nil {
		t.Fatal("a connection within the caps, once one closed, was not accepted")
	}
	if n := l.Open(); n != 3 {
		t.Errorf("%d open, want 3", n)
	}
	b.Close()
	if n := l.Open(); n != 2 {
		t.Errorf("%d open after a close, want 2", n)
	}
}
