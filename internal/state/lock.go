package state

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/wardenmcp/warden/internal/config"
)

// ErrInUse is wrapped by the error of Lock when another server holds the
// state file.
var ErrInUse = errors.New("the state file is in use by another warden server")

// Lock makes this process the one server on the configuration's SQLite
// state file: it takes an exclusive lock on a file beside it (PATH.lock),
// holding the process id, until release is called or the process ends. A
// second server on the same file would keep its own rate limits, nonces and
// console sessions in memory, where the first cannot see them, so Lock
// refuses it with an error naming the file, the holder and what to do.
// Commands that only read or briefly write the state (warden audit query,
// audit verify, keys, approvals) take no lock and work beside a server.
//
// With PostgreSQL there is nothing to lock: instances share it by design,
// and release does nothing.
func Lock(cfg *config.Config) (release func() error, err error) {
	st := cfg.Server.State
	if st.Postgres != "" {
		return func() error { return nil }, nil
	}
	path := cfg.Resolve(st.SQLite)
	if st.SQLite == "" {
		path = cfg.Resolve(config.DefaultStateFile)
	}
	lockPath := path + ".lock"
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("server.state.sqlite: locking %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(lockPath); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = "process " + strconv.Itoa(pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s already serves from %s (locked through %s). Run one server per SQLite state file; to run several instances as one, move their state to PostgreSQL (server.state.postgres) and Redis (server.redis.url) — see \"Running several instances\" in the README",
				ErrInUse, holder, path, lockPath)
		}
		return nil, fmt.Errorf("server.state.sqlite: locking %s: %w", path, err)
	}
	// The id is for the message above; the lock is what counts.
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f.Close, nil
}
