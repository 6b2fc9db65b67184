// Package secret resolves the secret references of a configuration. A
// secret is written as a reference, never as its value: ${env:NAME} reads
// an environment variable, ${file:/path} a mounted secret file (one
// trailing newline dropped).
//
//	token, err := secret.Required("auth.bearer", "${env:CRM_TOKEN}")
//	// token's value, and its escaped spellings, are now redacted from
//	// every result the output guard sees.
//
// Errors name the reference and the key it was found at, never a value.
package secret

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/wardenmcp/warden/internal/guard"
)

// IsRef reports whether v is written as a reference.
func IsRef(v string) bool {
	return strings.HasPrefix(v, "${") && strings.HasSuffix(v, "}")
}

// Resolve returns the value v refers to, or v itself when it is not a
// reference (isRef false). An environment variable that is not set, or a
// file that cannot be read, is an error; an empty value is not.
func Resolve(v string) (value string, isRef bool, err error) {
	if !IsRef(v) {
		return v, false, nil
	}
	kind, arg, ok := strings.Cut(v[2:len(v)-1], ":")
	if !ok || arg == "" {
		return "", true, fmt.Errorf("%s is not a secret reference (use ${env:NAME} or ${file:/path})", v)
	}
	switch kind {
	case "env":
		s, ok := os.LookupEnv(arg)
		if !ok {
			return "", true, fmt.Errorf("environment variable %s is not set", arg)
		}
		return s, true, nil
	case "file":
		b, err := os.ReadFile(arg)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is the operator's; the error says why
			}
			return "", true, fmt.Errorf("cannot read secret file %s: %v", arg, err)
		}
		return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), true, nil
	}
	return "", true, fmt.Errorf("unknown secret reference %q (use env or file)", kind)
}

// Required resolves ref, found at key, which must be a reference to a
// value that is not empty and fits on one line (it is sent in headers and
// forms), and has the output guard redact the value: a system that echoes
// it back cannot hand it to the model.
func Required(key, ref string) (string, error) {
	if !IsRef(ref) {
		return "", fmt.Errorf("%s: must be a secret reference such as ${env:NAME} or ${file:/run/secrets/name}, never the secret itself", key)
	}
	v, _, err := Resolve(ref)
	switch {
	case err != nil:
		return "", fmt.Errorf("%s: %v", key, err)
	case v == "":
		return "", fmt.Errorf("%s: the secret %s is empty (is not set to a value)", key, ref)
	case strings.ContainsAny(v, "\r\n\x00"):
		return "", fmt.Errorf("%s: the secret from %s holds a line break or NUL and cannot be sent in a header", key, ref)
	}
	Redact(v)
	return v, nil
}

// Optional resolves v, found at key, if it is a reference (as Required
// does), and returns it as is otherwise: for settings that are not always
// secret (a client id, a default header).
func Optional(key, v string) (val string, isRef bool, err error) {
	if !IsRef(v) {
		return v, false, nil
	}
	val, err = Required(key, v)
	return val, true, err
}

// Redact has the output guard redact v, and the spellings a system that
// echoes it is likely to use: JSON-escaped and percent-encoded.
func Redact(v string) {
	if v == "" {
		return
	}
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
