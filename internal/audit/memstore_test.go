package audit

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// memStore is a Store in memory, for testing the Writer without a database
// (and inside synctest bubbles, where a database's I/O has no place). It
// passes the contract suite, durability aside.
type memStore struct {
	mu     sync.Mutex
	recs   map[string][]*Record // by instance, in seq order
	closed bool
}

var _ Store = (*memStore)(nil)

func newMemStore() *memStore { return &memStore{recs: map[string][]*Record{}} }

func clone(r *Record) *Record {
	c := *r
	c.Args = bytes.Clone(r.Args)
	return &c
}

func (s *memStore) Append(ctx context.Context, recs []*Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("memStore: closed")
	}
	seen := map[[2]any]bool{}
	for _, r := range recs {
		k := [2]any{r.Instance, r.Seq}
		if seen[k] || slices.ContainsFunc(s.recs[r.Instance], func(o *Record) bool { return o.Seq == r.Seq }) {
			return appendError(fmt.Errorf("instance %s, seq %d: %w", r.Instance, r.Seq, ErrDuplicate))
		}
		seen[k] = true
	}
	for _, r := range recs {
		l := append(s.recs[r.Instance], clone(r))
		slices.SortFunc(l, func(a, b *Record) int { return cmp.Compare(a.Seq, b.Seq) })
		s.recs[r.Instance] = l
	}
	return nil
}

func (s *memStore) Last(ctx context.Context, instance string) (int64, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, "", errors.New("memStore: closed")
	}
	l := s.recs[instance]
	if len(l) == 0 {
		return 0, "", nil
	}
	return l[len(l)-1].Seq, l[len(l)-1].Hash, nil
}

func (s *memStore) Scan(ctx context.Context, q Query, fn func(*Record) error) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("memStore: closed")
	}
	var sel []*Record
	for _, l := range s.recs {
		for _, r := range l {
			if (q.Instance == "" || r.Instance == q.Instance) && (q.Principal == "" || r.Principal == q.Principal) &&
				(q.Tenant == "" || r.Tenant == q.Tenant) && (q.Target == "" || r.Target == q.Target) &&
				(q.TraceID == "" || r.TraceID == q.TraceID) &&
				(q.Decision == "" || r.Decision == q.Decision) && (q.ErrorCode == "" || r.ErrorCode == q.ErrorCode) &&
				(q.Since.IsZero() || !r.Time.Before(q.Since)) && (q.Until.IsZero() || r.Time.Before(q.Until)) {
				sel = append(sel, clone(r))
			}
		}
	}
	s.mu.Unlock()
	slices.SortFunc(sel, func(a, b *Record) int {
		c := 0
		if q.Instance == "" {
			c = cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Instance, b.Instance))
		}
		c = cmp.Or(c, cmp.Compare(a.Seq, b.Seq))
		if q.Desc {
			return -c
		}
		return c
	})
	if q.Limit > 0 && len(sel) > q.Limit {
		sel = sel[:q.Limit]
	}
	for _, r := range sel {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

// spyStore wraps a store to count Appends, hold them at a gate, and make
// them fail.
type spyStore struct {
	Store

	mu      sync.Mutex
	calls   int             // Appends that passed the gate
	batches []int           // the size of each Append that reached the store
	outcome map[int]outcome // of the nth Append to pass the gate, from 1; ok by default
	// lastFails is how many of the next calls to Last fail.
	lastFails int
	// gate, if set, holds every Append until it is closed; entered, if
	// set, hears of each Append as it arrives at the gate.
	gate    chan struct{}
	entered chan int
}

type outcome int

const (
	ok              outcome = iota
	failBefore              // fail without storing anything
	failAfterCommit         // store the batch, then report failure (a connection lost after COMMIT)
)

var errInjected = errors.New("injected failure")

func (s *spyStore) Append(ctx context.Context, recs []*Record) error {
	s.mu.Lock()
	gate, entered := s.gate, s.entered
	s.mu.Unlock()
	if entered != nil {
		entered <- len(recs)
	}
	if gate != nil {
		<-gate
	}
	s.mu.Lock()
	s.calls++
	o := s.outcome[s.calls]
	s.mu.Unlock()
	if o == failBefore {
		return errInjected
	}
	if err := s.Store.Append(ctx, recs); err != nil {
		return err
	}
	s.mu.Lock()
	s.batches = append(s.batches, len(recs))
	s.mu.Unlock()
	if o == failAfterCommit {
		return errInjected
	}
	return nil
}

func (s *spyStore) Last(ctx context.Context, instance string) (int64, string, error) {
	s.mu.Lock()
	fail := s.lastFails > 0
	if fail {
		s.lastFails--
	}
	s.mu.Unlock()
	if fail {
		return 0, "", errInjected
	}
	return s.Store.Last(ctx, instance)
}

// appends returns the size of each Append that reached the store.
func (s *spyStore) appends() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batches)
}
