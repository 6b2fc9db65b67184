package guard

import (
	"strings"
	"sync"
	"sync/atomic"
)

// ConfiguredSecret is the kind of a redacted value that is exactly one of
// the secrets registered with AddSecret.
const ConfiguredSecret = "configured_secret"

var (
	exactMu sync.Mutex
	exact   atomic.Pointer[[]string] // read on every text, written rarely
)

// AddSecret registers a secret value Warden holds (a token, a password
// read from a secret reference) so that every Redactor redacts any exact
// occurrence of it, whatever the text around it looks like: an API that
// echoes its request headers back cannot hand Warden's credential to the
// model. Values shorter than 4 bytes are ignored, as they would redact
// ordinary text; registering a value twice is harmless. It is safe for
// concurrent use.
func AddSecret(value string) {
	if len(value) < 4 {
		return
	}
	exactMu.Lock()
	defer exactMu.Unlock()
	var list []string
	if p := exact.Load(); p != nil {
		list = *p
	}
	for _, v := range list {
		if v == value {
			return
		}
	}
	// Copy on write: readers keep the slice they loaded.
	next := append(list[:len(list):len(list)], value)
	exact.Store(&next)
}

// findExact appends a span for every occurrence of a registered secret.
func findExact(s string, spans []span) []span {
	p := exact.Load()
	if p == nil {
		return spans
	}
	for _, v := range *p {
		for off := 0; ; {
			i := strings.Index(s[off:], v)
			if i < 0 {
				break
			}
			spans = append(spans, span{start: off + i, end: off + i + len(v), kind: ConfiguredSecret, rank: -1})
			off += i + len(v)
		}
	}
	return spans
}

// RemoveSecret forgets a value registered with AddSecret, such as an
// access token that was replaced by a new one, so that the list does not
// grow for as long as the process runs.
func RemoveSecret(value string) {
	exactMu.Lock()
	defer exactMu.Unlock()
	p := exact.Load()
	if p == nil {
		return
	}
	next := make([]string, 0, len(*p))
	for _, v := range *p {
		if v != value {
			next = append(next, v)
		}
	}
	exact.Store(&next)
}
