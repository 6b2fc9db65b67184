package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// protocolVersion is the stateless MCP revision the generator speaks: no
// initialize handshake, every request carries its version and capabilities.
const protocolVersion = "2026-07-28"

// caller sends one tools/call per call to call: a stateless 2026-07-28
// request, or a call on one 2025-11-25 session. It is safe for concurrent
// use; everything but the request id is computed once.
type caller struct {
	client *http.Client
	url    string
	header http.Header
	// A request body is prefix + id + "}"; params come first so that the id
	// is the only part that changes.
	prefix []byte
}

// newCaller returns a caller of stateless requests: no initialize
// handshake, every request carries its version and capabilities in _meta and
// names its method and tool in headers.
func newCaller(client *http.Client, url, tool string, args json.RawMessage, extra http.Header) (*caller, error) {
	prefix, err := callPrefix(tool, args, map[string]any{
		"io.modelcontextprotocol/protocolVersion":    protocolVersion,
		"io.modelcontextprotocol/clientCapabilities": struct{}{},
		"io.modelcontextprotocol/clientInfo":         map[string]string{"name": "warden-loadgen", "version": "v0.0.1"},
	})
	if err != nil {
		return nil, err
	}
	h := http.Header{
		"Content-Type":         {"application/json"},
		"Accept":               {"application/json, text/event-stream"},
		"Mcp-Protocol-Version": {protocolVersion},
		"Mcp-Method":           {"tools/call"},
		"Mcp-Name":             {tool},
	}
	maps.Copy(h, extra)
	return &caller{client: client, url: url, header: h, prefix: prefix}, nil
}

// newSessionCaller returns a caller of tools/call requests on the
// 2025-11-25 session sessionID (see openSession), as a client sends them
// once it has initialized.
func newSessionCaller(client *http.Client, url, tool string, args json.RawMessage, extra http.Header, sessionID string) (*caller, error) {
	prefix, err := callPrefix(tool, args, nil)
	if err != nil {
		return nil, err
	}
	h := sessionHeader(extra, sessionID)
	return &caller{client: client, url: url, header: h, prefix: prefix}, nil
}

// callPrefix is a tools/call request body up to its id.
func callPrefix(tool string, args json.RawMessage, meta map[string]any) ([]byte, error) {
	params, err := json.Marshal(struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
		Meta      map[string]any  `json:"_meta,omitempty"`
	}{Name: tool, Arguments: args, Meta: meta})
	if err != nil {
		return nil, fmt.Errorf("encoding tools/call params: %w", err)
	}
	prefix := append([]byte(`{"jsonrpc":"2.0","method":"tools/call","params":`), params...)
	return append(prefix, `,"id":`...), nil
}

// callError is a failed call, classified so that a report can count failures
// by kind without keeping every message.
type callError struct {
	Kind    string // "transport", "http 403", "jsonrpc -32020", "tool error", "bad response"
	Message string
}

func (e *callError) Error() string { return e.Kind + ": " + e.Message }

// call sends one tools/call with the given JSON-RPC id. buf is scratch space
// owned by the calling worker.
func (c *caller) call(ctx context.Context, id int64, buf *bytes.Buffer) error {
	buf.Reset()
	buf.Write(c.prefix)
	buf.WriteString(strconv.FormatInt(id, 10))
	buf.WriteByte('}')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(buf.Bytes()))
	if err != nil {
		return &callError{"transport", err.Error()}
	}
	req.Header = c.header.Clone()
	resp, err := c.client.Do(req)
	if err != nil {
		return &callError{"transport", err.Error()}
	}
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return &callError{"transport", "reading response: " + err.Error()}
	}
	return checkResponse(resp.StatusCode, resp.Header.Get("Content-Type"), buf.Bytes(), id)
}

