package guard

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Options chooses the optional detectors. Secrets, payment cards, US SSNs
// and IBANs are always redacted; emails and phone numbers are ordinary
// business data for many tools, so they are redacted only when asked.
type Options struct {
	Emails bool
	Phones bool
}

// A Redactor replaces secrets and personal data with markers such as
// [REDACTED:aws_access_key]. Its rules are compiled once, when the package
// loads; a Redactor only holds its options, so it is cheap to make one per
// tool, and safe for concurrent use. The zero Redactor redacts secrets,
// cards, SSNs and IBANs.
type Redactor struct {
	opts Options
}

// NewRedactor returns a Redactor with the given options.
func NewRedactor(opts Options) *Redactor {
	return &Redactor{opts: opts}
}

// A Finding says that something was redacted, and where: never what.
type Finding struct {
	// Kind names the detector, as in the marker. Secrets: private_key,
	// warden_api_key, aws_access_key, github_token, gitlab_token,
	// slack_token, slack_webhook, stripe_key, google_api_key, jwt,
	// openai_api_key, anthropic_api_key, npm_token, pypi_token,
	// sendgrid_api_key, twilio_api_key, digitalocean_token,
	// huggingface_token, shopify_token, databricks_token, age_secret_key,
	// bearer_token, basic_auth, url_credentials, generic_secret. Personal
	// data: card_number, us_ssn, iban, email, phone. And unencodable, for a
	// value Value could not inspect.
	Kind string `json:"kind"`
	// Path locates the value within a structure (see Value); it is empty
	// for Text.
	Path string `json:"path,omitempty"`
}

// span is a detected secret at s[start:end]; rank orders detectors (lower
// is more specific) so that the specific name wins when matches overlap.
type span struct {
	start, end int
	kind       string
	rank       int
}

// Marker is what replaces a redacted value of the given kind.
func Marker(kind string) string { return "[REDACTED:" + kind + "]" }

// find returns the spans to redact in s, sorted and without overlaps.
func (r *Redactor) find(s string) []span {
	var spans []span
	spans = findExact(s, spans)
	spans = findSecrets(s, spans)
	spans = findCards(s, spans)
	spans = findSSNs(s, spans)
	spans = findIBANs(s, spans)
	if r.opts.Emails {
		spans = findEmails(s, spans)
	}
	if r.opts.Phones {
		spans = findPhones(s, spans)
	}
	if len(spans) < 2 {
		return spans
	}
	slices.SortFunc(spans, func(a, b span) int {
		if a.start != b.start {
			return a.start - b.start
		}
		return a.rank - b.rank
	})
	// Merge overlaps into their union, named for the earliest match:
	// redacting only part of an overlapping match would leak the rest.
	out := spans[:1]
	for _, x := range spans[1:] {
		last := &out[len(out)-1]
		if x.start < last.end {
			last.end = max(last.end, x.end)
			continue
		}
		out = append(out, x)
	}
	return out
}

// Text returns s with every secret and every enabled kind of personal data
// replaced by its marker, and one finding per replacement. Text that holds
// nothing to redact is returned as is, without allocating.
func (r *Redactor) Text(s string) (string, []Finding) {
	return r.text(s, "", nil)
}

func (r *Redactor) text(s, path string, findings []Finding) (string, []Finding) {
	spans := r.find(s)
	if len(spans) == 0 {
		return s, findings
	}
	var b strings.Builder
	b.Grow(len(s))
	prev := 0
	for _, x := range spans {
		b.WriteString(s[prev:x.start])
		b.WriteString("[REDACTED:")
		b.WriteString(x.kind)
		b.WriteByte(']')
		prev = x.end
		findings = append(findings, Finding{Kind: x.kind, Path: path})
	}
	b.WriteString(s[prev:])
	return b.String(), findings
}

// Value redacts a JSON-like value: the string leaves of maps
// (map[string]any), slices ([]any) and json.RawMessage documents, and
// numbers that are card numbers. Any other type (a struct, a typed map or
// slice) is encoded to JSON and decoded first. A string field whose name
// marks a secret ("password", "client_secret", "api_key", "refresh_token",
// ...) is redacted whole, whatever it holds. Map keys are left as they are.
//
// Paths name a value by its keys and indices joined with dots: "rows.3.email"
// (a key that contains a dot makes its path ambiguous). If allow is not nil
// and reports true for a path, that value and everything below it are left
// intact: see AllowFields.
//
// The result shares no memory with v where something was redacted, and is
// v itself (same type, same maps) where nothing was. Findings come sorted
// by path, so that the same value always yields the same findings. A value that cannot be
// encoded as JSON is replaced whole by a marker, kind "unencodable": what
// cannot be inspected is not passed on.
func (r *Redactor) Value(v any, allow func(path string) bool) (any, []Finding) {
	w := walker{r: r, allow: allow}
	out, changed := w.value(v)
	w.sort()
	if !changed {
		return v, w.findings
	}
	return out, w.findings
}

// JSON redacts a JSON document, such as a call's arguments before they go
// into an audit record, as Value does. It returns data itself when nothing
// was redacted, and an error only if data is not valid JSON.
func (r *Redactor) JSON(data []byte, allow func(path string) bool) ([]byte, []Finding, error) {
	v, err := decodeJSON(data)
	if err != nil {
		return nil, nil, err
	}
	w := walker{r: r, allow: allow}
	out, changed := w.value(v)
	w.sort()
	if !changed {
		return data, w.findings, nil
	}
	enc, err := json.Marshal(out)
	return enc, w.findings, err
}

