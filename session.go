package warden

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/seal"
	"github.com/wardenmcp/warden/pipeline"
)

// Sessions that survive a hop. A 2025-11-25 session id is the session's
// state itself, sealed (AES-256-GCM) with a key every instance shares: the
// negotiated protocol version, what the client said of itself at
// initialize, who opened it and until when it lives. Any instance opens it
// and serves the session without asking another or a store, and none
// trusts it blindly: an id that was altered does not open, and one
// presented with another credential than the one that opened it is
// refused.
//
// The requests that make up a session's load (calls, lists, reads,
// prompts, ping, the initialized notification, DELETE) are answered on the
// lean path, with JSON responses. What needs the protocol SDK — initialize
// itself, a target that talks back to the client while it runs, a GET
// stream — is served by an SDK session of this instance's, made from the
// sealed state on first need: so it works on whichever instance the
// request lands. A request the server sent in the middle of a call waits
// on the instance that sent it: the client's answer, if it lands on
// another, goes there through the SessionRelay, or is refused at once
// (409) rather than lost.

// sessionPrefix starts every sealed session id, naming the sealing scheme.
const sessionPrefix = "w1."

// DefaultSessionMaxAge is how long a session lives from its initialize
// when no maximum age is configured.
const DefaultSessionMaxAge = 24 * time.Hour

// maxSessionInfo caps what a client's initialize may ask the session id to
// carry (its capabilities and identity): the id travels in every request's
// headers.
const maxSessionInfo = 4 << 10

// sessionPurpose derives the key that seals session ids from a server
// secret (the audit secret, which every instance of one server shares).
const sessionPurpose = "warden session id key v1"

// sessionState is what a session id carries.
type sessionState struct {
	Version   string          `json:"v"`            // negotiated protocol version
	Requested string          `json:"rv"`           // the version the client asked for
	Caps      json.RawMessage `json:"cc,omitempty"` // client capabilities, as sent
	Client    json.RawMessage `json:"ci,omitempty"` // client identity, as sent
	Owner     string          `json:"o"`            // sessionOwner of who opened it; "" for nobody
	Expires   int64           `json:"exp"`          // Unix seconds
	Nonce     string          `json:"n"`            // makes every id unique

	// What every lean call of the session takes from the state, worked out
	// once (prepare) rather than per call.
	ref                       string // sessionRef of the id; "" over stdio
	clientName, clientVersion string
	canElicit                 bool
}

// prepare works out what the session's calls take from st, for the
// session id id ("" over stdio, where there is none).
func (st *sessionState) prepare(id string) {
	st.ref = sessionRef(id)
	var ci struct{ Name, Version string }
	if json.Unmarshal(st.Client, &ci) == nil {
		st.clientName, st.clientVersion = ci.Name, ci.Version
	}
	var caps struct {
		Elicitation json.RawMessage `json:"elicitation"`
	}
	st.canElicit = json.Unmarshal(st.Caps, &caps) == nil && len(caps.Elicitation) > 0 && string(caps.Elicitation) != "null"
}

// maxOpened bounds how many opened session ids an instance remembers, so
// that each is opened (decrypted, decoded) once rather than per request.
const maxOpened = 4096

// A SessionRelay carries a client's answer to a request one instance sent
// (an elicitation in the middle of a call) to that instance, when the
// answer reaches another. internal/relay has one over Redis.
type SessionRelay interface {
	// Listen calls deliver with every message published for key, until
	// stop is called.
	Listen(key string, deliver func(msg []byte)) (stop func(), err error)
	// Publish sends msg to the listener of key and reports whether there
	// was one.
	Publish(ctx context.Context, key string, msg []byte) (bool, error)
}

