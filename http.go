package warden

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/wardenmcp/warden/pipeline"
)

// HTTPOptions configure [Server.HTTPHandler]. The nil value is valid and
// safe: loopback hosts only, no foreign origins, 1 MiB bodies, 30-minute
// idle sessions, no legacy SSE endpoint.
type HTTPOptions struct {
	// AllowedHosts are the Host header values (host, or host:port) accepted.
	// Empty means loopback names only (localhost, 127.0.0.1, [::1]), which
	// defeats DNS rebinding against a server on this machine.
	AllowedHosts []string
	// AllowedOrigins are the browser origins (scheme://host[:port]) accepted.
	// A request with no Origin header is not a browser request and is
	// allowed; one with an Origin must match this list or be a loopback
	// origin talking to a loopback host.
	AllowedOrigins []string
	// MaxBodyBytes caps a request body; zero means 1 MiB.
	MaxBodyBytes int64
	// BodyTimeout is how long a request's body may take to arrive, from
	// the end of its headers; zero means 30 seconds. A body still arriving
	// then is answered 408 and its connection closed, so a client that
	// trickles a body cannot hold a connection. Headers are the
	// http.Server's to bound (ReadHeaderTimeout, MaxHeaderBytes), and so is
	// the number of connections (see internal/connlimit).
	BodyTimeout time.Duration
	// Refused, if set, is called with a fixed reason ("body_timeout") for
	// each request the transport cuts off, for metrics. It must not block.
	Refused func(reason string)
	// SessionIdleTimeout closes the protocol SDK's state of a 2025-11-25
	// session on an instance after this long without a request there; zero
	// means 30 minutes. A sealed session (see SessionKey) lives on past it,
	// until SessionMaxAge: its next request that needs the SDK makes the
	// SDK's state anew from the session id.
	SessionIdleTimeout time.Duration
	// SessionKey seals 2025-11-25 session ids (AES-256-GCM, under a key
	// derived from this one), so that every instance given the same key
	// serves every session: a session survives a load balancer sending its
	// next request elsewhere. Nil means a random key of this handler's:
	// sessions then live on this instance only.
	SessionKey []byte
	// SessionMaxAge is how long a 2025-11-25 session lives from its
	// initialize, wherever it is served; zero means 24 hours. Its client
	// then gets 404 and initializes a new one, as the protocol says.
	SessionMaxAge time.Duration
	// SessionRelay, if set, carries a client's answer to a request one
	// instance sent in the middle of a call (an elicitation) to that
	// instance when the load balancer delivers it to another. Without it,
	// such an answer is refused there at once (409).
	SessionRelay SessionRelay
	// LegacySSE also serves the 2024-11-05 HTTP+SSE transport at /sse.
	LegacySSE bool
	// Ready reports whether the server can take calls, for /readyz. Nil
	// means always ready. Errors in what it returns (errors.Join's too)
	// that have a method Dependency() string are named in the answer, so
	// that name must hold no secret; the rest of an error goes to the log.
	Ready func() error
	// Authenticate establishes the principal of every MCP request; a
	// request it refuses never reaches the server. Nil means requests carry
	// no principal of their own and Options.LocalPrincipal decides.
	Authenticate Authenticator
	// ResourceMetadata, if set, is served as OAuth 2.0 protected resource
	// metadata (RFC 9728) and named in every WWW-Authenticate challenge.
	ResourceMetadata *oauthex.ProtectedResourceMetadata
	// Metrics, if set, is served at /metrics: with Authenticate, only to
	// principals holding MetricsScope.
	Metrics http.Handler
	// Mounts are further handlers by path prefix, ending in "/" (such as
	// "/console/"). They are served behind the Host check and the refusal of
	// credentials in query strings only: each does its own authentication,
	// origin checks, CSRF protection and body limits. A mount that is a
	// HeaderSetter has its headers on every response under its prefix, even
	// those it does not answer itself.
	Mounts map[string]http.Handler
	// DisableLeanPath serves every MCP request through the protocol SDK,
	// as before the lean path existed: slower, and useful to compare.
	DisableLeanPath bool
	// APIs are further handlers by path prefix, ending in "/", served only
	// to principals that Authenticate accepts and that hold the API's scope;
	// refusals are answered and audited as on /mcp. Without Authenticate
	// they are not served.
	APIs map[string]API
}

