// Package throttle runs something at most once per interval: it keeps a
// failure that repeats on every call (an unreachable store, a full queue)
// from flooding the log, while still saying how often it happened.
package throttle

import (
	"sync"
	"time"
)

// Throttle runs a function at most once per Every, telling it how many
// times it was due since it last ran (including this one). Now is the
// clock; nil means time.Now. The zero value runs f every time.
type Throttle struct {
	Every time.Duration
	Now   func() time.Time

	mu    sync.Mutex
	last  time.Time
	calls int
}

// Do runs f, or counts it if it ran less than Every ago. Safe for
// concurrent use.
func (t *Throttle) Do(f func(calls int)) {
	t.mu.Lock()
	t.calls++
	now := time.Now()
	if t.Now != nil {
		now = t.Now()
	}
	if !t.last.IsZero() && now.Sub(t.last) < t.Every {
		t.mu.Unlock()
		return
	}
	t.last = now
	calls := t.calls
	t.calls = 0
	t.mu.Unlock()
	f(calls)
}
