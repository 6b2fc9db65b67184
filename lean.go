package warden

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	segjson "github.com/segmentio/encoding/json"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/pipeline"
)

// The lean path answers the requests that make up the load — a stateless
// 2026-07-28 tools/call, resources/read, prompts/get, the four lists and
// server/discover, and the same requests (but discover) of a sealed
// 2025-11-25 session (session.go) or of a stdio session (stdio.go) —
// without the protocol SDK: the body the transport
// guard decoded once is checked as strictly as the SDK checks it, the call
// is built and run through the same chain, and the result is written once,
// as a JSON response. Anything else, and anything the lean path is not sure
// of (a header it does not know, an unusual id, a target that asked for
// the SDK), goes to the SDK, which answers — or refuses — as before. So the
// lean path adds no way in: every refusal the protocol defines stays the
// SDK's, and the lean path only ever serves requests the SDK would serve
// the same way.

// message is Warden's view of a JSON-RPC message, decoded once by the
// transport guard, with the strictness of the protocol SDK: keys match
// case-sensitively, so a key spelled in other case is not the key.
type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  struct {
		Name           string                     `json:"name"`
		Arguments      json.RawMessage            `json:"arguments"`
		Meta           map[string]any             `json:"_meta"`
		RequestState   string                     `json:"requestState"`
		InputResponses map[string]json.RawMessage `json:"inputResponses"`
		Cursor         string                     `json:"cursor"`
		URI            string                     `json:"uri"`
		// initialize's
		ProtocolVersion string          `json:"protocolVersion"`
		Capabilities    json.RawMessage `json:"capabilities"`
		ClientInfo      json.RawMessage `json:"clientInfo"`
	} `json:"params"`

	body []byte // as received
}

type messageKey struct{}

// decodeMessage decodes body once. It reports false for a body that is not
// JSON; a body that is JSON but not a message Warden can read (a batch, a
// scalar, a field of the wrong type) yields an empty message, for the
// protocol layer to answer.
func decodeMessage(body []byte) (*message, bool) {
	msg := &message{body: body}
	// Made here: the decoder makes a map it is not given with room for 64
	// entries, some 5 KiB for the few keys of a request's _meta.
	msg.Params.Meta = map[string]any{}
	rest, err := segjson.Parse(body, msg, segjson.DontMatchCaseInsensitiveStructFields)
	if len(msg.Params.Meta) == 0 {
		msg.Params.Meta = nil // as decoded without it
	}
	if err == nil && len(bytes.TrimSpace(rest)) == 0 {
		return msg, true
	}
	if !json.Valid(body) {
		return nil, false
	}
	return &message{body: body}, true
}

// Keys of a 2026-07-28 request's _meta.
const (
	metaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	metaClientInfo         = "io.modelcontextprotocol/clientInfo"
	metaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	metaServerInfo         = "io.modelcontextprotocol/serverInfo"
)

// maxDepth is the nesting the SDK accepts; deeper bodies go to the SDK,
// which refuses them.
const maxDepth = 1000

// serveLean answers r on the lean path and reports true, or reports false,
// having written nothing, for the SDK to answer r.
func (s *Server) serveLean(w http.ResponseWriter, r *http.Request) bool {
	msg, _ := r.Context().Value(messageKey{}).(*message)
	if msg == nil || !s.leanEligible(r, msg) {
		return false
	}
	rp := &reply{w: w, id: msg.ID}
	switch msg.Method {
	case "tools/list", "resources/list", "resources/templates/list", "prompts/list":
		return s.leanList(rp, r, msg)
	case "resources/read":
		return s.leanRead(rp, r, msg)
	case "prompts/get":
		return s.leanPrompt(rp, r, msg)
	case "server/discover":
		return s.leanDiscoverResult(rp)
	}
	return s.leanTool(rp, r, msg)
}

// serveSessionLean answers r, a request of the 2025-11-25 session whose
// state is st, on the lean path and reports true, or reports false, having
// written nothing, for the session's SDK session to answer r.
func (s *Server) serveSessionLean(w http.ResponseWriter, r *http.Request, msg *message, st *sessionState) bool {
	if !sessionEligible(msg) {
		return false
	}
	return s.serveSessionReply(&reply{w: w, id: msg.ID, session: st}, r, msg)
}