// API is an HTTP API for principals holding Scope.
type API struct {
	Scope   string
	Handler func(w http.ResponseWriter, r *http.Request, p *pipeline.Principal)
}

// A HeaderSetter is a mount with headers of its own for every response
// under its prefix: the server sets them before anything answers, so that
// they are also on the responses Warden gives for the mount — its prefix
// without the final "/" or an unclean path redirected, a request refused
// by the transport guard. The web console's Content-Security-Policy is one.
type HeaderSetter interface {
	SetHeaders(h http.Header)
}

// MetricsScope is the scope a principal needs to read /metrics.
const MetricsScope = "warden.metrics"

// DefaultMaxBodyBytes is the request body cap when none is configured.
const DefaultMaxBodyBytes = 1 << 20

// DefaultBodyTimeout is how long a request body may take to arrive when
// no timeout is configured.
const DefaultBodyTimeout = 30 * time.Second

// DefaultSessionIdleTimeout is how long an idle session lives when no
// timeout is configured.
const DefaultSessionIdleTimeout = 30 * time.Minute

// firstStatelessVersion is the first protocol version served without
// sessions; the SDK serves it only from a stateless handler.
const firstStatelessVersion = "2026-07-28"

// HTTPHandler returns the Streamable HTTP endpoint at /mcp (both the
// stateless 2026-07-28 protocol and session-based 2025-11-25 clients),
// /healthz, /readyz and, if enabled, the legacy SSE endpoint at /sse, all
// behind the transport guard (Host, Origin, Content-Type, body size).
func (s *Server) HTTPHandler(opts *HTTPOptions) http.Handler {
	o := HTTPOptions{}
	if opts != nil {
		o = *opts
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.SessionIdleTimeout <= 0 {
		o.SessionIdleTimeout = DefaultSessionIdleTimeout
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = DefaultBodyTimeout
	}
	if o.SessionMaxAge <= 0 {
		o.SessionMaxAge = DefaultSessionMaxAge
	}
	sessions := newSessions(s, o.SessionKey, o.SessionMaxAge, o.SessionIdleTimeout, o.SessionRelay)
	getServer := func(*http.Request) *mcp.Server { return s.mcp }
	// The guard below owns Host and Origin checks, so the SDK's loopback-only
	// check is turned off: it would refuse configured non-loopback hosts.
	stateless := mcp.NewStreamableHTTPHandler(getServer, &mcp.StreamableHTTPOptions{
		Stateless:                    true,
		Logger:                       s.log,
		DisableLocalhostProtection:   true,
		MaxRequestBodyBytes:          o.MaxBodyBytes,
		PropagateRequestCancellation: true,
	})
	stateful := mcp.NewStreamableHTTPHandler(getServer, &mcp.StreamableHTTPOptions{
		Logger:                     s.log,
		DisableLocalhostProtection: true,
		MaxRequestBodyBytes:        o.MaxBodyBytes,
		SessionTimeout:             o.SessionIdleTimeout,
		EventStore:                 sessions.events,
	})
	mux := http.NewServeMux()
	// Only a request that names the stateless protocol in its header goes
	// to the stateless handler (on the lean path, or else the SDK's);
	// initialize, session traffic and anything older go to sealed
	// sessions, or else the SDK's session-based one.
	lean := func(w http.ResponseWriter, r *http.Request) bool {
		return !o.DisableLeanPath && header(r.Header, hProtocolVersion) >= firstStatelessVersion && s.serveLean(w, r)
	}
	sdk := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if header(r.Header, hProtocolVersion) >= firstStatelessVersion {
			stateless.ServeHTTP(w, r)
			return
		}
		if o.DisableLeanPath || !sessions.serve(w, r) {
			stateful.ServeHTTP(w, r)
		}
	})
	var mcpHandler, sseHandler http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !lean(w, r) {
			sdk.ServeHTTP(w, r)
		}
	}), mcp.NewSSEHandler(getServer, nil)
	metadataURL := ""
	if md := o.ResourceMetadata; md != nil {
		h := auth.ProtectedResourceMetadataHandler(md)
		mux.Handle("GET /.well-known/oauth-protected-resource", h)
		if u, err := url.Parse(md.Resource); err == nil && u.Path != "" && u.Path != "/" {
			// RFC 9728 §3.1: the metadata of https://host/mcp lives at
			// https://host/.well-known/oauth-protected-resource/mcp.
			mux.Handle("GET /.well-known/oauth-protected-resource"+u.Path, h)
			metadataURL = u.Scheme + "://" + u.Host + "/.well-known/oauth-protected-resource" + u.Path
		} else if err == nil {
			metadataURL = u.Scheme + "://" + u.Host + "/.well-known/oauth-protected-resource"
		}
	}
	if o.Authenticate != nil {
		mcpHandler = s.authenticate(o.Authenticate, metadataURL, lean, sdk)
		sseHandler = s.authenticate(o.Authenticate, metadataURL, nil, sseHandler)
	}
	mux.Handle("/mcp", mcpHandler)
	if o.Metrics != nil {
		metrics := o.Metrics
		if a := o.Authenticate; a != nil {
			metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				p, _, err := a.Authenticate(r)
				var ae *AuthError
				switch {
				case errors.As(err, &ae):
					challenge(w, ae, metadataURL)
				case err != nil:
					reject(w, http.StatusServiceUnavailable, "authentication is unavailable; retry later")
				case !p.HasScope(MetricsScope):
					challenge(w, &AuthError{Status: http.StatusForbidden, Code: "insufficient_scope",
						Description: "metrics need the scope " + MetricsScope, Scope: MetricsScope}, metadataURL)
				default:
					o.Metrics.ServeHTTP(w, r)
				}
			})
		}
		mux.Handle("GET /metrics", metrics)
	}
	if o.LegacySSE {
		mux.Handle("/sse", sseHandler)
	}
	for prefix, api := range o.APIs {
		mustScope("HTTPOptions.APIs", prefix, api.Scope)
		if o.Authenticate != nil {
			o.Mounts = maps.Clone(o.Mounts)
			if o.Mounts == nil {
				o.Mounts = map[string]http.Handler{}
			}
			o.Mounts[prefix] = s.requireScope(o.Authenticate, metadataURL, api)
		}
	}
	for prefix, h := range o.Mounts {
		if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") || prefix == "/" || prefix == "/mcp/" {
			panic(fmt.Sprintf("warden: HTTPOptions.Mounts: %q is not a path prefix of its own (like /console/)", prefix))
		}
		mux.Handle(prefix, h)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if o.Ready != nil {
			if err := o.Ready(); err != nil {
				// The cause may name internal hosts; it goes to the log only.
				s.log.Warn("not ready", "err", err)
				w.WriteHeader(http.StatusServiceUnavailable)
				msg := "not ready"
				if names := unready(err, nil); len(names) > 0 {
					msg += ": " + strings.Join(names, ", ")
				}
				w.Write([]byte(msg + "\n"))
				return
			}
		}
		w.Write([]byte("ready\n"))
	})
	return o.mountHeaders(s.guard(&o, metadataURL, mux))
}

