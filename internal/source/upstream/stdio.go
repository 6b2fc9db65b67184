package upstream

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/sandbox"
	"github.com/wardenmcp/warden/internal/secret"
)

// Limits of a stdio upstream's sandbox: a long-lived process, so no time
// or CPU limit; JavaScript runtimes reserve much address space.
const (
	defaultMemory    = 4 << 30
	defaultProcesses = 64
	upstreamFiles    = 1024
	upstreamFileSize = 64 << 20
)

// stdio makes the connection of a stdio upstream: its program, started in
// the sandbox with the declared environment, paths and egress, and ended
// (its whole process tree) when the connection ends.
func (u *Upstream) stdio() error {
	c := u.cfg
	fi, err := os.Stat(c.Command)
	switch {
	case err != nil:
		return fmt.Errorf("command: %v", err)
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("command: %s is not an executable file", c.Command)
	}
	for _, p := range c.ReadOnly {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("read_only: %v", err)
		}
	}
	if err := sandbox.CheckEgress(c.Egress); err != nil {
		return fmt.Errorf("egress: %v", err)
	}
	var required []sandbox.Layer
	for _, r := range c.Sandbox.Require {
		l, err := sandbox.ParseLayer(r)
		if err != nil {
			return fmt.Errorf("sandbox.require: %v", err)
		}
		required = append(required, l)
	}
	layers, skipped, err := sandbox.Check().Resolve(required, c.Sandbox.BestEffort)
	if err != nil {
		return fmt.Errorf("sandbox: %v", err)
	}
	if len(skipped) > 0 {
		u.log.Warn("the upstream runs without sandbox layers this host lacks (best_effort)", "skipped", skipped)
	}
	u.layers = layers
	u.limits = sandbox.Limits{Memory: defaultMemory, Processes: defaultProcesses, OpenFiles: upstreamFiles, FileSize: upstreamFileSize}
	if c.Sandbox.Memory != "" {
		if u.limits.Memory, err = parseSize(c.Sandbox.Memory); err != nil {
			return fmt.Errorf("sandbox.memory: %v", err)
		}
	}
	if c.Sandbox.Processes > 0 {
		u.limits.Processes = c.Sandbox.Processes
	}
	for _, k := range config.SortedKeys(c.Env) {
		v, isRef, err := secret.Resolve(c.Env[k])
		if err != nil {
			return fmt.Errorf("env.%s: %v", k, err)
		}
		if isRef {
			// The upstream may echo its secret: the model must not see it.
			secret.Redact(v)
		}
		u.env = append(u.env, k+"="+v)
	}
	scratch := u.opts.Scratch
	if scratch == "" {
		scratch = os.TempDir()
	}
	u.connect = func(ctx context.Context, version string) (*conn, error) {
		dir, err := os.MkdirTemp(scratch, "warden-upstream-"+u.name+"-")
		if err != nil {
			return nil, err
		}
		cmd, err := sandbox.Command(&sandbox.Config{
			Path: c.Command, Args: append([]string{c.Command}, c.Args...), Env: u.env, Dir: dir,
			ReadOnly: c.ReadOnly, Egress: c.Egress, Limits: u.limits, Layers: u.layers,
		})
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		cmd.Stderr = &stderrLog{log: u.log}
		// The process lives until its connection ends, or the upstream
		// is closed: cancelling kills its whole tree.
		pctx, kill := context.WithCancel(u.ctx)
		if err := cmd.Start(pctx); err != nil {
			kill()
			os.RemoveAll(dir)
			return nil, err
		}
		exited := make(chan struct{})
		go func() {
			err := cmd.Wait()
			if pctx.Err() == nil {
				u.log.Warn("the upstream's process exited", "err", err)
			}
			close(exited)
		}()
		stop := func() {
			kill()
			<-exited
			os.RemoveAll(dir)
		}
		sess, err := u.client.Connect(ctx, &mcp.IOTransport{Reader: stdout, Writer: stdin}, &mcp.ClientSessionOptions{ProtocolVersion: version})
		if err != nil {
			stop()
			return nil, err
		}
		return &conn{sess: sess, stop: func() { _ = sess.Close(); stop() }}, nil
	}
	return nil
}

// stderrLog logs what the upstream writes to stderr, a line at a time,
// capped: it is the upstream's, for the operator, never for the model.
type stderrLog struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func (s *stderrLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			break
		}
		line := s.buf[:i]
		if len(line) > 1024 {
			line = line[:1024]
		}
		s.log.Debug("upstream stderr", "line", string(line))
		s.buf = s.buf[i+1:]
	}
	if len(s.buf) > 4096 {
		s.buf = s.buf[:0]
	}
	return len(p), nil
}

// parseSize reads a size in bytes, with an optional KiB, MiB or GiB.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size such as 512MiB or 4GiB", s)
	}
	return n * mult, nil
}
