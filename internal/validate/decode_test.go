package validate

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzUnmarshalObject checks that arguments decode as encoding/json
// decodes them: the same inputs refused, the same values otherwise.
func FuzzUnmarshalObject(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":"b"}`, `{"a":"\xff"}`, `{"a":"\ud800"}`, `{"a":"\ud800\udc00"}`, `{"a":1e400}`, `{"a":1e-400}`,
		`{"a":-0}`, `{"a":1,"a":2}`, `{"A":1,"a":2}`, `{"a":01}`, `{"a":1.}`, `{"a":[1,]}`, `{"a":"x"} x`,
		`{"a":"\u0000"}`, `{"a":123456789012345678901234567890}`, `{"a":tru}`, "{\"a\":\"a\tb\"}",
		`{"a":{"b":[null,true,false,1.5,"s",{"c":{}}]}}`, ` {"a":1} `, `{"a":"\/\b\f\n\r\t\"\\"}`, `{"a":"\x"}`,
		`{"a":1}{}`, `[1]`, `null`, `{"a" 1}`, `{"\u00e9":"é"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var want map[string]any
		wantErr := json.Unmarshal(raw, &want)
		got, err := unmarshalObject(raw)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%q: error %v, encoding/json's %v", raw, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: got %#v, encoding/json %#v", raw, got, want)
		}
	})
}
