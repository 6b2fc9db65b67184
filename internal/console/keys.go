package console

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/keys"
)

// noKeysScope explains a refused key action.
const noKeysScope = "Creating and revoking API keys takes the " + ScopeKeys + " scope, which your key does not hold, so nothing was changed. Ask an operator who holds it."

type keysData struct {
	Configured bool
	CanManage  bool // the principal holds ScopeKeys
	Keys       []keyRow
	Form       keyForm
	New        *newKey // the key just created, shown once
}

type keyRow struct {
	*keys.Key
	Status string
}

// keyForm is the create form, as typed.
type keyForm struct {
	Name, Tenant, Scopes, Groups, Expires string
}

type newKey struct {
	Plaintext string
	*keys.Key
}

func (c *console) keys(w http.ResponseWriter, r *http.Request, s *session) {
	c.showKeys(w, r, s, http.StatusOK, keysData{}, "", c.takeFlash(r, s))
}

// showKeys writes the keys page, listing the keys, with d's form and new
// key.
func (c *console) showKeys(w http.ResponseWriter, r *http.Request, s *session, status int, d keysData, alert, flash string) {
	d.Configured, d.CanManage = c.o.Keys != nil, s.Principal.HasScope(ScopeKeys)
	if d.Configured {
		ks, err := c.o.Keys.List(r.Context())
		if err != nil {
			c.internal(w, r, s, "listing API keys", err)
			return
		}
		now := c.now()
		for _, k := range ks {
			if ownKey(s, k) {
				d.Keys = append(d.Keys, keyRow{k, k.Status(now)})
			}
		}
	}
	c.render(w, r, s, status, "keys", page{Title: "API keys", Nav: "keys", Alert: alert, Flash: flash, Data: d})
}

// createKey issues a key and shows it, once, in the response itself: it is
// never stored, nor kept in the session.
func (c *console) createKey(w http.ResponseWriter, r *http.Request, s *session) {
	f := keyForm{
		Name: strings.TrimSpace(r.PostForm.Get("name")), Tenant: strings.TrimSpace(r.PostForm.Get("tenant")),
		Scopes: r.PostForm.Get("scopes"), Groups: r.PostForm.Get("groups"), Expires: strings.TrimSpace(r.PostForm.Get("expires")),
	}
	if c.o.Keys == nil {
		c.fail(w, r, s, http.StatusNotFound, "API keys not configured", "This server keeps no API keys.")
		return
	}
	if !s.Principal.HasScope(ScopeKeys) {
		c.showKeys(w, r, s, http.StatusForbidden, keysData{Form: f}, noKeysScope, "")
		return
	}
	scopes, groups, ttl, err := f.check()
	if t := s.Principal.Tenant; err == nil && t != "" && f.Tenant != t {
		err = fmt.Errorf("tenant: you may create keys for your own tenant (%s) only", t)
	}
	if err != nil {
		c.showKeys(w, r, s, http.StatusBadRequest, keysData{Form: f}, sentence(err)+" No key was created.", "")
		return
	}
	ctx := r.Context()
	plaintext, k, hash := keys.Generate(f.Name, f.Tenant, scopes, groups, ttl)
	if err := c.o.Keys.Create(ctx, k, hash); errors.Is(err, keys.ErrNameTaken) {
		c.showKeys(w, r, s, http.StatusConflict, keysData{Form: f},
			fmt.Sprintf("A key that is not revoked is already named %q: revoke it first, or choose another name. No key was created.", f.Name), "")
		return
	} else if err != nil {
		c.internal(w, r, s, "creating an API key", err)
		return
	}
	rec := c.actionRecord(r, s, "keys/create")
	rec.Target = k.Name
	rec.Reason = fmt.Sprintf("created API key %s (%s, %s…) for tenant %s with scopes %s and groups %s; %s",
		k.Name, k.ID, k.Prefix, k.Tenant, strings.Join(k.Scopes, ","), orNone(k.Groups), expiry(k))
	if err := c.o.Record(ctx, rec); err != nil {
		// Nobody has seen the key, so it can go unaudited only as long as
		// it exists: revoke it, which also frees its name.
		c.log.Error("console: a new key could not be audited, so it was revoked", "key", k.ID, "err", err)
		if _, err := c.o.Keys.Revoke(ctx, k.ID); err != nil {
			c.log.Error("console: revoking an unaudited key (nobody has seen it)", "key", k.ID, "err", err)
		}
		c.showKeys(w, r, s, http.StatusServiceUnavailable, keysData{Form: f},
			"The key was not issued: it could not be recorded in the audit log. Try again shortly; if it persists, tell the operator that the audit log is not accepting records.", "")
		return
	}
	c.showKeys(w, r, s, http.StatusOK, keysData{New: &newKey{Plaintext: plaintext, Key: k}}, "", "")
}

