package upstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/config"
)

// notes keeps the order between an HTTP upstream's answer to a call and
// the notifications it sent ahead of it on the same connection. The go-sdk
// client hands a call its answer at once, but runs notification handlers
// in a queue of their own: without waiting, a call's last progress or log
// message could find the call over and be dropped. So the connection's
// event streams are read as they arrive and the relayed notifications
// counted (seen), their handlers count what they finished (handled), and
// a call that has its answer waits until handled catches up with what was
// seen by then.
type notes struct {
	methods []string // the notifications counted: those with a handler

	mu      sync.Mutex
	seen    uint64
	handled uint64
	changed chan struct{} // closed, and replaced, when handled grows
}

func newNotes(logging bool) *notes {
	n := &notes{methods: []string{"notifications/progress"}, changed: make(chan struct{})}
	if logging {
		n.methods = append(n.methods, "notifications/message")
	}
	return n
}

// saw counts one notification read off a stream.
func (n *notes) saw() {
	n.mu.Lock()
	n.seen++
	n.mu.Unlock()
}

// done counts one notification whose handler has finished.
func (n *notes) done() {
	n.mu.Lock()
	n.handled++
	close(n.changed)
	n.changed = make(chan struct{})
	n.mu.Unlock()
}

// settle waits until every notification seen so far has been handled, or
// ctx is done.
func (n *notes) settle(ctx context.Context) {
	if n == nil {
		return
	}
	n.mu.Lock()
	target := n.seen
	for n.handled < target {
		ch := n.changed
		n.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
		n.mu.Lock()
	}
	n.mu.Unlock()
}

// watch wraps an event stream's body so that the notifications it carries
// are seen as they are read, before the client reads what follows them.
func (n *notes) watch(resp *http.Response) {
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return
	}
	pr, pw := io.Pipe()
	body := resp.Body
	resp.Body = &watched{PipeReader: pr, body: body}
	go func() {
		r := bufio.NewReader(body)
		for {
			line, err := r.ReadSlice('\n')
			if len(line) > 0 {
				if data, ok := bytes.CutPrefix(line, []byte("data:")); ok && n.counts(data) {
					n.saw()
				}
				if _, werr := pw.Write(line); werr != nil {
					body.Close()
					return
				}
			}
			if err == bufio.ErrBufferFull {
				// A line longer than the buffer: pass it on in pieces; a
				// notification is never that long.
				for err == bufio.ErrBufferFull {
					line, err = r.ReadSlice('\n')
					if _, werr := pw.Write(line); werr != nil {
						body.Close()
						return
					}
				}
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
}

// counts reports whether an event's data is a notification counted.
func (n *notes) counts(data []byte) bool {
	if !bytes.Contains(data, []byte("notifications/")) {
		return false
	}
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	if json.Unmarshal(data, &msg) != nil || msg.ID != nil {
		return false
	}
	for _, m := range n.methods {
		if msg.Method == m {
			return true
		}
	}
	return false
}

// watched is a watched body: reading it reads the pipe, closing it closes
// the upstream's body too.
type watched struct {
	*io.PipeReader
	body io.Closer
}

func (w *watched) Close() error {
	w.PipeReader.Close()
	return w.body.Close()
}

// track registers the notes of the HTTP session sess, with what its
// handlers finished before it was registered; untrack forgets them.
func (u *Upstream) track(sess *mcp.ClientSession, n *notes) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.notes[sess] = n
	for range u.early[sess] {
		n.done()
	}
	delete(u.early, sess)
}

func (u *Upstream) untrack(sess *mcp.ClientSession) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.notes, sess)
	delete(u.early, sess)
}

// noted counts a notification of sess as handled: on its notes, or, if
// it came while the session was being opened, for its notes to come. A
// stdio session has none, and is counted nowhere.
func (u *Upstream) noted(sess *mcp.ClientSession) {
	if u.cfg.Transport == config.TransportStdio {
		return
	}
	u.mu.Lock()
	n := u.notes[sess]
	if n == nil {
		u.early[sess]++
	}
	u.mu.Unlock()
	if n != nil {
		n.done()
	}
}
