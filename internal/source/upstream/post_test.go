package upstream

import (
	"strings"
	"testing"
)

// The answer to a call made directly is found in an event stream as the
// protocol frames it — after notifications, split over data lines, with
// CRLF line ends, comments and event ids — and a list_changed on the way
// has the upstream listed again.
func TestReadStream(t *testing.T) {
	tests := []struct {
		name, stream string
		want         string // the answer's result, or "" for an error
		relist       bool
	}{
		{"one event", "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n\n", `{"content":[]}`, false},
		{"after a notification and a comment", ": ping\n\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n" +
			"id: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n", `{}`, true},
		{"data over lines, CRLF", "data: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":7,\"result\":{\"a\":1}}\r\n\r\n", `{"a":1}`, false},
		{"the answer to another call", "data: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}\n\n", "", false},
		{"an error", "data: {\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32602,\"message\":\"bad\"}}\n\n", "error", false},
		{"ended before the answer", "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n", "", false},
		{"not JSON", "data: <html>\n\n", "", false},
		{"an answer without an end", "data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &Upstream{relist: make(chan struct{}, 1)}
			msg, err := u.readStream(strings.NewReader(tt.stream), []byte("7"))
			switch {
			case tt.want == "" && err == nil:
				t.Errorf("answer %+v, want an error", msg)
			case tt.want == "":
			case err != nil:
				t.Errorf("error %v, want an answer", err)
			case tt.want == "error" && (msg.Error == nil || msg.Error.Code != -32602):
				t.Errorf("answer %+v, want the upstream's error", msg)
			case tt.want != "error" && string(msg.Result) != tt.want:
				t.Errorf("result %s, want %s", msg.Result, tt.want)
			}
			if relisted := len(u.relist) == 1; relisted != tt.relist {
				t.Errorf("listed again: %v, want %v", relisted, tt.relist)
			}
		})
	}
}

// A JSON answer must be the call's, and within the limit.
func TestReadJSON(t *testing.T) {
	for body, ok := range map[string]bool{
		`{"jsonrpc":"2.0","id":7,"result":{"content":[]}}`:                          true,
		`{"jsonrpc":"2.0","id":"7","result":{}}`:                                    false,
		`{"jsonrpc":"2.0","id":7}`:                                                  false,
		`{"jsonrpc":"2.0","id":7,"result":{},"error":{"code":1}}`:                   false,
		`<html>this is not JSON-RPC</html>`:                                         false,
		`{"jsonrpc":"2.0","id":7,"result":"` + strings.Repeat("x", maxEvent) + `"}`: false,
	} {
		if _, err := readJSON(strings.NewReader(body), []byte("7")); (err == nil) != ok {
			t.Errorf("%.60s: error %v, want ok %v", body, err, ok)
		}
	}
}