// check validates the form as `warden keys create` validates its flags.
func (f keyForm) check() (scopes, groups []string, ttl time.Duration, err error) {
	if err := keys.ValidName(f.Name); err != nil {
		return nil, nil, 0, fmt.Errorf("name: %w", err)
	}
	if f.Tenant == "" {
		return nil, nil, 0, errors.New("tenant: name the tenant the key acts for")
	}
	scopes, groups = list(f.Scopes), list(f.Groups)
	if len(scopes) == 0 {
		return nil, nil, 0, errors.New("scopes: list exactly the scopes the key grants, comma-separated (no scope, no call)")
	}
	for _, sc := range scopes {
		if err := config.ValidScope(sc); err != nil {
			return nil, nil, 0, fmt.Errorf("scopes: %w", err)
		}
	}
	if f.Expires != "" {
		d, ok := parseDuration(f.Expires)
		if !ok {
			return nil, nil, 0, fmt.Errorf("expires: %q is not a lifetime: use days, hours or minutes, such as 30d, 12h or 90m, or leave it empty for a key that never expires", f.Expires)
		}
		if d < time.Minute {
			return nil, nil, 0, fmt.Errorf("expires: %q: a key must live at least a minute", f.Expires)
		}
		ttl = d
	}
	return scopes, groups, ttl, nil
}

// list splits a comma-separated list, dropping empty items.
func list(s string) []string {
	var l []string
	for _, it := range strings.Split(s, ",") {
		if it = strings.TrimSpace(it); it != "" {
			l = append(l, it)
		}
	}
	return l
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ",")
}

func expiry(k *keys.Key) string {
	if k.ExpiresAt.IsZero() {
		return "never expires"
	}
	return "expires " + k.ExpiresAt.Format(time.RFC3339)
}

// ownKey reports whether s may see and manage k: a tenant's principal the
// keys of its tenant, a principal of no tenant every key.
func ownKey(s *session, k *keys.Key) bool {
	return s.Principal.Tenant == "" || s.Principal.Tenant == k.Tenant
}

// revokeKey revokes a key; calls presenting it are refused from then on,
// and a console session signed in with it ends at its next request.
func (c *console) revokeKey(w http.ResponseWriter, r *http.Request, s *session) {
	if c.o.Keys == nil {
		c.fail(w, r, s, http.StatusNotFound, "API keys not configured", "This server keeps no API keys.")
		return
	}
	if !s.Principal.HasScope(ScopeKeys) {
		c.showKeys(w, r, s, http.StatusForbidden, keysData{}, noKeysScope, "")
		return
	}
	id := r.PathValue("id")
	ctx := r.Context()
	ks, err := c.o.Keys.List(ctx)
	if err != nil {
		c.internal(w, r, s, "listing API keys", err)
		return
	}
	own := slices.ContainsFunc(ks, func(k *keys.Key) bool { return k.ID == id && ownKey(s, k) })
	var k *keys.Key
	if own {
		k, err = c.o.Keys.Revoke(ctx, id)
	}
	if !own || errors.Is(err, keys.ErrNotFound) {
		c.showKeys(w, r, s, http.StatusNotFound, keysData{}, fmt.Sprintf("No key has the id %q, so nothing was revoked.", id), "")
		return
	}
	if err != nil {
		c.internal(w, r, s, "revoking an API key", err)
		return
	}
	rec := c.actionRecord(r, s, "keys/revoke")
	rec.Target = k.Name
	rec.Reason = fmt.Sprintf("revoked API key %s (%s, %s…) of tenant %s", k.Name, k.ID, k.Prefix, k.Tenant)
	if err := c.o.Record(ctx, rec); err != nil {
		c.log.Error("console: a revocation was not audited", "key", k.ID, "err", err)
		c.showKeys(w, r, s, http.StatusInternalServerError, keysData{},
			fmt.Sprintf("The key %s is revoked, but the revocation could not be recorded in the audit log. Tell the operator that the audit log is not accepting records.", k.Name), "")
		return
	}
	c.setFlash(r, s, fmt.Sprintf("Revoked the key %s (%s): every call presenting it is refused.", k.Name, k.ID))
	http.Redirect(w, r, "/console/keys", http.StatusSeeOther)
}