// serveSessionReply answers msg, an eligible request of the 2025-11-25
// session rp.session, to rp: over HTTP or over stdio (stdio.go).
func (s *Server) serveSessionReply(rp *reply, r *http.Request, msg *message) bool {
	switch msg.Method {
	case "tools/list", "resources/list", "resources/templates/list", "prompts/list":
		return s.leanList(rp, r, msg)
	case "resources/read":
		return s.leanRead(rp, r, msg)
	case "prompts/get":
		return s.leanPrompt(rp, r, msg)
	}
	return s.leanTool(rp, r, msg)
}

// sessionEligible reports whether msg, a request of a 2025-11-25 session,
// is one the lean path serves exactly as the SDK would.
func sessionEligible(msg *message) bool {
	if msg.JSONRPC != "2.0" || !plainID(msg.ID) {
		return false
	}
	p := &msg.Params
	switch msg.Method {
	case "tools/call":
		if p.Name == "" || p.URI != "" {
			return false
		}
	case "prompts/get":
		if p.Name == "" || p.URI != "" || !stringArgs(p.Arguments) {
			return false
		}
	case "resources/read":
		if p.URI == "" || p.Name != "" || len(p.Arguments) > 0 {
			return false
		}
	default:
		if p.Name != "" || p.URI != "" || len(p.Arguments) > 0 || p.Cursor != "" {
			return false
		}
	}
	if _, ok := p.Meta[metaProtocolVersion]; ok {
		return false // the SDK refuses the stateless protocol's _meta in a session
	}
	if a := p.Arguments; len(a) > 0 && a[0] != '{' && !bytes.Equal(a, []byte("null")) {
		return false
	}
	return utf8.Valid(msg.body) && depthWithin(msg.body, maxDepth)
}

// leanTool answers a tools/call.
func (s *Server) leanTool(rp *reply, r *http.Request, msg *message) bool {
	e := s.lookup("tool:" + msg.Params.Name)
	if e == nil {
		return false
	}
	if rp.session == nil && e.mirrorsHeaders {
		return false
	}
	if rp.session != nil && e.spec().Gate != nil {
		return false // a confirmation on a session is an elicitation round trip: the SDK's
	}
	ctx := r.Context()
	c := s.leanCallOf(r, msg, e, msg.Params.Name, rp.session)
	if c == nil {
		return false
	}
	c.Raw = msg.Params.Arguments
	res, err := e.handler(ctx, c)
	if err == nil && res != nil && res.Tool != nil && res.Tool.InputRequests != nil && rp.session != nil {
		// A 2025-11-25 client is asked in a round trip the SDK makes.
		return false
	}
	var werr *jsonrpc.Error
	switch {
	case errors.As(err, &werr) && err == error(werr):
		// The handler's deliberate protocol-level answer, as on the SDK path.
		rp.send(nil, werr)
		return true
	case err != nil:
		rp.send(rp.tool(s, s.errorResult(c, err)), nil)
		return true
	case res == nil || res.Tool == nil:
		s.log.Error("tool handler returned no result", "tool", c.Target, "trace_id", c.TraceID)
		rp.send(rp.tool(s, s.errorResult(c, errors.New("no result"))), nil)
		return true
	}
	t := res.Tool
	if t.InputRequests != nil && len(t.Content) > 0 {
		s.log.Warn("handler returned both content and inputRequests", "tool", c.Target, "trace_id", c.TraceID)
		rp.send(nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "server bug: result has both content and inputRequests"})
		return true
	}
	if err := checkContent(t); err != nil {
		rp.send(rp.tool(s, s.errorResult(c, err)), nil)
		return true
	}
	if rp.session != nil {
		rp.send(&leanResult{tool: t}, nil)
		return true
	}
	out := s.stamp(t)
	if t.InputRequests != nil {
		// Rare, and shaped by the protocol's own types: the SDK's encoding
		// of them is the one clients check against the schema.
		reqs, err := inputRequests(t.InputRequests)
		if err == nil {
			out.inputRequests, err = json.Marshal(reqs)
		}
		if err != nil {
			rp.send(s.stamp(s.errorResult(c, fmt.Errorf("tool %s: %w", c.Target, err))), nil)
			return true
		}
		withoutRequests := *t
		withoutRequests.InputRequests = nil
		out.tool = &withoutRequests
	}
	rp.send(out, nil)
	return true
}

