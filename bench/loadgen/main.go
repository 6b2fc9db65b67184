// Command loadgen drives MCP tools/call requests at a server on this machine
// and reports throughput, latency percentiles and, given the server's PID,
// its peak memory and CPU. It speaks one of three paths (-mode):
//
//   - stateless (the default): Streamable HTTP, protocol 2026-07-28, every
//     request on its own;
//   - session: Streamable HTTP, protocol 2025-11-25; each concurrent caller
//     initializes one session first, as a client does once when it
//     connects, then sends every call on it (the warmup included);
//   - stdio: the server is started by loadgen (the command after the
//     flags) and spoken to over its standard input and output, one session,
//     one caller; its PID is measured.
//
// It speaks the protocol with raw net/http and one shared client, so that the
// generator itself stays cheap next to the server it measures:
//
//	loadgen -url http://127.0.0.1:8080/mcp -tool get_customer \
//		-args '{"customer_id":"C-1001"}' -c 32 -d 15s -warmup 3s -pid 12345
//	loadgen -mode stdio -tool echo -args '{"message":"hi"}' -d 15s -- ./server --stdio
//
// A call counts as an error when the HTTP status is not 200, the JSON-RPC
// response has an error, or the tool result has isError set. A run with any
// error is reported as invalid and loadgen exits with status 1.
//
// Only loopback targets are allowed, and every run is bounded in time (-d, at
// most 10 minutes) and optionally in count (-n).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const maxDuration = 10 * time.Minute

type config struct {
	url         string
	tool        string
	args        json.RawMessage
	concurrency int
	calls       int64
	duration    time.Duration
	warmup      time.Duration
	timeout     time.Duration
	header      http.Header
	pid         int
	json        bool
	mode        string
	command     []string // the server to start, in stdio mode
}

// The paths -mode chooses between.
const (
	modeStateless = "stateless"
	modeSession   = "session"
	modeStdio     = "stdio"
)

// headerFlag collects repeated -header "Name: value" flags.
type headerFlag http.Header

func (h headerFlag) String() string { return "" }

func (h headerFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("want \"Name: value\", got %q", s)
	}
	http.Header(h).Add(name, strings.TrimSpace(value))
	return nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if cfg.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.writeText(os.Stdout)
	}
	if !rep.Valid {
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &config{header: http.Header{}}
	var rawArgs string
	fs.StringVar(&cfg.url, "url", "http://127.0.0.1:8080/mcp", "MCP endpoint `URL` (loopback only)")
	fs.StringVar(&cfg.tool, "tool", "", "`name` of the tool to call (required)")
	fs.StringVar(&rawArgs, "args", "{}", "tool arguments as a JSON `object`")
	fs.IntVar(&cfg.concurrency, "c", 1, "concurrent callers, each with at most one call in flight")
	fs.Int64Var(&cfg.calls, "n", 0, "stop after this many measured calls (0: no limit; -d still applies)")
	fs.DurationVar(&cfg.duration, "d", 10*time.Second, "measure for at most this long (at most 10m)")
	fs.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "call for this long before measuring; those calls are not counted")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "per-call timeout")
	fs.Var(headerFlag(cfg.header), "header", "extra request `header` \"Name: value\" (repeatable)")
	fs.IntVar(&cfg.pid, "pid", 0, "server `PID` to read peak RSS and CPU time from /proc")
	fs.BoolVar(&cfg.json, "json", false, "print the report as JSON")
	fs.StringVar(&cfg.mode, "mode", modeStateless, "`path`: stateless (2026-07-28 over HTTP), session (2025-11-25 over HTTP) or stdio (starts the command after the flags)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch cfg.mode {
	case modeStateless, modeSession:
		if fs.NArg() > 0 {
			return nil, fmt.Errorf("unexpected arguments %q (only -mode stdio takes a command)", fs.Args())
		}
	case modeStdio:
		if fs.NArg() == 0 {
			return nil, errors.New("-mode stdio: give the server's command line after the flags (after --)")
		}
		if cfg.concurrency != 1 {
			return nil, fmt.Errorf("-mode stdio: -c %d: stdio has one client, so -c 1", cfg.concurrency)
		}
		if cfg.pid != 0 {
			return nil, errors.New("-mode stdio: -pid is the server loadgen starts; leave it out")
		}
		cfg.command = fs.Args()
	default:
		return nil, fmt.Errorf("-mode %q: want stateless, session or stdio", cfg.mode)
	}
	switch {
	case cfg.tool == "":
		return nil, errors.New("-tool is required")
	case cfg.concurrency < 1 || cfg.concurrency > 4096:
		return nil, fmt.Errorf("-c %d: want 1..4096", cfg.concurrency)
	case cfg.calls < 0:
		return nil, fmt.Errorf("-n %d: want 0 or more", cfg.calls)
	case cfg.duration <= 0 || cfg.duration > maxDuration:
		return nil, fmt.Errorf("-d %s: want more than 0 and at most %s", cfg.duration, maxDuration)
	case cfg.warmup < 0 || cfg.warmup > maxDuration:
		return nil, fmt.Errorf("-warmup %s: want 0 to %s", cfg.warmup, maxDuration)
	case cfg.timeout <= 0:
		return nil, fmt.Errorf("-timeout %s: want more than 0", cfg.timeout)
	case cfg.pid < 0:
		return nil, fmt.Errorf("-pid %d: want a process id", cfg.pid)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(rawArgs), &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("-args %q: want a JSON object", rawArgs)
	}
	cfg.args = json.RawMessage(rawArgs)
	if err := checkLoopbackURL(cfg.url); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkLoopbackURL refuses, before anything is sent, a target that is not on