// sessions serves the 2025-11-25 sessions of one HTTP handler.
type sessions struct {
	srv    *Server
	relay  SessionRelay // nil: answers are taken only where they were asked
	box    *seal.Box
	maxAge time.Duration
	idle   time.Duration
	now    func() time.Time

	// events keeps what the SDK sessions of this instance sent on their
	// streams, so that a client whose stream was closed mid-call (the
	// server may close it, SEP-1699, or the network may) resumes it with
	// Last-Event-ID instead of losing the call's answer.
	events *mcp.MemoryEventStore

	mu    sync.Mutex
	local map[string]*localSession // SDK sessions of this instance, by id

	// opened holds the state of ids opened here, by id: an id that opened
	// once is one this server sealed, and its state never changes. It is
	// emptied when it reaches maxOpened.
	opened  sync.Map // string → *sessionState
	nOpened atomic.Int64
}

// resumeBuffer bounds the events an instance keeps for resumption, over
// all its sessions; the oldest streams' go first. A stream is resumable
// only on the instance that sent it.
const resumeBuffer = 4 << 20

// localSession is an SDK session this instance holds for a session id.
type localSession struct {
	transport *mcp.StreamableServerTransport
	session   *mcp.ServerSession
	active    int         // requests being served; the idle timer waits for none
	waiting   int         // requests the server sent and awaits answers to
	timer     *time.Timer // closes the session once idle
	unlisten  func()      // ends the relay's delivery of answers, while waiting
}

func newSessions(srv *Server, key []byte, maxAge, idle time.Duration, relay SessionRelay) *sessions {
	if len(key) == 0 {
		// Without a shared key, ids open on this instance only.
		key = make([]byte, 32)
		rand.Read(key)
	}
	ss := &sessions{srv: srv, box: seal.New(key, sessionPurpose), relay: relay, maxAge: maxAge, idle: idle, now: time.Now, local: map[string]*localSession{}}
	ss.events = mcp.NewMemoryEventStore(nil)
	ss.events.SetMaxBytes(resumeBuffer)
	srv.mcp.AddSendingMiddleware(ss.countWaiting)
	return ss
}

func (ss *sessions) seal(st *sessionState) (string, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return "", err
	}
	return sessionPrefix + ss.box.Seal(b), nil
}

// open returns the state an id carries, or false if it is not an id this
// server sealed. An id has one spelling (the audit log names it by a
// digest of that spelling).
func (ss *sessions) open(id string) (*sessionState, bool) {
	if st, ok := ss.opened.Load(id); ok {
		return st.(*sessionState), true
	}
	st, ok := ss.unseal(id)
	if !ok {
		return nil, false
	}
	if ss.nOpened.Add(1) > maxOpened {
		ss.opened.Clear()
		ss.nOpened.Store(1)
	}
	ss.opened.Store(id, st)
	return st, true
}

// unseal returns the state id carries, or false if it is not an id this
// server sealed.
func (ss *sessions) unseal(id string) (*sessionState, bool) {
	raw, ok := strings.CutPrefix(id, sessionPrefix)
	if !ok {
		return nil, false
	}
	plain, ok := ss.box.Open(raw)
	if !ok {
		return nil, false
	}
	st := new(sessionState)
	if json.Unmarshal(plain, st) != nil {
		return nil, false
	}
	st.prepare(id)
	return st, true
}

// owner is who a request is made by, as sessions are bound to it.
func owner(r *http.Request) string {
	if p := pipeline.PrincipalFrom(r.Context()); p != nil {
		return sessionOwner(p)
	}
	return ""
}

// ownedBy reports whether st is the session of who makes r: owner(r),
// spelled out on the stack.
func ownedBy(st *sessionState, r *http.Request) bool {
	p := pipeline.PrincipalFrom(r.Context())
	if p == nil {
		return st.Owner == ""
	}
	var buf [128]byte
	return string(appendOwner(buf[:0], p)) == st.Owner
}

