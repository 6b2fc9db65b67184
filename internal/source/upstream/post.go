package upstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/pipeline"
)

// A tools/call that needs nothing relayed while it runs is made by Warden
// itself: one POST of the JSON-RPC request it builds, on the connection's
// negotiated protocol version and with Warden's credential, its answer read
// from a JSON or an event-stream response and decoded once, into Warden's
// own result. The go-sdk client would decode the answer into its types,
// which Warden would encode and decode again, and run each event stream
// through a goroutine and a pipe (notes.watch) to keep order with
// notifications that such a call cannot have. Everything else — connecting,
// lists, calls with progress, log forwarding or an older protocol
// generation's session, tools whose arguments travel in headers — stays
// with the go-sdk client.

// maxEvent bounds one event or JSON response read from an upstream, as the
// go-sdk client bounds them.
const maxEvent = mcp.DefaultMaxEventSize

// direct reports whether the call of tool, with the progress token tok
// sent upstream (""), on cn can be made directly: a stateless connection
// (2026-07-28 or later) over Streamable HTTP, no progress asked, no log
// messages forwarded, and a tool whose arguments are not mirrored in
// headers (x-mcp-header), which the go-sdk client computes.
func (u *Upstream) direct(cn *conn, tok string, mirrored bool) bool {
	return u.post != nil && tok == "" && !mirrored && u.cfg.Logging == "" &&
		u.cfg.Transport != config.TransportSSE && negotiated(cn) >= firstStateless && cn.sess.ID() == ""
}

// request is a tools/call as Warden sends it directly.
type request struct {
	JSONRPC string     `json:"jsonrpc"`
	ID      int64      `json:"id"`
	Method  string     `json:"method"`
	Params  callParams `json:"params"`
}

type callParams struct {
	Meta           mcp.Meta             `json:"_meta"`
	Name           string               `json:"name"`
	Arguments      map[string]any       `json:"arguments"`
	InputResponses mcp.InputResponseMap `json:"inputResponses,omitempty"`
	RequestState   string               `json:"requestState,omitempty"`
}

// response is an upstream's answer, or another message of its event
// stream (a notification: no id).
type response struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *jsonrpc.Error  `json:"error"`
}

// callDirect makes the call p of the upstream tool name on cn, and returns
// the upstream's result. Errors are as the go-sdk client's: a
// *jsonrpc.Error the upstream answered, or any other for a failure.
func (u *Upstream) callDirect(ctx context.Context, cn *conn, p *mcp.CallToolParams) (*pipeline.ToolResult, error) {
	args, _ := p.Arguments.(map[string]any)
	if args == nil {
		args = map[string]any{}
	}
	meta := requestMeta(cn, false)
	for k, v := range p.Meta {
		meta[k] = v
	}
	id := u.nextID()
	body, err := json.Marshal(&request{JSONRPC: "2.0", ID: id, Method: "tools/call", Params: callParams{
		Meta: meta, Name: p.Name, Arguments: args, InputResponses: p.InputResponses, RequestState: p.RequestState,
	}})
	if err != nil {
		return nil, err
	}
	resp, err := u.send(ctx, cn, "tools/call", p.Name, body)
	if err != nil {
		u.cancelled(ctx, cn, id)
		return nil, err
	}
	defer resp.Body.Close()
	msg, err := u.receive(resp, id)
	switch {
	case err != nil:
		u.cancelled(ctx, cn, id)
		return nil, err
	case msg.Error != nil:
		return nil, msg.Error
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("a result with HTTP status %d", resp.StatusCode)
	}
	out := new(pipeline.ToolResult)
	if err := json.Unmarshal(msg.Result, out); err != nil {
		return nil, fmt.Errorf("a result that is not a tool's: %w", err)
	}
	if err := knownContent(out); err != nil {
		return nil, err
	}
	return out, nil
}

// nextID returns the id of a request Warden sends the upstream itself.
func (u *Upstream) nextID() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.ids++
	return u.ids
}