// guard enforces the transport rules that hold before any MCP parsing.
func (s *Server) guard(o *HTTPOptions, metadataURL string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every refusal here is audited like any other.
		refuse := func(status int, msg string) {
			s.refused(r, status, msg)
			reject(w, status, msg)
		}
		// Set as Header.Set would, from one allocation rather than two.
		h, vals := w.Header(), []string{"nosniff", "no-store"}
		h["X-Content-Type-Options"], h["Cache-Control"] = vals[0:1:1], vals[1:2:2]
		if !hostAllowed(o.AllowedHosts, r.Host) {
			refuse(http.StatusForbidden, "Host header "+quote(r.Host)+" is not allowed; configure server.http.allowed_hosts")
			return
		}
		mounted := o.mounted(r.URL.Path)
		if r.Body != nil && r.Body != http.NoBody {
			// The body gets BodyTimeout from now, the end of the headers.
			// The deadline goes once the body is in: a read deadline
			// passing while a long call runs would cancel the call.
			db := &deadlineBody{ReadCloser: r.Body, rc: *http.NewResponseController(w)}
			if err := db.rc.SetReadDeadline(time.Now().Add(o.BodyTimeout)); err == nil {
				r.Body = db
			}
		}
		if origin := header(r.Header, hOrigin); origin != "" && !mounted && !originAllowed(o.AllowedOrigins, origin, r.Host) {
			refuse(http.StatusForbidden, "Origin "+quote(origin)+" is not allowed; configure server.http.allowed_origins")
			return
		}
		if q := query(r.URL); q.Has("access_token") || q.Has("token") || q.Has("api_key") {
			// RFC 9700: never accept a token in the URL, where logs and
			// browser history keep it.
			ae := Unauthenticated("invalid_request", "tokens in the query string are refused; send them in the Authorization header")
			s.refused(r, ae.Status, ae.Description)
			challenge(w, ae, metadataURL)
			return
		}
		if r.URL.RawQuery != "" && r.URL.Path == "/mcp" {
			// Nothing legitimate travels in the query string of /mcp, and
			// credentials there would end up in logs.
			refuse(http.StatusBadRequest, "query parameters are not accepted on /mcp")
			return
		}
		if r.Method == http.MethodPost && !mounted {
			if ct := header(r.Header, hContentType); !isJSON(ct) {
				refuse(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
				return
			}
			if r.ContentLength > o.MaxBodyBytes {
				refuse(http.StatusRequestEntityTooLarge, "request body is larger than the server accepts")
				return
			}
			// The body is read here, whole, so that a chunked body over the
			// cap gets the same answer, and so that malformed JSON (which the
			// SDK answers in plain text, and whose trailing bytes it ignores)
			// gets a JSON-RPC parse error.
			body, err := readBody(http.MaxBytesReader(w, r.Body, o.MaxBodyBytes), r.ContentLength)
			if err != nil {
				if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
					refuse(http.StatusRequestEntityTooLarge, "request body is larger than the server accepts")
				} else if errors.Is(err, os.ErrDeadlineExceeded) {
					// The connection is closed after this answer: the rest
					// of a body that trickles is not waited for.
					w.Header().Set("Connection", "close")
					if o.Refused != nil {
						o.Refused("body_timeout")
					}
					refuse(http.StatusRequestTimeout, "the request body did not arrive within "+o.BodyTimeout.String())
				} else {
					refuse(http.StatusBadRequest, "the request body could not be read")
				}
				return
			}
			// The body is decoded here once, into Warden's own view of the
			// request; what follows (the scope check of authentication) reads
			// that view rather than parse the body again.
			msg, ok := decodeMessage(body)
			if !ok {
				s.refused(r, http.StatusBadRequest, "the request body is not valid JSON")
				rejectCode(w, http.StatusBadRequest, jsonrpc.CodeParseError, "the request body is not valid JSON")
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), messageKey{}, msg))
			rb := new(bodyReader)
			rb.Reset(body)
			r.Body = rb
		}
		next.ServeHTTP(w, r)
	})
}

