package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ArgsKey derives the key for ArgsHash from the server secret, so that the
// chain key and the correlation key are never the same key. Every instance
// given the same secret derives the same key, so hashes correlate across
// instances.
func ArgsKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("warden audit args-hash key v1"))
	return m.Sum(nil)
}

// ArgsHash is a keyed hash (HMAC-SHA256, hex) of the canonical form of
// raw: objects with their keys sorted, no insignificant whitespace, strings
// with one escaping, numbers in one spelling (1, 1.0, 1e0 and 10e-1 are all
// 1). The same arguments hash the same however a client spells them, so
// records correlate without showing the arguments; the key keeps anyone
// without it from confirming a guess ("was the password hunter2?").
//
// Empty raw hashes to "" (no arguments). Raw that is not JSON still gets a
// hash, of its exact bytes, which never equals the hash of valid JSON.
func ArgsHash(key []byte, raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	m := hmac.New(sha256.New, key)
	if c, err := canonicalJSON(raw); err == nil {
		m.Write([]byte{'j'})
		m.Write(c)
	} else {
		m.Write([]byte{'r'})
		m.Write(raw)
	}
	return hex.EncodeToString(m.Sum(nil))
}

// canonicalJSON returns the canonical form of a single JSON value (see
// ArgsHash). Duplicate keys keep the last value, as encoding/json does;
// invalid UTF-8 in strings becomes U+FFFD.
func canonicalJSON(raw []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err == nil {
		return nil, errors.New("more than one JSON value")
	}
	return appendCanonical(make([]byte, 0, len(raw)), v), nil
}

func appendCanonical(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, v)
	case json.Number:
		return appendNumber(b, string(v))
	case string:
		return appendString(b, v)
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCanonical(b, e)
		}
		return append(b, ']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys) // by UTF-8 bytes
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendCanonical(b, v[k])
		}
		return append(b, '}')
	}
	panic(fmt.Sprintf("audit: unexpected JSON value %T", v))
}

// appendString writes s as a JSON string, escaping only what JSON requires
// (quote, backslash, control characters), as RFC 8785 does. Invalid UTF-8
// becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, "\ufffd"...)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
			continue
		}
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\b':
			b = append(b, `\b`...)
		case c == '\f':
			b = append(b, `\f`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '\r':
			b = append(b, `\r`...)
		case c == '\t':
			b = append(b, `\t`...)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
		i++
	}
	return append(b, '"')
}

// appendNumber writes a JSON number literal in one spelling for its exact
// value — no float rounding, so distinct large integers stay distinct:
// plain digits when the decimal point falls within 21 digits of the
// start, as JavaScript prints numbers, and d.ddde±n otherwise.
func appendNumber(b []byte, lit string) []byte {
	s := lit
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	mant, exp := s, int64(0)
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.ParseInt(strings.TrimPrefix(s[i+1:], "+"), 10, 32)
		if err != nil { // an exponent beyond any sense: keep it as spelt
			return append(b, lit...)
		}
		mant, exp = s[:i], e
	}
	digits := mant
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		digits = mant[:i] + mant[i+1:]
		exp -= int64(len(mant) - i - 1)
	}
	digits = strings.TrimLeft(digits, "0")
	trimmed := strings.TrimRight(digits, "0")
	exp += int64(len(digits) - len(trimmed))
	digits = trimmed
	if digits == "" {
		return append(b, '0') // -0 too
	}
	if neg {
		b = append(b, '-')
	}
	// point is where the decimal point falls relative to the digits.
	point := int64(len(digits)) + exp
	switch {
	case point > 21 || point < -5:
		b = append(b, digits[0])
		if len(digits) > 1 {
			b = append(b, '.')
			b = append(b, digits[1:]...)
		}
		b = append(b, 'e')
		if point-1 > 0 {
			b = append(b, '+')
		}
		return strconv.AppendInt(b, point-1, 10)
	case point <= 0:
		b = append(b, "0."...)
		b = append(b, strings.Repeat("0", int(-point))...)
		return append(b, digits...)
	case point < int64(len(digits)):
		b = append(b, digits[:point]...)
		b = append(b, '.')
		return append(b, digits[point:]...)
	}
	b = append(b, digits...)
	return append(b, strings.Repeat("0", int(point)-len(digits))...)
}

