package httpsrc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wardenmcp/warden/internal/guard"
	"github.com/wardenmcp/warden/internal/idempotency"
	"github.com/wardenmcp/warden/pipeline"
)

// request builds the request a call makes. Every value is bound into the
// structure — a whole path segment, a query value, a header value, a JSON
// body field — and none is spliced into a string that is parsed again.
func (op *operation) request(ctx context.Context, c *pipeline.Call) (*http.Request, []byte, error) {
	base := op.api.base
	var raw strings.Builder
	raw.WriteString(strings.TrimSuffix(base.EscapedPath(), "/"))
	for _, seg := range op.segments {
		raw.WriteByte('/')
		if seg.param == "" {
			raw.WriteString(seg.literal)
			continue
		}
		v := fmtParam(c.Args[seg.param])
		if err := pathValue(v); err != nil {
			return nil, nil, pipeline.Errorf(pipeline.InvalidArgument, "pass the identifier itself, not a path", "%s: %v", seg.param, err)
		}
		raw.WriteString(url.PathEscape(v))
	}
	u := &url.URL{Scheme: base.Scheme, Host: base.Host, RawPath: raw.String()}
	p, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return nil, nil, pipeline.Errorf(pipeline.InvalidArgument, "", "the path cannot be built")
	}
	u.Path = p
	q := url.Values{}
	for _, qp := range op.query {
		if v, ok := c.Args[qp[1]]; ok {
			q.Add(qp[0], fmtParam(v))
		}
	}
	u.RawQuery = q.Encode()

	var body []byte
	if op.body != nil {
		b, err := json.Marshal(bind(op.body, c.Args))
		if err != nil {
			return nil, nil, pipeline.Errorf(pipeline.InvalidArgument, "", "the body cannot be encoded")
		}
		body = b
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, op.method, u.String(), rd)
	if err != nil {
		return nil, nil, pipeline.Errorf(pipeline.InvalidArgument, "", "the request cannot be built")
	}
	// Whatever was built must still go where the source points.
	if req.URL.Host != base.Host || req.URL.Scheme != base.Scheme {
		return nil, nil, pipeline.Errorf(pipeline.InvalidArgument, "", "the request would leave the API's host")
	}
	for k, vs := range op.api.headers {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "application/json")
	if v := op.api.headers.Get("Accept"); v != "" {
		req.Header.Set("Accept", v)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range op.headers {
		v, ok := c.Args[h[1]]
		if !ok {
			continue
		}
		s := fmtParam(v)
		if strings.ContainsAny(s, "\r\n\x00") {
			return nil, nil, pipeline.Errorf(pipeline.InvalidArgument, "remove line breaks from the value", "%s: a header value cannot hold a line break or NUL", h[1])
		}
		req.Header.Set(h[0], s)
	}
	if op.idemKey {
		if k, ok := c.Meta[idempotency.MetaKey].(string); ok && k != "" {
			if strings.ContainsAny(k, "\r\n\x00") {
				return nil, nil, pipeline.Errorf(pipeline.InvalidArgument, "send a key without line breaks", "the idempotency key cannot hold a line break or NUL")
			}
			req.Header.Set("Idempotency-Key", k)
		}
	}
	if err := op.api.egress.checkURL(req.URL); err != nil {
		return nil, nil, refusal(err)
	}
	return req, body, nil
}

// pathValue refuses a value that would be anything but one path segment.
func pathValue(v string) error {
	l := strings.ToLower(v)
	switch {
	case v == "":
		return errors.New("is empty")
	case v == "." || strings.Contains(v, ".."):
		return errors.New("cannot hold a dot segment")
	case strings.ContainsAny(v, "/\\"):
		return errors.New("cannot hold / or \\")
	case strings.Contains(l, "%2f") || strings.Contains(l, "%5c") || strings.Contains(l, "%2e"):
		return errors.New("cannot hold an encoded slash, backslash or dot")
	case strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("cannot hold NUL or control characters")
	case strings.ContainsAny(v, "@?#") && strings.Contains(v, ":"):
		return errors.New("cannot hold a host")
	}
	return nil
}

