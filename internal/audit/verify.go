package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Kind classifies what Verify found wrong with a chain.
type Kind string

const (
	// Modified: a record's content no longer matches its hash.
	Modified Kind = "modified"
	// Deleted: records are missing from the chain.
	Deleted Kind = "deleted"
	// Reordered: a record sits at a position other than the one it was
	// written at.
	Reordered Kind = "reordered"
)

// Problem is the first thing wrong with one instance's chain. Seq is the
// first position at which the chain fails to verify.
type Problem struct {
	Instance string
	Seq      int64
	Kind     Kind
	// Message says what is wrong in a sentence, for the operator.
	Message string
}

// Chain sums up the verification of one instance's chain.
type Chain struct {
	Instance string
	// Verified is how many records, from seq 1, verified before the first
	// problem (all of them, if none). Head and HeadHash are the last of
	// them: record them elsewhere to detect a truncated tail later.
	Verified int64
	Head     int64
	HeadHash string
	Problem  *Problem // nil if the chain verified
}

// Report is the outcome of Verify: one Chain per instance, by instance id.
type Report struct {
	OK       bool // no chain has a problem
	Chains   []Chain
	Problems []Problem // the first problem of each chain that has one
}

// Verify walks the chain of every instance in store, in seq order, and
// reports the first problem in each: a record modified (its hash does not
// match), deleted (a gap in seq, or a record whose predecessor is gone) or
// reordered (records whose positions were swapped). It returns an error
// only if it could not read the store.
//
// A chain shows what was done to the records it holds. Removing the newest
// records of a chain, or a whole chain, leaves no gap inside it: compare
// each Chain's Head with a copy kept elsewhere (a sink, a previous report)
// to catch that.
func Verify(ctx context.Context, store Store, secret []byte) (*Report, error) {
	if len(secret) < minSecret {
		return nil, fmt.Errorf("audit secret: %d bytes, want at least %d", len(secret), minSecret)
	}
	instances, err := listInstances(ctx, store)
	if err != nil {
		return nil, err
	}
	rep := &Report{OK: true}
	ch := newChainer(secret)
	for _, inst := range instances {
		c, err := verifyChain(ctx, store, ch, inst)
		if err != nil {
			return nil, err
		}
		rep.Chains = append(rep.Chains, c)
		if c.Problem != nil {
			rep.OK = false
			rep.Problems = append(rep.Problems, *c.Problem)
		}
	}
	return rep, nil
}

func listInstances(ctx context.Context, store Store) ([]string, error) {
	if l, ok := store.(lister); ok {
		return l.Instances(ctx)
	}
	seen := map[string]bool{}
	err := store.Scan(ctx, Query{}, func(r *Record) error {
		seen[r.Instance] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	is := make([]string, 0, len(seen))
	for i := range seen {
		is = append(is, i)
	}
	slices.Sort(is)
	return is, nil
}

// errStop ends a scan early.
var errStop = errors.New("stop")

func verifyChain(ctx context.Context, store Store, ch *chainer, instance string) (Chain, error) {
	c := Chain{Instance: instance}
	prev := ch.genesis(instance)
	var bad *Record // the first record that fails, if any
	err := store.Scan(ctx, Query{Instance: instance}, func(r *Record) error {
		if r.Seq != c.Head+1 || r.PrevHash != prev || ch.hash(r) != r.Hash {
			bad = r
			return errStop
		}
		c.Verified++
		c.Head, c.HeadHash, prev = r.Seq, r.Hash, r.Hash
		return nil
	})
	if err != nil && err != errStop {
		return c, fmt.Errorf("verifying the audit chain of %s: %w", instance, err)
	}
	if bad == nil {
		return c, nil
	}
	p, err := diagnose(ctx, store, ch, c.Head, prev, bad)
	if err != nil {
		return c, fmt.Errorf("verifying the audit chain of %s: %w", instance, err)
	}
	c.Problem = p
	return c, nil
}

// diagnose explains why r, found where seq head+1 should be, does not
// follow the verified record head (whose hash is prev).
func diagnose(ctx context.Context, store Store, ch *chainer, head int64, prev string, r *Record) (*Problem, error) {
	want := head + 1
	p := &Problem{Instance: r.Instance, Seq: want}
	intact := ch.hash(r) == r.Hash
	switch {
	case r.Seq > want:
		p.Kind = Deleted
		if r.Seq == want+1 {
			p.Message = fmt.Sprintf("seq %d is missing: it was deleted", want)
		} else {
			p.Message = fmt.Sprintf("seq %d to %d are missing: they were deleted", want, r.Seq-1)
		}
		return p, nil
	case r.Seq < want: // a seq of 0 or below: no writer makes one
		p.Kind, p.Seq = Modified, r.Seq
		p.Message = fmt.Sprintf("a record has seq %d, which no record is written with: it was modified", r.Seq)
		return p, nil
	case r.PrevHash == prev:
		p.Kind = Modified
		p.Message = fmt.Sprintf("seq %d was modified: its content no longer matches its hash", want)
		return p, nil
	}
	// r does not link to the record before it. If the record that does is
	// elsewhere in the chain, the two were moved.
	var moved int64
	err := store.Scan(ctx, Query{Instance: r.Instance}, func(o *Record) error {
		if o.PrevHash == prev && o.Seq != want {
			moved = o.Seq
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return nil, err
	}
	switch {
	case moved != 0:
		p.Kind = Reordered
		p.Message = fmt.Sprintf("seq %d is out of order: the record written after seq %d is stored as seq %d", want, head, moved)
	case intact:
		// r is as written, at its own seq, yet the record before it is not
		// the one it was chained to: that one was removed and another,
		// itself intact, put in its place.
		p.Kind = Deleted
		p.Message = fmt.Sprintf("seq %d does not follow seq %d: the record written before it was removed and replaced", want, head)
	default:
		p.Kind = Modified
		p.Message = fmt.Sprintf("seq %d was modified or replaced: neither its content nor its link to the record before it verifies", want)
		if head == 0 {
			p.Message += " (or the secret is not the one the log was written with)"
		}
	}
	return p, nil
}
