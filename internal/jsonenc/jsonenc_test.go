package jsonenc

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
)

// AppendFloat writes what encoding/json writes, and refuses what it refuses.
func TestAppendFloatAsEncodingJSON(t *testing.T) {
	for _, f := range []float64{0, math.Copysign(0, -1), 1, -1.5, 0.1, 1e-6, 9.99e-7, 1e-9, 123456789, 1e20, 1e21, 1.5e300, -2.5e-300, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		want, _ := json.Marshal(f)
		got, ok := AppendFloat(nil, f)
		if !ok || string(got) != string(want) {
			t.Errorf("AppendFloat(%v) = %s, %v; encoding/json writes %s", f, got, ok, want)
		}
	}
	for _, f := range []float64{math.Inf(1), math.Inf(-1), math.NaN()} {
		if got, ok := AppendFloat([]byte("x"), f); ok || string(got) != "x" {
			t.Errorf("AppendFloat(%v) = %s, %v; want it refused, nothing appended", f, got, ok)
		}
	}
}

// FuzzAppendFloat checks the number format against encoding/json's.
func FuzzAppendFloat(f *testing.F) {
	for _, x := range []float64{0, 1, -1, 0.1, 1e-7, 1e21, 1e20, 123e-300, math.MaxFloat64} {
		f.Add(x)
	}
	f.Fuzz(func(t *testing.T, x float64) {
		want, err := json.Marshal(x)
		got, ok := AppendFloat(nil, x)
		if ok != (err == nil) || ok && !bytes.Equal(got, want) {
			t.Fatalf("AppendFloat(%v) = %s %v, encoding/json %s %v", x, got, ok, want, err)
		}
	})
}

// FuzzAppendString checks the string escaping, with and without HTML
// escapes, against encoding/json's.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "<>&\"\\", "\x00\x01\x1f\x7f", "\u2028\u2029", "\xff", "é😀", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, html := range []bool{true, false} {
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetEscapeHTML(html)
			if err := enc.Encode(s); err != nil {
				t.Fatal(err)
			}
			if got := AppendString(nil, s, html); !bytes.Equal(got, bytes.TrimSuffix(want.Bytes(), []byte("\n"))) {
				t.Fatalf("AppendString(%q, html %v) = %s, encoding/json %s", s, html, got, want.Bytes())
			}
		}
	})
}
