package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/pin"
	"github.com/wardenmcp/warden/pipeline"
)

// noPinScope explains a refused decision on an upstream definition.
const noPinScope = "Approving and rejecting upstream definitions takes the " + ScopeUpstreams +
	" scope, since an upstream's definitions are served to every tenant; you do not hold it, so nothing was changed. Ask an operator who does."

// pinStates are the upstreams list's filters, in the order the page offers
// them.
var pinStates = []string{string(pin.Quarantined), string(pin.Rejected), string(pin.Approved), "all"}

type upstreamsData struct {
	Configured bool
	State      string
	States     []string
	Rows       []pin.Pin
}

// canDecidePins reports whether s may approve and reject upstream
// definitions (see ScopeUpstreams).
func canDecidePins(s *session) bool {
	p := s.Principal
	return p.HasScope(ScopeUpstreams) || p.HasScope(ScopeKeys) && p.Tenant == ""
}

// upstreams lists the pinned upstream definitions.
func (c *console) upstreams(w http.ResponseWriter, r *http.Request, s *session) {
	d := upstreamsData{Configured: c.o.Pins != nil, State: r.URL.Query().Get("state"), States: pinStates}
	p := page{Title: "Upstreams", Nav: "upstreams", Data: &d}
	if d.State == "" {
		d.State = string(pin.Quarantined)
	}
	if !slices.Contains(pinStates, d.State) {
		c.fail(w, r, s, http.StatusBadRequest, "No such state",
			fmt.Sprintf("There is no state %q: choose one of %s.", d.State, strings.Join(pinStates, ", ")))
		return
	}
	if !d.Configured {
		c.render(w, r, s, http.StatusOK, "upstreams", p)
		return
	}
	f := pin.Filter{State: pin.State(d.State)}
	if d.State == "all" {
		f.State = ""
	}
	pins, err := c.o.Pins.List(r.Context(), f)
	if err != nil {
		c.internal(w, r, s, "listing pins", err)
		return
	}
	d.Rows = pins
	c.render(w, r, s, http.StatusOK, "upstreams", p)
}

type upstreamData struct {
	pin.Pin
	ApprovedText, PendingText string // the versions, pretty
	Diff                      []pin.DiffLine
	Findings                  []pin.Finding // of the pending version, or of the approved one when none is pending
	CanDecide                 bool
}

// pinPath is the page of one pinned definition.
func pinPath(ref pin.Ref) string {
	q := url.Values{"upstream": {ref.Upstream}, "kind": {string(ref.Kind)}, "name": {ref.Name}}
	return "/console/upstreams/pin?" + q.Encode()
}

// getPin reads the pin the request's upstream, kind and name name (query
// or form), or writes an error page.
func (c *console) getPin(w http.ResponseWriter, r *http.Request, s *session) (*pin.Pin, bool) {
	if c.o.Pins == nil {
		c.fail(w, r, s, http.StatusNotFound, "Upstreams not configured", "This server keeps no pins of upstream definitions.")
		return nil, false
	}
	ref := pin.Ref{Upstream: r.FormValue("upstream"), Kind: pin.Kind(r.FormValue("kind")), Name: r.FormValue("name")}
	pins, err := c.o.Pins.List(r.Context(), pin.Filter{Upstream: ref.Upstream})
	if err != nil {
		c.internal(w, r, s, "reading a pin", err)
		return nil, false
	}
	i := slices.IndexFunc(pins, func(p pin.Pin) bool { return p.Ref == ref })
	if ref.Upstream == "" || i < 0 {
		c.fail(w, r, s, http.StatusNotFound, "No such definition", fmt.Sprintf("No upstream definition is pinned as %s.", ref))
		return nil, false
	}
	return &pins[i], true
}

// upstream shows one pinned definition: its versions, findings and diff.
func (c *console) upstream(w http.ResponseWriter, r *http.Request, s *session) {
	p, ok := c.getPin(w, r, s)
	if !ok {
		return
	}
	c.showPin(w, r, s, http.StatusOK, p, "", c.takeFlash(r, s))
}

func (c *console) showPin(w http.ResponseWriter, r *http.Request, s *session, status int, p *pin.Pin, alert, flash string) {
	d := upstreamData{Pin: *p, ApprovedText: pin.Pretty(p.Kind, p.Approved.Body), PendingText: pin.Pretty(p.Kind, p.Pending.Body), CanDecide: canDecidePins(s)}
	d.Findings = p.Pending.Findings
	if p.Pending.Hash == "" {
		d.Findings = p.Approved.Findings
	} else {
		d.Diff = pin.Diff(d.ApprovedText, d.PendingText)
	}
	title := p.Name
	if title == "" {
		title = "instructions"
	}
	c.render(w, r, s, status, "upstream", page{Title: p.Upstream + " · " + title, Nav: "upstreams", Alert: alert, Flash: flash, Data: d})
}

// decidePin approves or rejects the version of a definition whose hash the
// form carries — the one the page showed — as `warden upstreams approve`
// does.
func (c *console) decidePin(w http.ResponseWriter, r *http.Request, s *session) {
	p, ok := c.getPin(w, r, s)
	if !ok {
		return
	}
	verb, hash := r.PostForm.Get("decision"), r.PostForm.Get("hash")
	ctx := r.Context()
	if verb != "approve" && verb != "reject" {
		c.showPin(w, r, s, http.StatusBadRequest, p, "Choose Approve or Reject.", "")
		return
	}
	if !canDecidePins(s) {
		rec := c.actionRecord(r, s, "upstreams/"+verb)
		rec.Target = p.Target()
		rec.Phase, rec.Decision, rec.Status, rec.ErrorCode = audit.Refusal, audit.Deny, audit.StatusRefused, string(pipeline.PermissionDenied)
		rec.Reason = fmt.Sprintf("%s %s of %s refused: the principal does not hold %s", verb, hash, p.Ref, ScopeUpstreams)
		if err := c.o.Record(ctx, rec); err != nil {
			c.log.Error("console: a refused pin decision was not audited", "err", err)
		}
		c.showPin(w, r, s, http.StatusForbidden, p, noPinScope, "")
		return
	}
	g := pin.NewGuard(c.o.Pins, c.o.Record)
	decide := g.Reject
	if verb == "approve" {
		decide = g.Approve
	}
	got, err := decide(ctx, p.Ref, hash, s.Principal.ID, "console")
	if errors.Is(err, pin.ErrDecision) {
		if now, ok := c.getPin(w, r, s); ok {
			c.showPin(w, r, s, http.StatusConflict, now, "Nothing was changed: the version you decided on is no longer the one waiting for a decision (another operator decided, or the upstream changed again). Read the page again.", "")
		}
		return
	}
	if err != nil && got == nil {
		c.internal(w, r, s, "deciding on a pin", err)
		return
	}
	if err != nil {
		c.log.Error("console: a pin decision was not audited", "pin", p.Target(), "err", err)
		c.showPin(w, r, s, http.StatusInternalServerError, got,
			"Your decision was made, but it could not yet be recorded in the audit log; the server records it at its next check of the upstream. Tell the operator that the audit log is not accepting records.", "")
		return
	}
	msg := "Approved: running servers serve it within seconds."
	if verb == "reject" {
		msg = "Rejected: refused whenever " + p.Upstream + " lists it."
	}
	c.setFlash(r, s, msg)
	http.Redirect(w, r, pinPath(p.Ref), http.StatusSeeOther)
}
