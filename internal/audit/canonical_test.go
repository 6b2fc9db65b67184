package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestArgsHashIgnoresSpelling(t *testing.T) {
	key := ArgsKey(secret)
	// Each group is one set of arguments, spelt several ways.
	groups := [][]string{
		{`{"id":"c-1","limit":10}`, `{ "limit" : 10, "id" : "c-1" }`, "{\n\t\"id\": \"c-1\",\n\t\"limit\": 1e1\n}", `{"limit":10.0,"id":"\u0063-1"}`, `{"limit":10,"id":"c-1","limit":10}`},
		{`{"id":"c-1","limit":11}`},
		{`{"id":"c-2","limit":10}`},
		{`{"id":"c-1","limit":"10"}`},
		{`{"q":{"b":[1,2],"a":null}}`, `{"q":{"a":null,"b":[1.0,2e0]}}`},
		{`{"q":{"b":[2,1],"a":null}}`},
		{`{"name":"José"}`, `{"name":"Jos\u00e9"}`, `{"name":"Jos\u00E9"}`},
		{`{"big":12345678901234567890}`, `{"big":1.2345678901234567890e19}`},
		{`{"big":12345678901234567891}`},
		{`{"x":0}`, `{"x":-0}`, `{"x":0.0e10}`},
		{`{"x":0.1}`, `{"x":1e-1}`, `{"x":0.10}`},
		{`{"s":"a\/b"}`, `{"s":"a/b"}`},
		{`[]`, ` [ ] `},
		{`{}`},
	}
	seen := map[string]int{}
	for g, spellings := range groups {
		want := ArgsHash(key, json.RawMessage(spellings[0]))
		for _, s := range spellings {
			got := ArgsHash(key, json.RawMessage(s))
			if got != want {
				t.Errorf("%s hashes differently from %s", s, spellings[0])
			}
		}
		if other, ok := seen[want]; ok {
			t.Errorf("%s and %s hash the same", spellings[0], groups[other][0])
		}
		seen[want] = g
	}
}

func TestArgsHash(t *testing.T) {
	key := ArgsKey(secret)
	args := json.RawMessage(`{"password":"hunter2"}`)
	h := ArgsHash(key, args)
	if len(h) != 64 {
		t.Errorf("ArgsHash = %q, want 64 hex digits", h)
	}
	if got := newArgsHasher(key).hash(args); got != h {
		t.Errorf("the Auditor's pooled hash = %q, want ArgsHash's %q", got, h)
	}
	if ArgsHash(ArgsKey([]byte("another secret, another secret!!")), args) == h {
		t.Error("two keys give the same hash: the hash is not keyed")
	}
	if bytes.Equal(ArgsKey(secret), secret) {
		t.Error("ArgsKey returns the chain secret itself")
	}
	if got := ArgsHash(key, nil); got != "" {
		t.Errorf("no arguments hash to %q, want \"\"", got)
	}
	bad := ArgsHash(key, json.RawMessage(`{"a":`))
	if bad == "" || bad == ArgsHash(key, json.RawMessage(`{"a":`+"\n")) {
		t.Errorf("arguments that are not JSON: hash %q, want one of their exact bytes", bad)
	}
}

