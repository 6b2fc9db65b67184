package observe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/wardenmcp/warden/internal/audit"
)

// CheckTimeout bounds the readiness checks of one probe: they run
// concurrently, and must all answer within it, well inside the one second a
// Kubernetes probe waits by default.
const CheckTimeout = 500 * time.Millisecond

// Ready composes readiness checks into the function /readyz calls
// (warden.HTTPOptions.Ready): it runs every check at once, each with a
// context that ends after CheckTimeout, and returns nil if all of them
// return nil in time, or else the failures, joined. A check that ignores
// its context is not waited for past the timeout; one that panics fails.
// Checks should wrap their errors with what they checked; the errors may
// name internal hosts, so they belong in the log, not the probe's answer.
func Ready(checks ...func(context.Context) error) func() error {
	checks = slices.Clone(checks)
	return func() error {
		if len(checks) == 0 {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), CheckTimeout)
		defer cancel()
		// Checks that heed ctx answer at its end; a moment's grace lets
		// their answer, which may name what they checked, arrive first.
		grace := time.NewTimer(CheckTimeout + checkGrace)
		defer grace.Stop()
		type result struct {
			i   int
			err error
		}
		done := make(chan result, len(checks)) // buffered: a late check never blocks
		for i, check := range checks {
			go func() {
				defer func() {
					if p := recover(); p != nil {
						done <- result{i, fmt.Errorf("readiness check %d panicked: %v", i+1, p)}
					}
				}()
				done <- result{i, check(ctx)}
			}()
		}
		errs := make([]error, len(checks))
		answered := make([]bool, len(checks))
		for range checks {
			select {
			case r := <-done:
				errs[r.i], answered[r.i] = r.err, true
			case <-grace.C:
				for i, ok := range answered {
					if !ok {
						errs[i] = fmt.Errorf("readiness check %d did not answer within %v", i+1, CheckTimeout)
					}
				}
				return errors.Join(errs...)
			}
		}
		return errors.Join(errs...)
	}
}

// checkGrace is how long past CheckTimeout Ready waits for checks.
const checkGrace = 100 * time.Millisecond

// Unhealthy is a failed readiness check's error naming the dependency it
// checked, such as "rate-limit store (Redis)": /readyz names it in its
// answer, so the name must hold no secret, host or URL. Err, which may,
// goes to the log only.
type Unhealthy struct {
	Name string
	Err  error
}

func (u *Unhealthy) Error() string { return u.Name + ": " + u.Err.Error() }
func (u *Unhealthy) Unwrap() error { return u.Err }

// Dependency is the name /readyz shows (warden.HTTPOptions.Ready).
func (u *Unhealthy) Dependency() string { return u.Name }

// Named returns check as a check of the dependency name: its error, or its
// not answering before its context ends, is an *Unhealthy naming it.
func Named(name string, check func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		done := make(chan error, 1) // buffered: a late check never blocks
		go func() { done <- check(ctx) }()
		select {
		case err := <-done:
			if err != nil {
				return &Unhealthy{Name: name, Err: err}
			}
			return nil
		case <-ctx.Done():
			return &Unhealthy{Name: name, Err: fmt.Errorf("no answer within %v", CheckTimeout)}
		}
	}
}

// AuditReadyQueue is how full, as a fraction, the audit queue may be
// before AuditReady reports the writer unready.
const AuditReadyQueue = 0.9

// AuditReady returns a readiness check over an audit writer's stats (pass
// (*audit.Writer).Stats). While the writer cannot record calls, every call
// is refused with AUDIT_UNAVAILABLE, so a load balancer should send them to
// another instance. The check fails when, since it last ran, records failed
// or were rejected and none was appended — the store is not taking writes —
// or when the queue is at least AuditReadyQueue full.
//
// It judges from the calls made between two probes: an idle instance whose
// store went down reads as ready until a call fails, and one that failed
// reads as ready again once a probe interval passes without calls, so that
// it is tried again rather than left out for good.
func AuditReady(stats func() audit.Stats) func(context.Context) error {
	var (
		mu   sync.Mutex
		last audit.Stats
	)
	return func(context.Context) error {
		s := stats()
		mu.Lock()
		prev := last
		last = s
		mu.Unlock()
		failed := s.Failed - prev.Failed + s.Rejected - prev.Rejected
		if failed > 0 && s.Records == prev.Records {
			return fmt.Errorf("audit log: %d records failed or were rejected since the last check, and none was stored", failed)
		}
		if s.QueueSize > 0 && float64(s.QueueDepth) >= AuditReadyQueue*float64(s.QueueSize) {
			return fmt.Errorf("audit log: %d of %d queue places taken", s.QueueDepth, s.QueueSize)
		}
		return nil
	}
}
