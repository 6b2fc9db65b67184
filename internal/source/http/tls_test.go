package httpsrc_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardenmcp/warden/pipeline"
)

// writePEM writes a certificate and its key as PEM files in dir.
func writePEM(t *testing.T, dir, name string, der []byte, key *ecdsa.PrivateKey) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// The API trusts only a client certificate, and Warden trusts the API's
// certificate only through the CA bundle it is given.
func TestClientCertificateAndCABundle(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "warden-client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	clientCert, clientKey := writePEM(t, dir, "client", der, key)
	clientX509, _ := x509.ParseCertificate(der)

	api := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"client":%q,"tls":%d}`, r.TLS.PeerCertificates[0].Subject.CommonName, r.TLS.Version)
	}))
	pool := x509.NewCertPool()
	pool.AddCert(clientX509)
	api.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	api.StartTLS()
	t.Cleanup(api.Close)
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o600)

	cfg := func(tlsKeys, auth string) string {
		return fmt.Sprintf(`
server: {name: test}
sources:
  api:
    kind: http
    base_url: %s
    tls: {%s}
    auth: {%s}
    egress: {allow_cidrs: [127.0.0.1/32]}
tools:
  get_me:
    description: Who the API sees.
    source: api
    scope: api.read
    method: GET
    path: /me
`, api.URL, tlsKeys, auth)
	}
	cert := fmt.Sprintf("client_cert: {cert: %s, key: %s}", clientCert, clientKey)

	cs, _ := serve(t, cfg("ca_file: "+ca+", min_version: \"1.3\"", cert))
	res := call(t, cs, "get_me", nil)
	if res.IsError || !strings.Contains(text(res), `"client":"warden-client"`) || !strings.Contains(text(res), fmt.Sprintf(`"tls":%d`, tls.VersionTLS13)) {
		t.Errorf("with the CA and the certificate: %s", text(res))
	}
	// Without the CA bundle the API's certificate is not trusted; without
	// the client certificate the API refuses the handshake.
	for _, c := range []string{cfg("", cert), cfg("ca_file: "+ca, "")} {
		cs, _ := serve(t, c)
		if e := refusal(t, call(t, cs, "get_me", nil)); e.Code != pipeline.Unavailable {
			t.Errorf("refusal = %+v", e)
		}
	}
}

// Header and basic credentials, read from a mounted secret file and the
// environment, reach the API and nothing else.
func TestHeaderAndBasicCredentials(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "api_key")
	os.WriteFile(keyFile, []byte("key-from-file-4Rt7Yb2\n"), 0o600)
	t.Setenv("TEST_API_PASSWORD", "pw-Zq8-Lm3-Xv")
	a := newAPI(t, nil)
	for _, tc := range []struct{ auth, header, want string }{
		{`header: {name: X-API-Key, value: "${file:` + keyFile + `}"}`, "X-Api-Key", "key-from-file-4Rt7Yb2"},
		{`basic: {username: svc, password: "${env:TEST_API_PASSWORD}"}`, "Authorization", "Basic c3ZjOnB3LVpxOC1MbTMtWHY="},
	} {
		cfg := strings.Replace(source(a, ""), `auth: {bearer: "${env:TEST_API_TOKEN}"}`, "auth: {"+tc.auth+"}", 1) + tools
		cs, _ := serve(t, cfg)
		res := call(t, cs, "get_item", map[string]any{"item_id": "1"})
		if got := a.last.Load().Header.Get(tc.header); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.header, got, tc.want)
		}
		if out := text(res); res.IsError || strings.Contains(out, "key-from-file-4Rt7Yb2") || strings.Contains(out, "c3ZjOnB3LVpxOC1MbTMtWHY=") {
			t.Errorf("the credential reached the result: %s", out)
		}
	}
}
