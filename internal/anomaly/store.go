package anomaly

import (
	"context"
	"errors"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/state"
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

// OpenStore opens the suspension store the configuration names: PostgreSQL
// if server.state.postgres is set, otherwise SQLite at server.state.sqlite
// (relative to the configuration file; created if missing) — the same
// database as the rest of Warden's state. It creates the table
// warden_suspensions if needed.
func OpenStore(ctx context.Context, cfg *config.Config) (SuspensionStore, error) {
	return state.Open(ctx, cfg, openPostgres, openSQLite)
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

// now is the time a store records: microseconds, which both stores keep,
// so a suspension reads back exactly as it was made.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