// query returns the parsed query of u, without making a map for the
// query most requests do not have.
func query(u *url.URL) url.Values {
	if u.RawQuery == "" {
		return nil
	}
	return u.Query()
}

// readBody reads a request body whole, in one allocation when the client
// said how long it is (contentLength is at most the body cap here; -1 for
// a body of unknown length).
func readBody(r io.Reader, contentLength int64) ([]byte, error) {
	if contentLength < 0 {
		return io.ReadAll(r)
	}
	// One byte more than announced, so that the read that finds the end
	// needs no second buffer.
	b := make([]byte, 0, contentLength+1)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // more than announced: grow as ReadAll does
		}
	}
}

// bodyReader is a request body already read, served again to whoever reads
// it next (the SDK).
type bodyReader struct{ bytes.Reader }

func (*bodyReader) Close() error { return nil }

// unready appends to names the dependencies err names, each once.
func unready(err error, names []string) []string {
	switch e := err.(type) {
	case interface{ Dependency() string }:
		if n := e.Dependency(); !slices.Contains(names, n) {
			names = append(names, n)
		}
	case interface{ Unwrap() []error }:
		for _, e := range e.Unwrap() {
			names = unready(e, names)
		}
	case interface{ Unwrap() error }:
		names = unready(e.Unwrap(), names)
	}
	return names
}

