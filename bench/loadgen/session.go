package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
)

// sessionProtocolVersion is the revision of the session path: a client
// initializes once, then sends its calls on the session the server made.
const sessionProtocolVersion = "2025-11-25"

// sessionHeader is the header of every request on session sessionID after
// the initialize request.
func sessionHeader(extra http.Header, sessionID string) http.Header {
	h := http.Header{
		"Content-Type":         {"application/json"},
		"Accept":               {"application/json, text/event-stream"},
		"Mcp-Protocol-Version": {sessionProtocolVersion},
		"Mcp-Session-Id":       {sessionID},
	}
	maps.Copy(h, extra)
	return h
}

// openSession does what a 2025-11-25 client does once when it connects:
// initialize, then notifications/initialized on the session the server
// named. It returns the session's id.
func openSession(ctx context.Context, client *http.Client, url string, extra http.Header) (string, error) {
	h := http.Header{
		"Content-Type": {"application/json"},
		"Accept":       {"application/json, text/event-stream"},
	}
	maps.Copy(h, extra)
	body := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"` + sessionProtocolVersion +
		`","capabilities":{},"clientInfo":{"name":"warden-loadgen","version":"v0.0.1"}}}`
	status, resp, err := post(ctx, client, url, h, body)
	if err != nil {
		return "", fmt.Errorf("initialize: %w", err)
	}
	if err := checkResponse(status, resp.Get("Content-Type"), resp.body, 0); err != nil {
		return "", fmt.Errorf("initialize: %w", err)
	}
	sid := resp.Get("Mcp-Session-Id")
	if sid == "" {
		return "", fmt.Errorf("initialize: the server named no session (no Mcp-Session-Id header): is it stateless?")
	}
	status, resp, err = post(ctx, client, url, sessionHeader(extra, sid), `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	if err != nil {
		return "", fmt.Errorf("notifications/initialized: %w", err)
	}
	if status/100 != 2 {
		return "", fmt.Errorf("notifications/initialized: HTTP %d: %s", status, truncate(strings.TrimSpace(string(resp.body))))
	}
	return sid, nil
}

// closeSession ends a session, as a client that is done does; the server's
// answer does not matter to the run.
func closeSession(ctx context.Context, client *http.Client, url string, extra http.Header, sessionID string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, url, nil)
	if err != nil {
		return
	}
	req.Header = sessionHeader(extra, sessionID)
	resp, err := client.Do(req)
	if err != nil {
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

type response struct {
	http.Header
	body []byte
}

func post(ctx context.Context, client *http.Client, url string, h http.Header, body string) (int, *response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header = h
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, 16<<20)); err != nil {
		return 0, nil, fmt.Errorf("reading response: %w", err)
	}
	return resp.StatusCode, &response{resp.Header, buf.Bytes()}, nil
}