// serve answers r if it belongs to a sealed session (or opens one), and
// reports whether it did; otherwise the SDK's session handler answers it,
// as before sessions were sealed.
func (ss *sessions) serve(w http.ResponseWriter, r *http.Request) bool {
	h := r.Header
	if v := header(h, hProtocolVersion); v != "" && !slices.Contains(ss.srv.versions, v) {
		return false // the SDK refuses it
	}
	msg, _ := r.Context().Value(messageKey{}).(*message)
	id := header(h, hSessionID)
	if id == "" {
		if r.Method != http.MethodPost || msg == nil || msg.Method != "initialize" || !acceptsBoth(h[hAccept]) {
			return false
		}
		return ss.initialize(w, r, msg)
	}
	if !strings.HasPrefix(id, sessionPrefix) {
		return false // not sealed: the SDK's own, or nobody's
	}
	st, ok := ss.open(id)
	refuse := func(status int, why string) bool {
		ss.srv.refused(r, status, why)
		reject(w, status, why)
		return true
	}
	switch {
	case !ok:
		return refuse(http.StatusNotFound, "session not found: the session id was not issued by this server or was altered; initialize a new session")
	case !ownedBy(st, r):
		return refuse(http.StatusForbidden, "session user mismatch: this session was opened with another credential")
	case !ss.now().Before(time.Unix(st.Expires, 0)):
		return refuse(http.StatusNotFound, "session not found: the session has expired; initialize a new session")
	}
	switch r.Method {
	case http.MethodDelete:
		ss.close(id)
		w.WriteHeader(http.StatusNoContent)
		return true
	case http.MethodGet:
		if !acceptsStream(h[hAccept]) {
			return false // the SDK refuses it
		}
		return ss.viaSDK(w, r, id, st)
	case http.MethodPost:
	default:
		return false // the SDK answers 405
	}
	if msg == nil || !acceptsBoth(h[hAccept]) {
		return false // the SDK refuses it
	}
	if ss.refusedBySDK(w, r, msg) {
		return true
	}
	switch msg.Method {
	case "":
		return ss.answer(w, r, id, st, msg)
	case "notifications/initialized":
		w.WriteHeader(http.StatusAccepted)
		return true
	case "ping":
		if msg.JSONRPC == "2.0" && plainID(msg.ID) {
			writeLean(w, http.StatusOK, msg.ID, struct{}{}, nil)
			return true
		}
	case "tools/call", "tools/list", "resources/list", "resources/templates/list", "prompts/list", "resources/read", "prompts/get":
		if ss.srv.serveSessionLean(w, r, msg, st) {
			return true
		}
	}
	return ss.viaSDK(w, r, id, st)
}

// initialize opens a session: its id is sealed here, and an SDK session of
// this instance answers the initialize itself.
func (ss *sessions) initialize(w http.ResponseWriter, r *http.Request, msg *message) bool {
	p := &msg.Params
	if len(p.Capabilities)+len(p.ClientInfo) > maxSessionInfo {
		ss.srv.refused(r, http.StatusBadRequest, "initialize params too large")
		writeLean(w, http.StatusBadRequest, msg.ID, nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams,
			Message: "the client's capabilities and identity are larger than this server keeps in a session (4 KiB)"})
		return true
	}
	st := &sessionState{
		Version:   negotiate(p.ProtocolVersion, ss.srv.versions),
		Requested: p.ProtocolVersion,
		Caps:      p.Capabilities,
		Client:    p.ClientInfo,
		Owner:     owner(r),
		Expires:   ss.now().Add(ss.maxAge).Unix(),
		Nonce:     rand.Text(),
	}
	id, err := ss.seal(st)
	if err != nil {
		return false
	}
	ls, err := ss.connect(id, nil)
	if err != nil {
		ss.srv.log.Error("session not opened", "err", err)
		reject(w, http.StatusInternalServerError, "the session could not be opened")
		return true
	}
	ss.run(id, ls, w, r)
	return true
}