func decodeJSON(data []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber() // numbers pass through exactly as they were
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, &json.SyntaxError{Offset: d.InputOffset()}
	}
	return v, nil
}

// AllowFields returns an allow function for Value that accepts the paths
// matching any of the patterns, "*" standing for any one key or index:
// AllowFields("rows.*.email", "owner") keeps every row's email and the
// whole owner object.
func AllowFields(patterns ...string) func(path string) bool {
	split := make([][]string, len(patterns))
	for i, p := range patterns {
		split[i] = strings.Split(p, ".")
	}
	return func(path string) bool {
		for _, p := range split {
			if matchPath(p, path) {
				return true
			}
		}
		return false
	}
}

func matchPath(pattern []string, path string) bool {
	for i, seg := range pattern {
		var head string
		head, path, _ = strings.Cut(path, ".")
		if seg != "*" && seg != head {
			return false
		}
		if path == "" {
			return i == len(pattern)-1
		}
	}
	return false
}

// walker carries the state of one Value call: the path to the current
// value, as segments, joined only when a path is needed.
type walker struct {
	r        *Redactor
	allow    func(string) bool
	segs     []string
	findings []Finding
}

func (w *walker) path() string { return strings.Join(w.segs, ".") }

// sort orders the findings by path (map order is random), keeping the
// order of findings within one string.
func (w *walker) sort() {
	slices.SortStableFunc(w.findings, func(a, b Finding) int { return strings.Compare(a.Path, b.Path) })
}

func (w *walker) push(seg string) { w.segs = append(w.segs, seg) }
func (w *walker) pop()            { w.segs = w.segs[:len(w.segs)-1] }

func (w *walker) allowed() bool {
	return w.allow != nil && w.allow(w.path())
}

// secretField reports whether the current value's key marks a secret.
func (w *walker) secretField() bool {
	var buf [maxNameLen]byte
	return isSecretName(normaliseName(buf[:0], w.segs[len(w.segs)-1]))
}

func (w *walker) redact(kind string) string {
	w.findings = append(w.findings, Finding{Kind: kind, Path: w.path()})
	return Marker(kind)
}

// value returns v redacted, and whether anything changed.
func (w *walker) value(v any) (any, bool) {
	if w.allowed() {
		return v, false
	}
	switch x := v.(type) {
	case nil, bool:
		return v, false
	case string:
		if len(w.segs) > 0 && x != "" && !strings.ContainsAny(x[:1], "$%<*") && w.secretField() {
			return w.redact("generic_secret"), true
		}
		n := len(w.findings)
		out, f := w.r.text(x, "", w.findings)
		w.findings = f
		if len(f) == n {
			return v, false
		}
		p := w.path()
		for i := n; i < len(f); i++ {
			f[i].Path = p
		}
		return out, true
	case map[string]any:
		var out map[string]any
		for k, e := range x {
			w.push(k)
			y, changed := w.value(e)
			w.pop()
			if changed {
				if out == nil {
					out = make(map[string]any, len(x))
					for k2, e2 := range x {
						out[k2] = e2
					}
				}
				out[k] = y
			}
		}
		if out == nil {
			return v, false
		}
		return out, true
	case []any:
		var out []any
		for i, e := range x {
			w.push(strconv.Itoa(i))
			y, changed := w.value(e)
			w.pop()
			if changed {
				if out == nil {
					out = slices.Clone(x)
				}
				out[i] = y
			}
		}
		if out == nil {
			return v, false
		}
		return out, true
	case json.Number:
		return w.number(v, string(x))
	case float64:
		if x != math.Trunc(x) || math.Abs(x) >= 1e19 {
			return v, false
		}
		return w.number(v, strconv.FormatFloat(x, 'f', -1, 64))
	case int:
		return w.number(v, strconv.Itoa(x))
	case int64:
		return w.number(v, strconv.FormatInt(x, 10))
	case uint64:
		return w.number(v, strconv.FormatUint(x, 10))
	case float32, int8, int16, int32, uint, uint8, uint16, uint32:
		return v, false // too small to hold a card number
	case json.RawMessage:
		d, err := decodeJSON(x)
		if err != nil {
			return w.redact("unencodable"), true
		}
		y, changed := w.value(d)
		if !changed {
			return v, false
		}
		enc, err := json.Marshal(y)
		if err != nil {
			return w.redact("unencodable"), true
		}
		return json.RawMessage(enc), true
	}
	data, err := json.Marshal(v)
	if err != nil {
		return w.redact("unencodable"), true
	}
	d, err := decodeJSON(data)
	if err != nil {
		return w.redact("unencodable"), true
	}
	return w.value(d)
}

// number redacts a number whose digits form a card number: databases store
// them as integers often enough.
func (w *walker) number(v any, digits string) (any, bool) {
	if len(digits) < 13 || len(digits) > 19 {
		return v, false
	}
	if g := []digitGroup{{start: 0, end: len(digits)}}; allDigits(digits) && isCard(digits, g) {
		return w.redact("card_number"), true
	}
	return v, false
}
