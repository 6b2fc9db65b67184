package warden

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/wardenmcp/warden/internal/jsonenc"
	"github.com/wardenmcp/warden/pipeline"
)

// Tool results on the lean path are appended as JSON by hand, without
// reflection: a call's answer is written once, into a pooled buffer. The
// bytes are exactly those encoding/json writes for the same value (its
// map key order, number format and string escaping, HTML-safe), which the
// tests check against it. A value this file does not know is encoded by
// encoding/json, in place; a value encoding/json refuses (NaN, a type it
// cannot encode) makes the whole result fall back to encoding/json, which
// then answers as it always has.

// appendToolResult appends t as the protocol's tool result: with the
// server's identity in _meta (serverInfo, its JSON, if not nil: the
// 2026-07-28 result's stamp), the input requests already encoded and the
// result type if resultType is not "". It reports false if t holds a value
// encoding/json would refuse.
func appendToolResult(b []byte, t *pipeline.ToolResult, serverInfo []byte, inputRequests json.RawMessage, resultType string) ([]byte, bool) {
	b = append(b, '{')
	ok := true
	if len(t.Meta) > 0 || serverInfo != nil {
		b = append(b, `"_meta":`...)
		if b, ok = appendMap(b, t.Meta, serverInfo); !ok {
			return b, false
		}
		b = append(b, ',')
	}
	b = append(b, `"content":[`...)
	for i := range t.Content {
		if i > 0 {
			b = append(b, ',')
		}
		if b, ok = appendContent(b, &t.Content[i]); !ok {
			return b, false
		}
	}
	b = append(b, ']')
	if t.StructuredContent != nil {
		b = append(b, `,"structuredContent":`...)
		if b, ok = appendValue(b, t.StructuredContent); !ok {
			return b, false
		}
	}
	if t.IsError {
		b = append(b, `,"isError":true`...)
	}
	if len(t.InputRequests) > 0 {
		b = append(b, `,"inputRequests":`...)
		if b, ok = appendMarshal(b, t.InputRequests); !ok {
			return b, false
		}
	}
	if t.RequestState != "" {
		b = append(b, `,"requestState":`...)
		b = jsonenc.AppendString(b, t.RequestState, true)
	}
	if inputRequests != nil {
		b = append(b, `,"inputRequests":`...)
		b = append(b, inputRequests...)
	}
	if resultType != "" {
		b = append(b, `,"resultType":`...)
		b = jsonenc.AppendString(b, resultType, true)
	}
	return append(b, '}'), true
}

// appendContent appends one content block: a text block by hand, any
// other (rare: images, links, blocks passed through) by encoding/json.
func appendContent(b []byte, c *pipeline.Content) ([]byte, bool) {
	if c.Raw != nil || c.Type != "text" || c.Annotations != nil {
		return appendMarshal(b, c)
	}
	b = append(b, `{"type":"text","text":`...)
	b = jsonenc.AppendString(b, c.Text, true)
	if len(c.Meta) > 0 {
		b = append(b, `,"_meta":`...)
		var ok bool
		if b, ok = appendMap(b, c.Meta, nil); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendValue appends v, a value of a result's meta or structured content.
func appendValue(b []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), true
	case string:
		return jsonenc.AppendString(b, x, true), true
	case bool:
		return strconv.AppendBool(b, x), true
	case float64:
		return jsonenc.AppendFloat(b, x)
	case int:
		return strconv.AppendInt(b, int64(x), 10), true
	case int64:
		return strconv.AppendInt(b, x, 10), true
	case map[string]any:
		return appendMap(b, x, nil)
	case []any:
		if x == nil {
			return append(b, "null"...), true
		}
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendValue(b, e); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	case *pipeline.Error:
		if x == nil {
			return append(b, "null"...), true
		}
		return appendError(b, x), true
	}
	return appendMarshal(b, v)
}

// appendError appends a refusal, the structured content of a tool error.
func appendError(b []byte, e *pipeline.Error) []byte {
	b = append(b, `{"error_code":`...)
	b = jsonenc.AppendString(b, string(e.Code), true)
	b = append(b, `,"message":`...)
	b = jsonenc.AppendString(b, e.Message, true)
	if e.Suggestion != "" {
		b = append(b, `,"suggestion":`...)
		b = jsonenc.AppendString(b, e.Suggestion, true)
	}
	if e.RetryAfter != 0 {
		b = append(b, `,"retry_after":`...)
		b = strconv.AppendInt(b, int64(e.RetryAfter), 10)
	}
	if e.ApprovalID != "" {
		b = append(b, `,"approval_id":`...)
		b = jsonenc.AppendString(b, e.ApprovalID, true)
	}
	return append(b, '}')
}

// appendMap appends m with its keys sorted, as encoding/json does; extra,
// if not nil, is the encoded value of the server's identity, added under
// its key unless m has that key already. A nil map without extra is null.
func appendMap(b []byte, m map[string]any, extra []byte) ([]byte, bool) {
	if m == nil && extra == nil {
		return append(b, "null"...), true
	}
	var buf [8]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	if _, ok := m[metaServerInfo]; extra != nil && !ok {
		keys = append(keys, metaServerInfo)
	} else {
		extra = nil
	}
	slices.SortFunc(keys, strings.Compare)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonenc.AppendString(b, k, true)
		b = append(b, ':')
		if extra != nil && k == metaServerInfo {
			b = append(b, extra...)
			continue
		}
		var ok bool
		if b, ok = appendValue(b, m[k]); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendMarshal appends v as encoding/json encodes it.
func appendMarshal(b []byte, v any) ([]byte, bool) {
	enc, err := json.Marshal(v)
	if err != nil {
		return b, false
	}
	return append(b, enc...), true
}
