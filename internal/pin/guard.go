package pin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/wardenmcp/warden/internal/audit"
)

// The pin events, each audited as Method "upstreams/<event>".
const (
	EventFirstSeen = "first_seen"
	EventChanged   = "changed"
	EventApproved  = "approved"
	EventRejected  = "rejected"
	EventFlagged   = "flagged"
)

// Check records what it has not seen, quarantines what changed, scans what
// is new or changed, and returns one verdict per definition, in order. It
// must be called with the COMPLETE current listing of one upstream (all
// kinds), so that it can tell new from known. An error means nothing of
// this listing may be served (fail closed).
//
// The pin events it finds are audited before the pins are stored: should
// the audit fail, nothing is stored and Check fails; should the store fail
// after the audit, the next Check audits the events again.
func (g *Guard) Check(ctx context.Context, upstream string, p Policy, defs []Definition) ([]Verdict, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if upstream == "" {
		return nil, errors.New("pin: checking a listing of an unnamed upstream")
	}
	hashes := make([]string, len(defs))
	seen := make(map[Ref]bool, len(defs))
	for i, d := range defs {
		ref := Ref{Upstream: upstream, Kind: d.Kind, Name: d.Name}
		if d.Upstream != upstream {
			return nil, fmt.Errorf("pin: %s listed as upstream %s's", ref, d.Upstream)
		}
		if !d.Kind.Valid() {
			return nil, fmt.Errorf("pin: upstream %s: unknown kind %q", upstream, d.Kind)
		}
		if (d.Kind == Instructions) != (d.Name == "") {
			return nil, fmt.Errorf("pin: upstream %s: a %s must have a name, and only instructions have none", upstream, d.Kind)
		}
		if seen[ref] {
			return nil, fmt.Errorf("pin: upstream %s lists %s twice", upstream, ref)
		}
		seen[ref] = true
		h, err := Hash(d.Body)
		if err != nil {
			return nil, fmt.Errorf("pin: %s: %w", ref, err)
		}
		hashes[i] = h
	}
	// Names other upstreams serve, for the scan's tool_reference rule.
	all, err := g.store.List(ctx, Filter{})
	if err != nil {
		return nil, fmt.Errorf("pin: reading pins: %w", err)
	}
	var others []string
	for _, q := range all {
		if q.Upstream != upstream && q.Kind != Instructions {
			others = append(others, q.Name)
		}
	}
	scanner := NewScanner(ScanOptions{MaxDescription: p.MaxDescription, OtherTargets: others})

	verdicts := make([]Verdict, len(defs))
	err = g.store.Update(ctx, upstream, func(pins []Pin) ([]Pin, error) {
		byRef := make(map[Ref]*Pin, len(pins))
		for i := range pins {
			byRef[pins[i].Ref] = &pins[i]
		}
		known := len(pins) > 0
		now := g.now().UTC()
		var (
			changed []Pin
			events  []*audit.Record
		)
		for i, d := range defs {
			ref := Ref{Upstream: upstream, Kind: d.Kind, Name: d.Name}
			h := hashes[i]
			v, q, evs := g.decide(ref, byRef[ref], d, h, known, p, scanner)
			verdicts[i] = v
			events = append(events, evs...)
			if q != nil {
				q.Updated = now
				if q.FirstSeen.IsZero() {
					q.FirstSeen = now
				}
				changed = append(changed, *q)
			}
		}
		for _, r := range events {
			if err := g.record(ctx, r); err != nil {
				return nil, fmt.Errorf("auditing %s of %s: %w", r.Method, r.Target, err)
			}
		}
		return changed, nil
	})
	if err != nil {
		return nil, fmt.Errorf("pin: upstream %s: %w", upstream, err)
	}
	return verdicts, nil
}

