package warden

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Stdio on the lean path. One client speaks newline-delimited JSON-RPC
// over a process's standard input and output. ServeStdio reads each line
// once: a request of the initialized 2025-11-25 session the lean path
// serves (a call, a list, a read, a prompt, a ping) is answered here,
// exactly as on an HTTP session (session.go), and every other line —
// initialize and its notification, a cancellation, a request the lean path
// is not sure of, a line that is not a message at all — goes, byte for
// byte and in order, to an SDK session over an in-memory pipe, which
// answers or refuses it as it always has. Both write whole lines to the
// output, one at a time. What the server sends the client (list_changed,
// log messages, an elicitation) is the SDK session's, as before.
//
// The lean path answers a line only while the stream is in step: once a
// line that is not a complete message has gone to the SDK (a message split
// over lines, a line past the SDK's frame limit, a line that is not JSON),
// the SDK decides what the bytes that follow are, and every later line is
// the SDK's.

// stdioFrameLimit is the longest line the lean path reads: the SDK's own
// frame limit, past which the SDK refuses the line.
const stdioFrameLimit = mcp.DefaultMaxLineLength

// stdioFrameSlack is how far below the frame limit a line goes to the SDK
// all the same: the SDK counts the bytes its decoder reads ahead, so where
// exactly it draws the line is its own.
const stdioFrameSlack = 64 << 10

// ServeStdio serves one client that writes requests to in and reads
// responses from out (a process's standard input and output), until the
// client ends its input, the SDK session ends, or ctx ends. It returns
// what the SDK's Server.Run returns for the same stream.
func (s *Server) ServeStdio(ctx context.Context, in io.Reader, out io.Writer) error {
	pr, pw := io.Pipe()
	c := &stdioConn{s: s, out: out, pw: pw, calls: map[string]*stdioCall{}}
	sess, err := s.mcp.Connect(ctx, &mcp.IOTransport{Reader: pr, Writer: c}, nil)
	if err != nil {
		return err
	}
	c.sess = sess
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.ctx = cctx
	go c.read(in)

	ended := make(chan error, 1)
	go func() { ended <- sess.Wait() }()
	select {
	case <-ctx.Done():
		sess.Close()
		<-ended
		err = ctx.Err()
	case err = <-ended:
	}
	cancel() // the lean calls in flight end with the session, as the SDK's do
	c.mu.Lock()
	c.ended = true // no lean call starts now
	c.mu.Unlock()
	c.wg.Wait()
	return err
}

// stdioConn is one stdio client's connection.
type stdioConn struct {
	s    *Server
	sess *mcp.ServerSession
	ctx  context.Context // ends with the connection
	pw   *io.PipeWriter  // the SDK session's input

	wmu sync.Mutex // one line at a time on out
	out io.Writer

	mu    sync.Mutex
	calls map[string]*stdioCall // lean requests in flight, by id
	init  *mcp.InitializeParams // of st
	st    *sessionState
	ended bool // the session has ended

	wg sync.WaitGroup // lean requests in flight
}

// Write writes one whole line (the SDK writes each message in one Write).
func (c *stdioConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.out.Write(p)
}

// Close leaves the output open, as it is the process's.
func (c *stdioConn) Close() error { return nil }

// read reads the client's lines until its input ends, answering what the
// lean path serves and handing the rest to the SDK session.
func (c *stdioConn) read(in io.Reader) {
	br := bufio.NewReaderSize(in, 64<<10)
	inStep := true
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			buf := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) && len(buf) <= stdioFrameLimit {
				line, err = br.ReadSlice('\n')
				buf = append(buf, line...)
			}
			line = buf
		}
		if len(line) >= stdioFrameLimit-stdioFrameSlack {
			inStep = false // at or past the frame limit: the SDK's to take or refuse
		}
		if len(line) > 0 {
			switch {
			case !inStep || err != nil: // a last line without its newline
			case c.serve(line):
				continue
			default:
				inStep = complete(line)
			}
			if _, werr := c.pw.Write(line); werr != nil {
				return // the SDK session has ended
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			c.wg.Wait() // answer what is in flight before the SDK sees the end
			c.pw.CloseWithError(err)
			return
		}
	}
}

// complete reports whether line, handed to the SDK, leaves its decoder at
// the start of the next line: it is blank, or one JSON value and its
// newline.
func complete(line []byte) bool {
	if len(bytes.TrimSpace(line)) == 0 {
		return true
	}
	body, ok := lineBody(line)
	return ok && json.Valid(body)
}

