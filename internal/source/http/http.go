// Package httpsrc is the source kind http: narrow tools over an HTTP API,
// with the API's credential held by Warden and every connection checked
// against an egress allow-list.
//
//	sources:
//	  crm:
//	    kind: http
//	    base_url: https://api.example.com/v1
//	    auth:
//	      bearer: ${env:CRM_TOKEN}        # a reference, never the value
//	    timeout: 10s
//
//	tools:
//	  get_customer:
//	    source: crm
//	    scope: crm.read
//	    method: GET
//	    path: /customers/{customer_id}  # each parameter is a whole segment
//	    parameters:
//	      customer_id: {type: string, required: true, max_length: 64}
//	    projection: "{id: id, name: name, plan: plan}"   # JMESPath
//
// Secrets are references (${env:NAME}, ${file:/path}); their values are
// registered with the output guard, which redacts any exact echo of them
// in a result. Requests go only to the allow-listed endpoints (by default
// the base URL's); each host is resolved once and the checked address is
// dialled; loopback, private, link-local, CGNAT, multicast and other
// non-public addresses, in any spelling, are refused unless
// egress.allow_cidrs holds them. Redirects are off unless
// egress.max_redirects is set, and then each hop is checked again and
// credentials go only to the base URL's host. Proxies from the
// environment are ignored; egress.proxy sets one.
package httpsrc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/secret"
	"github.com/wardenmcp/warden/internal/source"
)

func init() { source.Register(Kind, open) }

// Kind names this kind in sources and in audit records.
const Kind = "http"

// Defaults, where the source sets none.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultMaxResponseBytes = 1 << 20
)

// settings are the keys of a source of kind http.
type settings struct {
	Kind             string            `yaml:"kind"`
	BaseURL          string            `yaml:"base_url"`
	Auth             *authSettings     `yaml:"auth"`
	Headers          map[string]string `yaml:"headers"`
	Timeout          time.Duration     `yaml:"timeout"`
	MaxResponseBytes int64             `yaml:"max_response_bytes"`
	TLS              *struct {
		CAFile     string `yaml:"ca_file"`
		MinVersion string `yaml:"min_version"`
	} `yaml:"tls"`
	Egress struct {
		Allow        []string `yaml:"allow"`
		AllowCIDRs   []string `yaml:"allow_cidrs"`
		MaxRedirects int      `yaml:"max_redirects"`
		Proxy        string   `yaml:"proxy"`
	} `yaml:"egress"`
}

// api is one source of kind http.
type api struct {
	name    string
	base    *url.URL
	baseEP  endpoint
	headers http.Header // default headers
	secretH map[string]bool
	auth    authenticator
	egress  *egress
	client  *http.Client
	maxBody int64
	timeout time.Duration
}

func open(_ context.Context, name string, raw config.RawSource, cfg *config.Config) (source.Source, error) {
	b, err := yaml.Marshal(map[string]any(raw))
	if err != nil {
		return nil, err
	}
	var s settings
	if err := yaml.UnmarshalWithOptions(b, &s, yaml.Strict(), yaml.DisallowUnknownField()); err != nil {
		return nil, fmt.Errorf("%s", yaml.FormatError(err, false, false))
	}
	return build(name, &s, cfg, nil)
}

