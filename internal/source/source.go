// Package source defines the kinds of source behind Warden's declarative
// targets, and the registry of kinds.
//
// A kind registers itself by name in an init function, the way database/sql
// drivers do; adding a kind is adding a folder under internal/source and a
// blank import:
//
//	func init() { source.Register("sqlite", openSQLite) }
//
// A source of the kind is opened once for each entry under sources: in the
// configuration. It then turns each tool or resource that names it into
// targets: it decodes the declaration's own settings (its Settings, with
// located errors), computes everything a call will need once, and returns
// each target's spec, its handler and what clients are shown. Shaping
// results — rows, files, HTTP bodies — is the kind's business.
package source

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/pipeline"
)

// Source is one configured connection to a system.
//
// Targets is called at load time, for each declaration that names the
// source; Ready and Close may be called at any time, concurrently with
// running calls.
type Source interface {
	// Targets turns one declaration into the targets it yields: one for a
	// statement or an operation, many for a source that discovers its own
	// (an upstream server's tools). What is wrong with the declaration is
	// recorded with d.Settings.Errorf, located in the file; then Targets
	// returns no targets.
	Targets(ctx context.Context, d *Declaration) []*pipeline.Target
	// Ready reports whether the system can be reached.
	Ready(ctx context.Context) error
	Close() error
}

// Declaration is one tool or resource that names a source.
type Declaration struct {
	Name string
	// Spec holds what the declaration shares with every kind: method,
	// name, version, mode, scope, timeout and the target's controls (risk,
	// gate, rate limit, cache TTL, output policy). It is the declaration's
	// own; the kind completes it (source, input, bound parameters, dry
	// run) and hangs it on the target it returns.
	Spec *pipeline.Spec
	// Tool or Resource is the declaration's shared settings, whichever it
	// is; Settings are the keys that belong to the kind.
	Tool     *config.Tool
	Resource *config.Resource
	Settings *config.Settings
	// Config is the whole configuration, for kinds that resolve paths.
	Config *config.Config
}

// Opener opens a source of one kind from its settings (the keys under
// sources.NAME, kind included). Relative paths resolve with cfg.Resolve.
type Opener func(ctx context.Context, name string, settings config.RawSource, cfg *config.Config) (Source, error)

var (
	mu      sync.RWMutex
	openers = map[string]Opener{}
)

// Register makes a source kind available. It panics if kind is registered
// twice or open is nil.
func Register(kind string, open Opener) {
	mu.Lock()
	defer mu.Unlock()
	if open == nil {
		panic("source: Register opener is nil for kind " + kind)
	}
	if _, dup := openers[kind]; dup {
		panic("source: Register called twice for kind " + kind)
	}
	openers[kind] = open
}

// Kinds lists the registered kinds, sorted.
func Kinds() []string {
	mu.RLock()
	defer mu.RUnlock()
	kinds := make([]string, 0, len(openers))
	for k := range openers {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}

// Open opens the source declared as sources.name.
func Open(ctx context.Context, name string, settings config.RawSource, cfg *config.Config) (Source, error) {
	mu.RLock()
	open, ok := openers[settings.Kind()]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("unknown kind %q (available: %v)", settings.Kind(), Kinds())
	}
	return open(ctx, name, settings, cfg)
}
