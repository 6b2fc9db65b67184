package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/keys"
)

// keyNamed returns the key named name that is not revoked, or the last one
// with that name.
func (f *fixture) keyNamed(name string) *keys.Key {
	f.t.Helper()
	ks, err := f.keys.List(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	var found *keys.Key
	for _, k := range ks {
		if k.Name == name && (found == nil || !found.RevokedAt.IsZero()) {
			found = k
		}
	}
	return found
}

func TestCreateAndRevokeKeys(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	b := f.signedIn("ops-admin", admin)

	r := b.submit("/console/keys", "/console/keys", url.Values{
		"name": {"ci-bot"}, "tenant": {"acme"}, "scopes": {" crm.read, crm.write ,"}, "groups": {"ops"}, "expires": {"30d"},
	})
	plaintext := r.text("new-key")
	if r.status != http.StatusOK || !strings.HasPrefix(plaintext, keys.Marker) || !strings.Contains(r.body, "it will not be shown again") {
		t.Fatalf("creating a key: HTTP %d, key %q (%s)", r.status, plaintext, r.alert())
	}
	p, expires, err := keys.Authenticate(ctx, f.keys, plaintext)
	if err != nil || p.ID != "ci-bot" || p.Tenant != "acme" || !slices.Equal(p.Scopes, []string{"crm.read", "crm.write"}) ||
		!slices.Equal(p.Groups, []string{"ops"}) || expires.IsZero() {
		t.Fatalf("the new key authenticates as %+v, expiring %v (%v)", p, expires, err)
	}
	list := b.get("/console/keys")
	k := f.keyNamed("ci-bot")
	if strings.Contains(list.body, plaintext) || !strings.Contains(list.body, `<tr data-key-id="`+k.ID+`">`) || !strings.Contains(list.body, k.Prefix) {
		t.Errorf("the list shows the key's plaintext, or not the key:\n%s", list.body)
	}

	r = b.submit("/console/keys", "/console/keys/"+k.ID+"/revoke", url.Values{})
	if r.status != http.StatusSeeOther || r.location() != "/console/keys" {
		t.Fatalf("revoking: HTTP %d to %q (%s)", r.status, r.location(), r.alert())
	}
	if got := b.get("/console/keys").role("status"); len(got) != 1 || !strings.Contains(got[0], "Revoked the key ci-bot") {
		t.Errorf("after revoking, status %q", got)
	}
	if _, _, err := keys.Authenticate(ctx, f.keys, plaintext); err == nil {
		t.Error("a revoked key still authenticates")
	}
	if r := b.submit("/console/keys", "/console/keys/key_0000000000000000/revoke", url.Values{}); r.status != http.StatusNotFound {
		t.Errorf("revoking an unknown key: HTTP %d", r.status)
	}

	var methods []string
	for _, rec := range f.records(audit.Query{Target: "ci-bot"}) {
		js, _ := json.Marshal(rec)
		if strings.Contains(string(js), plaintext) {
			t.Errorf("the audit log holds the key: %s", js)
		}
		if rec.Principal == "ops-admin" && rec.AuthMethod == "console" && strings.Contains(rec.Reason, k.ID) {
			methods = append(methods, rec.Method)
		}
	}
	if !slices.Equal(methods, []string{"keys/create", "keys/revoke"}) {
		t.Errorf("audited %q, want keys/create and keys/revoke", methods)
	}
}

func TestKeyFormIsChecked(t *testing.T) {
	f := newFixture(t)
	b := f.signedIn("ops-admin", admin)
	f.key("taken", []string{"crm.read"})
	valid := url.Values{"name": {"new-bot"}, "tenant": {"acme"}, "scopes": {"crm.read"}}
	tests := []struct {
		name   string
		field  string
		value  string
		status int
		alert  string
	}{
		{"no name", "name", "", http.StatusBadRequest, "Name: a key needs a name"},
		{"a name like a key", "name", "wdn_abc", http.StatusBadRequest, "must not start with wdn_"},
		{"a name with spaces", "name", "new bot", http.StatusBadRequest, "is not a key name"},
		{"no tenant", "tenant", " ", http.StatusBadRequest, "Tenant: name the tenant"},
		{"no scopes", "scopes", " , ", http.StatusBadRequest, "Scopes: list exactly the scopes"},
		{"a wildcard scope", "scopes", "crm.*", http.StatusBadRequest, "wildcards are not allowed"},
		{"a lifetime that is not one", "expires", "soon", http.StatusBadRequest, "is not a lifetime"},
		{"too short a lifetime", "expires", "30s", http.StatusBadRequest, "at least a minute"},
		{"a name already taken", "name", "taken", http.StatusConflict, `already named "taken"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{}
			for k, v := range valid {
				form[k] = v
			}
			form.Set(tt.field, tt.value)
			before, _ := f.keys.List(context.Background())
			r := b.submit("/console/keys", "/console/keys", form)
			if r.status != tt.status || !strings.Contains(r.alert(), tt.alert) || r.text("new-key") != "" {
				t.Errorf("HTTP %d, alert %q; want %d with %q and no key", r.status, r.alert(), tt.status, tt.alert)
			}
			if after, _ := f.keys.List(context.Background()); len(after) != len(before) {
				t.Errorf("a key was created")
			}
			if tt.field != "name" && !strings.Contains(r.body, `value="new-bot"`) {
				t.Error("the form lost what was typed")
			}
		})
	}
}

func TestKeysNeedTheKeysScope(t *testing.T) {
	f := newFixture(t)
	f.key("victim", []string{"crm.read"})
	victim := f.keyNamed("victim")
	b := f.signedIn("ops-viewer", consoleOnly)

	list := b.get("/console/keys")
	if list.status != http.StatusOK || !strings.Contains(list.body, `<tr data-key-id="`+victim.ID+`">`) {
		t.Errorf("without the keys scope, the list: HTTP %d", list.status)
	}
	for _, tt := range []struct {
		name, path string
		form       url.Values
	}{
		{"create", "/console/keys", url.Values{"name": {"mine"}, "tenant": {"acme"}, "scopes": {"warden.console.keys"}}},
		{"revoke", "/console/keys/" + victim.ID + "/revoke", url.Values{}},
	} {
		r := b.submit("/console/keys", tt.path, tt.form)
		if r.status != http.StatusForbidden || !strings.Contains(r.alert(), "takes the warden.console.keys scope") {
			t.Errorf("%s without the keys scope: HTTP %d, alert %q", tt.name, r.status, r.alert())
		}
	}
	if f.keyNamed("mine") != nil || !f.keyNamed("victim").RevokedAt.IsZero() {
		t.Error("a principal without the keys scope changed the keys")
	}
}

func TestKeyNotAuditedIsNotIssued(t *testing.T) {
	f := newFixture(t)
	b := f.signedIn("ops-admin", admin)
	csrf := b.csrf("/console/keys")
	f.failRecord.Store(true)
	r := b.do(http.MethodPost, "/console/keys", url.Values{"csrf": {csrf}, "name": {"ci-bot"}, "tenant": {"acme"}, "scopes": {"crm.read"}}, nil)
	if r.status != http.StatusServiceUnavailable || r.text("new-key") != "" || !strings.Contains(r.alert(), "The key was not issued") {
		t.Errorf("HTTP %d, alert %q; want 503, no key shown", r.status, r.alert())
	}
	if k := f.keyNamed("ci-bot"); k != nil && k.RevokedAt.IsZero() {
		t.Errorf("an unaudited key is active: %+v", k)
	}
}

// A tenant's key administrator manages its own tenant's keys only.
func TestKeysKeepToTheTenant(t *testing.T) {
	f := newFixture(t)
	f.keyIn("globex", "globex-bot", []string{"crm.read"})
	theirs := f.keyNamed("globex-bot")
	b := f.signedIn("acme-admin", admin)

	if r := b.get("/console/keys"); strings.Contains(r.body, theirs.ID) {
		t.Error("acme's administrator sees globex's key")
	}
	r := b.submit("/console/keys", "/console/keys", url.Values{"name": {"planted"}, "tenant": {"globex"}, "scopes": {"crm.read"}})
	if r.status != http.StatusBadRequest || r.text("new-key") != "" || f.keyNamed("planted") != nil {
		t.Errorf("creating a key for globex: HTTP %d (%s); want 400 and no key", r.status, r.alert())
	}
	r = b.submit("/console/keys", "/console/keys/"+theirs.ID+"/revoke", url.Values{})
	if r.status != http.StatusNotFound || !f.keyNamed("globex-bot").RevokedAt.IsZero() {
		t.Errorf("revoking globex's key: HTTP %d (%s); want 404 and the key intact", r.status, r.alert())
	}
}
