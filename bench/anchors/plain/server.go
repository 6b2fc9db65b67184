package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"sync"

	"github.com/wardenmcp/warden/bench/internal/anchor"
)

const (
	statelessVersion = "2026-07-28"
	sessionVersion   = "2025-11-25"
	maxBody          = 4 << 20
)

// sessionVersions are the revisions initialize accepts as they are; any
// other is answered with sessionVersion.
var sessionVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26"}

// JSON-RPC and MCP error codes.
const (
	codeParse          = -32700
	codeInvalidRequest = -32600
	codeNoMethod       = -32601
	codeInvalidParams  = -32602
	codeHeaderMismatch = -32001
)

// request is every request the server answers, decoded once: params holds
// the fields of initialize and of tools/call side by side.
type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  struct {
		// tools/call
		Name      string `json:"name"`
		Arguments struct {
			Message *string `json:"message"`
		} `json:"arguments"`
		Meta struct {
			ProtocolVersion string `json:"io.modelcontextprotocol/protocolVersion"`
		} `json:"_meta"`
		// initialize
		ProtocolVersion string `json:"protocolVersion"`
	} `json:"params"`
}

type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type textContent struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type callResult struct {
	Content []textContent `json:"content"`
}

type initializeResult struct {
	ProtocolVersion string         `json:"protocolVersion"`
	Capabilities    map[string]any `json:"capabilities"`
	ServerInfo      struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"serverInfo"`
}

// server answers the echo tool over HTTP and stdio.
type server struct {
	sessions sync.Map // session id → struct{}
}

func newServer() *server { return &server{} }

// failure is a refused request: its HTTP status and JSON-RPC error.
type failure struct {
	status int
	err    rpcError
}

func fail(status, code int, format string, args ...any) *failure {
	return &failure{status, rpcError{code, fmt.Sprintf(format, args...)}}
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
	case http.MethodDelete:
		s.deleteSession(w, r)
		return
	default:
		w.Header().Set("Allow", "POST, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, response{JSONRPC: "2.0", Error: &rpcError{codeInvalidRequest, "request body too large"}})
		return
	}
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, response{JSONRPC: "2.0", Error: &rpcError{codeParse, "parse error: " + err.Error()}})
		return
	}
	if req.JSONRPC != "2.0" || req.Method == "" {
		writeJSON(w, http.StatusBadRequest, response{JSONRPC: "2.0", ID: req.ID, Error: &rpcError{codeInvalidRequest, "not a JSON-RPC 2.0 request"}})
		return
	}
	if len(req.ID) == 0 { // a notification
		if f := s.checkSession(r, &req); f != nil {
			writeJSON(w, f.status, response{JSONRPC: "2.0", Error: &f.err})
			return
		}
		w.WriteHeader(http.StatusAccepted)
		return
	}

	var result any
	f := s.checkHTTP(r, &req)
	if f == nil && req.Method == "initialize" {
		var sid string
		sid, result = s.newSession(&req)
		w.Header().Set("Mcp-Session-Id", sid)
	} else if f == nil {
		result, f = call(&req)
	}
	if f != nil {
		writeJSON(w, f.status, response{JSONRPC: "2.0", ID: req.ID, Error: &f.err})
		return
	}
	writeJSON(w, http.StatusOK, response{JSONRPC: "2.0", ID: req.ID, Result: result})
}

// checkHTTP checks a request's transport headers: a request on a session
// names a live one; any other is initialize, or a stateless request whose
// headers agree with its body.
func (s *server) checkHTTP(r *http.Request, req *request) *failure {
	if r.Header.Get("Mcp-Session-Id") != "" || req.Method == "initialize" {
		return s.checkSession(r, req)
	}
	v := r.Header.Get("Mcp-Protocol-Version")
	switch {
	case req.Params.Meta.ProtocolVersion != statelessVersion:
		return fail(http.StatusBadRequest, codeInvalidRequest, "without a session, a request declares protocol version %s in _meta", statelessVersion)
	case v != req.Params.Meta.ProtocolVersion:
		return fail(http.StatusBadRequest, codeHeaderMismatch, "Mcp-Protocol-Version header %q does not match _meta %q", v, req.Params.Meta.ProtocolVersion)
	case r.Header.Get("Mcp-Method") != req.Method:
		return fail(http.StatusBadRequest, codeHeaderMismatch, "Mcp-Method header %q does not match method %q", r.Header.Get("Mcp-Method"), req.Method)
	case req.Method == "tools/call" && r.Header.Get("Mcp-Name") != req.Params.Name:
		return fail(http.StatusBadRequest, codeHeaderMismatch, "Mcp-Name header %q does not match name %q", r.Header.Get("Mcp-Name"), req.Params.Name)
	}
	return nil
}

// checkSession checks a request of the session path.
func (s *server) checkSession(r *http.Request, req *request) *failure {
	sid := r.Header.Get("Mcp-Session-Id")
	if req.Method == "initialize" {
		if sid != "" {
			return fail(http.StatusBadRequest, codeInvalidRequest, "initialize makes a session: send it without Mcp-Session-Id")
		}
		return nil
	}
	if sid == "" {
		return fail(http.StatusBadRequest, codeInvalidRequest, "Mcp-Session-Id required")
	}
	if _, ok := s.sessions.Load(sid); !ok {
		return fail(http.StatusNotFound, codeInvalidRequest, "session not found")
	}
	if v := r.Header.Get("Mcp-Protocol-Version"); v != "" && !slices.Contains(sessionVersions, v) {
		return fail(http.StatusBadRequest, codeInvalidRequest, "unsupported Mcp-Protocol-Version %q", v)
	}
	return nil
}

func (s *server) newSession(req *request) (string, *initializeResult) {
	sid := rand.Text()
	s.sessions.Store(sid, struct{}{})
	return sid, initialize(req)
}

func (s *server) deleteSession(w http.ResponseWriter, r *http.Request) {
	sid := r.Header.Get("Mcp-Session-Id")
	if _, ok := s.sessions.LoadAndDelete(sid); !ok || sid == "" {
		http.Error(w, "session not found", http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func initialize(req *request) *initializeResult {
	res := &initializeResult{ProtocolVersion: sessionVersion, Capabilities: map[string]any{"tools": map[string]any{}}}
	if slices.Contains(sessionVersions, req.Params.ProtocolVersion) {
		res.ProtocolVersion = req.Params.ProtocolVersion
	}
	res.ServerInfo.Name, res.ServerInfo.Version = "plain", "v0.0.1"
	return res
}

// discoverResult and listResult are what a stateless client (the go-sdk's,
// as Warden's gateway uses it) asks before it calls: the server's versions
// and capabilities, and the one tool.
type discoverResult struct {
	Meta              map[string]any `json:"_meta"`
	SupportedVersions []string       `json:"supportedVersions"`
	Capabilities      map[string]any `json:"capabilities"`
	ResultType        string         `json:"resultType"`
}

type listResult struct {
	Tools      []tool `json:"tools"`
	ResultType string `json:"resultType"`
}

type tool struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	InputSchema map[string]any `json:"inputSchema"`
}

func discover() *discoverResult {
	return &discoverResult{
		Meta:              map[string]any{"io.modelcontextprotocol/serverInfo": map[string]string{"name": "plain", "version": "v0.0.1"}},
		SupportedVersions: []string{statelessVersion},
		Capabilities:      map[string]any{"tools": map[string]any{}},
		ResultType:        "complete",
	}
}

func list() *listResult {
	schema := map[string]any{
		"type":       "object",
		"properties": map[string]any{anchor.Arg: map[string]any{"type": "string"}},
		"required":   []string{anchor.Arg},
	}
	return &listResult{Tools: []tool{{Name: anchor.Tool, Description: anchor.Description, InputSchema: schema}}, ResultType: "complete"}
}

// call answers tools/call of the echo tool, and, stateless, server/discover
// and tools/list.
func call(req *request) (any, *failure) {
	if req.Params.Meta.ProtocolVersion == statelessVersion {
		switch req.Method {
		case "server/discover":
			return discover(), nil
		case "tools/list":
			return list(), nil
		}
	}
	if req.Method != "tools/call" {
		return nil, fail(http.StatusBadRequest, codeNoMethod, "method %q not found (this server only calls %s)", req.Method, anchor.Tool)
	}
	if req.Params.Name != anchor.Tool {
		return nil, fail(http.StatusBadRequest, codeInvalidParams, "unknown tool %q", req.Params.Name)
	}
	msg := req.Params.Arguments.Message
	if msg == nil {
		return nil, fail(http.StatusBadRequest, codeInvalidParams, "argument %s (a string) is required", anchor.Arg)
	}
	return &callResult{Content: []textContent{{Type: "text", Text: *msg}}}, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// serveStdio serves one session over r and w, a message a line, until r
// ends. Requests before initialize are refused.
func (s *server) serveStdio(r io.Reader, w *bufio.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxBody)
	initialized := false
	enc := json.NewEncoder(w) // Encode ends each message with a newline
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var req request
		var resp response
		switch err := json.Unmarshal(line, &req); {
		case err != nil:
			resp = response{JSONRPC: "2.0", Error: &rpcError{codeParse, "parse error: " + err.Error()}}
		case len(req.ID) == 0:
			continue // notifications/initialized and the like
		case req.Method == "initialize":
			initialized = true
			resp = response{JSONRPC: "2.0", ID: req.ID, Result: initialize(&req)}
		case !initialized:
			resp = response{JSONRPC: "2.0", ID: req.ID, Error: &rpcError{codeInvalidRequest, "initialize first"}}
		default:
			res, f := call(&req)
			resp = response{JSONRPC: "2.0", ID: req.ID, Result: res}
			if f != nil {
				resp = response{JSONRPC: "2.0", ID: req.ID, Error: &f.err}
			}
		}
		if err := enc.Encode(resp); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