// this machine. The dialer checks again on every connection (see
// loopbackOnly), which also covers names that resolve differently later.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("-url %q: want an http or https URL", raw)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("-url %q: no host", raw)
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(context.Background(), host)
	if err != nil {
		return fmt.Errorf("-url %q: %w", raw, err)
	}
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			return fmt.Errorf("-url %q: %s is not a loopback address; loadgen only targets servers on this machine", raw, a.IP)
		}
	}
	return nil
}

func loopbackOnly(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing to connect to %s: not a loopback address", address)
	}
	return nil
}

func newHTTPClient(cfg *config) *http.Client {
	return &http.Client{
		Timeout: cfg.timeout,
		Transport: &http.Transport{
			DialContext: (&net.Dialer{
				Timeout:   5 * time.Second,
				KeepAlive: 30 * time.Second,
				Control:   loopbackOnly,
			}).DialContext,
			// One idle connection per caller, so that keep-alive holds and
			// the run measures calls, not TCP handshakes.
			MaxIdleConns:        cfg.concurrency,
			MaxIdleConnsPerHost: cfg.concurrency,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// phase is the outcome of running callers until a deadline or a call limit.
type phase struct {
	calls     int64
	errors    int64
	elapsed   time.Duration
	latencies []time.Duration // successful and failed calls alike; only when recorded
	kinds     map[string]*errorKind
}

type errorKind struct {
	Count   int64  `json:"count"`
	Example string `json:"example"`
}

// client sends one tools/call per call. Each concurrent caller has one,
// which it may share with the others (a stateless caller) or not (a
// session).
type client interface {
	call(ctx context.Context, id int64, buf *bytes.Buffer) error
}

// runPhase runs one caller per client. Each starts a new call only before
// the deadline, before ctx is done and while fewer than limit calls (if
// limit > 0) have started; calls in flight at the deadline are allowed to
// finish, so the deadline does not turn into errors.
func runPhase(ctx context.Context, clients []client, d time.Duration, limit int64, record bool, nextID *atomic.Int64) *phase {
	var started atomic.Int64
	results := make([]*phase, len(clients))
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w, c := range clients {
		p := &phase{kinds: map[string]*errorKind{}}
		results[w] = p
		wg.Go(func() {
			var buf bytes.Buffer
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if limit > 0 && started.Add(1) > limit {
					return
				}
				t0 := time.Now()
				err := c.call(context.WithoutCancel(ctx), nextID.Add(1), &buf)
				lat := time.Since(t0)
				p.calls++
				if record {
					p.latencies = append(p.latencies, lat)
				}
				if err != nil {
					p.errors++
					p.addError(err)
				}
			}
		})
	}
	wg.Wait()
	total := &phase{elapsed: time.Since(start), kinds: map[string]*errorKind{}}
	for _, p := range results {
		total.calls += p.calls
		total.errors += p.errors
		total.latencies = append(total.latencies, p.latencies...)
		for k, e := range p.kinds {
			if t, ok := total.kinds[k]; ok {
				t.Count += e.Count
			} else {
				total.kinds[k] = e
			}
		}
	}
	return total
}

func (p *phase) addError(err error) {
	kind, msg := "error", err.Error()
	var ce *callError
	if errors.As(err, &ce) {
		kind, msg = ce.Kind, ce.Message
	}
	if e, ok := p.kinds[kind]; ok {
		e.Count++
		return
	}
	p.kinds[kind] = &errorKind{Count: 1, Example: msg}
}

// report is what loadgen prints. JSON field names are flat and unique so that
// a shell script can pick one out without a JSON tool.
type report struct {
	Mode              string                `json:"mode"`
	URL               string                `json:"url"`
	Tool              string                `json:"tool"`
	Concurrency       int                   `json:"concurrency"`
	Valid             bool                  `json:"valid"`
	Interrupted       bool                  `json:"interrupted"`
	Calls             int64                 `json:"calls"`
	Errors            int64                 `json:"errors"`
	ErrorKinds        map[string]*errorKind `json:"error_kinds,omitempty"`
	WarmupCalls       int64                 `json:"warmup_calls"`
	WarmupErrors      int64                 `json:"warmup_errors"`
	DurationSeconds   float64               `json:"duration_seconds"`
	RequestsPerSecond float64               `json:"requests_per_second"`
	P50Ms             float64               `json:"p50_ms"`
	P90Ms             float64               `json:"p90_ms"`
	P99Ms             float64               `json:"p99_ms"`
	MaxMs             float64               `json:"max_ms"`
	MeanMs            float64               `json:"mean_ms"`
	LoadgenCPUSeconds float64               `json:"loadgen_cpu_seconds"`
	// MachineBusyCPUSeconds is the CPU time every process on the machine
	// used during the measured run, this one and the server included.
	MachineBusyCPUSeconds float64 `json:"machine_busy_cpu_seconds"`
	MachineCPUs           int     `json:"machine_cpus"`

	ServerPID int `json:"server_pid,omitempty"`
	// ServerPeakRSSBytes is VmHWM: the peak over the server's whole life.
	ServerPeakRSSBytes int64 `json:"server_peak_rss_bytes,omitempty"`
	// ServerRunMaxRSSBytes is the largest VmRSS sampled during the measured run.
	ServerRunMaxRSSBytes int64   `json:"server_run_max_rss_bytes,omitempty"`
	ServerCPUSeconds     float64 `json:"server_cpu_seconds,omitempty"`
	ServerStatsError     string  `json:"server_stats_error,omitempty"`
}

func run(ctx context.Context, cfg *config) (*report, error) {
	if cfg.pid != 0 {
		if _, _, err := memStatus(cfg.pid); err != nil {
			return nil, fmt.Errorf("-pid %d: %w", cfg.pid, err)
		}
	}
	clients, pid, done, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer done()
	if pid != 0 {
		cfg.pid = pid
	}
	var nextID atomic.Int64
	rep := &report{Mode: cfg.mode, URL: cfg.url, Tool: cfg.tool, Concurrency: cfg.concurrency, ServerPID: cfg.pid}
	if cfg.mode == modeStdio {
		rep.URL = "stdio: " + strings.Join(cfg.command, " ")
	}
	if cfg.warmup > 0 {
		w := runPhase(ctx, clients, cfg.warmup, 0, false, &nextID)
		rep.WarmupCalls, rep.WarmupErrors = w.calls, w.errors
	}

	var sampler *rssSampler
	var serverCPU0 time.Duration
	var statsErr error
	if cfg.pid != 0 {
		sampler = startRSSSampler(cfg.pid, 50*time.Millisecond)
		serverCPU0, statsErr = cpuTime(cfg.pid)
	}
	selfCPU0 := selfCPUTime()
	busy0, busyErr := machineBusy()
	p := runPhase(ctx, clients, cfg.duration, cfg.calls, true, &nextID)
	rep.LoadgenCPUSeconds = (selfCPUTime() - selfCPU0).Seconds()
	busy1, err := machineBusy()
	if err := firstErr(busyErr, err); err == nil {
		rep.MachineBusyCPUSeconds = (busy1 - busy0).Seconds()
	}
	rep.MachineCPUs = runtime.NumCPU()
	if cfg.pid != 0 {
		serverCPU1, err := cpuTime(cfg.pid)
		statsErr = firstErr(statsErr, err)
		rep.ServerCPUSeconds = (serverCPU1 - serverCPU0).Seconds()
		rep.ServerRunMaxRSSBytes, err = sampler.Stop()
		statsErr = firstErr(statsErr, err)
		rep.ServerPeakRSSBytes, _, err = memStatus(cfg.pid)
		statsErr = firstErr(statsErr, err)
		if statsErr != nil {
			rep.ServerStatsError = statsErr.Error()
		}
	}

	rep.Interrupted = ctx.Err() != nil
	rep.Calls, rep.Errors = p.calls, p.errors
	if len(p.kinds) > 0 {
		rep.ErrorKinds = p.kinds
	}
	rep.DurationSeconds = p.elapsed.Seconds()
	if p.elapsed > 0 {
		rep.RequestsPerSecond = float64(p.calls) / p.elapsed.Seconds()
	}
	lat := p.latencies
	slices.Sort(lat)
	rep.P50Ms = ms(percentile(lat, 0.50))
	rep.P90Ms = ms(percentile(lat, 0.90))
	rep.P99Ms = ms(percentile(lat, 0.99))
	if len(lat) > 0 {
		rep.MaxMs = ms(lat[len(lat)-1])
		var sum time.Duration
		for _, l := range lat {
			sum += l
		}
		rep.MeanMs = ms(sum / time.Duration(len(lat)))
	}
	rep.Valid = p.calls > 0 && p.errors == 0 && !rep.Interrupted
	return rep, nil
}

// connect makes one client per concurrent caller on cfg's path. In stdio
// mode it starts the server and returns its PID. done ends what connect
// started: the sessions, or the server.
func connect(ctx context.Context, cfg *config) (clients []client, pid int, done func(), err error) {
	clients = make([]client, cfg.concurrency)
	switch cfg.mode {
	case modeStdio:
		s, err := startStdio(ctx, cfg.command, cfg.tool, cfg.args, cfg.timeout)
		if err != nil {
			return nil, 0, nil, err
		}
		clients[0] = s
		return clients, s.Pid(), func() {
			if err := s.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "loadgen: stopping the server:", err)
			}
		}, nil
	case modeSession:
		hc := newHTTPClient(cfg)
		var sessions []string
		done := func() {
			// The server's sessions end with the run; a deadline bounds
			// a server that does not answer.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.timeout)
			defer cancel()
			for _, sid := range sessions {
				closeSession(dctx, hc, cfg.url, cfg.header, sid)
			}
		}
		for i := range clients {
			ictx, cancel := context.WithTimeout(ctx, cfg.timeout)
			sid, err := openSession(ictx, hc, cfg.url, cfg.header)
			cancel()
			if err != nil {
				done()
				return nil, 0, nil, fmt.Errorf("session %d: %w", i+1, err)
			}
			sessions = append(sessions, sid)
			if clients[i], err = newSessionCaller(hc, cfg.url, cfg.tool, cfg.args, cfg.header, sid); err != nil {
				done()
				return nil, 0, nil, err
			}
		}
		return clients, 0, done, nil
	default:
		c, err := newCaller(newHTTPClient(cfg), cfg.url, cfg.tool, cfg.args, cfg.header)
		if err != nil {
			return nil, 0, nil, err
		}
		for i := range clients {
			clients[i] = c
		}
		return clients, 0, func() {}, nil
	}
}