// leanCallOf builds the call of a lean request to the target e, or
// returns nil if the call is not the lean path's: e uses the protocol
// SDK's request, and does not say this call needs nothing of it (as a
// gateway call with nothing to relay does). A target that never says so
// is turned away before the call is built.
func (s *Server) leanCallOf(r *http.Request, msg *message, e *entry, target string, st *sessionState) *pipeline.Call {
	if e.target.Protocol && e.target.Lean == nil {
		return nil
	}
	c := s.leanCall(r, msg, e, target, st)
	if e.target.Protocol && !e.target.Lean(c) {
		return nil
	}
	return c
}

// leanEligible reports whether r is a request the lean path serves exactly
// as the SDK would: a well-formed stateless 2026-07-28 tools/call whose
// headers agree with its body.
func (s *Server) leanEligible(r *http.Request, msg *message) bool {
	h := r.Header
	if r.Method != http.MethodPost || msg.JSONRPC != "2.0" || !plainID(msg.ID) {
		return false
	}
	p := &msg.Params
	switch msg.Method {
	case "tools/call":
		if header(h, hName) != p.Name || p.URI != "" {
			return false
		}
	case "prompts/get":
		// The SDK requires Mcp-Name to be the prompt's name.
		if p.Name == "" || header(h, hName) != p.Name || p.URI != "" || !stringArgs(p.Arguments) {
			return false
		}
	case "resources/read":
		// The SDK requires Mcp-Name to be the URI read.
		if p.URI == "" || header(h, hName) != p.URI || p.Name != "" || len(p.Arguments) > 0 {
			return false
		}
	case "tools/list", "resources/list", "resources/templates/list", "prompts/list", "server/discover":
		if p.Name != "" || p.URI != "" || len(p.Arguments) > 0 || p.Cursor != "" || header(h, hName) != "" {
			return false // a page after the first is the SDK's to find
		}
	default:
		return false
	}
	if header(h, hProtocolVersion) != firstStatelessVersion || msg.Params.Meta[metaProtocolVersion] != firstStatelessVersion {
		return false
	}
	if header(h, hMethod) != msg.Method || header(h, hSessionID) != "" || header(h, hLastEventID) != "" {
		return false
	}
	if !clientMetaValid(msg.Params.Meta) {
		return false
	}
	if !acceptsJSON(h[hAccept]) {
		return false
	}
	for k := range h {
		if strings.HasPrefix(k, "Mcp-Param-") {
			return false // headers mirroring arguments: the SDK checks them against the schema
		}
	}
	if a := msg.Params.Arguments; len(a) > 0 && a[0] != '{' && !bytes.Equal(a, []byte("null")) {
		return false
	}
	return utf8.Valid(msg.body) && depthWithin(msg.body, maxDepth)
}

// The request headers the MCP handler reads, by their canonical keys, so
// that reading one does not canonicalise its key on every request.
const (
	hAccept          = "Accept"
	hContentType     = "Content-Type"
	hLastEventID     = "Last-Event-Id"
	hMethod          = "Mcp-Method"
	hName            = "Mcp-Name"
	hOrigin          = "Origin"
	hProtocolVersion = "Mcp-Protocol-Version"
	hSessionID       = "Mcp-Session-Id"
)