// viaSDK serves r through this instance's SDK session of id, made from its
// sealed state if this instance has none yet.
func (ss *sessions) viaSDK(w http.ResponseWriter, r *http.Request, id string, st *sessionState) bool {
	ss.mu.Lock()
	ls := ss.local[id]
	ss.mu.Unlock()
	if ls == nil {
		var err error
		if ls, err = ss.connect(id, st); err != nil {
			ss.srv.log.Error("session not resumed", "err", err)
			reject(w, http.StatusInternalServerError, "the session could not be resumed on this instance")
			return true
		}
	}
	ss.run(id, ls, w, r)
	return true
}

// answer delivers a client's answer to a request the server sent (an
// elicitation, a sampling request) to the SDK session waiting for it. An
// answer this instance is not waiting for was asked by another instance:
// the relay, if any, carries it there; without one, or with no instance
// waiting, it is refused at once.
func (ss *sessions) answer(w http.ResponseWriter, r *http.Request, id string, st *sessionState, msg *message) bool {
	ss.mu.Lock()
	ls := ss.local[id]
	waiting := ls != nil && ls.waiting > 0
	ss.mu.Unlock()
	if waiting || len(msg.ID) == 0 {
		return ss.viaSDK(w, r, id, st) // the SDK refuses what is not an answer
	}
	why := "this answers a request that another instance of the server sent, and only that instance can take it (no session relay is configured); the call waiting for it ends at its timeout"
	if ss.relay != nil {
		delivered, err := ss.relay.Publish(r.Context(), relayKey(id), msg.body)
		switch {
		case err != nil:
			ss.srv.log.Error("session relay: answer not relayed", "err", err)
			w.Header().Set("Retry-After", "1")
			reject(w, http.StatusServiceUnavailable, "the answer could not be relayed to the instance waiting for it; retry")
			return true
		case delivered:
			w.WriteHeader(http.StatusAccepted)
			return true
		}
		why = "no instance of the server is waiting for this answer: the call that asked has ended"
	}
	ss.srv.refused(r, http.StatusConflict, why)
	reject(w, http.StatusConflict, why)
	return true
}

// relayKey is the relay key of a session's answers.
func relayKey(id string) string { return "session:" + sessionRef(id) }

