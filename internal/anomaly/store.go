package anomaly

import (
	"context"
	"errors"
	"time"
)

// Suspension is a principal whose calls are refused until an operator
// lifts it.
type Suspension struct {
	Principal string
	Reason    string
	Since     time.Time // UTC, to the microsecond
}

// ErrNotSuspended is wrapped by Lift when the principal is not suspended.
var ErrNotSuspended = errors.New("the principal is not suspended")

// defaultReason stands in for an empty reason, so that a suspended caller
// is always told something.
const defaultReason = "suspended by an operator"

// SuspensionStore keeps the suspended principals. Implementations are safe
// for concurrent use by several goroutines, and by several processes
// sharing one database: a suspension made by one Warden instance, or by the
// `warden suspensions` command, binds every instance.
//
// Suspend suspends principal with reason (defaultReason if empty). It is
// idempotent: suspending a principal already suspended keeps the first
// reason and time, since that is why and when access was cut. The
// suspension is durable when Suspend returns.
//
// Lift ends the suspension; it wraps ErrNotSuspended if there is none.
// From the moment Lift returns, Suspended reports false.
//
// Suspended reports whether principal is suspended, and why.
//
// List returns every suspension, oldest first.
//
// Close releases the store; no other method may be called after it.
type SuspensionStore interface {
	Suspend(ctx context.Context, principal, reason string) error
	Lift(ctx context.Context, principal string) error
	Suspended(ctx context.Context, principal string) (bool, string, error)
	List(ctx context.Context) ([]Suspension, error)
	Close() error
}

// checkSuspend validates Suspend's arguments and fills in the reason.
func checkSuspend(principal, reason string) (string, error) {
	if principal == "" {
		return "", errors.New("suspending: a principal is required")
	}
	if reason == "" {
		reason = defaultReason
	}
	return reason, nil
}