// build makes the source; r replaces the system resolver (tests).
func build(name string, s *settings, cfg *config.Config, r resolver) (*api, error) {
	a := &api{name: name, headers: http.Header{}, secretH: map[string]bool{}, timeout: s.Timeout, maxBody: s.MaxResponseBytes}
	if s.BaseURL == "" {
		return nil, errors.New("base_url: required (the API's root, such as https://api.example.com/v1)")
	}
	base, err := url.Parse(s.BaseURL)
	if err != nil || base.User != nil || base.RawQuery != "" || base.Fragment != "" {
		return nil, errors.New("base_url: must be an http or https URL without credentials, query or fragment")
	}
	a.base = base
	if a.baseEP, err = endpointOf(base); err != nil {
		return nil, fmt.Errorf("base_url: %v", err)
	}
	if a.timeout == 0 {
		a.timeout = DefaultTimeout
	}
	if a.timeout < 0 {
		return nil, errors.New("timeout: must be positive")
	}
	if a.maxBody == 0 {
		a.maxBody = DefaultMaxResponseBytes
	}
	if a.maxBody < 0 {
		return nil, errors.New("max_response_bytes: must be positive")
	}

	if r == nil {
		r = net.DefaultResolver
	}
	e := &egress{resolver: r, timeout: a.timeout}
	for i, s := range s.Egress.Allow {
		ep, err := parseEndpoint(s)
		if err != nil {
			return nil, fmt.Errorf("egress.allow[%d]: %v", i, err)
		}
		e.allow = append(e.allow, ep)
	}
	if len(e.allow) == 0 {
		e.allow = []endpoint{a.baseEP}
	} else if e.checkURL(base) != nil {
		return nil, errors.New("base_url: its scheme, host and port must be on egress.allow")
	}
	for i, c := range s.Egress.AllowCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("egress.allow_cidrs[%d]: %q is not a CIDR such as 10.1.2.0/24", i, c)
		}
		e.cidrs = append(e.cidrs, p.Masked())
	}
	if s.Egress.MaxRedirects < 0 || s.Egress.MaxRedirects > 10 {
		return nil, errors.New("egress.max_redirects: must be between 0 (the default: redirects are not followed) and 10")
	}
	a.egress = e

	for _, h := range config.SortedKeys(s.Headers) {
		v, isSecret, err := secret.Optional("headers."+h, s.Headers[h])
		if err != nil {
			return nil, err
		}
		if err := checkHeader(h, v); err != nil {
			return nil, fmt.Errorf("headers.%s: %v", h, err)
		}
		a.headers.Set(h, v)
		if isSecret {
			a.secretH[http.CanonicalHeaderKey(h)] = true
		}
	}

	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if t := s.TLS; t != nil {
		switch t.MinVersion {
		case "", "1.2":
		case "1.3":
			tlsConf.MinVersion = tls.VersionTLS13
		default:
			return nil, fmt.Errorf("tls.min_version: must be 1.2 or 1.3, not %q", t.MinVersion)
		}
		if t.CAFile != "" {
			pem, err := os.ReadFile(cfg.Resolve(t.CAFile))
			if err != nil {
				return nil, fmt.Errorf("tls.ca_file: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls.ca_file: %s holds no PEM certificate", t.CAFile)
			}
			tlsConf.RootCAs = pool
		}
	}

	tr := &http.Transport{
		// Proxies from the environment are ignored: egress is what the
		// configuration says, not what the process inherited.
		Proxy:                 nil,
		DialContext:           e.dial,
		TLSClientConfig:       tlsConf,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   a.timeout,
		ResponseHeaderTimeout: a.timeout,
	}
	if p := s.Egress.Proxy; p != "" {
		pu, err := url.Parse(p)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return nil, errors.New("egress.proxy: must be an http or https URL")
		}
		tr.Proxy = http.ProxyURL(pu)
	}
	a.client = &http.Client{Transport: tr, Timeout: a.timeout, CheckRedirect: a.redirect(s.Egress.MaxRedirects)}

	auth, err := newAuth(s.Auth, a, cfg, tlsConf)
	if err != nil {
		return nil, err
	}
	a.auth = auth
	return a, nil
}

// redirect checks each hop of a redirect: the hop count, the allow-list,
// and that credentials go only to the base URL's host. The dialler checks
// the hop's address as it does every address.
func (a *api) redirect(max int) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if max == 0 {
			return http.ErrUseLastResponse
		}
		if len(via) > max {
			return refused("the API redirected more than %d times", max)
		}
		if err := a.egress.checkURL(req.URL); err != nil {
			return err
		}
		if ep, _ := endpointOf(req.URL); ep != a.baseEP {
			for _, h := range a.credentialHeaders() {
				req.Header.Del(h)
			}
		}
		return nil
	}
}

// credentialHeaders lists the headers that carry the source's secrets.
func (a *api) credentialHeaders() []string {
	hs := []string{"Authorization", "Proxy-Authorization", "Cookie"}
	if a.auth != nil {
		hs = append(hs, a.auth.headers()...)
	}
	for h := range a.secretH {
		hs = append(hs, h)
	}
	return hs
}

// checkHeader refuses a header that would split a request.
func checkHeader(name, value string) error {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", r) }) {
		return fmt.Errorf("%q is not a header name", name)
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		return errors.New("a header value cannot hold a line break or NUL")
	}
	return nil
}

// Ready reports no problem: an API has no generic health check, and a
// request made only to check would be a call the operator did not declare.
func (a *api) Ready(context.Context) error { return nil }

func (a *api) Close() error {
	a.client.CloseIdleConnections()
	return nil
}
