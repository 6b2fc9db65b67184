package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/wardenmcp/warden/internal/jsonenc"
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
	writeArgs(m, raw)
	return hex.EncodeToString(m.Sum(nil))
}

// writeArgs writes what ArgsHash hashes of raw to m.
func writeArgs(m hash.Hash, raw []byte) {
	if c, err := canonicalJSON(raw); err == nil {
		m.Write([]byte{'j'})
		m.Write(c)
	} else {
		m.Write([]byte{'r'})
		m.Write(raw)
	}
}

// Canonical returns the canonical form of the single JSON value raw, the
// form ArgsHash hashes: objects with their keys sorted, no insignificant
// whitespace, strings with one escaping, numbers in one spelling. Other
// packages that hash JSON (pinned upstream definitions) use it so that
// Warden has one canonical form.
func Canonical(raw []byte) ([]byte, error) { return canonicalJSON(raw) }

// canonicalJSON returns the canonical form of a single JSON value (see
// ArgsHash). Duplicate keys keep the last value, as encoding/json does;
// invalid UTF-8 in strings becomes U+FFFD. It reads raw directly, without
// decoding it into maps, so that a record's arguments cost one pass and a
// few pooled buffers (TestCanonicalMatchesDecoding holds it to the form
// appendCanonical gives the decoded value).
func canonicalJSON(raw []byte) ([]byte, error) {
	c := canonPool.Get().(*canonicalizer)
	defer canonPool.Put(c)
	c.in, c.pos, c.depth = raw, 0, 0
	c.out = make([]byte, 0, len(raw))
	err := c.value()
	if err == nil {
		c.space()
		if c.pos < len(c.in) {
			err = c.fail("more than one JSON value, or trailing data")
		}
	}
	out := c.out
	c.in, c.out = nil, nil
	c.keys, c.members, c.tmp = c.keys[:0], c.members[:0], c.tmp[:0]
	if err != nil {
		return nil, err
	}
	return out, nil
}

var canonPool = sync.Pool{New: func() any { return new(canonicalizer) }}

// maxDepth is how deeply values may nest, as in encoding/json.
const maxDepth = 10000

// canonicalizer writes the canonical form of the JSON in in to out. keys
// holds the decoded keys of the objects being read, members their places,
// both as stacks; tmp is scratch for strings and for reordering members.
type canonicalizer struct {
	in      []byte
	pos     int
	depth   int
	out     []byte
	keys    []byte
	members []member
	tmp     []byte
}

// member is one member of an object being read: its decoded key at
// keys[k0:k1], its canonical value at out[v0:v1].
type member struct{ k0, k1, v0, v1 int }

func (c *canonicalizer) fail(msg string) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", c.pos, msg)
}

