package cli

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// tcpProxy stands between Warden and the shared Redis, so that a test can
// make Redis unreachable or unresponsive for Warden alone.
type tcpProxy struct {
	t      *testing.T
	target string
	addr   string

	mu     sync.Mutex
	ln     net.Listener
	frozen bool
	conns  map[net.Conn]struct{}
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	p := &tcpProxy{t: t, target: target, addr: "127.0.0.1:0", conns: map[net.Conn]struct{}{}}
	p.listen()
	t.Cleanup(p.refuse)
	return p
}

// listen (again) on the proxy's address.
func (p *tcpProxy) listen() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[u] = struct{}{}, struct{}{}
			p.mu.Unlock()
			go p.pipe(c, u)
			go p.pipe(u, c)
		}
	}()
}

// pipe copies from src to dst, dropping what arrives while frozen.
func (p *tcpProxy) pipe(src, dst net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		frozen := p.frozen
		p.mu.Unlock()
		if n > 0 && !frozen {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// freeze keeps connections open and stops every reply.
func (p *tcpProxy) freeze(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = on
}

// refuse closes every connection and stops listening: dials are refused.
func (p *tcpProxy) refuse() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// /readyz tells the truth about Redis: while the Redis that rate limits
// refuse calls without cannot be reached, or does not answer, it is
// unready and names it — never its address — and it is ready again once
// Redis is back.
func TestReadyzFollowsRedis(t *testing.T) {
	u, err := url.Parse(rlRedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, u.Host)
	cfgPath := rlConfig(t, "redis://"+proxy.addr+u.Path)
	client := newTestClient(t)
	srv := startWarden(t, client, cfgPath)

	readyz := func() (int, string) {
		t.Helper()
		resp, err := client.Get(srv.base + "/readyz")
		if err != nil {
			t.Fatalf("/readyz: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	// waitReady polls /readyz until it answers 200; the bound only ends a
	// failure.
	waitReady := func(what string) {
		t.Helper()
		deadline := time.Now().Add(rlDeadline)
		for {
			code, body := readyz()
			if code == http.StatusOK {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz still %d %q after %v", what, code, body, rlDeadline)
			}
		}
	}
	unready := func(what string) {
		t.Helper()
		// One probe: its checks end within their deadline.
		code, body := readyz()
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "rate-limit store (Redis)") {
			t.Fatalf("%s: /readyz = %d %q, want 503 naming the rate-limit store", what, code, body)
		}
		for _, secret := range []string{proxy.addr, "redis://", "127.0.0.1"} {
			if strings.Contains(body, secret) {
				t.Errorf("%s: /readyz shows %q: %q", what, secret, body)
			}
		}
		t.Logf("%s: %d %s", what, code, strings.TrimSpace(body))
	}

	waitReady("at start")
	proxy.freeze(true)
	unready("Redis frozen")
	proxy.freeze(false)
	waitReady("Redis answering again")
	proxy.refuse()
	unready("Redis refusing connections")
	proxy.listen()
	waitReady("Redis reachable again")
}