// header returns the first value of h under key, a canonical key: what
// h.Get(key) returns.
func header(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// clientMetaValid reports whether a request's _meta carries the client's
// capabilities, and its identity if any, in a form the SDK decodes; the SDK
// refuses a 2026-07-28 request without them.
func clientMetaValid(meta map[string]any) bool {
	caps, ok := meta[metaClientCapabilities].(map[string]any)
	if !ok {
		return false
	}
	if !plainCapabilities(caps) {
		var v struct {
			mcp.ClientCapabilities
			//lint:ignore SA1019 clients still declare roots, and the SDK decodes them
			Roots *mcp.RootCapabilities `json:"roots,omitempty"`
		}
		if !remarshals(caps, &v) {
			return false
		}
	}
	if ci, present := meta[metaClientInfo]; present {
		var v mcp.Implementation
		if ci == nil || !plainImplementation(ci) && !remarshals(ci, &v) {
			return false
		}
	}
	return true
}

// plainCapabilities reports whether caps is the common form of a client's
// capabilities that certainly decodes as the SDK decodes it: only the
// capabilities the SDK knows, by their exact names, each empty (roots may
// say listChanged). Any other form is for remarshals to judge.
func plainCapabilities(caps map[string]any) bool {
	for k, v := range caps {
		switch k {
		case "experimental", "extensions":
			if _, ok := v.(map[string]any); !ok && v != nil {
				return false
			}
		case "sampling", "elicitation":
			if m, ok := v.(map[string]any); !ok && v != nil || len(m) > 0 {
				return false
			}
		case "roots":
			m, ok := v.(map[string]any)
			if !ok && v != nil {
				return false
			}
			for rk, rv := range m {
				if _, isBool := rv.(bool); rk != "listChanged" || !isBool {
					return false
				}
			}
		default:
			return false
		}
	}
	return true
}

// plainImplementation reports whether ci is the common form of a client's
// identity that certainly decodes as the SDK decodes it: an object of the
// SDK's own string fields, by their exact names.
func plainImplementation(ci any) bool {
	m, ok := ci.(map[string]any)
	if !ok {
		return false
	}
	for k, v := range m {
		switch k {
		case "name", "title", "description", "version", "websiteUrl":
			if _, ok := v.(string); !ok {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// remarshals reports whether v decodes into out, as the SDK decodes _meta.
func remarshals(v, out any) bool {
	b, err := json.Marshal(v)
	return err == nil && json.Unmarshal(b, out) == nil
}

// plainID reports whether id is a JSON-RPC request id the lean path echoes
// as is: a number or a string.
func plainID(id json.RawMessage) bool {
	if len(id) == 0 {
		return false
	}
	switch c := id[0]; {
	case c == '"':
		return true
	case c == '-' || c >= '0' && c <= '9':
		return true
	}
	return false
}

// acceptsJSON reports whether the client accepts a JSON response.
func acceptsJSON(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case "application/json", "application/*", "*/*":
				return true
			}
		}
	}
	return false
}

// depthWithin reports whether the JSON in data nests at most max deep.
func depthWithin(data []byte, max int) bool {
	depth, inString, escaped := 0, false, false
	for _, b := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
		case b == '"':
			inString = true
		case b == '{' || b == '[':
			if depth++; depth > max {
				return false
			}
		case b == '}' || b == ']':
			depth--
		}
	}
	return true
}

// principalFrom returns who makes a request on the lean path: the
// principal HTTP authentication put in its context, or the local one.
func (s *Server) principalFrom(ctx context.Context) *pipeline.Principal {
	if p := pipeline.PrincipalFrom(ctx); p != nil {
		return p
	}
	if s.local == nil {
		return nil
	}
	p, err := s.local(ctx)
	if err != nil {
		s.log.Warn("local principal refused", "err", err)
		return nil
	}
	return p
}

// checkContent refuses a result whose content the protocol cannot carry,
// as the SDK boundary does.
func checkContent(t *pipeline.ToolResult) error {
	for _, c := range t.Content {
		if c.Raw != nil {
			continue
		}
		switch c.Type {
		case "text", "image", "audio", "resource_link", "resource":
		default:
			return errors.New("a content block of unknown type " + c.Type)
		}
	}
	return nil
}

// stamp returns t as the SDK would send it to a 2026-07-28 client: with
// the server's identity in _meta and the result's type.
func (s *Server) stamp(t *pipeline.ToolResult) *leanResult {
	return &leanResult{tool: t, serverInfo: s.implJSON, resultType: resultType(t.InputRequests != nil)}
}

// leanCall builds the call of a lean request to the target e: a stateless
// one, or one of the session whose state is st.
func (s *Server) leanCall(r *http.Request, msg *message, e *entry, target string, st *sessionState) *pipeline.Call {
	c := &pipeline.Call{
		Spec:            e.spec(),
		Target:          target,
		Meta:            msg.Params.Meta,
		Principal:       s.principalFrom(r.Context()),
		ProtocolVersion: firstStatelessVersion,
		RemoteAddr:      r.RemoteAddr,
		TraceID:         newTraceID(),
		Start:           time.Now(),
		State:           msg.Params.RequestState,
		Responses:       msg.Params.InputResponses,
	}
	if st != nil {
		c.ProtocolVersion = st.Version
		c.SessionID = st.ref
		c.ClientName, c.ClientVersion, c.CanElicit = st.clientName, st.clientVersion, st.canElicit
		return c
	}
	if ci, ok := msg.Params.Meta[metaClientInfo].(map[string]any); ok {
		c.ClientName, _ = ci["name"].(string)
		c.ClientVersion, _ = ci["version"].(string)
	}
	if caps, ok := msg.Params.Meta[metaClientCapabilities].(map[string]any); ok && caps["elicitation"] != nil {
		c.CanElicit = true
	}
	return c
}