// deadlineBody is a request body under a read deadline, which it lifts
// once the body has been read to its end.
type deadlineBody struct {
	io.ReadCloser
	rc   http.ResponseController // by value: one allocation, not two
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// requireScope serves api to the principals a authenticates that hold its
// scope.
func (s *Server) requireScope(a Authenticator, metadataURL string, api API) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _, err := a.Authenticate(r)
		var ae *AuthError
		switch {
		case errors.As(err, &ae):
		case err != nil:
			s.log.Warn("authentication failed", "err", err)
			reject(w, http.StatusServiceUnavailable, "authentication is unavailable; retry later")
			return
		case !p.HasScope(api.Scope):
			ae = &AuthError{Status: http.StatusForbidden, Code: "insufficient_scope",
				Description: "this API needs the scope " + api.Scope, Scope: api.Scope}
		default:
			api.Handler(w, r, p)
			return
		}
		s.rejected(r, ae)
		challenge(w, ae, metadataURL)
	})
}

// mounted reports whether path belongs to one of the Mounts, which do their
// own checks.
func (o *HTTPOptions) mounted(path string) bool {
	for prefix := range o.Mounts {
		if strings.HasPrefix(path, prefix) || path == strings.TrimSuffix(prefix, "/") {
			return true
		}
	}
	return false
}

// mountHeaders sets the headers of the HeaderSetter mount, if any, that a
// request's cleaned path falls under, then serves next.
func (o *HTTPOptions) mountHeaders(next http.Handler) http.Handler {
	type setter struct {
		prefix string
		h      HeaderSetter
	}
	var setters []setter
	for prefix, h := range o.Mounts {
		if hs, ok := h.(HeaderSetter); ok {
			setters = append(setters, setter{prefix, hs})
		}
	}
	if len(setters) == 0 {
		return next
	}
	// The longest prefix is the one that serves a path.
	slices.SortFunc(setters, func(a, b setter) int { return len(b.prefix) - len(a.prefix) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean(r.URL.Path)
		for _, m := range setters {
			if strings.HasPrefix(p, m.prefix) || p == strings.TrimSuffix(m.prefix, "/") {
				m.h.SetHeaders(w.Header())
				break
			}
		}
		next.ServeHTTP(w, r)
	})
}

func isJSON(ct string) bool {
	base, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(base), "application/json")
}

// reject answers with a JSON-RPC error body, so that MCP clients can show it.
func reject(w http.ResponseWriter, status int, msg string) {
	rejectCode(w, status, jsonrpc.CodeInvalidRequest, msg)
}

func rejectCode(w http.ResponseWriter, status int, code int64, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"jsonrpc": "2.0",
		"id":      nil,
		"error":   map[string]any{"code": code, "message": msg},
	})
}

func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}

func hostAllowed(allowed []string, host string) bool {
	if len(allowed) == 0 {
		return isLoopbackHost(host)
	}
	name := hostname(host)
	for _, a := range allowed {
		if strings.EqualFold(a, host) || strings.EqualFold(a, name) {
			return true
		}
	}
	return false
}

func originAllowed(allowed []string, origin, host string) bool {
	if slices.ContainsFunc(allowed, func(a string) bool { return strings.EqualFold(strings.TrimSuffix(a, "/"), origin) }) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return isLoopbackHost(u.Host) && isLoopbackHost(host)
}

func hostname(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

func isLoopbackHost(hostport string) bool {
	h := hostname(hostport)
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
