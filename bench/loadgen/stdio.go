package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// stdioServer is a server the generator started, spoken to over its
// standard input and output: newline-delimited JSON-RPC, one 2025-11-25
// session that lives as long as the process. One call is in flight at a
// time (stdio has one client).
type stdioServer struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan []byte // the server's stdout, one message a line; closed at EOF
	timeout time.Duration
	prefix  []byte
	waited  chan error // the process's exit, once
}

// maxLine bounds one message from the server.
const maxLine = 16 << 20

// startStdio starts argv with the generator's environment and its standard
// error, and initializes the session.
func startStdio(ctx context.Context, argv []string, tool string, args json.RawMessage, timeout time.Duration) (*stdioServer, error) {
	prefix, err := callPrefix(tool, args, nil)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	s := &stdioServer{cmd: cmd, stdin: stdin, lines: make(chan []byte, 16), timeout: timeout, prefix: prefix, waited: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), maxLine)
		for sc.Scan() {
			s.lines <- bytes.Clone(sc.Bytes())
		}
		close(s.lines)
		s.waited <- cmd.Wait()
	}()
	init := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"` + sessionProtocolVersion +
		`","capabilities":{},"clientInfo":{"name":"warden-loadgen","version":"v0.0.1"}}}` + "\n"
	if err := s.roundTrip(ctx, []byte(init), 0); err != nil {
		s.Close()
		return nil, fmt.Errorf("initialize: %w", err)
	}
	if _, err := io.WriteString(stdin, `{"jsonrpc":"2.0","method":"notifications/initialized"}`+"\n"); err != nil {
		s.Close()
		return nil, fmt.Errorf("notifications/initialized: %w", err)
	}
	return s, nil
}

// Pid is the server process's id.
func (s *stdioServer) Pid() int { return s.cmd.Process.Pid }

func (s *stdioServer) call(ctx context.Context, id int64, buf *bytes.Buffer) error {
	buf.Reset()
	buf.Write(s.prefix)
	buf.WriteString(strconv.FormatInt(id, 10))
	buf.WriteString("}\n")
	return s.roundTrip(ctx, buf.Bytes(), id)
}

// roundTrip writes one request and waits for its response. Notifications
// are skipped, and so is a late response to an earlier call that timed out
// (already counted as an error); a request from the server is an error, as
// the generator cannot answer it.
func (s *stdioServer) roundTrip(ctx context.Context, req []byte, id int64) error {
	if _, err := s.stdin.Write(req); err != nil {
		return &callError{"transport", "writing to the server: " + err.Error()}
	}
	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	want := strconv.FormatInt(id, 10)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				return &callError{"transport", "the server closed its standard output"}
			}
			var m rpcMessage
			if err := json.Unmarshal(line, &m); err != nil {
				return &callError{"bad response", "invalid JSON-RPC message: " + err.Error()}
			}
			if m.Method != "" {
				if len(m.ID) > 0 {
					return &callError{"bad response", fmt.Sprintf("server sent a %q request; the generator cannot answer it", m.Method)}
				}
				continue
			}
			if string(bytes.TrimSpace(m.ID)) != want {
				continue
			}
			return checkResult(&m, id)
		case <-timer.C:
			return &callError{"transport", fmt.Sprintf("no response within %s", s.timeout)}
		case <-ctx.Done():
			return &callError{"transport", ctx.Err().Error()}
		}
	}
}

// Close ends the session the way a client does, by closing the server's
// standard input, and waits for the process; one that has not exited
// within five seconds is sent SIGTERM, then SIGKILL.
func (s *stdioServer) Close() error {
	s.stdin.Close()
	go func() {
		for range s.lines { // keep the reader going until EOF
		}
	}()
	for _, sig := range []os.Signal{nil, syscall.SIGTERM, syscall.SIGKILL} {
		if sig != nil {
			s.cmd.Process.Signal(sig)
		}
		select {
		case err := <-s.waited:
			var ee *exec.ExitError
			if errors.As(err, &ee) && sig != nil {
				return nil // the signal we sent
			}
			return err
		case <-time.After(5 * time.Second):
		}
	}
	return errors.New("the server did not exit after SIGKILL")
}
