package httpsrc

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/guard"
	"github.com/wardenmcp/warden/internal/secret"
)

// authSettings say how Warden authenticates to the API: one of bearer,
// header, basic and oauth2, and optionally a client certificate.
type authSettings struct {
	Bearer string `yaml:"bearer"`
	Header *struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"header"`
	Basic *struct {
		Username string `yaml:"username"`
		Password string `yaml:"password"`
	} `yaml:"basic"`
	OAuth2 *struct {
		TokenURL     string            `yaml:"token_url"`
		ClientID     string            `yaml:"client_id"`
		ClientSecret string            `yaml:"client_secret"`
		Scopes       []string          `yaml:"scopes"`
		Params       map[string]string `yaml:"params"`
	} `yaml:"oauth2"`
	ClientCert *struct {
		Cert string `yaml:"cert"`
		Key  string `yaml:"key"`
	} `yaml:"client_cert"`
}

// authenticator adds the source's credential to a request.
type authenticator interface {
	// apply sets the credential on req. A dry run (masked) sets a
	// placeholder and fetches nothing.
	apply(ctx context.Context, req *http.Request, masked bool) error
	// headers names the headers apply sets.
	headers() []string
}

// Mask replaces a credential in a dry run's request.
const Mask = "[secret]"

type staticAuth struct {
	name, value, prefix string // header name, secret, scheme prefix
}

func (s *staticAuth) apply(_ context.Context, req *http.Request, masked bool) error {
	v := s.value
	if masked {
		v = Mask
	}
	req.Header.Set(s.name, s.prefix+v)
	return nil
}

func (s *staticAuth) headers() []string { return []string{s.name} }

type noAuth struct{}

func (noAuth) apply(context.Context, *http.Request, bool) error { return nil }
func (noAuth) headers() []string                                { return nil }

// oauthAuth fetches tokens by the client credentials grant. The token
// source reuses a token until shortly before it expires, then fetches a
// new one; concurrent calls share one fetch.
type oauthAuth struct {
	ts oauth2.TokenSource

	mu   sync.Mutex
	last string // the token registered with the guard
}

func (o *oauthAuth) apply(_ context.Context, req *http.Request, masked bool) error {
	if masked {
		req.Header.Set("Authorization", "Bearer "+Mask)
		return nil
	}
	tok, err := o.ts.Token()
	if err != nil {
		return &tokenError{err}
	}
	o.mu.Lock()
	if tok.AccessToken != o.last {
		// The guard redacts the current token; an expired one is
		// forgotten, so the list stays short however long Warden runs.
		guard.AddSecret(tok.AccessToken)
		if o.last != "" {
			guard.RemoveSecret(o.last)
		}
		o.last = tok.AccessToken
	}
	o.mu.Unlock()
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	return nil
}

func (o *oauthAuth) headers() []string { return []string{"Authorization"} }

// tokenError is a failure to get a token; its cause stays in the logs.
type tokenError struct{ err error }

func (e *tokenError) Error() string { return "fetching an OAuth token: " + e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

func newAuth(s *authSettings, a *api, cfg *config.Config, tlsConf *tls.Config) (authenticator, error) {
	if s == nil {
		return noAuth{}, nil
	}
	n := 0
	for _, set := range []bool{s.Bearer != "", s.Header != nil, s.Basic != nil, s.OAuth2 != nil} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("auth: choose one of bearer, header, basic and oauth2")
	}
	if c := s.ClientCert; c != nil {
		if c.Cert == "" || c.Key == "" {
			return nil, errors.New("auth.client_cert: cert and key are both required (paths to PEM files)")
		}
		cert, err := tls.LoadX509KeyPair(cfg.Resolve(c.Cert), cfg.Resolve(c.Key))
		if err != nil {
			return nil, errors.New("auth.client_cert: cannot load the certificate and key (check both are PEM and match)")
		}
		tlsConf.Certificates = []tls.Certificate{cert}
	}
	switch {
	case s.Bearer != "":
		v, err := secret.Required("auth.bearer", s.Bearer)
		if err != nil {
			return nil, err
		}
		return &staticAuth{name: "Authorization", value: v, prefix: "Bearer "}, nil
	case s.Header != nil:
		if err := checkHeader(s.Header.Name, ""); err != nil {
			return nil, fmt.Errorf("auth.header.name: %v", err)
		}
		v, err := secret.Required("auth.header.value", s.Header.Value)
		if err != nil {
			return nil, err
		}
		return &staticAuth{name: http.CanonicalHeaderKey(s.Header.Name), value: v}, nil
	case s.Basic != nil:
		if s.Basic.Username == "" {
			return nil, errors.New("auth.basic.username: required")
		}
		user, _, err := secret.Optional("auth.basic.username", s.Basic.Username)
		if err != nil {
			return nil, err
		}
		pw, err := secret.Required("auth.basic.password", s.Basic.Password)
		if err != nil {
			return nil, err
		}
		enc := base64.StdEncoding.EncodeToString([]byte(user + ":" + pw))
		guard.AddSecret(enc)
		return &staticAuth{name: "Authorization", value: enc, prefix: "Basic "}, nil
	case s.OAuth2 != nil:
		o := s.OAuth2
		tu, err := url.Parse(o.TokenURL)
		if err != nil || tu.Host == "" {
			return nil, errors.New("auth.oauth2.token_url: required, an http or https URL")
		}
		if err := a.egress.checkURL(tu); err != nil {
			return nil, errors.New("auth.oauth2.token_url: its scheme, host and port must be on egress.allow")
		}
		if o.ClientID == "" {
			return nil, errors.New("auth.oauth2.client_id: required")
		}
		id, _, err := secret.Optional("auth.oauth2.client_id", o.ClientID)
		if err != nil {
			return nil, err
		}
		sec, err := secret.Required("auth.oauth2.client_secret", o.ClientSecret)
		if err != nil {
			return nil, err
		}
		cc := &clientcredentials.Config{ClientID: id, ClientSecret: sec, TokenURL: o.TokenURL, Scopes: o.Scopes}
		if len(o.Params) > 0 {
			cc.EndpointParams = url.Values{}
			for k, v := range o.Params {
				cc.EndpointParams.Set(k, v)
			}
		}
		// The token endpoint is reached through the source's own client:
		// the same egress checks, no redirects unless allowed.
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, a.client)
		return &oauthAuth{ts: cc.TokenSource(ctx)}, nil
	}
	return noAuth{}, nil
}