// firstErr returns the first non-nil error.
func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// percentile is the nearest-rank percentile of sorted latencies.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func (r *report) writeText(w io.Writer) {
	fmt.Fprintf(w, "target       %s (%s)  tools/call %s  c=%d\n", r.URL, r.Mode, r.Tool, r.Concurrency)
	if !r.Valid {
		switch {
		case r.Calls == 0:
			fmt.Fprintf(w, "INVALID RUN: no call completed\n")
		case r.Errors > 0:
			fmt.Fprintf(w, "INVALID RUN: %d of %d calls failed; the numbers below include failed calls and are not a result\n", r.Errors, r.Calls)
		}
		if r.Interrupted {
			fmt.Fprintf(w, "INVALID RUN: interrupted\n")
		}
	}
	fmt.Fprintf(w, "calls        %d  errors %d  (warmup %d calls, %d errors)\n", r.Calls, r.Errors, r.WarmupCalls, r.WarmupErrors)
	for _, k := range slices.Sorted(maps.Keys(r.ErrorKinds)) {
		fmt.Fprintf(w, "  %-12s %d  e.g. %s\n", k, r.ErrorKinds[k].Count, r.ErrorKinds[k].Example)
	}
	fmt.Fprintf(w, "duration     %.2fs\n", r.DurationSeconds)
	fmt.Fprintf(w, "throughput   %.1f calls/s\n", r.RequestsPerSecond)
	fmt.Fprintf(w, "latency      p50 %.3fms  p90 %.3fms  p99 %.3fms  max %.3fms  mean %.3fms\n", r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs, r.MeanMs)
	fmt.Fprintf(w, "loadgen CPU  %.2fs (%.2f cores)\n", r.LoadgenCPUSeconds, r.LoadgenCPUSeconds/r.DurationSeconds)
	fmt.Fprintf(w, "machine CPU  %.2f of %d cores busy (every process)", r.MachineBusyCPUSeconds/r.DurationSeconds, r.MachineCPUs)
	if r.ServerPID != 0 {
		other := r.MachineBusyCPUSeconds - r.ServerCPUSeconds - r.LoadgenCPUSeconds
		fmt.Fprintf(w, "; other processes %.2f cores", max(other, 0)/r.DurationSeconds)
	}
	fmt.Fprintln(w)
	if r.ServerPID != 0 {
		fmt.Fprintf(w, "server       pid %d  peak RSS %.1f MiB (VmHWM)  max RSS during run %.1f MiB  CPU %.2fs (%.2f cores)\n",
			r.ServerPID, mib(r.ServerPeakRSSBytes), mib(r.ServerRunMaxRSSBytes), r.ServerCPUSeconds, r.ServerCPUSeconds/r.DurationSeconds)
		if r.ServerStatsError != "" {
			fmt.Fprintf(w, "server stats incomplete: %s\n", r.ServerStatsError)
		}
	}
}