// send POSTs body, a message of method (about name, if not ""), as the
// go-sdk client would on cn: on its negotiated protocol version, with
// Warden's credential (u.post's).
func (u *Upstream) send(ctx context.Context, cn *conn, method, name string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	h.Set("Mcp-Protocol-Version", negotiated(cn))
	h.Set("Mcp-Method", method)
	if name != "" {
		h.Set("Mcp-Name", name)
	}
	return u.post.Do(req)
}

// receive reads from resp the answer to the request id: a JSON response,
// or the answer's event in an event stream.
func (u *Upstream) receive(resp *http.Response, id int64) (*response, error) {
	want := []byte(strconv.FormatInt(id, 10))
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case mt == "text/event-stream" && resp.StatusCode == http.StatusOK:
		return u.readStream(resp.Body, want)
	case mt == "application/json":
		return readJSON(resp.Body, want)
	}
	return nil, fmt.Errorf("an answer of type %q (HTTP %d)", mt, resp.StatusCode)
}

// cancelTimeout bounds the notice of a cancelled call.
const cancelTimeout = time.Second

// cancelled tells the upstream, if the call's context ended before its
// answer, that Warden no longer waits for the request id, as the go-sdk
// client does: closing the connection alone stops nothing in a server
// that does not watch it. The notice is sent in the background, within
// cancelTimeout, so that the call's refusal is not held up.
func (u *Upstream) cancelled(ctx context.Context, cn *conn, id int64) {
	if ctx.Err() == nil {
		return
	}
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": map[string]any{
		"requestId": id, "reason": "the caller's call ended",
		"_meta": requestMeta(cn, true),
	}})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
	go func() {
		defer cancel()
		if resp, err := u.send(ctx, cn, "notifications/cancelled", "", body); err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
		}
	}()
}

// requestMeta is the _meta of a request Warden makes itself on the
// stateless connection cn, as the go-sdk client would make it: the
// connection's protocol version and Warden's identity, and with caps an
// empty set of client capabilities (Warden declares none of its own).
func requestMeta(cn *conn, caps bool) mcp.Meta {
	m := mcp.Meta{mcp.MetaKeyProtocolVersion: negotiated(cn), mcp.MetaKeyClientInfo: clientInfo}
	if caps {
		m[mcp.MetaKeyClientCapabilities] = map[string]any{}
	}
	return m
}

// clientInfo is Warden's identity at its upstreams, as its go-sdk client
// gives it.
var clientInfo = &mcp.Implementation{Name: "warden", Version: "gateway"}

// readJSON reads a JSON response, the answer to the request whose id is
// want.
func readJSON(body io.Reader, want []byte) (*response, error) {
	b, err := io.ReadAll(io.LimitReader(body, maxEvent+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxEvent {
		return nil, errors.New("an answer larger than the limit")
	}
	return answer(b, want)
}

// answer decodes one message, which must be the answer to the request
// whose id is want.
func answer(data, want []byte) (*response, error) {
	msg := new(response)
	if err := json.Unmarshal(data, msg); err != nil {
		return nil, fmt.Errorf("an answer that is not JSON-RPC: %w", err)
	}
	if !bytes.Equal(msg.ID, want) || (msg.Result == nil) == (msg.Error == nil) {
		return nil, errors.New("an answer that is not the call's")
	}
	return msg, nil
}

// readStream reads an event stream until the answer to the request whose
// id is want. A list_changed notification on the way has the upstream
// listed again, as the go-sdk client's handlers do; other notifications
// are not relayed (the call asked for none) and are dropped, as that
// client drops them. A request from the upstream cannot be answered on a
// stateless call, which takes its input requests in its result: the
// stream is read on, and the call ends at its deadline if the upstream
// waits for an answer.
func (u *Upstream) readStream(body io.Reader, want []byte) (*response, error) {
	r := bufio.NewReaderSize(body, 4096)
	var data []byte
	for {
		line, err := readLine(r)
		if err != nil {
			if err == io.EOF {
				err = errors.New("the event stream ended before the answer")
			}
			return nil, err
		}
		switch {
		case len(line) == 0: // the end of an event
			if len(data) == 0 {
				continue
			}
			done, err := u.event(data, want)
			if err != nil {
				return nil, err
			}
			if done {
				return answer(data, want)
			}
			data = data[:0]
		case bytes.HasPrefix(line, []byte("data:")):
			v := bytes.TrimPrefix(line[5:], []byte(" "))
			if len(data) > 0 {
				data = append(data, '\n')
			}
			if len(data)+len(v) > maxEvent {
				return nil, errors.New("an event larger than the limit")
			}
			data = append(data, v...)
		}
		// id:, event: (MCP sends only "message"), retry: and comments
		// change nothing for one call.
	}
}

// event handles one event's data, and reports whether it is the answer.
func (u *Upstream) event(data, want []byte) (bool, error) {
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	if err := json.Unmarshal(data, &msg); err != nil {
		return false, fmt.Errorf("an event that is not JSON-RPC: %w", err)
	}
	if msg.Method == "" {
		return bytes.Equal(msg.ID, want), nil
	}
	if msg.ID == nil && strings.HasSuffix(msg.Method, "/list_changed") {
		u.askRelist()
	}
	return false, nil
}

// readLine reads one line of an event stream, without its end (LF, CRLF
// or CR alone is not expected from MCP servers), of at most maxEvent bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		long := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull {
			if len(long) > maxEvent {
				return nil, errors.New("an event larger than the limit")
			}
			line, err = r.ReadSlice('\n')
			long = append(long, line...)
		}
		line = long
	}
	if err != nil && (err != io.EOF || len(line) == 0) {
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r")), nil
}