// lineBody returns line without its newline (and carriage return), and
// whether it is shaped as one JSON object the SDK reads as a whole frame:
// the SDK refuses anything but a newline right after a frame.
func lineBody(line []byte) ([]byte, bool) {
	body := bytes.TrimSuffix(line, []byte("\n"))
	body = bytes.TrimSuffix(body, []byte("\r"))
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	return body, len(trimmed) > 1 && trimmed[0] == '{' && body[len(body)-1] == '}'
}

// serve answers line on the lean path, or reports false, having done
// nothing, for the SDK session to have it.
func (c *stdioConn) serve(line []byte) bool {
	body, ok := lineBody(line)
	if !ok {
		return false
	}
	switch {
	case bytes.Contains(body, []byte(`"notifications/cancelled"`)) && c.cancel(body):
		return false // the SDK's too: it may name one of its requests
	case !bytes.Contains(body, []byte(`"method"`)):
		return false // an answer to the SDK's request, or not a request
	}
	msg, ok := decodeMessage(bytes.Clone(body)) // the line's buffer is read again
	if !ok {
		return false
	}
	switch msg.Method {
	case "ping":
		if !sessionEligible(msg) {
			return false
		}
		c.send(msg, struct{}{})
		return true
	case "tools/call", "tools/list", "resources/list", "resources/templates/list", "prompts/list", "resources/read", "prompts/get":
	default:
		return false
	}
	st := c.session()
	if st == nil || !sessionEligible(msg) {
		return false
	}
	id := string(msg.ID)
	ctx, cancel := context.WithCancel(c.ctx)
	call := &stdioCall{c: c, id: id, cancel: cancel}
	c.mu.Lock()
	if c.ended || c.calls[id] != nil {
		c.mu.Unlock()
		cancel()
		return false // an id in use, or the session over: the SDK's
	}
	c.calls[id] = call
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		defer cancel()
		defer call.done()
		// Stdio has no HTTP request: this one carries the call's context
		// and nothing else (no headers, no session id, no address), as the
		// SDK's stdio session has none.
		r := (&http.Request{Method: http.MethodPost}).WithContext(ctx)
		if c.s.serveSessionReply(&reply{line: call, id: msg.ID, session: st}, r, msg) {
			return
		}
		if ctx.Err() == nil {
			c.pw.Write(append(msg.body, '\n')) // the SDK's after all; a cancelled one is no one's
		}
	}()
	return true
}

// stdioCall is a lean request in flight, and where its answer goes.
type stdioCall struct {
	c      *stdioConn
	id     string
	cancel context.CancelFunc
}

// Write writes the request's answer line. Its id is free again from
// then: a client may reuse it for its next request as soon as it has the
// answer, and that request is the lean path's too.
func (call *stdioCall) Write(p []byte) (int, error) {
	call.done()
	return call.c.Write(p)
}

// done takes the request out of those in flight, if it is still there
// (not already answered, its id not taken by a request since).
func (call *stdioCall) done() {
	c := call.c
	c.mu.Lock()
	if c.calls[call.id] == call {
		delete(c.calls, call.id)
	}
	c.mu.Unlock()
}

// send writes a lean answer line.
func (c *stdioConn) send(msg *message, res any) {
	writeLine(c, msg.ID, res, nil)
}

// session returns the state of the client's session once the SDK session
// has accepted its initialize, or nil before.
func (c *stdioConn) session() *sessionState {
	p := c.sess.InitializeParams()
	if p == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.init != p {
		st := &sessionState{Version: negotiate(p.ProtocolVersion, c.s.versions), Requested: p.ProtocolVersion}
		if p.Capabilities != nil {
			st.Caps, _ = json.Marshal(p.Capabilities)
		}
		if p.ClientInfo != nil {
			st.Client, _ = json.Marshal(p.ClientInfo)
		}
		st.prepare("")
		c.init, c.st = p, st
	}
	return c.st
}

// cancel cancels the lean request a notifications/cancelled names, if
// body is one, and reports whether it is.
func (c *stdioConn) cancel(body []byte) bool {
	var n struct {
		Method string `json:"method"`
		Params struct {
			RequestID json.RawMessage `json:"requestId"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &n) != nil || n.Method != "notifications/cancelled" {
		return false
	}
	c.mu.Lock()
	call := c.calls[string(n.Params.RequestID)]
	c.mu.Unlock()
	if call != nil {
		call.cancel()
	}
	return true
}