func TestCanonicalNumbers(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0", "0"}, {"-0", "0"}, {"0.000", "0"}, {"0e-7", "0"},
		{"1", "1"}, {"1.0", "1"}, {"1e0", "1"}, {"10e-1", "1"}, {"0.1e1", "1"}, {"1E+0", "1"},
		{"-12.50", "-12.5"}, {"100", "100"}, {"1e2", "100"}, {"1.5e3", "1500"},
		{"0.000001", "0.000001"}, {"1e-7", "1e-7"}, {"-2.5e-8", "-2.5e-8"},
		{"123456789012345678901", "123456789012345678901"}, {"1e20", "100000000000000000000"}, {"1e21", "1e+21"},
		{"1e22", "1e+22"}, {"12345678901234567890123", "1.2345678901234567890123e+22"},
		{"1e999999999999", "1e999999999999"}, // beyond any exponent: kept as spelt
	}
	for _, tt := range tests {
		if got := string(appendNumber(nil, tt.in)); got != tt.want {
			t.Errorf("canonical %s = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// fill sets every field of the struct v points to to a value that is not
// zero, so that a field added to Record cannot escape the test below.
func fill(v reflect.Value) {
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(`x"\` + v.Type().Field(i).Name + "\n<é>")
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(i+1) * 1_000_000_007)
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Slice: // Args
			f.SetBytes([]byte(`{"b":[1,{"z":null,"y":"é"}],"a":1.5}`))
		case reflect.Struct: // Time
			f.Set(reflect.ValueOf(time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)))
		default:
			panic("fill: add a case for " + f.Kind().String())
		}
	}
}

// TestCanonicalRecord holds the hand-written encoder of records to its
// definition: the canonical JSON of the record's JSON without its hash.
func TestCanonicalRecord(t *testing.T) {
	var r Record
	fill(reflect.ValueOf(&r).Elem())
	r.Args, _ = canonicalJSON(r.Args) // as Writer.Write stores them
	for _, tt := range []struct {
		name string
		r    Record
	}{{"every field", r}, {"no field", Record{}}, {"a few", Record{Seq: 3, Phase: Refusal, Truncated: true}}} {
		t.Run(tt.name, func(t *testing.T) {
			tt.r.Hash = ""
			js, err := json.Marshal(&tt.r)
			if err != nil {
				t.Fatal(err)
			}
			want, err := canonicalJSON(js)
			if err != nil {
				t.Fatal(err)
			}
			tt.r.Hash = "ignored"
			if got := appendRecord(nil, &tt.r); !bytes.Equal(got, want) {
				t.Errorf("appendRecord =\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range canonicalSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkCanonical(t, raw)
		c, err := canonicalJSON(raw)
		if err != nil {
			return
		}
		if !json.Valid(c) {
			t.Fatalf("canonical form of %q is not JSON: %q", raw, c)
		}
		again, err := canonicalJSON(c)
		if err != nil || !bytes.Equal(again, c) {
			t.Fatalf("canonical form of %q is %q, and its canonical form %q (%v)", raw, c, again, err)
		}
		key := ArgsKey(secret)
		if ArgsHash(key, raw) != ArgsHash(key, c) {
			t.Fatalf("%q and its canonical form %q hash differently", raw, c)
		}
	})
}

// decodedCanonical is the definition canonicalJSON is held to: the value
// as encoding/json decodes it (numbers kept as spelt), written out by
// appendCanonical.
func decodedCanonical(raw []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.InputOffset() != int64(len(bytes.TrimRight(raw, " \t\r\n"))) {
		return nil, errors.New("trailing data")
	}
	return appendCanonical(nil, v), nil
}

var canonicalSeeds = []string{
	`{"b":1,"a":[true,false,null]}`, `"\u0000\ud800é"`, `1.5e-300`, `-0.0`, `[{"":{}}]`, `{"a":1,"a":2}`,
	`{"a":1,"b":{"y":2,"x":[3,{"k":"v","j":null}]},"a":{"z":1}}`, `"\ud83d\ude00 \ud83d"`, `"\udc00\ud800\u0041"`,
	"\"\xff\xfe ok \xc3\"", `{"\n":1,"\"":2,"é":3,"e":4,"\u00e9":5}`, ` [ 1 , 2 ] `, `{"a":1} x`, `{"a":1}{}`,
	`01`, `1.`, `.5`, `-`, `1e`, `1e+`, `tru`, `nul`, `{"a" 1}`, `{"a":1,}`, `[1,]`, `"\x"`, `"\u12"`, "\"a\tb\"",
	`{"s":"<&>\u2028"}`, `12345678901234567890123`, `[[[[[]]]]]`, ``, ` `, `{}`, `[]`,
}

func TestCanonicalMatchesDecoding(t *testing.T) {
	for _, s := range canonicalSeeds {
		checkCanonical(t, []byte(s))
	}
}

func checkCanonical(t *testing.T, raw []byte) {
	t.Helper()
	got, err := canonicalJSON(raw)
	want, werr := decodedCanonical(raw)
	if (err == nil) != (werr == nil) {
		t.Fatalf("canonicalJSON(%q): error %v, but decoding it: error %v", raw, err, werr)
	}
	if err == nil && !bytes.Equal(got, want) {
		t.Fatalf("canonicalJSON(%q) = %q, want %q", raw, got, want)
	}
}

// TestLineIsJSON holds the hand-written sink encoder to encoding/json.
func TestLineIsJSON(t *testing.T) {
	var r Record
	fill(reflect.ValueOf(&r).Elem())
	r.Args, _ = canonicalJSON(r.Args)
	odd := r
	odd.Reason = "ctl \x01\x1f\b\f\t\r\n \u2028 \u2029 <&> \"q\" \\ \xff end"
	odd.Time = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, r := range []Record{r, odd, {}, {Seq: 3, Phase: Refusal, Truncated: true}} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(&r); err != nil {
			t.Fatal(err)
		}
		if got := appendLine(nil, &r); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("appendLine =\n%s\nwant\n%s", got, want.Bytes())
		}
	}
}