// stringArgs reports whether a prompt's arguments are what the SDK
// decodes them as: absent, null, or an object of strings.
func stringArgs(a json.RawMessage) bool {
	if len(a) == 0 || bytes.Equal(a, []byte("null")) {
		return true
	}
	var m map[string]string
	return a[0] == '{' && json.Unmarshal(a, &m) == nil
}

// leanRead answers a resources/read, stateless or of a session, of a
// fixed resource or of a URI exactly one template matches, as the SDK's
// resourceHandler does. A URI nothing matches, or more than one template,
// is the SDK's.
func (s *Server) leanRead(rp *reply, r *http.Request, msg *message) bool {
	if s.sdkCacheable {
		return false
	}
	uri := msg.Params.URI
	s.mu.RLock()
	e := s.entries["resource:"+uri]
	if e == nil {
		for _, t := range s.templates {
			if te := s.entries["template:"+t.URITemplate]; te != nil && te.tmpl.Regexp().MatchString(uri) {
				if e != nil {
					e = nil
					break // which one the SDK picks is its own business
				}
				e = te
			}
		}
	}
	s.mu.RUnlock()
	if e == nil {
		return false
	}
	c := s.leanCallOf(r, msg, e, uri, rp.session)
	if c == nil {
		return false
	}
	c.Args = map[string]any{}
	if e.tmpl != nil {
		vals := e.tmpl.Match(uri)
		for _, name := range e.tmpl.Varnames() {
			if v := vals.Get(name); v.Valid() {
				c.Args[name] = v.String()
			}
		}
	}
	res, err := e.handler(r.Context(), c)
	if err == nil && (res == nil || res.Resource == nil) {
		err = errors.New("no result")
	}
	var out *mcp.ReadResourceResult
	if err == nil {
		if out, err = resourceResult(res.Resource); err != nil {
			err = fmt.Errorf("resource %s: %w", uri, err)
		}
	}
	if err != nil {
		rp.send(nil, rpcError(s.protocolError(c, err)))
		return true
	}
	if out.InputRequests != nil && len(out.Contents) > 0 {
		s.log.Warn("handler returned both content and inputRequests", "resource", uri, "trace_id", c.TraceID)
		rp.send(nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "server bug: result has both content and inputRequests"})
		return true
	}
	if out.InputRequests != nil && rp.session != nil {
		return false // a 2025-11-25 client is asked in a round trip the SDK makes
	}
	if out.InputRequests == nil {
		if out.Contents == nil {
			rp.send(nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: fmt.Sprintf("reading resource %s: read handler returned nil information", uri)})
			return true
		}
		for _, rc := range out.Contents {
			if rc.URI == "" {
				rc.URI = uri
			}
			if rc.MIMEType == "" {
				rc.MIMEType = e.target.MIMEType
			}
		}
	}
	out.CacheScope = "private"
	rp.send(rp.result(s, out, &out.Meta, out.InputRequests != nil), nil)
	return true
}

// leanPrompt answers a prompts/get, stateless or of a session, as the
// SDK's promptHandler does. A prompt that does not exist is the SDK's to
// refuse.
func (s *Server) leanPrompt(rp *reply, r *http.Request, msg *message) bool {
	e := s.lookup("prompt:" + msg.Params.Name)
	if e == nil {
		return false
	}
	c := s.leanCallOf(r, msg, e, msg.Params.Name, rp.session)
	if c == nil {
		return false
	}
	var args map[string]string
	json.Unmarshal(msg.Params.Arguments, &args) // checked by leanEligible and sessionEligible (stringArgs)
	c.Args = make(map[string]any, len(args))
	for k, v := range args {
		c.Args[k] = v
	}
	res, err := e.handler(r.Context(), c)
	if err == nil && (res == nil || res.Prompt == nil) {
		err = errors.New("no result")
	}
	var out *mcp.GetPromptResult
	if err == nil {
		if out, err = promptResult(res.Prompt); err != nil {
			err = fmt.Errorf("prompt %s: %w", msg.Params.Name, err)
		}
	}
	if err != nil {
		rp.send(nil, rpcError(s.protocolError(c, err)))
		return true
	}
	if out.InputRequests != nil && len(out.Messages) > 0 {
		s.log.Warn("handler returned both content and inputRequests", "prompt", msg.Params.Name, "trace_id", c.TraceID)
		rp.send(nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "server bug: result has both content and inputRequests"})
		return true
	}
	if out.InputRequests != nil && rp.session != nil {
		return false // a 2025-11-25 client is asked in a round trip the SDK makes
	}
	rp.send(rp.result(s, out, &out.Meta, out.InputRequests != nil), nil)
	return true
}