// knownContent refuses a result whose content blocks are of a type the
// protocol does not define, as the go-sdk client does when it decodes one.
func knownContent(t *pipeline.ToolResult) error {
	for _, c := range t.Content {
		switch c.Type {
		case "text", "image", "audio", "resource_link", "resource":
		default:
			return fmt.Errorf("a content block of unknown type %q", c.Type)
		}
	}
	return nil
}

// ping asks a stateless upstream whether it answers, with a ping made as
// its calls are (the go-sdk client's ping carries no protocol version,
// which a stateless server refuses). Any JSON-RPC answer, an error
// included, is alive.
func (u *Upstream) ping(ctx context.Context, cn *conn) error {
	id := u.nextID()
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "ping", "params": map[string]any{
		"_meta": requestMeta(cn, false),
	}})
	if err != nil {
		return err
	}
	resp, err := u.send(ctx, cn, "ping", "", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = u.receive(resp, id)
	return err
}

// errNoWatch says the upstream holds no subscriptions/listen stream open.
var errNoWatch = errors.New("the upstream holds no subscriptions/listen stream open")

// errStreamsLost says a stateless connection's streams were cut: the
// upstream restarted, or something between cut them.
var errStreamsLost = errors.New("the upstream's event streams were cut")

// watch holds a subscriptions/listen stream open on the stateless
// connection cn until it ends, and returns errStreamsLost then (or
// errNoWatch if the upstream would not hold one open, or ctx's error).
// Such a connection has no other end to notice: the go-sdk client's own
// listen streams, which carry list_changed and resource updates, are
// reopened only when the upstream gave their events ids, so after a
// restart they would stay silent. The stream asks for the list_changed
// notifications, which have the upstream listed again as they arrive.
func (u *Upstream) watch(ctx context.Context, cn *conn) error {
	id := u.nextID()
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen", "params": map[string]any{
		"_meta":         requestMeta(cn, true),
		"notifications": map[string]bool{"toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": true},
	}})
	if err != nil {
		return err
	}
	resp, err := u.send(ctx, cn, "subscriptions/listen", "", body)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %v", errStreamsLost, err)
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" || resp.StatusCode != http.StatusOK {
		return errNoWatch
	}
	start := time.Now()
	_, err = u.readStream(resp.Body, []byte(strconv.FormatInt(id, 10)))
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err == nil && time.Since(start) < minWatch:
		return errNoWatch // answered at once: not held open
	case err == nil:
		err = errors.New("the upstream ended the stream")
	}
	return fmt.Errorf("%w: %v", errStreamsLost, err)
}
