// Package authn establishes who makes each HTTP request: an API key, a JWT
// from an OAuth authorization server, a client certificate, or — only where
// the configuration declares it — anonymous access with explicit scopes.
// Every failure is refused with 401 or 403; nothing is implicitly allowed.
package authn

import (
	"context"
	"crypto/x509"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/wardenmcp/warden/internal/keys"
	"github.com/wardenmcp/warden/pipeline"
)

// Verifier checks a bearer token and returns its principal and expiry.
type Verifier interface {
	Verify(ctx context.Context, token string) (*pipeline.Principal, time.Time, error)
}

// VerifierFunc adapts a function to Verifier.
type VerifierFunc func(ctx context.Context, token string) (*pipeline.Principal, time.Time, error)

// Verify calls f.
func (f VerifierFunc) Verify(ctx context.Context, token string) (*pipeline.Principal, time.Time, error) {
	return f(ctx, token)
}

// Authenticator tries, in order: a bearer token (an API key or a JWT), a
// verified client certificate, and anonymous access. Nil fields are
// methods that are off.
type Authenticator struct {
	APIKeys Verifier
	JWT     Verifier
	// Certs maps a client certificate's subject common name, or one of its
	// DNS, email or URI subject alternative names, to a principal.
	Certs map[string]*pipeline.Principal
	// Anonymous is the principal of a request with no credential at all.
	Anonymous *pipeline.Principal
}

var _ pipeline.Authenticator = (*Authenticator)(nil)

// Authenticate implements pipeline.Authenticator.
func (a *Authenticator) Authenticate(r *http.Request) (*pipeline.Principal, time.Time, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, _ := strings.Cut(h, " ")
		token = strings.TrimSpace(token)
		if !strings.EqualFold(scheme, "Bearer") || token == "" {
			return nil, time.Time{}, pipeline.Unauthenticated("invalid_request", "send credentials as Authorization: Bearer <token>")
		}
		v := a.JWT
		// Warden's API keys are recognisable by their marker, so they are
		// routed without trying a JWT parse.
		if strings.HasPrefix(token, keys.Marker) {
			v = a.APIKeys
		}
		if v == nil {
			return nil, time.Time{}, pipeline.Unauthenticated("invalid_token", "this kind of credential is not accepted here")
		}
		return v.Verify(r.Context(), token)
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cert := r.TLS.VerifiedChains[0][0]
		if p := a.certPrincipal(cert); p != nil {
			return p, cert.NotAfter, nil
		}
		return nil, time.Time{}, &pipeline.AuthError{Status: http.StatusForbidden, Description: "the client certificate is valid but not mapped to a principal"}
	}
	if a.Anonymous != nil {
		p := clone(a.Anonymous)
		p.AuthMethod = "anonymous"
		return p, time.Time{}, nil
	}
	return nil, time.Time{}, pipeline.Unauthenticated("", "authentication required: send Authorization: Bearer <API key or token>")
}

// certPrincipal maps a verified certificate to its principal, by subject
// common name or subject alternative name.
func (a *Authenticator) certPrincipal(cert *x509.Certificate) *pipeline.Principal {
	names := []string{cert.Subject.CommonName}
	names = append(names, cert.DNSNames...)
	names = append(names, cert.EmailAddresses...)
	for _, u := range cert.URIs {
		names = append(names, u.String())
	}
	for _, n := range names {
		if p, ok := a.Certs[n]; ok && n != "" {
			p = clone(p)
			p.AuthMethod = "mtls"
			return p
		}
	}
	return nil
}

func clone(p *pipeline.Principal) *pipeline.Principal {
	c := *p
	c.Scopes = slices.Clone(p.Scopes)
	c.Groups = slices.Clone(p.Groups)
	return &c
}
