package warden

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/modelcontextprotocol/go-sdk/auth"

	"github.com/wardenmcp/warden/pipeline"
)

// principalKey and remoteAddrKey key the principal and the client's
// address in the SDK's token info: the channel by which the principal
// reaches a call the SDK dispatches, in both session and stateless modes.
const (
	principalKey  = "io.wardenmcp/principal"
	remoteAddrKey = "io.wardenmcp/remote_addr"
)

// Authenticator establishes who makes an HTTP request; see
// pipeline.Authenticator, where it is defined so that internal packages can
// implement it without importing this one.
type Authenticator = pipeline.Authenticator

// AuthError is a refused authentication, answered with its HTTP status;
// see pipeline.AuthError.
type AuthError = pipeline.AuthError

// Unauthenticated returns a 401 AuthError.
func Unauthenticated(code, description string) *AuthError {
	return pipeline.Unauthenticated(code, description)
}

// authenticate serves every request with a verified principal, or refuses
// it: on the lean path if lean (not nil) answers it, else through next.
// The principal reaches a lean call in the request's context, and a call
// the SDK dispatches through the SDK's token info, the one channel the SDK
// carries from an HTTP request to a handler in both session and stateless
// modes; the SDK also uses its user id to refuse a session presented by
// another principal. The lean path reads no token info, so a request it
// answers skips making one.
func (s *Server) authenticate(a Authenticator, resourceMetadata string, lean func(http.ResponseWriter, *http.Request) bool, next http.Handler) http.Handler {
	// RequireBearerToken is the only way to hand the SDK a token info, which
	// the SDK uses to bind a session to its principal and carries to every
	// request of the session. The credential was verified above it, and the
	// token info is made from the principal Warden put in the request's
	// context; the real credential never reaches the SDK.
	inner := auth.RequireBearerToken(func(ctx context.Context, _ string, r *http.Request) (*auth.TokenInfo, error) {
		p := pipeline.PrincipalFrom(ctx)
		if p == nil {
			return nil, auth.ErrInvalidToken
		}
		// The credential's expiry was checked above, with its own clock
		// skew; the SDK is not asked to check it again without one.
		return &auth.TokenInfo{UserID: sessionOwner(p), Scopes: p.Scopes, Extra: map[string]any{principalKey: p, remoteAddrKey: r.RemoteAddr}}, nil
	}, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(next)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _, err := a.Authenticate(r)
		if err != nil {
			var ae *AuthError
			if !errors.As(err, &ae) {
				s.log.Warn("authentication failed", "err", err)
				ae = &AuthError{Status: http.StatusServiceUnavailable, Description: "authentication is unavailable; retry later"}
				w.Header().Set("Retry-After", "1")
				// The key store did not answer within its deadline, and the
				// same state store keeps the audit log: the refusal is
				// queued, not waited for, so that the caller hears at once
				// rather than after a second deadline.
				s.refusedNoWait(r, ae.Status, ae.Description)
				challenge(w, ae, resourceMetadata)
				return
			}
			s.rejected(r, ae)
			challenge(w, ae, resourceMetadata)
			return
		}
		if p.AuthMethod == "jwt" {
			// An OAuth client can get a token with more scope (step-up), so it
			// is told at the HTTP level, as the MCP authorization spec says.
			if scope := s.missingScope(r, p); scope != "" {
				ae := &AuthError{Status: http.StatusForbidden, Code: "insufficient_scope",
					Description: "this call needs the scope " + scope, Scope: scope}
				s.rejected(r, ae)
				challenge(w, ae, resourceMetadata)
				return
			}
		}
		r = r.WithContext(pipeline.WithPrincipal(r.Context(), p))
		if lean != nil && lean(w, r) {
			return
		}
		r.Header.Set("Authorization", "Bearer verified") // for RequireBearerToken; see above
		inner.ServeHTTP(w, r)
	})
}

// rejected records a request refused before any call existed. The request
// is refused whether or not the record can be made.
func (s *Server) rejected(r *http.Request, ae *AuthError) { s.refused(r, ae.Status, ae.Description) }

// refused records a request refused at the HTTP layer, by the transport
// guard or by authentication, and returns once the record is durable or
// its deadline has passed.
func (s *Server) refused(r *http.Request, status int, reason string) {
	s.refuse(r.Context(), r, status, reason)
}

// refusedNoWait queues the record of a refused request without waiting for
// it: it is stored if the audit store answers, as the writer's batches go.
func (s *Server) refusedNoWait(r *http.Request, status int, reason string) {
	// A context that has ended: Event queues its record, and returns at
	// once rather than wait for it.
	ctx, cancel := context.WithCancel(r.Context())
	cancel()
	s.refuse(ctx, r, status, reason)
}

func (s *Server) refuse(ctx context.Context, r *http.Request, status int, reason string) {
	if s.audit == nil {
		return
	}
	code := pipeline.InvalidArgument
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		code = pipeline.PermissionDenied
	}
	ev := &pipeline.Event{Method: r.Method + " " + r.URL.Path, RemoteAddr: r.RemoteAddr, TraceID: newTraceID(),
		Code: code, Reason: fmt.Sprintf("HTTP %d: %s", status, reason)}
	if err := s.audit.Event(ctx, ev); err != nil && ctx.Err() == nil {
		s.log.Error("audit: refused request not recorded", "err", err)
	}
}

// sessionOwner is the identity a session is bound to: the SDK refuses a
// session presented by anyone whose owner differs. Principal ids alone can
// collide across authentication methods and tenants (an API key named alice,
// a token for sub alice), so all three are part of it.
func sessionOwner(p *pipeline.Principal) string {
	return string(appendOwner(nil, p))
}

func appendOwner(b []byte, p *pipeline.Principal) []byte {
	b = strconv.AppendQuote(b, p.AuthMethod)
	b = append(b, ' ')
	b = strconv.AppendQuote(b, p.Tenant)
	b = append(b, ' ')
	return strconv.AppendQuote(b, p.ID)
}

// missingScope returns the scope p lacks for the tool or prompt the request
// names, or "". The transport guard decoded the body once, into the
// request's message.
func (s *Server) missingScope(r *http.Request, p *pipeline.Principal) string {
	msg, _ := r.Context().Value(messageKey{}).(*message)
	if r.Method != http.MethodPost || msg == nil {
		return ""
	}
	var key string
	switch msg.Method {
	case "tools/call":
		key = "tool:" + msg.Params.Name
	case "prompts/get":
		key = "prompt:" + msg.Params.Name
	default:
		return ""
	}
	e := s.lookup(key)
	if e == nil || p.HasScope(e.spec().Scope) {
		return ""
	}
	return e.spec().Scope
}

// challenge answers a refused authentication, with the WWW-Authenticate
// header of RFC 6750 and RFC 9728 so that OAuth clients can find where to
// get a token.
func challenge(w http.ResponseWriter, ae *AuthError, resourceMetadata string) {
	if ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden {
		v := "Bearer"
		sep := " "
		add := func(k, val string) {
			if val != "" {
				v += sep + k + "=" + quoteParam(val)
				sep = ", "
			}
		}
		add("resource_metadata", resourceMetadata)
		add("error", ae.Code)
		add("error_description", ae.Description)
		add("scope", ae.Scope)
		w.Header().Set("WWW-Authenticate", v)
	}
	reject(w, ae.Status, ae.Description)
}

func quoteParam(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\', c)
		} else if c >= 0x20 && c < 0x7f {
			b = append(b, c)
		}
	}
	return string(append(b, '"'))
}
