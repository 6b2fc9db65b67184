package observe

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// NewLogger returns a logger that writes records at level and above to w,
// as JSON lines ("json", the default for any other format) or as key=value
// text ("text"), through LogHandler: with the trace id of the context they
// are logged with, and with secrets redacted.
func NewLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(LogHandler(h))
}

// Redacted replaces a value the log handler will not write.
const Redacted = "[REDACTED]"

// LogHandler wraps h so that:
//
//   - a record logged with a context that carries a trace id (WithTraceID,
//     Tracer.Stage, or an OpenTelemetry span) gets it as a top-level
//     trace_id attribute, unless it has one already;
//   - an attribute whose key looks secret (authorization, token, api_key,
//     password, secret, cookie, credential, private_key, in any case and
//     with any separators) has its value replaced by [Redacted], and so does
//     a string that carries a bearer token, a URL's password, and the
//     secret-looking entries of an http.Header or a string-keyed map.
//
// Redaction is a safety net, not a licence: it cannot see a secret inside
// a message or an error's text, so never put one there. It errs towards
// redacting: a key such as "result_tokens" is redacted too.
func LogHandler(h slog.Handler) slog.Handler {
	return &logHandler{root: h, inner: h}
}

type logHandler struct {
	// root is the wrapped handler with the attributes added before the
	// first group; inner is root with every group and attribute since, which
	// opened replays, so that trace_id can go outside every group.
	root, inner slog.Handler
	opened      []func(slog.Handler) slog.Handler
	// traced is set once a trace_id attribute was added with WithAttrs.
	traced bool
}

func (h *logHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	id := ""
	if !h.traced {
		id = traceID(ctx)
		if id == "" {
			if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
				id = sc.TraceID().String()
			}
		}
	}
	dirty := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "trace_id" {
			id = ""
		}
		dirty = dirty || needsRedaction(a)
		return true
	})
	if dirty {
		clean := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
		r.Attrs(func(a slog.Attr) bool {
			clean.AddAttrs(redact(a))
			return true
		})
		r = clean
	}
	if id == "" {
		return h.inner.Handle(ctx, r)
	}
	attr := slog.String("trace_id", id)
	if h.opened == nil {
		if !dirty {
			r = r.Clone() // the caller's record may share its attribute storage
		}
		r.AddAttrs(attr)
		return h.inner.Handle(ctx, r)
	}
	// A group is open: rebuild the handler with trace_id outside it.
	out := h.root.WithAttrs([]slog.Attr{attr})
	for _, f := range h.opened {
		out = f(out)
	}
	return out.Handle(ctx, r)
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	clean := make([]slog.Attr, len(as))
	n := *h
	for i, a := range as {
		clean[i] = redact(a)
		n.traced = n.traced || a.Key == "trace_id"
	}
	n.inner = h.inner.WithAttrs(clean)
	if h.opened == nil {
		n.root = n.inner
	} else {
		n.opened = append(slices.Clip(h.opened), func(x slog.Handler) slog.Handler { return x.WithAttrs(clean) })
	}
	return &n
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.inner = h.inner.WithGroup(name)
	n.opened = append(slices.Clip(h.opened), func(x slog.Handler) slog.Handler { return x.WithGroup(name) })
	return &n
}

// needsRedaction reports whether redact would change a, or must resolve
// it to know.
func needsRedaction(a slog.Attr) bool {
	if secretKey(a.Key) {
		return true
	}
	v := a.Value
	switch v.Kind() {
	case slog.KindString:
		return secretValue(v.String())
	case slog.KindGroup:
		return slices.ContainsFunc(v.Group(), needsRedaction)
	case slog.KindLogValuer:
		return true
	case slog.KindAny:
		return secretAny(v.Any())
	}
	return false
}

// redact returns a with its value resolved and anything secret replaced.
func redact(a slog.Attr) slog.Attr {
	if secretKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if secretValue(v.String()) {
			return slog.String(a.Key, Redacted)
		}
	case slog.KindGroup:
		as := v.Group()
		if slices.ContainsFunc(as, needsRedaction) {
			clean := make([]slog.Attr, len(as))
			for i, a := range as {
				clean[i] = redact(a)
			}
			v = slog.GroupValue(clean...)
		}
	case slog.KindAny:
		if x := v.Any(); secretAny(x) {
			v = redactAny(x)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// secretAny reports whether x is a value of a type that can carry secrets
// under its own keys, and does.
func secretAny(x any) bool {
	switch x := x.(type) {
	case http.Header:
		return secretMap(x)
	case map[string][]string:
		return secretMap(x)
	case map[string]string:
		return secretMap(x)
	case map[string]any:
		return secretMap(x)
	case []string:
		return slices.ContainsFunc(x, secretValue)
	case *url.URL:
		return x != nil && x.User != nil
	case url.URL:
		return x.User != nil
	case error:
		return x != nil && secretValue(x.Error())
	}
	return false
}

func secretMap[V any](m map[string]V) bool {
	for k, v := range m {
		if secretKey(k) || needsRedaction(slog.Any(k, v)) {
			return true
		}
	}
	return false
}

// redactAny returns what to log in place of x, for which secretAny holds.
func redactAny(x any) slog.Value {
	switch x := x.(type) {
	case http.Header:
		return mapGroup(x)
	case map[string][]string:
		return mapGroup(x)
	case map[string]string:
		return mapGroup(x)
	case map[string]any:
		return mapGroup(x)
	case *url.URL:
		return slog.StringValue(x.Redacted())
	case url.URL:
		return slog.StringValue(x.Redacted())
	}
	return slog.StringValue(Redacted)
}

// mapGroup returns m as a group, its keys sorted and its secrets redacted.
func mapGroup[V any](m map[string]V) slog.Value {
	as := make([]slog.Attr, 0, len(m))
	for k, v := range m {
		as = append(as, redact(slog.Any(k, v)))
	}
	slices.SortFunc(as, func(a, b slog.Attr) int { return strings.Compare(a.Key, b.Key) })
	return slog.GroupValue(as...)
}

// secretWords are what a secret's key contains, once lower-cased and
// stripped of separators: "Authorization", "X-Api-Key", "db_password",
// "refreshToken", "Set-Cookie".
var secretWords = [][]byte{
	[]byte("authorization"), []byte("token"), []byte("apikey"), []byte("password"),
	[]byte("passwd"), []byte("secret"), []byte("cookie"), []byte("credential"),
	[]byte("privatekey"), []byte("bearer"),
}

func secretKey(key string) bool {
	var buf [64]byte
	b := buf[:0]
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '-' || c == '_' || c == '.' || c == ' ':
			continue
		}
		b = append(b, c)
	}
	for _, w := range secretWords {
		if bytes.Contains(b, w) {
			return true
		}
	}
	return false
}

// secretValue reports whether s carries a credential in the form of an
// Authorization header: "Bearer <token>" anywhere in it, or "Basic
// <credentials>" as the whole of it ("basic" alone is too common a word).
func secretValue(s string) bool {
	const bearer, basic = "bearer ", "basic "
	if len(s) > len(basic) && strings.EqualFold(s[:len(basic)], basic) && !strings.ContainsRune(s[len(basic):], ' ') {
		return true
	}
	for i := 0; i+len(bearer) < len(s); i++ {
		if (s[i] == 'b' || s[i] == 'B') && strings.EqualFold(s[i:i+len(bearer)], bearer) && s[i+len(bearer)] != ' ' {
			return true
		}
	}
	return false
}

var _ slog.Handler = (*logHandler)(nil)
