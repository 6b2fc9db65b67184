package cli

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/audit"
)

// The disk under a SQLite state store fills up — a small tmpfs the test
// mounts — while a write tool runs, and stays full for a while:
//   - the call that was running still gets its result, and its outcome,
//     which the full disk refused, is kept in the spool when the spool is
//     on another disk, and reaches the store, late, once space returns;
//     with the spool on the full disk too, the result says that its
//     outcome was not recorded (_meta), the log raises an alert, and the
//     outcome, held in memory, still reaches the store once space returns;
//   - calls made while the disk is full are refused with AUDIT_UNAVAILABLE,
//     and none of them runs;
//   - once space returns, calls succeed again and the chain verifies.
func TestDiskFullUnderTheAuditLog(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting the small tmpfs this test fills needs root (CI runs as root)")
	}
	for _, where := range []string{"elsewhere", "on the full disk"} {
		t.Run("spool "+where, func(t *testing.T) {
			_, source := slowSource(t)
			disk := filepath.Join(t.TempDir(), "disk")
			if err := os.Mkdir(disk, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, "size=8m,mode=0700"); err != nil {
				t.Skipf("cannot mount a tmpfs at %s: %v", disk, err)
			}
			t.Cleanup(func() { syscall.Unmount(disk, syscall.MNT_DETACH) })
			spool := filepath.Join(t.TempDir(), "spool")
			if where != "elsewhere" {
				spool = filepath.Join(disk, "spool")
			}
			state := filepath.Join(disk, "state.db")
			cfgPath := slowToolConfig(t, source, fmt.Sprintf("    sqlite: %q", state), spool, "")
			client := &http.Client{Timeout: 2 * rlDeadline}
			srv := startWarden(t, client, cfgPath)
			if o := callSlow(t.Context(), client, srv.endpoint, 1, "before", 0); !o.ok {
				t.Fatalf("before the disk filled, a call = %v", o)
			}

			done := make(chan callOutcome, 1)
			go func() { done <- callSlow(t.Context(), client, srv.endpoint, 2, "running", 1.5) }()
			sleeping(t, source, "running")
			filler := fill(t, disk)
			o := <-done
			noted := strings.Contains(string(o.meta), `"`+audit.OutcomeMetaKey+`":"`+audit.OutcomeUnrecorded+`"`)
			switch {
			case !o.ok:
				t.Errorf("the call running when the disk filled = %v, want its result: it ran", o)
			case where == "elsewhere" && noted:
				t.Errorf("with the spool elsewhere, the result says its outcome was not recorded: %s", o.meta)
			case where != "elsewhere" && !noted:
				t.Errorf("with the spool on the full disk, the result's _meta is %s, want %q: %q", o.meta, audit.OutcomeMetaKey, audit.OutcomeUnrecorded)
			}
			if !slowWrites(t, source, "running") {
				t.Error("the tool did not run for the call that succeeded")
			}

			for i := range 3 {
				tag := fmt.Sprintf("full-%d", i)
				o := callSlow(t.Context(), client, srv.endpoint, 10+i, tag, 0)
				if o.code != "AUDIT_UNAVAILABLE" {
					t.Errorf("with the disk full, a call = %v, want AUDIT_UNAVAILABLE", o)
				}
				if slowWrites(t, source, tag) {
					t.Errorf("with the disk full, the tool ran for %q, which was refused", tag)
				}
			}

			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			freed := time.Now()
			deadline := freed.Add(rlDeadline)
			for id := 100; ; id++ {
				if o := callSlow(t.Context(), client, srv.endpoint, id, "after", 0); o.ok {
					break
				} else if time.Now().After(deadline) {
					t.Fatalf("%v after space returned, a call = %v", rlDeadline, o)
				}
			}
			t.Logf("calls succeeded again %v after space returned", time.Since(freed).Round(time.Millisecond))

			// Spooled, or with the spool full too held in memory, the outcome
			// reaches the store once space returns, late.
			store, secret := openAuditLog(t, cfgPath)
			out := waitLate(t, store, "running")
			if !out.Late || out.Status != audit.StatusOK {
				t.Errorf("the outcome kept aside reached the store as %+v, want it late and ok", out)
			}
			if alert := strings.Contains(srv.log.String(), "ALERT"); alert != (where != "elsewhere") {
				t.Errorf("with the spool %s, an alert in the log: %v, want %v:\n%s", where, alert, where != "elsewhere", srv.log)
			}
			verifyChain(t, store, secret)
		})
	}
}

// fill writes a file into dir until its file system is full, and returns
// its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int{64 << 10, 4 << 10, 512} {
		buf := make([]byte, size)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
	return path
}