// appendRecord writes the canonical form of r that the chain hashes: the
// JSON object of r without its hash, keys sorted, zero values omitted,
// strings and numbers as canonicalJSON writes them. It is written out by
// hand, for speed; TestCanonicalRecord holds it to the generic form.
func appendRecord(b []byte, r *Record) []byte {
	b = append(b, '{')
	first := true
	key := func(k string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, k)
		b = append(b, ':')
	}
	str := func(k, v string) {
		if v != "" {
			key(k)
			b = appendString(b, v)
		}
	}
	num := func(k string, v int64) {
		if v != 0 {
			key(k)
			b = strconv.AppendInt(b, v, 10)
		}
	}
	flag := func(k string, v bool) {
		if v {
			key(k)
			b = append(b, "true"...)
		}
	}
	// Keys in byte order.
	str("approval", r.Approval)
	if r.Args != nil {
		key("args")
		b = append(b, r.Args...) // canonical already: see Writer.Write
	}
	str("args_hash", r.ArgsHash)
	str("auth_method", r.AuthMethod)
	flag("cache_hit", r.CacheHit)
	str("client_name", r.ClientName)
	str("client_version", r.ClientVersion)
	str("decision", string(r.Decision))
	num("duration_ns", int64(r.Duration))
	str("error_code", r.ErrorCode)
	flag("idempotent_replay", r.IdempotentReplay)
	str("instance", r.Instance)
	str("method", r.Method)
	str("mode", r.Mode)
	str("phase", string(r.Phase))
	str("prev_hash", r.PrevHash)
	str("principal", r.Principal)
	str("protocol_version", r.ProtocolVersion)
	str("reason", r.Reason)
	str("remote_addr", r.RemoteAddr)
	num("result_bytes", r.ResultBytes)
	num("result_tokens", r.ResultTokens)
	num("retry_after", int64(r.RetryAfter))
	num("row_count", r.Rows)
	num("seq", r.Seq)
	str("session_id", r.SessionID)
	str("source", r.Source)
	str("status", r.Status)
	str("suggestion", r.Suggestion)
	str("target", r.Target)
	str("tenant", r.Tenant)
	if !r.Time.IsZero() {
		key("time")
		b = appendString(b, r.Time.UTC().Format(time.RFC3339Nano))
	}
	str("tool_version", r.ToolVersion)
	str("trace_id", r.TraceID)
	flag("truncated", r.Truncated)
	return append(b, '}')
}

// chainer computes chain hashes with one secret. It is not safe for
// concurrent use: it reuses its MAC and buffer.
type chainer struct {
	mac hash.Hash
	buf []byte
}

func newChainer(secret []byte) *chainer {
	return &chainer{mac: hmac.New(sha256.New, secret)}
}

// genesis is the PrevHash of an instance's first record: fixed for the
// instance and secret, so a chain cannot be restarted under a new head.
func (c *chainer) genesis(instance string) string {
	c.mac.Reset()
	c.mac.Write([]byte("warden audit genesis v1\x00"))
	c.mac.Write([]byte(instance))
	return hex.EncodeToString(c.mac.Sum(nil))
}

// hash is HMAC(secret, PrevHash || canonical(r without Hash)), in hex.
func (c *chainer) hash(r *Record) string {
	h := r.Hash
	r.Hash = ""
	c.buf = appendRecord(c.buf[:0], r)
	r.Hash = h
	c.mac.Reset()
	c.mac.Write([]byte(r.PrevHash))
	c.mac.Write(c.buf)
	var sum [sha256.Size]byte
	return hex.EncodeToString(c.mac.Sum(sum[:0]))
}