func (c *canonicalizer) space() {
	for c.pos < len(c.in) {
		switch c.in[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

func (c *canonicalizer) value() error {
	c.space()
	if c.pos >= len(c.in) {
		return c.fail("unexpected end")
	}
	switch ch := c.in[c.pos]; {
	case ch == '{':
		return c.object()
	case ch == '[':
		return c.array()
	case ch == '"':
		c.tmp = c.tmp[:0]
		var err error
		if c.tmp, err = c.str(c.tmp); err != nil {
			return err
		}
		c.out = appendEscaped(c.out, c.tmp)
		return nil
	case ch == '-' || ('0' <= ch && ch <= '9'):
		return c.number()
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(c.in)-c.pos >= len(lit) && string(c.in[c.pos:c.pos+len(lit)]) == lit {
			c.pos += len(lit)
			c.out = append(c.out, lit...)
			return nil
		}
	}
	return c.fail("unexpected character")
}

func (c *canonicalizer) enter() error {
	c.depth++
	if c.depth > maxDepth {
		return c.fail("nested too deeply")
	}
	return nil
}

func (c *canonicalizer) array() error {
	if err := c.enter(); err != nil {
		return err
	}
	c.pos++ // [
	c.out = append(c.out, '[')
	c.space()
	if c.pos < len(c.in) && c.in[c.pos] == ']' {
		c.pos++
		c.depth--
		c.out = append(c.out, ']')
		return nil
	}
	for n := 0; ; n++ {
		if n > 0 {
			c.out = append(c.out, ',')
		}
		if err := c.value(); err != nil {
			return err
		}
		c.space()
		if c.pos >= len(c.in) {
			return c.fail("unexpected end in an array")
		}
		switch c.in[c.pos] {
		case ',':
			c.pos++
		case ']':
			c.pos++
			c.depth--
			c.out = append(c.out, ']')
			return nil
		default:
			return c.fail("want , or ] in an array")
		}
	}
}

// object reads an object's members, their values written in order at the
// end of out, then rewrites them there sorted by key, the last of equal
// keys kept.
func (c *canonicalizer) object() error {
	if err := c.enter(); err != nil {
		return err
	}
	c.pos++ // {
	start, kbase, mbase := len(c.out), len(c.keys), len(c.members)
	c.space()
	if c.pos < len(c.in) && c.in[c.pos] == '}' {
		c.pos++
		c.depth--
		c.out = append(c.out, "{}"...)
		return nil
	}
	for {
		c.space()
		if c.pos >= len(c.in) || c.in[c.pos] != '"' {
			return c.fail("want a key in an object")
		}
		k0 := len(c.keys)
		var err error
		if c.keys, err = c.str(c.keys); err != nil {
			return err
		}
		k1 := len(c.keys)
		c.space()
		if c.pos >= len(c.in) || c.in[c.pos] != ':' {
			return c.fail("want : after a key")
		}
		c.pos++
		v0 := len(c.out)
		if err := c.value(); err != nil {
			return err
		}
		c.members = append(c.members, member{k0, k1, v0, len(c.out)})
		c.space()
		if c.pos >= len(c.in) {
			return c.fail("unexpected end in an object")
		}
		if c.in[c.pos] == ',' {
			c.pos++
			continue
		}
		if c.in[c.pos] != '}' {
			return c.fail("want , or } in an object")
		}
		c.pos++
		break
	}
	c.depth--
	ms := c.members[mbase:]
	slices.SortStableFunc(ms, func(a, b member) int {
		return bytes.Compare(c.keys[a.k0:a.k1], c.keys[b.k0:b.k1])
	})
	c.tmp = append(c.tmp[:0], c.out[start:]...)
	c.out = append(c.out[:start], '{')
	n := 0
	for i, m := range ms {
		key := c.keys[m.k0:m.k1]
		if i+1 < len(ms) && bytes.Equal(key, c.keys[ms[i+1].k0:ms[i+1].k1]) {
			continue // a later value for the same key wins
		}
		if n > 0 {
			c.out = append(c.out, ',')
		}
		n++
		c.out = appendEscaped(c.out, key)
		c.out = append(c.out, ':')
		c.out = append(c.out, c.tmp[m.v0-start:m.v1-start]...)
	}
	c.out = append(c.out, '}')
	c.keys, c.members = c.keys[:kbase], c.members[:mbase]
	return nil
}

// str reads a string and appends its decoded value to b, as encoding/json
// decodes it: escapes resolved, an unpaired surrogate and each byte of
// invalid UTF-8 replaced with U+FFFD.
func (c *canonicalizer) str(b []byte) ([]byte, error) {
	c.pos++ // "
	for {
		if c.pos >= len(c.in) {
			return b, c.fail("unexpected end in a string")
		}
		ch := c.in[c.pos]
		switch {
		case ch == '"':
			c.pos++
			return b, nil
		case ch < 0x20:
			return b, c.fail("control character in a string")
		case ch == '\\':
			r, err := c.escape()
			if err != nil {
				return b, err
			}
			b = utf8.AppendRune(b, r)
		case ch < utf8.RuneSelf:
			b = append(b, ch)
			c.pos++
		default:
			r, n := utf8.DecodeRune(c.in[c.pos:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, "\ufffd"...)
			} else {
				b = append(b, c.in[c.pos:c.pos+n]...)
			}
			c.pos += n
		}
	}
}

// escape reads the escape sequence at pos and returns the rune it stands
// for.
func (c *canonicalizer) escape() (rune, error) {
	if c.pos+1 >= len(c.in) {
		return 0, c.fail("unexpected end in an escape")
	}
	e := c.in[c.pos+1]
	c.pos += 2
	switch e {
	case '"', '\\', '/':
		return rune(e), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
		r, ok := c.hex4()
		if !ok {
			return 0, c.fail("invalid \\u escape")
		}
		if utf16.IsSurrogate(r) {
			// A pair makes one rune; anything else is replaced.
			save := c.pos
			if c.pos+1 < len(c.in) && c.in[c.pos] == '\\' && c.in[c.pos+1] == 'u' {
				c.pos += 2
				if r2, ok := c.hex4(); ok {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						return d, nil
					}
				}
			}
			c.pos = save
			return utf8.RuneError, nil
		}
		return r, nil
	}
	c.pos--
	return 0, c.fail("invalid escape")
}

func (c *canonicalizer) hex4() (rune, bool) {
	if c.pos+4 > len(c.in) {
		return 0, false
	}
	var r rune
	for _, h := range c.in[c.pos : c.pos+4] {
		switch {
		case '0' <= h && h <= '9':
			h -= '0'
		case 'a' <= h && h <= 'f':
			h -= 'a' - 10
		case 'A' <= h && h <= 'F':
			h -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(h)
	}
	c.pos += 4
	return r, true
}

// number reads a number, checking JSON's grammar, and writes it in its
// one spelling.
func (c *canonicalizer) number() error {
	start := c.pos
	digits := func() int {
		n := 0
		for c.pos < len(c.in) && '0' <= c.in[c.pos] && c.in[c.pos] <= '9' {
			c.pos++
			n++
		}
		return n
	}
	if c.in[c.pos] == '-' {
		c.pos++
	}
	switch {
	case c.pos < len(c.in) && c.in[c.pos] == '0':
		c.pos++
	case digits() == 0:
		return c.fail("invalid number")
	}
	if c.pos < len(c.in) && c.in[c.pos] == '.' {
		c.pos++
		if digits() == 0 {
			return c.fail("invalid number")
		}
	}
	if c.pos < len(c.in) && (c.in[c.pos] == 'e' || c.in[c.pos] == 'E') {
		c.pos++
		if c.pos < len(c.in) && (c.in[c.pos] == '+' || c.in[c.pos] == '-') {
			c.pos++
		}
		if digits() == 0 {
			return c.fail("invalid number")
		}
	}
	c.out = appendNumber(c.out, string(c.in[start:c.pos]))
	return nil
}

// appendEscaped writes s, valid UTF-8, as a JSON string, escaping what
// appendString escapes.
func appendEscaped(b, s []byte) []byte {
	b = append(b, '"')
	start := 0
	for i, ch := range s {
		if ch >= 0x20 && ch != '"' && ch != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		b = jsonenc.AppendEscapedByte(b, ch)
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
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
	// Not a decoded JSON value (a Redact func may return anything): its
	// JSON encoding, or null if it has none.
	js, err := json.Marshal(v)
	if err == nil {
		if c, err := canonicalJSON(js); err == nil {
			return append(b, c...)
		}
	}
	return append(b, "null"...)
}

// appendString writes s as a JSON string, escaping only what JSON requires
// (quote, backslash, control characters), as RFC 8785 does. Invalid UTF-8
// becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		// Copy a run of bytes written as they are in one append: most
		// strings of a record (hashes, names, addresses) are one run.
		j := i
		for j < len(s) && s[j] >= 0x20 && s[j] < utf8.RuneSelf && s[j] != '"' && s[j] != '\\' {
			j++
		}
		if j > i {
			b = append(b, s[i:j]...)
			i = j
			continue
		}
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
		b = jsonenc.AppendEscapedByte(b, c)
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
		b = append(b, '"') // keys are plain ASCII: appendString would copy them as they are
		b = append(b, k...)
		b = append(b, '"', ':')
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
	flag("late", r.Late)
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
		key("time") // RFC 3339 holds nothing a JSON string escapes
		b = append(b, '"')
		b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
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
	sum [sha256.Size]byte
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
	return hexString(c.mac.Sum(c.sum[:0]))
}

// hexString is hex.EncodeToString of a SHA-256 sum, with one allocation.
func hexString(sum []byte) string {
	var h [2 * sha256.Size]byte
	return string(hex.AppendEncode(h[:0], sum))
}

// argsHasher computes ArgsHash with one key, reusing its MACs.
type argsHasher struct {
	macs sync.Pool
}

func newArgsHasher(key []byte) *argsHasher {
	h := &argsHasher{}
	h.macs.New = func() any { return &pooledMAC{mac: hmac.New(sha256.New, key)} }
	return h
}

type pooledMAC struct {
	mac hash.Hash
	sum [sha256.Size]byte
}

// hash is ArgsHash(key, raw).
func (h *argsHasher) hash(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	m := h.macs.Get().(*pooledMAC)
	defer h.macs.Put(m)
	m.mac.Reset()
	writeArgs(m.mac, raw)
	return hexString(m.mac.Sum(m.sum[:0]))
}
