package sandbox

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Egress works without giving the program any route out: inside its empty
// network namespace, the helper listens on 127.0.0.1:port for each declared
// host:port and hands the listening sockets to Warden before the program
// runs. Warden accepts on them (a socket stays in the namespace it was made
// in) and dials the declared host:port from its own namespace: a
// connection reaches exactly the declared pairs, whatever address the
// program asks for, and nothing else is reachable at all.

// listenEgress makes the listening sockets, in the helper, and sends them
// over sock.
func listenEgress(sock *os.File, egress []string) error {
	ports, err := egressPorts(egress)
	if err != nil {
		return err
	}
	fds := make([]int, 0, len(ports))
	defer func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}()
	for _, p := range ports {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		fds = append(fds, fd)
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(p), Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return fmt.Errorf("binding 127.0.0.1:%d: %w", p, err)
		}
		if err := syscall.Listen(fd, 64); err != nil {
			return err
		}
	}
	return syscall.Sendmsg(int(sock.Fd()), []byte{byte(len(fds))}, syscall.UnixRights(fds...), nil, 0)
}

// forwarder forwards connections accepted in the sandbox to the declared
// pairs.
type forwarder struct {
	wg        sync.WaitGroup
	mu        sync.Mutex
	listeners []net.Listener
	conns     map[net.Conn]struct{}
}

// receiveListeners receives the helper's listening sockets and forwards
// each to its declared pair.
func receiveListeners(sock *os.File, egress []string) (*forwarder, error) {
	buf := make([]byte, 1)
	oob := make([]byte, syscall.CmsgSpace(4*len(egress)))
	n, oobn, _, _, err := syscall.Recvmsg(int(sock.Fd()), buf, oob, syscall.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("receiving the egress sockets: %w", err)
	}
	if n == 0 {
		return nil, errors.New("the helper sent no egress sockets")
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, errors.New("the helper sent no egress sockets")
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil {
		return nil, err
	}
	f := &forwarder{conns: map[net.Conn]struct{}{}}
	for i, fd := range fds {
		file := os.NewFile(uintptr(fd), "egress")
		if i >= len(egress) {
			file.Close()
			continue
		}
		l, err := net.FileListener(file)
		file.Close()
		if err != nil {
			f.close()
			return nil, err
		}
		f.listeners = append(f.listeners, l)
	}
	if len(f.listeners) != len(egress) {
		f.close()
		return nil, fmt.Errorf("the helper sent %d egress sockets for %d pairs", len(f.listeners), len(egress))
	}
	for i, l := range f.listeners {
		f.wg.Add(1)
		go f.serve(l, egress[i])
	}
	return f, nil
}

func (f *forwarder) serve(l net.Listener, to string) {
	defer f.wg.Done()
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		if !f.track(in) {
			return
		}
		go func() {
			defer f.untrack(in)
			out, err := net.Dial("tcp", to)
			if err != nil {
				return
			}
			if !f.track(out) {
				return
			}
			defer f.untrack(out)
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(out, in)
				if tc, ok := out.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				close(done)
			}()
			_, _ = io.Copy(in, out)
			if tc, ok := in.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			<-done
		}()
	}
}

// track records an open connection; false means the forwarder is closed
// and c was closed.
func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c net.Conn) {
	c.Close()
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// close stops forwarding and closes every connection.
func (f *forwarder) close() {
	f.mu.Lock()
	for _, l := range f.listeners {
		l.Close()
	}
	for c := range f.conns {
		c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
	f.wg.Wait()
}