// rpcError is the *jsonrpc.Error protocolError always returns.
func rpcError(err error) *jsonrpc.Error {
	var werr *jsonrpc.Error
	if errors.As(err, &werr) {
		return werr
	}
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: err.Error()}
}

// withServerInfo returns meta with the server's identity added, as the SDK
// stamps every 2026-07-28 result.
func (s *Server) withServerInfo(meta mcp.Meta) mcp.Meta {
	out := make(mcp.Meta, len(meta)+1)
	for k, v := range meta {
		out[k] = v
	}
	if _, ok := out[metaServerInfo]; !ok {
		out[metaServerInfo] = s.impl
	}
	return out
}

func resultType(inputRequired bool) string {
	if inputRequired {
		return "input_required"
	}
	return "complete"
}

// typed is a result on the wire with its type, which the SDK's own result
// types keep unexported.
type typed struct {
	v          any
	resultType string
}

func (t typed) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(t.v)
	if err != nil || len(b) < 2 || b[0] != '{' {
		return b, err
	}
	out := b[:len(b)-1] // b is this call's own
	if len(b) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"resultType":"`...)
	out = append(out, t.resultType...)
	return append(out, `"}`...), nil
}

// leanDiscoverResult answers a stateless server/discover as the SDK does
// for Warden's options: every version the SDK supports, the server's
// capabilities augmented for what is registered as the SDK augments them,
// and public to caches (who asks does not change it).
func (s *Server) leanDiscoverResult(rp *reply) bool {
	if !s.leanDiscover {
		return false
	}
	caps := *s.caps
	s.mu.RLock()
	if len(s.tools) > 0 && caps.Tools == nil {
		caps.Tools = &mcp.ToolCapabilities{ListChanged: true}
	}
	if len(s.prompts) > 0 && caps.Prompts == nil {
		caps.Prompts = &mcp.PromptCapabilities{ListChanged: true}
	}
	if (len(s.resources) > 0 || len(s.templates) > 0) && caps.Resources == nil {
		caps.Resources = &mcp.ResourceCapabilities{ListChanged: true}
	}
	s.mu.RUnlock()
	res := &mcp.DiscoverResult{
		Meta:              mcp.Meta{metaServerInfo: s.impl},
		SupportedVersions: mcp.SupportedProtocolVersions(),
		Capabilities:      &caps,
		Instructions:      s.instructions,
	}
	res.CacheScope = "public"
	rp.send(typed{res, "complete"}, nil)
	return true
}

