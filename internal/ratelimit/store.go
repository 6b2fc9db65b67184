package ratelimit

import (
	"context"
	"sync"
	"time"
)

// gcra is one rate limit in the terms of the generic cell rate algorithm:
// calls are admitted one interval apart on average, and up to burst at once.
//
// Its state is one number per key, the theoretical arrival time (TAT): the
// time at which the key would be back to full burst. A call at now is
// admitted if max(TAT, now) + interval - now <= burst × interval, and then
// sets TAT to max(TAT, now) + interval. A key whose TAT has passed is the
// same as a key never seen, so stores may forget it.
type gcra struct {
	interval time.Duration
	burst    int
}

// A store keeps the state of rate limits.
//
// Take admits one call under limits[i] for keys[i], for every i at once, or
// under none: if any limit refuses, nothing is consumed from any. On
// refusal it returns which limit refuses (an index into keys) and after how
// long the call would be admitted; where several refuse, the one with the
// longest wait, the first on a tie. keys and limits have the same length,
// and a key is always used with the same limit. An error means the store
// could not decide; nothing is known about what was consumed.
type store interface {
	Take(ctx context.Context, keys []string, limits []gcra) (ok bool, retryAfter time.Duration, which int, err error)
}

// memory is the store of a single instance.
type memory struct {
	now   func() time.Time
	epoch time.Time // TATs are kept as durations since epoch, on the monotonic clock

	mu  sync.Mutex
	tat map[string]time.Duration
	// sweepAt is the size at which expired keys are next swept out, so that
	// the map holds at most about twice the keys in use, at amortised
	// constant cost per call.
	sweepAt int
}

// minSweep is the smallest map worth sweeping.
const minSweep = 1024

func newMemory(now func() time.Time) *memory {
	return &memory{now: now, epoch: now(), tat: make(map[string]time.Duration), sweepAt: minSweep}
}

func (m *memory) Take(_ context.Context, keys []string, limits []gcra) (bool, time.Duration, int, error) {
	var buf [4]time.Duration
	next := buf[:0]

	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now().Sub(m.epoch)
	var wait time.Duration
	which := -1
	for i, k := range keys {
		tat, ok := m.tat[k]
		if !ok || tat < now {
			tat = now
		}
		n := tat + limits[i].interval
		next = append(next, n)
		if w := n - now - time.Duration(limits[i].burst)*limits[i].interval; w > wait {
			wait, which = w, i
		}
	}
	if which >= 0 {
		return false, wait, which, nil
	}
	for i, k := range keys {
		m.tat[k] = next[i]
	}
	if len(m.tat) >= m.sweepAt {
		for k, tat := range m.tat {
			if tat <= now {
				delete(m.tat, k)
			}
		}
		m.sweepAt = max(2*len(m.tat), minSweep)
	}
	return true, 0, -1, nil
}