// decide returns the verdict on d, whose hash is h, given its pin old (nil
// if none); the pin to store if it changed (nil if not); and the events to
// audit. known says whether the upstream had pins before this listing.
func (g *Guard) decide(ref Ref, old *Pin, d Definition, h string, known bool, p Policy, sc *Scanner) (Verdict, *Pin, []*audit.Record) {
	if old == nil {
		found := sc.Scan(d)
		q := &Pin{Ref: ref, State: Approved, Approved: Version{Hash: h, Body: clone(d.Body), Findings: found}}
		reason := ""
		switch {
		case len(found) > 0 && p.Poisoned != Flag:
			reason = ReasonPoisoned
		case known && p.NewTargets != Allow:
			reason = ReasonNew
		}
		var evs []*audit.Record
		if reason == "" {
			evs = append(evs, event(ref, EventFirstSeen, audit.Allow, fmt.Sprintf("first seen with hash %s; served (trusted on first use)", h)))
		} else {
			q.State, q.Reason, q.Pending, q.Approved = Quarantined, reason, q.Approved, Version{}
			evs = append(evs, event(ref, EventFirstSeen, audit.Deny, fmt.Sprintf("first seen with hash %s; quarantined (%s) until an operator approves it", h, reason)))
		}
		if len(found) > 0 {
			evs = append(evs, flagged(ref, h, found, reason == ""))
		}
		return Verdict{Serve: reason == "", Reason: reason, Findings: found, Hash: h}, q, evs
	}

	switch {
	case h == old.Approved.Hash:
		v := Verdict{Serve: true, Findings: old.Approved.Findings, Hash: h}
		if old.Pending.Hash == "" {
			return v, nil, nil
		}
		// The upstream went back to the approved version: what waited for
		// a decision is no longer what it lists.
		q := *old
		q.State, q.Reason, q.Pending = Approved, "", Version{}
		return v, &q, []*audit.Record{event(ref, EventChanged, audit.Allow,
			fmt.Sprintf("changed from %s back to the approved %s; served", old.Pending.Hash, h))}

	case h == old.Pending.Hash:
		return Verdict{Reason: old.Reason, Findings: old.Pending.Findings, Hash: h}, nil, nil

	case slices.Contains(old.RejectedHashes, h):
		q := *old
		found := sc.Scan(d)
		q.State, q.Reason, q.Pending = Rejected, ReasonRejected, Version{Hash: h, Body: clone(d.Body), Findings: found}
		return Verdict{Reason: ReasonRejected, Findings: found, Hash: h}, &q, []*audit.Record{event(ref, EventChanged, audit.Deny,
			fmt.Sprintf("changed from %s to %s, a version an operator rejected; refused", current(old), h))}
	}

	// A version not seen before.
	found := sc.Scan(d)
	q := *old
	q.Pending = Version{Hash: h, Body: clone(d.Body), Findings: found}
	q.State, q.Reason = Quarantined, ReasonChanged
	if old.Approved.Hash == "" {
		// Never approved: quarantined for what it was.
		q.Reason = ReasonNew
		if len(found) > 0 {
			q.Reason = ReasonPoisoned
		}
	}
	evs := []*audit.Record{event(ref, EventChanged, audit.Deny,
		fmt.Sprintf("changed from %s to %s; quarantined (%s) until an operator approves it", current(old), h, q.Reason))}
	if len(found) > 0 {
		evs = append(evs, flagged(ref, h, found, false))
	}
	return Verdict{Reason: q.Reason, Findings: found, Hash: h}, &q, evs
}

// current is the hash the upstream last listed for a pin.
func current(p *Pin) string {
	if p.Pending.Hash != "" {
		return p.Pending.Hash
	}
	return p.Approved.Hash
}

// Approve makes the version of ref whose hash is hash — the one an
// operator saw in the diff — the approved one, served from the next Check.
// principal is the operator, authMethod how they signed in ("operator"
// for the CLI, "console").
func (g *Guard) Approve(ctx context.Context, ref Ref, hash, principal, authMethod string) (*Pin, error) {
	return g.decideOperator(ctx, ref, hash, principal, authMethod, true)
}

// Reject refuses the version of ref whose hash is hash: the pending
// version, or, when nothing is pending, the approved one (an operator who
// finds a served definition poisoned). A rejected version stays refused
// whenever the upstream lists it.
func (g *Guard) Reject(ctx context.Context, ref Ref, hash, principal, authMethod string) (*Pin, error) {
	return g.decideOperator(ctx, ref, hash, principal, authMethod, false)
}