// checkResponse decides whether one HTTP response carries a successful
// tools/call result for request id: status 200, a JSON-RPC response (plain
// JSON, or the first response in an SSE stream) with that id, no "error", and
// a result that is not isError.
func checkResponse(status int, contentType string, body []byte, id int64) error {
	if status != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		var m rpcMessage
		if json.Unmarshal(body, &m) == nil && m.Error != nil {
			msg = fmt.Sprintf("jsonrpc %d: %s", m.Error.Code, m.Error.Message)
		}
		return &callError{"http " + strconv.Itoa(status), truncate(msg)}
	}
	mediaType, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return &callError{"bad response", fmt.Sprintf("Content-Type %q: %v", contentType, err)}
	}
	switch mediaType {
	case "application/json":
		return checkMessage(body, id)
	case "text/event-stream":
		return checkEventStream(body, id)
	default:
		return &callError{"bad response", fmt.Sprintf("unexpected Content-Type %q", contentType)}
	}
}

// rpcMessage is the part of a JSON-RPC message the generator looks at.
// Result stays raw until it is known to be the response to our request.
type rpcMessage struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int64  `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

type toolResult struct {
	IsError bool `json:"isError"`
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
}

func checkMessage(data []byte, id int64) error {
	var m rpcMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return &callError{"bad response", "invalid JSON-RPC message: " + err.Error()}
	}
	if m.Method != "" {
		return &callError{"bad response", fmt.Sprintf("got a %q message, want the tools/call response", m.Method)}
	}
	return checkResult(&m, id)
}

func checkResult(m *rpcMessage, id int64) error {
	if got := string(bytes.TrimSpace(m.ID)); got != strconv.FormatInt(id, 10) {
		return &callError{"bad response", fmt.Sprintf("response id %s, want %d", got, id)}
	}
	if m.Error != nil {
		return &callError{"jsonrpc " + strconv.FormatInt(m.Error.Code, 10), truncate(m.Error.Message)}
	}
	if len(m.Result) == 0 || string(m.Result) == "null" {
		return &callError{"bad response", "response has neither result nor error"}
	}
	var r toolResult
	if err := json.Unmarshal(m.Result, &r); err != nil {
		return &callError{"bad response", "invalid tools/call result: " + err.Error()}
	}
	if r.IsError {
		msg := "isError result"
		for _, c := range r.Content {
			if c.Type == "text" {
				msg = c.Text
				break
			}
		}
		return &callError{"tool error", truncate(msg)}
	}
	return nil
}

// checkEventStream finds the response to request id in an SSE body. The
// server may send notifications first; those are skipped. A server-to-client
// request is an error: the generator cannot answer it. As in the SSE spec, an
// event counts only once the blank line that ends it has arrived.
func checkEventStream(body []byte, id int64) error {
	var data []byte
	for len(body) > 0 {
		line, rest, _ := bytes.Cut(body, []byte{'\n'})
		body = rest
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			if len(data) > 0 {
				done, err := checkEvent(data, id)
				if done {
					return err
				}
			}
			data = data[:0]
			continue
		}
		field, value, _ := bytes.Cut(line, []byte{':'})
		if string(field) != "data" {
			continue // event:, id:, retry:, and ":" comments
		}
		value = bytes.TrimPrefix(value, []byte{' '})
		if len(data) > 0 {
			data = append(data, '\n')
		}
		data = append(data, value...)
	}
	return &callError{"bad response", "event stream ended without a JSON-RPC response (an event ends with a blank line)"}
}

// checkEvent reports whether data, one event's payload, is the response and,
// if so, whether the call failed.
func checkEvent(data []byte, id int64) (done bool, err error) {
	var m rpcMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return true, &callError{"bad response", "invalid JSON-RPC message in event stream: " + err.Error()}
	}
	if m.Method != "" {
		if len(m.ID) > 0 {
			return true, &callError{"bad response", fmt.Sprintf("server sent a %q request; the generator cannot answer it", m.Method)}
		}
		return false, nil
	}
	return true, checkResult(&m, id)
}

func truncate(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
