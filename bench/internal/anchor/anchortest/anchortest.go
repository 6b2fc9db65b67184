// Package anchortest checks that an anchor answers the echo tool the way
// the benchmark calls it: a stateless 2026-07-28 tools/call, and a
// tools/call on a 2025-11-25 session after initialize.
package anchortest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/bench/internal/anchor"
)

const message = "hello, anchors"

// Stateless serves h and checks one stateless tools/call of echo.
func Stateless(t *testing.T, h http.Handler) {
	t.Helper()
	ts := httptest.NewServer(h)
	defer ts.Close()
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"` + message + `"},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	resp := post(t, ts.URL, http.Header{
		"Mcp-Protocol-Version": {"2026-07-28"},
		"Mcp-Method":           {"tools/call"},
		"Mcp-Name":             {anchor.Tool},
	}, body)
	checkEcho(t, resp, 7)
}

// Session serves h and checks initialize, then one tools/call of echo on
// the session it made.
func Session(t *testing.T, h http.Handler) {
	t.Helper()
	ts := httptest.NewServer(h)
	defer ts.Close()
	init := post(t, ts.URL, nil, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"v0"}}}`)
	if init.status != http.StatusOK {
		t.Fatalf("initialize: HTTP %d: %s", init.status, init.body)
	}
	sid := init.header.Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatal("initialize: no Mcp-Session-Id")
	}
	var res struct {
		Result struct {
			ProtocolVersion string `json:"protocolVersion"`
		} `json:"result"`
	}
	if err := json.Unmarshal(init.message(t), &res); err != nil || res.Result.ProtocolVersion != "2025-11-25" {
		t.Fatalf("initialize: want protocolVersion 2025-11-25, got %s (%v)", init.message(t), err)
	}
	h2 := http.Header{"Mcp-Session-Id": {sid}, "Mcp-Protocol-Version": {"2025-11-25"}}
	if n := post(t, ts.URL, h2, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); n.status/100 != 2 {
		t.Fatalf("notifications/initialized: HTTP %d: %s", n.status, n.body)
	}
	resp := post(t, ts.URL, h2, `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","arguments":{"message":"`+message+`"}}}`)
	checkEcho(t, resp, 8)
}

// Stdio checks initialize, then one tools/call of echo, over a stdio
// exchange: serve reads in and writes newline-delimited messages to out.
func Stdio(t *testing.T, serve func(in io.Reader, out io.Writer) error) {
	t.Helper()
	in := strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"v0"}}}` + "\n" +
		`{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\n" +
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"` + message + `"}}}` + "\n")
	var out bytes.Buffer
	if err := serve(in, &out); err != nil {
		t.Fatalf("serving stdio: %v", err)
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var m struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(sc.Bytes(), &m) == nil && string(m.ID) == "2" {
			checkEcho(t, &response{status: http.StatusOK, header: http.Header{"Content-Type": {"application/json"}}, body: sc.Bytes()}, 2)
			return
		}
	}
	t.Fatalf("no response to the tools/call in %s", out.String())
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// message is the response's JSON-RPC message: the body, or the first data
// of an event stream.
func (r *response) message(t *testing.T) []byte {
	t.Helper()
	mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
	if mt != "text/event-stream" {
		return r.body
	}
	for line := range strings.SplitSeq(string(r.body), "\n") {
		if data, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "data:"); ok {
			return []byte(strings.TrimSpace(data))
		}
	}
	t.Fatalf("no data in event stream %q", r.body)
	return nil
}

func post(t *testing.T, url string, h http.Header, body string) *response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &response{resp.StatusCode, resp.Header, b}
}

func checkEcho(t *testing.T, r *response, id int) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("tools/call: HTTP %d: %s", r.status, r.body)
	}
	var m struct {
		ID     int `json:"id"`
		Result struct {
			IsError bool `json:"isError"`
			Content []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"content"`
		} `json:"result"`
		Error json.RawMessage `json:"error"`
	}
	msg := r.message(t)
	if err := json.Unmarshal(msg, &m); err != nil {
		t.Fatalf("tools/call: %v in %s", err, msg)
	}
	c := m.Result.Content
	if m.ID != id || m.Error != nil || m.Result.IsError || len(c) != 1 || c[0].Type != "text" || c[0].Text != message {
		t.Fatalf("tools/call: want id %d and one text content %q, got %s", id, message, msg)
	}
}