func (g *Guard) decideOperator(ctx context.Context, ref Ref, hash, principal, authMethod string, approve bool) (*Pin, error) {
	verb := "rejecting"
	if approve {
		verb = "approving"
	}
	if principal == "" {
		return nil, fmt.Errorf("%s %s: no operator named", verb, ref)
	}
	var out *Pin
	err := g.store.Update(ctx, ref.Upstream, func(pins []Pin) ([]Pin, error) {
		i := slices.IndexFunc(pins, func(p Pin) bool { return p.Ref == ref })
		if i < 0 {
			return nil, fmt.Errorf("no pin for %s (see warden upstreams list)", ref)
		}
		q := pins[i]
		old := q
		var ev *audit.Record
		switch {
		case approve && q.Pending.Hash == hash:
			q.Approved, q.Pending = q.Pending, Version{}
			q.State, q.Reason = Approved, ""
			q.RejectedHashes = slices.DeleteFunc(q.RejectedHashes, func(r string) bool { return r == hash })
			ev = event(ref, EventApproved, audit.Allow, fmt.Sprintf("approved %s (was %s); served", hash, orNone(old.Approved.Hash)))
		case approve && q.Approved.Hash == hash && q.Pending.Hash == "":
			return nil, fmt.Errorf("%s is already the approved version of %s", hash, ref)
		case !approve && q.Pending.Hash == hash && q.State == Rejected:
			return nil, fmt.Errorf("%s of %s is already rejected", hash, ref)
		case !approve && q.Pending.Hash == hash:
			q.State, q.Reason = Rejected, ReasonRejected
			q.RejectedHashes = addRejected(q.RejectedHashes, hash)
			ev = event(ref, EventRejected, audit.Deny, fmt.Sprintf("rejected %s; the approved version is %s; refused", hash, orNone(q.Approved.Hash)))
		case !approve && q.Pending.Hash == "" && q.Approved.Hash == hash:
			q.Pending, q.Approved = q.Approved, Version{}
			q.State, q.Reason = Rejected, ReasonRejected
			q.RejectedHashes = addRejected(q.RejectedHashes, hash)
			ev = event(ref, EventRejected, audit.Deny, fmt.Sprintf("rejected the approved version %s; refused", hash))
		default:
			want := q.Pending.Hash
			if want == "" {
				want = q.Approved.Hash
			}
			return nil, fmt.Errorf("%s is not the version of %s waiting for a decision (that is %s); look at warden upstreams diff again", hash, ref, want)
		}
		q.DecidedBy, q.Updated = principal, g.now().UTC()
		ev.Principal, ev.AuthMethod = principal, authMethod
		if err := g.record(ctx, ev); err != nil {
			return nil, fmt.Errorf("auditing the decision: %w", err)
		}
		out = &q
		return []Pin{q}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", verb, hash, err)
	}
	return out, nil
}

func addRejected(l []string, h string) []string {
	l = append(slices.DeleteFunc(l, func(r string) bool { return r == h }), h)
	if len(l) > maxRejected {
		l = l[len(l)-maxRejected:]
	}
	return l
}

func orNone(h string) string {
	if h == "" {
		return "none"
	}
	return h
}

// event is the audit record of a pin event on ref.
func event(ref Ref, name string, d audit.Decision, reason string) *audit.Record {
	return &audit.Record{
		Phase: audit.Outcome, Method: "upstreams/" + name, Target: ref.Target(), Source: "upstream",
		Decision: d, Status: audit.StatusOK, Reason: reason,
	}
}

// flagged is the audit record of the scan findings in version h of ref.
func flagged(ref Ref, h string, found []Finding, served bool) *audit.Record {
	var b strings.Builder
	fmt.Fprintf(&b, "%d finding(s) in %s", len(found), h)
	if served {
		b.WriteString(" (served: policy is flag)")
	}
	for _, f := range found {
		b.WriteString("; ")
		b.WriteString(f.String())
	}
	d := audit.Deny
	if served {
		d = audit.Allow
	}
	return event(ref, EventFlagged, d, b.String())
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
