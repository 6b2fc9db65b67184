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
// The records of the pin events it finds are stored with the pins, in one
// transaction, and written to the audit log after it commits; should that
// write fail, Check fails, and a later Check of the upstream (from any
// instance) writes them.
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
	// The scanner needs the names other upstreams serve (for its
	// tool_reference rule); they are read only when a definition is new
	// or changed, which a listing seldom has: the first attempt finds out.
	var scanner *Scanner
	verdicts := make([]Verdict, len(defs))
	update := func(pins []Pin) ([]Pin, []*audit.Record, error) {
		byRef := make(map[Ref]*Pin, len(pins))
		for i := range pins {
			byRef[pins[i].Ref] = &pins[i]
		}
		if scanner == nil {
			for i, d := range defs {
				old := byRef[Ref{Upstream: upstream, Kind: d.Kind, Name: d.Name}]
				if old == nil || hashes[i] != old.Approved.Hash && hashes[i] != old.Pending.Hash {
					return nil, nil, errScanner
				}
			}
		}
		known := len(pins) > 0
		now := g.now().UTC()
		var (
			changed []Pin
			events  []*audit.Record
		)
		for i, d := range defs {
			ref := Ref{Upstream: upstream, Kind: d.Kind, Name: d.Name}
			v, q, evs := g.decide(ref, byRef[ref], d, hashes[i], known, p, scanner)
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
			r.Time = now
		}
		return changed, events, nil
	}
	events, err := g.store.Update(ctx, upstream, update)
	if errors.Is(err, errScanner) {
		if scanner, err = g.scanner(ctx, upstream, p); err == nil {
			events, err = g.store.Update(ctx, upstream, update)
		}
	}
	if err == nil {
		err = g.deliver(ctx, events)
	}
	if err != nil {
		return nil, fmt.Errorf("pin: upstream %s: %w", upstream, err)
	}
	return verdicts, nil
}

// errScanner ends an attempt of Check that finds it needs a scanner.
var errScanner = errors.New("a scanner is needed")

// scanner is a scanner under policy p for the definitions of upstream,
// knowing the names of the other upstreams' targets.
func (g *Guard) scanner(ctx context.Context, upstream string, p Policy) (*Scanner, error) {
	all, err := g.store.List(ctx, Filter{})
	if err != nil {
		return nil, fmt.Errorf("reading pins: %w", err)
	}
	var others []string
	for _, q := range all {
		if q.Upstream != upstream && q.Kind != Instructions {
			others = append(others, q.Name)
		}
	}
	return NewScanner(ScanOptions{MaxDescription: p.MaxDescription, OtherTargets: others}), nil
}

// deliver writes the records of events to the audit log, in order, and
// has the store forget them.
func (g *Guard) deliver(ctx context.Context, events []Event) error {
	for i, e := range events {
		if err := g.record(ctx, e.Record); err != nil {
			// Those delivered are forgotten; the rest wait for a later Check.
			g.store.Delivered(ctx, events[:i])
			return fmt.Errorf("auditing %s of %s: %w", e.Record.Method, e.Record.Target, err)
		}
	}
	return g.store.Delivered(ctx, events)
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

// ErrDecision is wrapped by the errors of Approve and Reject that refuse
// the decision itself: no such pin, or a hash that is not the version
// waiting for a decision (another operator decided first, or the upstream
// changed again since the diff was read).
var ErrDecision = errors.New("decision refused")

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
	events, err := g.store.Update(ctx, ref.Upstream, func(pins []Pin) ([]Pin, []*audit.Record, error) {
		i := slices.IndexFunc(pins, func(p Pin) bool { return p.Ref == ref })
		if i < 0 {
			return nil, nil, fmt.Errorf("%w: no pin for %s (see warden upstreams list)", ErrDecision, ref)
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
			return nil, nil, fmt.Errorf("%w: %s is already the approved version of %s", ErrDecision, hash, ref)
		case !approve && q.Pending.Hash == hash && q.State == Rejected:
			return nil, nil, fmt.Errorf("%w: %s of %s is already rejected", ErrDecision, hash, ref)
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
			return nil, nil, fmt.Errorf("%w: %s is not the version of %s waiting for a decision (that is %s); look at the diff again", ErrDecision, hash, ref, orNone(want))
		}
		q.DecidedBy, q.Updated = principal, g.now().UTC()
		ev.Principal, ev.AuthMethod, ev.Time = principal, authMethod, q.Updated
		out = &q
		return []Pin{q}, []*audit.Record{ev}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", verb, hash, err)
	}
	if err := g.deliver(ctx, events); err != nil {
		return out, fmt.Errorf("%s %s: the decision is stored, and its audit record waits to be written by the server's next check of %s: %w", verb, hash, ref.Upstream, err)
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