// bind builds the body: the shape's leaves name parameters; a parameter
// the call does not have is left out.
func bind(shape map[string]any, args map[string]any) map[string]any {
	out := make(map[string]any, len(shape))
	for k, v := range shape {
		switch x := v.(type) {
		case string:
			if a, ok := args[x]; ok {
				out[k] = a
			}
		case map[string]any:
			if m := bind(x, args); len(m) > 0 {
				out[k] = m
			}
		}
	}
	return out
}

// call sends the request and shapes the API's answer.
func (op *operation) call(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	req, _, err := op.request(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := op.api.auth.apply(ctx, req, false); err != nil {
		return nil, pipeline.Errorf(pipeline.Unavailable, "retry later; if it persists, tell the operator", "Warden could not authenticate to the API")
	}
	resp, err := op.api.client.Do(req)
	if err != nil {
		return nil, transportError(ctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, op.api.maxBody+1))
	if err != nil {
		return nil, transportError(ctx, err)
	}
	if int64(len(data)) > op.api.maxBody {
		return nil, pipeline.Errorf(pipeline.Unavailable, "narrow the request (filters, a smaller page)",
			"the API's response is larger than this source's limit of %d bytes", op.api.maxBody)
	}
	if !op.ok(resp.StatusCode) {
		return nil, statusError(resp, data)
	}
	return op.result(resp, data)
}

func (op *operation) ok(status int) bool {
	if len(op.success) == 0 {
		return status >= 200 && status < 300
	}
	for _, s := range op.success {
		if s == status {
			return true
		}
	}
	return false
}

// result shapes a successful response: decoded, projected, capped.
func (op *operation) result(resp *http.Response, data []byte) (*pipeline.Result, error) {
	out := &output{Status: resp.StatusCode}
	var body any
	switch {
	case len(bytes.TrimSpace(data)) == 0:
	case isJSON(resp.Header.Get("Content-Type")) || json.Valid(data):
		d := json.NewDecoder(bytes.NewReader(data))
		if err := d.Decode(&body); err != nil {
			return nil, pipeline.Errorf(pipeline.Unavailable, "tell the operator", "the API's response is not valid JSON")
		}
	case utf8.Valid(data):
		body = string(data)
	default:
		return nil, pipeline.Errorf(pipeline.Unavailable, "tell the operator: this tool expects text or JSON", "the API answered with binary data")
	}
	if op.projection != nil && body != nil {
		if _, isText := body.(string); !isText {
			p, err := op.projection.Search(body)
			if err != nil {
				return nil, pipeline.Errorf(pipeline.Unavailable, "tell the operator: the tool's projection does not fit the API's answer", "the response could not be projected")
			}
			body = p
		}
	}
	if list, ok := body.([]any); ok && len(list) > op.maxItems {
		out.Items = len(list)
		body = list[:op.maxItems]
		out.Truncated = true
	}
	out.Body = body
	text, _ := json.Marshal(out)
	content := []pipeline.Content{pipeline.Text(string(text))}
	if out.Truncated {
		content = append(content, pipeline.Text(fmt.Sprintf(
			"Only the first %d of %d items are shown. Narrow the request to see the rest.", op.maxItems, out.Items)))
	}
	rows := 1
	if list, ok := body.([]any); ok {
		rows = len(list)
	}
	return &pipeline.Result{
		Tool:      &pipeline.ToolResult{Content: content, StructuredContent: out},
		Rows:      rows,
		Truncated: out.Truncated,
	}, nil
}

func isJSON(ct string) bool {
	mt, _, _ := mime.ParseMediaType(ct)
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// statusError turns an API's refusal into Warden's refusal shape. The
// API's own message is passed on, capped and through the output guard's
// redaction, since a tool error does not pass the guard stage.
func statusError(resp *http.Response, data []byte) error {
	st := resp.StatusCode
	msg := apiMessage(data)
	say := fmt.Sprintf("the API answered %d %s", st, http.StatusText(st))
	if msg != "" {
		say += ": " + msg
	}
	switch {
	case st == http.StatusTooManyRequests:
		e := pipeline.Errorf(pipeline.RateLimited, "wait before retrying", "%s", say)
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"))
		return e
	case st == http.StatusServiceUnavailable:
		e := pipeline.Errorf(pipeline.Unavailable, "retry later", "%s", say)
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"))
		return e
	case st >= 500:
		return pipeline.Errorf(pipeline.Unavailable, "retry later", "%s", say)
	case st >= 300 && st < 400:
		return pipeline.Errorf(pipeline.Unavailable, "tell the operator: the API redirects, and this source does not follow redirects", "the API answered %d %s", st, http.StatusText(st))
	case st == http.StatusNotFound:
		return pipeline.Errorf(pipeline.NotFound, "check the identifiers", "%s", say)
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return pipeline.Errorf(pipeline.PermissionDenied, "the API refused Warden's credentials for this request; tell the operator", "%s", say)
	}
	return pipeline.Errorf(pipeline.InvalidArgument, "correct the arguments as the API's message says", "%s", say)
}

var errRedactor = guard.NewRedactor(guard.Options{})

// apiMessage picks the message out of an error body — a JSON body's
// message, error, detail or title, or the text — and makes it safe to
// show: secrets redacted, hidden text removed, capped.
func apiMessage(data []byte) string {
	var msg string
	var doc map[string]any
	if json.Unmarshal(data, &doc) == nil {
		for _, k := range []string{"message", "error_description", "error", "detail", "title"} {
			if s, ok := doc[k].(string); ok && s != "" {
				msg = s
				break
			}
			if m, ok := doc[k].(map[string]any); ok {
				if s, ok := m["message"].(string); ok {
					msg = s
					break
				}
			}
		}
	}
	if msg == "" && utf8.Valid(data) {
		msg = string(data)
	}
	msg = strings.Join(strings.Fields(msg), " ")
	msg, _ = errRedactor.Text(msg)
	msg, _ = guard.Inspect(msg)
	if len(msg) > MaxErrorMessage {
		cut := MaxErrorMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return msg
}

// retryAfter reads Retry-After, in seconds or as a date; 0 if absent.
func retryAfter(v string) int {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return n
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return int((d + time.Second - 1) / time.Second)
		}
	}
	return 0
}

// transportError maps a failure to reach the API. Its detail stays out
// of the message: it could name internal addresses.
func transportError(ctx context.Context, err error) error {
	var r *refusedError
	if errors.As(err, &r) {
		return refusal(r)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		if ctx.Err() != nil {
			return pipeline.Errorf(pipeline.Timeout, "retry later, or narrow the request", "the API did not answer in time")
		}
		return pipeline.Errorf(pipeline.Unavailable, "retry later", "the API did not answer in time")
	}
	return pipeline.Errorf(pipeline.Unavailable, "retry later", "the API cannot be reached")
}

// refusal is an egress refusal as the caller sees it.
func refusal(err error) error {
	return pipeline.Errorf(pipeline.PermissionDenied, "the source's egress rules refuse this destination; only the operator can change them",
		"egress refused: %v", err)
}

// dryRequest is the request a dry run would have sent.
type dryRequest struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
	Body    any               `json:"body,omitempty"`
	Sent    bool              `json:"sent"`
}

// dryRun shows the exact request, credentials masked, and sends nothing.
func (op *operation) dryRun(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	req, body, err := op.request(ctx, c)
	if err != nil {
		return nil, err
	}
	_ = op.api.auth.apply(ctx, req, true)
	dr := &dryRequest{Method: req.Method, URL: req.URL.String(), Headers: map[string]string{}}
	for k, vs := range req.Header {
		v := strings.Join(vs, ", ")
		if op.api.secretH[k] {
			v = Mask
		}
		dr.Headers[k] = v
	}
	if body != nil {
		var b any
		_ = json.Unmarshal(body, &b)
		dr.Body = b
	}
	out := &output{Body: nil, DryRun: dr}
	text, _ := json.Marshal(out)
	return &pipeline.Result{Tool: &pipeline.ToolResult{
		Content: []pipeline.Content{
			pipeline.Text(fmt.Sprintf("Dry run: nothing was sent. The call would send %s %s.", dr.Method, dr.URL)),
			pipeline.Text(string(text)),
		},
		StructuredContent: out,
	}}, nil
}