// leanList answers a list, stateless or of a session: what the caller may
// use, in the SDK's order (by name, URI or URI template), as the SDK lists it (one
// page: a catalog larger than a page goes to the SDK), private to the
// caller, and audited as filterLists audits the SDK's lists.
func (s *Server) leanList(rp *reply, r *http.Request, msg *message) bool {
	if s.sdkCacheable {
		return false
	}
	p := s.principalFrom(r.Context())
	allowed := func(key string) bool {
		e := s.entries[key]
		return e != nil && !e.target.Hidden && p.HasScope(e.spec().Scope)
	}
	var res any
	count := 0
	s.mu.RLock()
	switch msg.Method {
	case "tools/list":
		if len(s.tools) <= s.pageSize {
			l := keep(s.tools, func(t *mcp.Tool) bool { return allowed("tool:" + t.Name) })
			slices.SortFunc(l, func(a, b *mcp.Tool) int { return strings.Compare(a.Name, b.Name) })
			res, count = &mcp.ListToolsResult{Tools: l}, len(l)
		}
	case "resources/list":
		if len(s.resources) <= s.pageSize {
			l := keep(s.resources, func(x *mcp.Resource) bool { return allowed("resource:" + x.URI) })
			slices.SortFunc(l, func(a, b *mcp.Resource) int { return strings.Compare(a.URI, b.URI) })
			res, count = &mcp.ListResourcesResult{Resources: l}, len(l)
		}
	case "resources/templates/list":
		if len(s.templates) <= s.pageSize {
			l := keep(s.templates, func(x *mcp.ResourceTemplate) bool { return allowed("template:" + x.URITemplate) })
			slices.SortFunc(l, func(a, b *mcp.ResourceTemplate) int { return strings.Compare(a.URITemplate, b.URITemplate) })
			res, count = &mcp.ListResourceTemplatesResult{ResourceTemplates: l}, len(l)
		}
	case "prompts/list":
		if len(s.prompts) <= s.pageSize {
			l := keep(s.prompts, func(x *mcp.Prompt) bool { return allowed("prompt:" + x.Name) })
			slices.SortFunc(l, func(a, b *mcp.Prompt) int { return strings.Compare(a.Name, b.Name) })
			res, count = &mcp.ListPromptsResult{Prompts: l}, len(l)
		}
	}
	s.mu.RUnlock()
	if res == nil {
		return false
	}
	if s.audit != nil {
		ev := &pipeline.Event{Method: msg.Method, Principal: p, Count: count, TraceID: newTraceID(), RemoteAddr: r.RemoteAddr}
		if rp.session != nil {
			ev.SessionID = rp.session.ref
		}
		if err := s.audit.Event(r.Context(), ev); err != nil {
			s.log.Error("audit: list not recorded; refusing it", "method", msg.Method, "err", err)
			rp.send(nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the request was not answered because it could not be recorded in the audit log"})
			return true
		}
	}
	var meta *mcp.Meta
	switch l := res.(type) {
	case *mcp.ListToolsResult:
		meta, l.CacheScope = &l.Meta, "private"
	case *mcp.ListResourcesResult:
		meta, l.CacheScope = &l.Meta, "private"
	case *mcp.ListResourceTemplatesResult:
		meta, l.CacheScope = &l.Meta, "private"
	case *mcp.ListPromptsResult:
		meta, l.CacheScope = &l.Meta, "private"
	}
	rp.send(rp.result(s, res, meta, false), nil)
	return true
}

// leanResult is a tool result on the wire: as it is, on a session; with
// the server's identity, its input requests as the protocol's types encode
// them and its type, on the stateless protocol.
type leanResult struct {
	tool          *pipeline.ToolResult
	serverInfo    json.RawMessage // the server's identity, encoded; nil on a session
	resultType    string          // "" on a session
	inputRequests json.RawMessage
}

// appendJSON appends r by hand (wire.go), or reports false for
// MarshalJSON to encode it.
func (r *leanResult) appendJSON(b []byte) ([]byte, bool) {
	return appendToolResult(b, r.tool, r.serverInfo, r.inputRequests, r.resultType)
}

// MarshalJSON encodes r with encoding/json: the reference appendJSON
// matches, and the answer for a result appendJSON does not take.
func (r *leanResult) MarshalJSON() ([]byte, error) {
	t := *r.tool
	if r.serverInfo != nil {
		meta := make(map[string]any, len(t.Meta)+1)
		for k, v := range t.Meta {
			meta[k] = v
		}
		if _, ok := meta[metaServerInfo]; !ok {
			meta[metaServerInfo] = r.serverInfo
		}
		t.Meta = meta
	}
	b, err := t.MarshalJSON()
	if err != nil || len(b) < 2 || (r.inputRequests == nil && r.resultType == "") {
		return b, err
	}
	// {..., "resultType": "complete"}
	out := make([]byte, 0, len(b)+32)
	out = append(out, b[:len(b)-1]...)
	if len(b) > 2 {
		out = append(out, ',')
	}
	if r.inputRequests != nil {
		out = append(out, `"inputRequests":`...)
		out = append(out, r.inputRequests...)
		out = append(out, ',')
	}
	out = append(out, `"resultType":"`...)
	out = append(out, r.resultType...)
	return append(out, `"}`...), nil
}

// errorStatus is the HTTP status of a 2026-07-28 response carrying rpcErr,
// as the SDK's Streamable HTTP transport chooses it.
func errorStatus(rpcErr *jsonrpc.Error) int {
	if rpcErr == nil {
		return http.StatusOK
	}
	switch rpcErr.Code {
	case jsonrpc.CodeMethodNotFound:
		return http.StatusNotFound
	case jsonrpc.CodeInvalidParams, mcp.CodeUnsupportedProtocolVersion, mcp.CodeMissingRequiredClientCapabilities:
		return http.StatusBadRequest
	}
	return http.StatusOK
}

// reply is where a lean answer goes: the response to a stateless request,
// or to a request of the 2025-11-25 session whose state is session.
type reply struct {
	w       http.ResponseWriter
	line    io.Writer // over stdio: the response is one line written here, not w
	id      json.RawMessage
	session *sessionState
}

// result returns res as the protocol version of the reply shapes it: a
// stateless result carries its type and the server's identity (in the
// _meta meta points to); a session's result is as it is.
func (rp *reply) result(s *Server, res any, meta *mcp.Meta, inputRequired bool) any {
	if rp.session != nil {
		return res
	}
	*meta = s.withServerInfo(*meta)
	return typed{res, resultType(inputRequired)}
}

// tool returns a tool result (a refusal) as the protocol version of the
// reply shapes it.
func (rp *reply) tool(s *Server, t *pipeline.ToolResult) *leanResult {
	if rp.session != nil {
		return &leanResult{tool: t}
	}
	return s.stamp(t)
}

// send writes one JSON-RPC response: a result, or an error. A stateless
// error has the HTTP status the SDK gives it; a session's is 200, as the
// SDK answers sessions.
func (rp *reply) send(res any, rpcErr *jsonrpc.Error) {
	if rp.line != nil {
		writeLine(rp.line, rp.id, res, rpcErr)
		return
	}
	status := http.StatusOK
	if rp.session == nil {
		status = errorStatus(rpcErr)
	}
	writeLean(rp.w, status, rp.id, res, rpcErr)
}

var leanBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// writeLean writes one JSON-RPC response, a result or an error, with the
// HTTP status given.
func writeLean(w http.ResponseWriter, status int, id json.RawMessage, res any, rpcErr *jsonrpc.Error) {
	buf := encodeLean(id, res, rpcErr)
	defer putBuffer(buf)
	// Set as Header.Set would, from one allocation rather than two.
	h, vals := w.Header(), []string{"application/json", "no-cache, no-transform"}
	h["Content-Type"], h["Cache-Control"] = vals[0:1:1], vals[1:2:2]
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// writeLine writes one JSON-RPC response, a result or an error, as one
// newline-terminated line in one Write.
func writeLine(w io.Writer, id json.RawMessage, res any, rpcErr *jsonrpc.Error) {
	buf := encodeLean(id, res, rpcErr)
	defer putBuffer(buf)
	w.Write(buf.Bytes())
}

// encodeLean encodes one JSON-RPC response, and its newline, into a pooled
// buffer for putBuffer.
func encodeLean(id json.RawMessage, res any, rpcErr *jsonrpc.Error) *bytes.Buffer {
	buf := leanBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	buf.WriteString(`{"jsonrpc":"2.0","id":`)
	buf.Write(id)
	if lr, ok := res.(*leanResult); ok && rpcErr == nil {
		// A tool result is appended by hand; one that holds what only
		// encoding/json knows how to refuse is encoded below.
		if b, ok := lr.appendJSON(append(buf.AvailableBuffer(), `,"result":`...)); ok {
			buf.Write(b)
			buf.WriteString("}\n")
			return buf
		}
	}
	enc := json.NewEncoder(buf)
	var err error
	if rpcErr != nil {
		buf.WriteString(`,"error":`)
		err = enc.Encode(rpcErr)
	} else {
		buf.WriteString(`,"result":`)
		err = enc.Encode(res)
	}
	if err != nil {
		buf.Reset()
		buf.WriteString(`{"jsonrpc":"2.0","id":`)
		buf.Write(id)
		buf.WriteString(`,"error":{"code":-32603,"message":"the result could not be encoded"}`)
	} else {
		buf.Truncate(buf.Len() - 1) // the encoder's newline
	}
	buf.WriteString("}\n")
	return buf
}

func putBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= 64<<10 {
		buf.Reset()
		leanBuffers.Put(buf)
	}
}
