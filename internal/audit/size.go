package audit

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/wardenmcp/warden/internal/jsonenc"
	"github.com/wardenmcp/warden/pipeline"
)

// resultBytes is the size of res as encoding/json writes it. The common
// shapes — text blocks and decoded JSON values, such as structured content
// after the output guard — are measured without encoding them; anything
// else is encoded to be measured. TestResultBytes holds the two to each
// other.
func resultBytes(res *pipeline.Result) int64 {
	var v any
	switch {
	case res.Tool != nil:
		if n, ok := toolSize(res.Tool); ok {
			return n
		}
		v = res.Tool
	case res.Resource != nil:
		v = res.Resource
	case res.Prompt != nil:
		v = res.Prompt
	default:
		return 0
	}
	b, err := json.Marshal(v)
	if err != nil {
		return 0
	}
	return int64(len(b))
}

// toolSize measures t as pipeline.ToolResult.MarshalJSON writes it, or
// reports false for a shape it does not know.
func toolSize(t *pipeline.ToolResult) (int64, bool) {
	if len(t.InputRequests) > 0 {
		return 0, false
	}
	n := int64(len(`{"content":[]}`))
	if len(t.Meta) > 0 {
		m, ok := valueSize(t.Meta)
		if !ok {
			return 0, false
		}
		n += int64(len(`"_meta":,`)) + m
	}
	for i := range t.Content {
		c := &t.Content[i]
		if c.Raw != nil || c.Type != "text" || c.Annotations != nil {
			return 0, false
		}
		if i > 0 {
			n++
		}
		n += int64(len(`{"type":,"text":}`)) + stringSize(c.Type) + stringSize(c.Text)
		if len(c.Meta) > 0 {
			m, ok := valueSize(c.Meta)
			if !ok {
				return 0, false
			}
			n += int64(len(`,"_meta":`)) + m
		}
	}
	if t.StructuredContent != nil {
		s, ok := valueSize(t.StructuredContent)
		if !ok {
			return 0, false
		}
		n += int64(len(`,"structuredContent":`)) + s
	}
	if t.IsError {
		n += int64(len(`,"isError":true`))
	}
	if t.RequestState != "" {
		n += int64(len(`,"requestState":`)) + stringSize(t.RequestState)
	}
	return n, true
}

// valueSize measures v, a value as encoding/json decodes JSON into an any
// (with or without UseNumber), as encoding/json encodes it; it reports
// false for any other type, and for a value encoding/json refuses.
func valueSize(v any) (int64, bool) {
	switch x := v.(type) {
	case nil:
		return 4, true
	case bool:
		if x {
			return 4, true
		}
		return 5, true
	case string:
		return stringSize(x), true
	case json.Number:
		switch {
		case x == "":
			return 1, true // 0
		case !validNumber(string(x)):
			return 0, false
		}
		return int64(len(x)), true
	case float64:
		var buf [32]byte
		b, ok := jsonenc.AppendFloat(buf[:0], x)
		return int64(len(b)), ok
	case int:
		var buf [24]byte
		return int64(len(strconv.AppendInt(buf[:0], int64(x), 10))), true
	case int64:
		var buf [24]byte
		return int64(len(strconv.AppendInt(buf[:0], x, 10))), true
	case []any:
		if x == nil {
			return 4, true
		}
		n := int64(2)
		for i, e := range x {
			if i > 0 {
				n++
			}
			s, ok := valueSize(e)
			if !ok {
				return 0, false
			}
			n += s
		}
		return n, true
	case map[string]any:
		if x == nil {
			return 4, true
		}
		n := int64(2)
		first := true
		for k, e := range x {
			if !first {
				n++
			}
			first = false
			s, ok := valueSize(e)
			if !ok {
				return 0, false
			}
			n += stringSize(k) + 1 + s
		}
		return n, true
	}
	return 0, false
}

// stringSize is the length of s as encoding/json writes it, HTML escaping
// on: quoted, with <, > and & as \u escapes.
func stringSize(s string) int64 {
	n := int64(2)
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '<' || c == '>' || c == '&':
				n += 6
			case c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < 0x20:
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1, r == '\u2028', r == '\u2029':
			n += 6
		default:
			n += int64(size)
		}
		i += size
	}
	return n
}

// validNumber reports whether s is a JSON number, as encoding/json checks
// a json.Number before writing it.
func validNumber(s string) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}
