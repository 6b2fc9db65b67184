package guard

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestText(t *testing.T) {
	tests := []struct {
		name, in, want string
		opts           Options
	}{
		{name: "nothing to redact", in: "Order O-5001 shipped 2024-10-13", want: "Order O-5001 shipped 2024-10-13"},
		{name: "AWS example key", in: "key=AKIAIOSFODNN7EXAMPLE;", want: "key=[REDACTED:aws_access_key];"},
		{name: "Warden key", in: "Bearer wdn_" + strings.Repeat("aB3-_x9Q", 5) + "xyz.", want: "Bearer [REDACTED:warden_api_key]."},
		{name: "Warden key prefix as listed is not a key", in: "key wdn_aB3x9Qzz (ci-bot)", want: "key wdn_aB3x9Qzz (ci-bot)"},
		{name: "a specific rule names an overlapping generic match", in: "api_key=sk_test_4eC39HqLyjWDarjtT1zdp7dc", want: "api_key=[REDACTED:stripe_key]"},
		{name: "two secrets", in: "AKIAIOSFODNN7EXAMPLE and sk_test_4eC39HqLyjWDarjtT1zdp7dc", want: "[REDACTED:aws_access_key] and [REDACTED:stripe_key]"},
		{name: "truncated private key", in: "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0", want: "[REDACTED:private_key]"},
		{name: "low-entropy password is left", in: "password=password", want: "password=password"},
		{name: "placeholder is left", in: "password=${DB_PASSWORD}", want: "password=${DB_PASSWORD}"},
		{name: "code is left", in: "token := oauth2.Token{AccessToken: tok}", want: "token := oauth2.Token{AccessToken: tok}"},
		{name: "pagination cursor is left", in: `"next_page_token": "CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA2MjIwMDAQAA"`, want: `"next_page_token": "CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA2MjIwMDAQAA"`},
		{name: "card with a failing Luhn digit", in: "4111 1111 1111 1112", want: "4111 1111 1111 1112"},
		{name: "card among other numbers", in: "Order 5001 4111 1111 1111 1111 2024", want: "Order 5001 [REDACTED:card_number] 2024"},
		{name: "card in unusual grouping", in: "41 1111 1111 1111 11", want: "41 1111 1111 1111 11"},
		{name: "card with mixed separators", in: "4111-1111 1111-1111", want: "4111-1111 1111-1111"},
		{name: "card inside a word", in: "ref4111111111111111", want: "ref4111111111111111"},
		{name: "card as a decimal", in: "4111111111111111.25", want: "4111111111111111.25"},
		{name: "SSN", in: "SSN 219-09-9999.", want: "SSN [REDACTED:us_ssn]."},
		{name: "SSN area 000", in: "000-12-3456", want: "000-12-3456"},
		{name: "SSN area 666", in: "666-12-3456", want: "666-12-3456"},
		{name: "SSN area 9xx", in: "987-65-4321", want: "987-65-4321"},
		{name: "SSN group 00", in: "219-00-9999", want: "219-00-9999"},
		{name: "SSN serial 0000", in: "219-09-0000", want: "219-09-0000"},
		{name: "SSN inside a longer code", in: "PN-219-09-9999-B", want: "PN-219-09-9999-B"},
		{name: "bare nine digits without a label", in: "ref 219099999", want: "ref 219099999"},
		{name: "bare nine digits with a label", in: "SSN#219099999", want: "SSN#[REDACTED:us_ssn]"},
		{name: "IBAN", in: "GB82 WEST 1234 5698 7654 32", want: "[REDACTED:iban]"},
		{name: "IBAN with a wrong check", in: "GB82 WEST 1234 5698 7654 33", want: "GB82 WEST 1234 5698 7654 33"},
		{name: "IBAN of the wrong length", in: "GB82WEST123456987654", want: "GB82WEST123456987654"},
		{name: "IBAN followed by a word", in: "DE89370400440532013000 due", want: "[REDACTED:iban] due"},
		{name: "emails are off by default", in: "homer@acme.example", want: "homer@acme.example"},
		{name: "emails when asked", in: "to: homer@acme.example.", want: "to: [REDACTED:email].", opts: Options{Emails: true}},
		{name: "not an email", in: "10 units @ 5.00, user@localhost", want: "10 units @ 5.00, user@localhost", opts: Options{Emails: true}},
		{name: "phones are off by default", in: "+1 212 555 0101", want: "+1 212 555 0101"},
		{name: "phones when asked", in: "call +1 212 555 0101 or (212) 555-0147", want: "call [REDACTED:phone] or [REDACTED:phone]", opts: Options{Phones: true}},
		{name: "phone-like order number", in: "Order 212-555-0101", want: "Order 212-555-0101", opts: Options{Phones: true}},
		{name: "too few digits for a phone", in: "+1 555 01", want: "+1 555 01", opts: Options{Phones: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, findings := NewRedactor(tt.opts).Text(tt.in)
			if got != tt.want {
				t.Errorf("Text(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
			if n := strings.Count(tt.want, "[REDACTED:"); len(findings) != n {
				t.Errorf("%d findings %v, want %d", len(findings), findings, n)
			}
			for _, f := range findings {
				if f.Path != "" {
					t.Errorf("finding %v has a path", f)
				}
			}
		})
	}
}

func TestTextAllocatesNothingWhenClean(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	r := NewRedactor(Options{Emails: true, Phones: true})
	row := `{"id":"O-5002","customer_id":"C-1001","status":"shipped","amount_cents":45900,"currency":"USD","placed_at":"2024-10-12T09:15:00Z","note":"Key account; ships via https://carrier.example/track?id=1Z999"}`
	if n := testing.AllocsPerRun(100, func() { r.Text(row) }); n != 0 {
		t.Errorf("Text allocated %v times on clean text", n)
	}
}

func TestValue(t *testing.T) {
	r := NewRedactor(Options{Emails: true})
	in := map[string]any{
		"rows": []any{
			map[string]any{"id": "C-1001", "email": "ada@example.com", "card": "4111 1111 1111 1111"},
			map[string]any{"id": "C-1002", "email": "grace@example.com", "pan": json.Number("5555555555554444")},
		},
		"password":    "hunter2",
		"db_password": "", // empty: nothing to hide
		"api_key":     "${API_KEY}",
		"count":       2.0,
		"card_number": 4111111111111111.0,
		"ok":          true,
		"nothing":     nil,
	}
	out, findings := r.Value(in, AllowFields("rows.*.email"))
	want := map[string]any{
		"rows": []any{
			map[string]any{"id": "C-1001", "email": "ada@example.com", "card": "[REDACTED:card_number]"},
			map[string]any{"id": "C-1002", "email": "grace@example.com", "pan": "[REDACTED:card_number]"},
		},
		"password":    "[REDACTED:generic_secret]",
		"db_password": "",
		"api_key":     "${API_KEY}",
		"count":       2.0,
		"card_number": "[REDACTED:card_number]",
		"ok":          true,
		"nothing":     nil,
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("Value:\n got %v\nwant %v", out, want)
	}
	wantFindings := []Finding{
		{Kind: "card_number", Path: "card_number"},
		{Kind: "generic_secret", Path: "password"},
		{Kind: "card_number", Path: "rows.0.card"},
		{Kind: "card_number", Path: "rows.1.pan"},
	}
	if !reflect.DeepEqual(findings, wantFindings) {
		t.Errorf("findings:\n got %v\nwant %v", findings, wantFindings)
	}
	if in["password"] != "hunter2" || in["rows"].([]any)[0].(map[string]any)["card"] != "4111 1111 1111 1111" {
		t.Error("Value modified its input")
	}
}

func TestValueUnchangedIsTheSameValue(t *testing.T) {
	in := map[string]any{"rows": []any{map[string]any{"id": "O-5001"}}}
	out, findings := NewRedactor(Options{}).Value(in, nil)
	if len(findings) != 0 || reflect.ValueOf(out).Pointer() != reflect.ValueOf(in).Pointer() {
		t.Errorf("got a new value %v, findings %v", out, findings)
	}
}

func TestValueStructsAndRawJSON(t *testing.T) {
	type row struct {
		ID     string `json:"id"`
		Secret string `json:"client_secret"`
		Note   string `json:"note"`
	}
	r := NewRedactor(Options{})
	out, findings := r.Value([]row{{ID: "C-1", Secret: "s3cr3t", Note: "AKIAIOSFODNN7EXAMPLE"}}, nil)
	want := []any{map[string]any{"id": "C-1", "client_secret": "[REDACTED:generic_secret]", "note": "[REDACTED:aws_access_key]"}}
	if !reflect.DeepEqual(out, want) || len(findings) != 2 {
		t.Errorf("struct: got %v %v", out, findings)
	}

	clean := row{ID: "C-2", Note: "fine"}
	if out, _ := r.Value(clean, nil); out != clean {
		t.Errorf("a clean struct came back as %T %v", out, out)
	}

	raw := json.RawMessage(`{"note":"paid with 4111111111111111","n":12345678901234567890}`)
	out, findings = r.Value(raw, nil)
	got, ok := out.(json.RawMessage)
	if !ok || string(got) != `{"n":12345678901234567890,"note":"paid with [REDACTED:card_number]"}` || len(findings) != 1 || findings[0].Path != "note" {
		t.Errorf("raw JSON: got %s %v", out, findings)
	}

	out, findings = r.Value(func() {}, nil)
	if out != "[REDACTED:unencodable]" || len(findings) != 1 {
		t.Errorf("a func: got %v %v", out, findings)
	}
}

func TestJSON(t *testing.T) {
	r := NewRedactor(Options{})
	args := []byte(`{"customer_id":"C-1001","note":"card 4111-1111-1111-1111","big":1e400}`)
	_, _, err := r.JSON(args, nil)
	if err != nil {
		t.Fatal(err) // a number too big for float64 still passes: numbers stay json.Number
	}
	args = []byte(`{"customer_id":"C-1001","note":"card 4111-1111-1111-1111"}`)
	out, findings, err := r.JSON(args, nil)
	if err != nil || string(out) != `{"customer_id":"C-1001","note":"card [REDACTED:card_number]"}` || len(findings) != 1 {
		t.Errorf("got %s %v %v", out, findings, err)
	}
	clean := []byte(`{"customer_id": "C-1001"}`)
	if out, _, _ := r.JSON(clean, nil); &out[0] != &clean[0] {
		t.Error("clean JSON was re-encoded")
	}
	for _, bad := range []string{`{"a":`, `{} {}`, ``} {
		if _, _, err := r.JSON([]byte(bad), nil); err == nil {
			t.Errorf("JSON(%q): no error", bad)
		}
	}
}

func TestAllowFields(t *testing.T) {
	allow := AllowFields("rows.*.email", "owner", "a.b.c")
	for path, want := range map[string]bool{
		"rows.0.email":   true,
		"rows.12.email":  true,
		"rows.0.phone":   false,
		"rows.email":     false,
		"rows.0.email.x": false,
		"owner":          true,
		"owner.name":     false, // reached only through "owner", which Value checks first
		"a.b":            false,
		"a.b.c":          true,
		"":               false,
	} {
		if got := allow(path); got != want {
			t.Errorf("allow(%q) = %v, want %v", path, got, want)
		}
	}
	// An allowed container shields everything below it.
	out, findings := NewRedactor(Options{}).Value(map[string]any{"owner": map[string]any{"pan": "4111111111111111"}}, allow)
	if len(findings) != 0 || out.(map[string]any)["owner"].(map[string]any)["pan"] != "4111111111111111" {
		t.Errorf("got %v %v", out, findings)
	}
}
