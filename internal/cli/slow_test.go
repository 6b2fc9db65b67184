package cli

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/keys"
)

// Slow clients cannot hold the server, tried against warden serve in a
// process of its own. 1,000 connections from four client addresses send
// headers slowly, then announce a body of 1,000 bytes and send 10:
//   - the per-address cap refuses the next connection from a full address,
//     and the overall cap the next from anywhere, by closing it unanswered;
//   - ordinary calls, on a connection made before, keep succeeding;
//   - every slow body is cut at the configured deadline: answered 408 and
//     its connection closed;
//   - /metrics counts each refusal by reason.
//
// Every wait is for an event (a byte, an EOF); the test's own deadlines
// only bound a failure.
func TestSlowClientsCannotHoldTheServer(t *testing.T) {
	const (
		slowPerAddr = 250
		slowAddrs   = 4
		slow        = slowPerAddr * slowAddrs
		// The ordinary client's connection and two placeholders fill the
		// overall cap beside the slow ones.
		maxConns = slow + 3
		bound    = time.Minute // bounds any one wait, and outlasts the test's set-up
	)
	cfgPath := slowConfig(t, fmt.Sprintf(`    max_connections: %d
    max_connections_per_client: %d
    body_timeout: 1s
    read_header_timeout: %s
    idle_timeout: %s
`, maxConns, slowPerAddr, bound, bound))
	key := createKeyWithScopes(t, cfgPath, "slow-test", "crm.read", "warden.metrics")

	// One connection, from 127.0.0.1, made now and kept alive, carries
	// every ordinary call.
	tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Timeout: bound, Transport: tr}
	srv := startWarden(t, client, cfgPath)
	id := 0
	call := func() callOutcome {
		id++
		return callGetCustomer(t.Context(), client, srv.endpoint, key, id)
	}
	if o := call(); !o.ok {
		t.Fatalf("an ordinary call = %v, want success", o)
	}
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.base, "http://"))
	addr := net.JoinHostPort(host, port)
	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: bound}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dialing from %s: %v", from, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// refused reports whether the server closed c without a byte.
	refused := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(bound))
		n, err := c.Read(make([]byte, 1))
		return n == 0 && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(fmt.Sprint(err), "reset"))
	}
	// stillOpen reports whether c is open: a read that finds neither data
	// nor an end within a moment.
	stillOpen := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, os.ErrDeadlineExceeded)
	}

	conns := make([]net.Conn, 0, slow)
	for a := range slowAddrs {
		from := fmt.Sprintf("127.0.0.%d", 11+a)
		for range slowPerAddr {
			c := dial(from)
			if _, err := io.WriteString(c, "POST /mcp HTTP/1.1\r\nHost: "+addr+"\r\n"); err != nil {
				t.Fatalf("writing headers: %v", err)
			}
			conns = append(conns, c)
		}
	}
	// The server accepts in the order connections arrive, so the next one
	// from a full address is refused once those before it are counted.
	if c := dial("127.0.0.11"); !refused(c) {
		t.Fatalf("a connection over max_connections_per_client was not closed unanswered")
	}
	placeholders := []net.Conn{dial("127.0.0.21"), dial("127.0.0.22")}
	if c := dial("127.0.0.23"); !refused(c) {
		t.Fatalf("a connection over max_connections was not closed unanswered")
	}
	if !stillOpen(placeholders[1]) || !stillOpen(conns[len(conns)-1]) {
		t.Fatalf("connections within the caps were closed")
	}
	// With every slot taken, ordinary calls go on over their connection.
	for range 5 {
		if o := call(); !o.ok {
			t.Fatalf("with %d connections held, an ordinary call = %v, want success", slow, o)
		}
	}
	for _, c := range placeholders {
		c.Close()
	}

	// Each slow connection now announces 1,000 bytes of body and sends 10.
	for _, c := range conns {
		if _, err := io.WriteString(c, "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"jsonrpc\""); err != nil {
			t.Fatalf("writing a body: %v", err)
		}
	}
	var (
		cut  atomic.Int64
		bad  sync.Map
		wg   sync.WaitGroup
		done = make(chan struct{})
	)
	for i, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(bound))
			got, err := io.ReadAll(c) // to the end the server makes
			if err != nil || !strings.HasPrefix(string(got), "HTTP/1.1 408 ") {
				bad.Store(i, fmt.Sprintf("%q, %v", got, err))
				return
			}
			cut.Add(1)
		})
	}
	go func() { wg.Wait(); close(done) }()
	ordinary := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			if o := call(); !o.ok {
				t.Fatalf("while %d slow bodies were held, an ordinary call = %v, want success", slow, o)
			}
			ordinary++
		}
	}
	bad.Range(func(k, v any) bool {
		t.Errorf("slow connection %v was not answered 408 and closed: %v", k, v)
		return false
	})
	t.Logf("%d of %d slow bodies cut; %d ordinary calls succeeded meanwhile", cut.Load(), slow, ordinary)

	metrics := scrape(t, client, srv.base, key)
	for reason, want := range map[string]int{"max_connections_per_client": 1, "max_connections": 1, "body_timeout": slow} {
		if got := metrics[reason]; got != want {
			t.Errorf("warden_http_refused_total{reason=%q} = %d, want %d", reason, got, want)
		}
	}
}

var refusedMetric = regexp.MustCompile(`(?m)^warden_http_refused_total\{reason="([a-z_]+)"\} ([0-9]+)$`)

// scrape returns warden_http_refused_total by reason.
func scrape(t *testing.T, client *http.Client, base, key string) map[string]int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	out := map[string]int{}
	for _, m := range refusedMetric.FindAllStringSubmatch(string(body), -1) {
		out[m[1]], _ = strconv.Atoi(m[2])
	}
	return out
}

// slowConfig writes the demo configuration with http settings added under
// server.http and generous rate limits, and returns its path.
func slowConfig(t *testing.T, http string) string {
	t.Helper()
	src, err := os.ReadFile(demoConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(src), "  http:\n    addr: 127.0.0.1:8080\n", "  http:\n    addr: 127.0.0.1:8080\n"+http, 1)
	doc = replaceTopLevel(doc, "rate_limits", "rate_limits:\n  per_principal_tool: {rate: 600000/m, burst: 100000}\n  per_principal: {rate: 600000/m, burst: 100000}\n  per_tool: {rate: 600000/m, burst: 100000}\n")
	path := filepath.Join(os.Getenv("WARDEN_DEMO_DIR"), "warden-slow.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// createKeyWithScopes creates an API key named name, tenant acme, in the
// state store of the configuration at cfgPath, and returns it.
func createKeyWithScopes(t *testing.T, cfgPath, name string, scopes ...string) string {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	store, err := keys.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	plaintext, k, hash := keys.Generate(name, "acme", scopes, nil, time.Hour)
	if err := store.Create(t.Context(), k, hash); err != nil {
		t.Fatal(err)
	}
	return plaintext
}
