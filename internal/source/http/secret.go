package httpsrc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/wardenmcp/warden/internal/guard"
)

// A secret is written in the configuration as a reference, never as its
// value: ${env:NAME} reads an environment variable, ${file:/path} a
// mounted secret file (one trailing newline dropped).
func isRef(s string) bool {
	return strings.HasPrefix(s, "${") && strings.HasSuffix(s, "}")
}

// secret resolves the reference ref, found at key, and registers the
// value with the output guard, so that an API that echoes it back cannot
// hand it to the model. Its errors name the reference, never a value.
func secret(key, ref string) (string, error) {
	if !isRef(ref) {
		return "", fmt.Errorf("%s: must be a secret reference such as ${env:NAME} or ${file:/run/secrets/name}, never the secret itself", key)
	}
	kind, arg, ok := strings.Cut(ref[2:len(ref)-1], ":")
	if !ok || arg == "" {
		return "", fmt.Errorf("%s: %s is not a secret reference (use ${env:NAME} or ${file:/path})", key, ref)
	}
	var v string
	switch kind {
	case "env":
		s, ok := os.LookupEnv(arg)
		if !ok || s == "" {
			return "", fmt.Errorf("%s: environment variable %s is not set", key, arg)
		}
		v = s
	case "file":
		b, err := os.ReadFile(arg)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is the operator's; the error says why
			}
			return "", fmt.Errorf("%s: cannot read secret file %s: %v", key, arg, err)
		}
		v = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if v == "" {
			return "", fmt.Errorf("%s: secret file %s is empty", key, arg)
		}
	default:
		return "", fmt.Errorf("%s: unknown secret reference %q (use env or file)", key, kind)
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		return "", fmt.Errorf("%s: the secret from %s holds a line break or NUL and cannot be sent in a header", key, ref)
	}
	register(v)
	return v, nil
}

// register has the output guard redact v, and the spellings an API that
// echoes a request is likely to use: JSON-escaped and percent-encoded.
func register(v string) {
	guard.AddSecret(v)
	if j, err := json.Marshal(v); err == nil {
		if e := string(j[1 : len(j)-1]); e != v {
			guard.AddSecret(e)
		}
	}
	if e := url.QueryEscape(v); e != v {
		guard.AddSecret(e)
	}
	if e := url.PathEscape(v); e != v {
		guard.AddSecret(e)
	}
}

// valueOrSecret resolves v if it is a reference, and returns it as is
// otherwise: for settings that are not always secret (a client id, a
// default header).
func valueOrSecret(key, v string) (val string, isSecret bool, err error) {
	if !isRef(v) {
		return v, false, nil
	}
	val, err = secret(key, v)
	return val, true, err
}