// deliver hands an answer the relay carried here to the SDK session of
// id, as if its client had posted it here.
func (ss *sessions) deliver(id string, body []byte) {
	ss.mu.Lock()
	ls := ss.local[id]
	ss.mu.Unlock()
	if ls == nil {
		return
	}
	r, err := http.NewRequest(http.MethodPost, "/mcp", bytes.NewReader(body))
	if err != nil {
		return
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json, text/event-stream")
	r.Header.Set("Mcp-Session-Id", id)
	ls.transport.ServeHTTP(discard{header: http.Header{}}, r)
}

// discard is a response nobody reads: the relayed answer's, whose client
// was answered by the instance that relayed it.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

// refusedBySDK answers, as the SDK's session handler would, the session
// requests it refuses for their protocol version before they reach a
// session: it knows the request's version from the header, and an SDK
// session served directly does not.
func (ss *sessions) refusedBySDK(w http.ResponseWriter, r *http.Request, msg *message) bool {
	v := header(r.Header, hProtocolVersion)
	if v == "" {
		v = "2025-03-26" // what the SDK assumes of a request that does not say
	}
	if b := bytes.TrimLeft(msg.body, " \t\r\n"); len(b) > 0 && b[0] == '[' && v >= "2025-06-18" {
		http.Error(w, "JSON-RPC batching is not supported in 2025-06-18 and later (request version: "+v+")", http.StatusBadRequest)
		return true
	}
	if mv, _ := msg.Params.Meta[metaProtocolVersion].(string); mv != "" && msg.Method != "" && msg.Method != "server/discover" {
		data, _ := json.Marshal(mcp.UnsupportedProtocolVersionData{
			Supported: slices.DeleteFunc(slices.Clone(ss.srv.versions), func(x string) bool { return x >= firstStatelessVersion }),
			Requested: v,
		})
		writeLean(w, http.StatusBadRequest, msg.ID, nil, &jsonrpc.Error{Code: mcp.CodeUnsupportedProtocolVersion,
			Message: "protocol version " + strconv.Quote(v) + " is not supported by this server", Data: data})
		return true
	}
	return false
}

// connect makes an SDK session for id: a new one, which the initialize
// request sets up, if st is nil, or else one already initialized with st.
func (ss *sessions) connect(id string, st *sessionState) (*localSession, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ls := ss.local[id]; ls != nil {
		return ls, nil
	}
	var opts *mcp.ServerSessionOptions
	if st != nil {
		params := &mcp.InitializeParams{ProtocolVersion: st.Requested}
		if len(st.Caps) > 0 {
			json.Unmarshal(st.Caps, &params.Capabilities) // as the SDK decoded them at initialize
		}
		if len(st.Client) > 0 {
			json.Unmarshal(st.Client, &params.ClientInfo)
		}
		opts = &mcp.ServerSessionOptions{State: &mcp.ServerSessionState{
			InitializeParams:          params,
			InitializedParams:         &mcp.InitializedParams{},
			NegotiatedProtocolVersion: st.Version,
			LogLevel:                  "info",
		}}
	}
	t := &mcp.StreamableServerTransport{SessionID: id, EventStore: ss.events}
	sess, err := ss.srv.mcp.Connect(context.Background(), t, opts)
	if err != nil {
		return nil, err
	}
	ls := &localSession{transport: t, session: sess}
	ls.timer = time.AfterFunc(ss.idle, func() { ss.expire(id, ls) })
	ss.local[id] = ls
	return ls, nil
}

// run serves r on ls, holding its idle timer while it does.
func (ss *sessions) run(id string, ls *localSession, w http.ResponseWriter, r *http.Request) {
	ss.mu.Lock()
	ls.active++
	ls.timer.Stop()
	ss.mu.Unlock()
	defer func() {
		ss.mu.Lock()
		if ls.active--; ls.active == 0 && ss.local[id] == ls {
			ls.timer.Reset(ss.idle)
		}
		ss.mu.Unlock()
	}()
	ls.transport.ServeHTTP(w, withSDKVersion(r))
	if sess := ls.session; sess.InitializeParams() == nil {
		ss.drop(id, ls) // initialize failed: nothing to keep
	}
}

// expire closes ls if it is still idle when its timer fires.
func (ss *sessions) expire(id string, ls *localSession) {
	ss.mu.Lock()
	idle := ls.active == 0
	ss.mu.Unlock()
	if idle {
		ss.drop(id, ls)
	}
}

func (ss *sessions) drop(id string, ls *localSession) {
	ss.mu.Lock()
	if ss.local[id] == ls {
		delete(ss.local, id)
	}
	ss.mu.Unlock()
	ls.timer.Stop()
	ls.session.Close()
}

// close ends this instance's SDK session of id, if any.
func (ss *sessions) close(id string) {
	ss.mu.Lock()
	ls := ss.local[id]
	ss.mu.Unlock()
	if ls != nil {
		ss.drop(id, ls)
	}
}

// countWaiting counts, per session, the requests the server sent and
// awaits answers to, so that an answer can be told from one this instance
// never asked for.
func (ss *sessions) countWaiting(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		sess, _ := req.GetSession().(*mcp.ServerSession)
		if sess == nil || strings.HasPrefix(method, "notifications/") {
			return next(ctx, method, req)
		}
		id := sess.ID()
		ss.mu.Lock()
		ls := ss.local[id]
		first := false
		if ls != nil {
			ls.waiting++
			first = ls.waiting == 1
		}
		ss.mu.Unlock()
		if ls == nil {
			return next(ctx, method, req)
		}
		if first && ss.relay != nil {
			// Listen before the request goes out, so that an answer relayed
			// from another instance finds this one listening.
			stop, err := ss.relay.Listen(relayKey(id), func(b []byte) { ss.deliver(id, b) })
			if err != nil {
				ss.srv.log.Warn("session relay: not listening; an answer that reaches another instance is refused", "err", err)
			}
			ss.mu.Lock()
			ls.unlisten = stop
			ss.mu.Unlock()
		}
		defer func() {
			ss.mu.Lock()
			var stop func()
			if ls.waiting--; ls.waiting == 0 {
				stop, ls.unlisten = ls.unlisten, nil
			}
			ss.mu.Unlock()
			if stop != nil {
				stop()
			}
		}()
		return next(ctx, method, req)
	}
}

// sessionRef is how a session is named in the audit log and on a call: a
// sealed id by a digest of it (the id itself is a credential's companion,
// and long), any other as it is.
func sessionRef(id string) string {
	if !strings.HasPrefix(id, sessionPrefix) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "s-" + hex.EncodeToString(sum[:12])
}

// negotiate picks a session's protocol version as the SDK does: the
// client's, if supported and older than the stateless protocol, or else
// the newest such version supported.
func negotiate(client string, supported []string) string {
	if slices.Contains(supported, client) && client < firstStatelessVersion {
		return client
	}
	for _, v := range supported {
		if v < firstStatelessVersion {
			return v
		}
	}
	return "2025-11-25"
}

// acceptsBoth reports whether a client accepts both a JSON response and an
// event stream, as the protocol requires of every POST.
func acceptsBoth(values []string) bool {
	json, stream := accepts(values)
	return json && stream
}

// acceptsStream reports whether a client accepts an event stream, as the
// protocol requires of a GET.
func acceptsStream(values []string) bool {
	_, stream := accepts(values)
	return stream
}

// accepts reports whether Accept values admit a JSON response and an
// event stream, as the SDK reads them.
func accepts(values []string) (json, stream bool) {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case "application/json", "application/*":
				json = true
			case "text/event-stream", "text/*":
				stream = true
			case "*/*":
				json, stream = true, true
			}
		}
	}
	return json, stream
}

// withSDKVersion returns r carrying its protocol version header in the
// form the SDK's transport reads it. The SDK's own handler puts it in the
// request's context before it hands a request to a session's transport,
// under a key of its own; sealed sessions hand requests to the transport
// directly, and without it the transport takes every request for the
// oldest protocol: it would not prime its streams with an event id
// (2025-11-25, SEP-1699), so a stream closed in the middle of a call could
// not be resumed.
func withSDKVersion(r *http.Request) *http.Request {
	v := header(r.Header, hProtocolVersion)
	if v == "" {
		return r
	}
	carrier, ok := sdkVersions.Load(v)
	if !ok {
		c := sdkVersionContext(v)
		if c == nil {
			return r
		}
		carrier, _ = sdkVersions.LoadOrStore(v, c)
	}
	return r.WithContext(versionContext{Context: r.Context(), carrier: carrier.(context.Context)})
}

// sdkVersions holds, by protocol version, a context that carries only it,
// as the SDK's handler sets it.
var sdkVersions sync.Map

// sdkVersionContext asks the SDK's handler for a context that carries
// version v: it sets it on a request before it asks for the server to
// serve it, which is where it is caught. Nil if the SDK does not accept v.
func sdkVersionContext(v string) context.Context {
	var caught context.Context
	h := mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
		caught = r.Context()
		return nil // nothing is served
	}, &mcp.StreamableHTTPOptions{Stateless: true})
	r, _ := http.NewRequest(http.MethodPost, "/", strings.NewReader("{}"))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json, text/event-stream")
	r.Header.Set("Mcp-Protocol-Version", v)
	h.ServeHTTP(discard{header: http.Header{}}, r)
	if caught == nil || caught == r.Context() {
		return nil
	}
	return caught
}

// versionContext is a request's context that also carries what the
// carrier does (the protocol version, under the SDK's key); the request's
// own values come first.
type versionContext struct {
	context.Context
	carrier context.Context
}

func (c versionContext) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.carrier.Value(key)
}
