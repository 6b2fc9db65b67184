// Package anomaly watches the audit stream for what no single call
// reveals — a result too large, a run of destructive calls, a burst of
// refusals — raises an alert, and can suspend the principal until an
// operator lifts the suspension.
//
//	store, err := anomaly.OpenStore(ctx, cfg) // the state database: SQLite or PostgreSQL
//	if err != nil { ... }
//	defer store.Close()
//	d, err := anomaly.New(ctx, anomaly.Rules{
//		MaxRows:                 10_000,
//		MaxDestructivePerMinute: 20,
//		MaxRefusalsPerMinute:    30,
//		Suspend:                 true,
//		WebhookURL:              "https://alerts.example.com/warden",
//	}, store, logger, nil)
//	if err != nil { ... }
//	defer d.Close() // before store.Close
//
//	// For every record the audit writer has made durable:
//	d.Observe(rec)
//
//	// In the pipeline, right inside the audit stage, so that its
//	// refusals are audited and a suspended caller learns nothing more:
//	h := pipeline.Chain(handler, auditStage, d.Stage, authz.Stage, ...)
//
// An alert is a structured log event ("anomaly detected", at warning
// level) and, if a webhook is configured, a JSON POST of an [Alert]. Each
// rule alerts once per principal per window: a principal that keeps
// tripping a rule raises one alert a minute, not one a record.
//
// With Rules.Suspend, the principal that tripped a rule is suspended: its
// calls are refused with PERMISSION_DENIED until an operator lifts the
// suspension (`warden suspensions lift`, which calls
// [SuspensionStore.Lift]). The suspension binds this instance at once and,
// once recorded in the store, every instance sharing it.
//
// Detection is best effort and per instance — it watches the records this
// instance writes — while suspension is strict: [Detector.Stage] asks the
// store about every call and refuses when it cannot get an answer.
package anomaly

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/throttle"
	"github.com/wardenmcp/warden/pipeline"
)

// Rules says what is anomalous. A zero threshold turns its rule off; the
// zero Rules watches nothing, and Stage still enforces suspensions made by
// an operator.
type Rules struct {
	// MaxRows: a result of more rows than this trips max_rows.
	MaxRows int
	// MaxDestructivePerMinute: more calls than this to write-mode targets
	// within any minute trips max_destructive_per_minute. A call counts
	// when it runs (its intent record); refused calls count as refusals.
	MaxDestructivePerMinute int
	// MaxRefusalsPerMinute: more refused calls than this within any minute
	// trips max_refusals_per_minute. The refusals of a suspended
	// principal's calls do not count: they are the suspension at work, and
	// counting them would suspend the principal again the moment an
	// operator lifted it.
	MaxRefusalsPerMinute int
	// Suspend suspends the principal that trips a rule.
	Suspend bool
	// WebhookURL receives each alert as a JSON POST. It must be https,
	// or http to a loopback address. Empty: alerts are only logged.
	WebhookURL string
}

// The rules, by the names alerts and suspension reasons give them.
const (
	RuleMaxRows        = "max_rows"
	RuleMaxDestructive = "max_destructive_per_minute"
	RuleMaxRefusals    = "max_refusals_per_minute"
)

type rule uint8

const (
	ruleRows rule = iota
	ruleDestructive
	ruleRefusals
	numRules
)

var ruleNames = [numRules]string{RuleMaxRows, RuleMaxDestructive, RuleMaxRefusals}

// Settings fixed here rather than configured.
const (
	// window is the span of the per-minute rules, and how long an alert
	// for a principal and rule is not repeated.
	window = time.Minute
	// maxPerMinute bounds the per-minute thresholds: a window remembers
	// up to threshold+1 times per principal, and a looser rule than this
	// would detect nothing the rate limits do not already stop.
	maxPerMinute = 10_000
	// maxPrincipals bounds how many principals are watched at once. A
	// principal is forgotten a window after its last counted record;
	// records of new principals beyond the bound go unwatched, and are
	// counted and logged.
	maxPrincipals = 1 << 16
	numShards     = 32
	shardCap      = maxPrincipals / numShards
	// storeTimeout bounds each write of a suspension to the store.
	storeTimeout = 5 * time.Second
	// retryEvery is how soon a failed write of a suspension is retried,
	// and the first pause between attempts to deliver to the webhook.
	retryEvery = time.Second
	// logEvery is how often, at most, a recurring failure is logged.
	logEvery = time.Minute
)

// Alert is what a tripped rule reports: the JSON the webhook receives, and
// the attributes of the log event.
type Alert struct {
	// Alert says what happened, in a sentence.
	Alert string `json:"alert"`
	// Rule is RuleMaxRows, RuleMaxDestructive or RuleMaxRefusals.
	Rule      string `json:"rule"`
	Principal string `json:"principal"`
	Tenant    string `json:"tenant"`
	// Target and TraceID are those of the record that tripped the rule.
	Target string `json:"target"`
	// Count is the rows of the result (max_rows), or the calls within the
	// window when the rule tripped — the threshold plus one, since a rule
	// trips on the first call beyond it.
	Count     int64 `json:"count"`
	Threshold int64 `json:"threshold"`
	// Window is the rule's span in seconds; no other alert for the
	// principal and rule is raised within it.
	Window    int       `json:"window"`
	Time      time.Time `json:"time"`
	TraceID   string    `json:"trace_id"`
	Suspended bool      `json:"suspended"`
}

// Stats are a Detector's counters, for metrics. Counts are since New.
type Stats struct {
	Alerts         uint64 // alerts raised
	WebhookSent    uint64 // alerts the webhook accepted
	WebhookFailed  uint64 // alerts the webhook had not accepted after the retries
	WebhookDropped uint64 // alerts not sent because the webhook queue was full
	Untracked      uint64 // records not watched because too many principals were being watched
	Pending        int    // suspensions raised here and not yet recorded in the store
}

// Detector applies Rules to the audit stream and enforces suspensions. Its
// methods are safe for concurrent use.
type Detector struct {
	rules Rules
	store SuspensionStore
	log   *slog.Logger
	now   func() time.Time
	epoch time.Time
	seed  maphash.Seed

	shards [numShards]shard
	cache  negCache

	// pending holds suspensions raised here and not yet recorded in the
	// store, principal → reason. Stage consults it first, so a suspension
	// binds this instance at once, whatever the store does.
	mu         sync.Mutex
	pending    map[string]string
	npending   atomic.Int64
	persistNow chan struct{}
	// gen changes whenever a suspension raised here is recorded in the
	// store; a negative cache entry from an older generation is void.
	gen atomic.Uint64

	hook         *webhook // nil without a URL
	retry        time.Duration
	storeLog     throttle.Throttle // Stage cannot read the store
	persistLog   throttle.Throttle // a suspension cannot be written to the store
	untrackedLog throttle.Throttle

	alerts, untracked atomic.Uint64

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// options are what tests change.
type options struct {
	now   func() time.Time
	retry time.Duration // the pause before retrying a store write or a webhook
}

// New returns a Detector applying rules, keeping suspensions in store. It
// logs alerts and failures to log (slog.Default() if nil), and posts to
// the webhook with client (if nil, a client that follows no redirects).
//
// Its background work — delivering alerts to the webhook and recording
// suspensions in the store — runs until ctx is done or Close is called.
// The Detector does not close store.
func New(ctx context.Context, rules Rules, store SuspensionStore, log *slog.Logger, client *http.Client) (*Detector, error) {
	return newDetector(ctx, rules, store, log, client, options{now: time.Now, retry: retryEvery})
}

func newDetector(ctx context.Context, rules Rules, store SuspensionStore, log *slog.Logger, client *http.Client, o options) (*Detector, error) {
	if store == nil {
		return nil, errors.New("anomaly: a suspension store is required")
	}
	if err := rules.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &Detector{
		rules:        rules,
		store:        store,
		log:          log,
		now:          o.now,
		epoch:        o.now(),
		seed:         maphash.MakeSeed(),
		pending:      make(map[string]string),
		persistNow:   make(chan struct{}, 1),
		retry:        o.retry,
		storeLog:     throttle.Throttle{Every: logEvery, Now: o.now},
		persistLog:   throttle.Throttle{Every: logEvery, Now: o.now},
		untrackedLog: throttle.Throttle{Every: logEvery, Now: o.now},
		cancel:       cancel,
	}
	if rules.WebhookURL != "" {
		d.hook = newWebhook(rules.WebhookURL, client, d)
		d.wg.Go(func() { d.hook.run(ctx) })
	}
	d.wg.Go(func() { d.persistLoop(ctx) })
	return d, nil
}

func (r *Rules) validate() error {
	limits := []struct {
		name  string
		value int
		max   int
	}{
		{RuleMaxRows, r.MaxRows, 0},
		{RuleMaxDestructive, r.MaxDestructivePerMinute, maxPerMinute},
		{RuleMaxRefusals, r.MaxRefusalsPerMinute, maxPerMinute},
	}
	for _, l := range limits {
		if l.value < 0 {
			return fmt.Errorf("anomaly rules: %s is %d: use 0 to turn the rule off", l.name, l.value)
		}
		if l.max > 0 && l.value > l.max {
			return fmt.Errorf("anomaly rules: %s is %d, more than %d: a rule that loose detects nothing the rate limits do not", l.name, l.value, l.max)
		}
	}
	if r.WebhookURL == "" {
		return nil
	}
	// Errors do not echo the URL: webhook URLs often carry a secret.
	u, err := url.Parse(r.WebhookURL)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return errors.New("anomaly rules: the webhook URL is not an absolute http(s) URL")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && loopback(u.Hostname()):
	case u.Scheme == "http":
		return fmt.Errorf("anomaly rules: the webhook URL to %s must use https (plain http only to a loopback address): an alert read or forged on the way misleads the people who act on it", u.Hostname())
	default:
		return errors.New("anomaly rules: the webhook URL is not an absolute http(s) URL")
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Observe applies the rules to rec, a record the audit log has made
// durable. It takes well under a microsecond and never waits for the
// network or the store: alerts go to the webhook, and suspensions to the
// store, from goroutines of their own. Only an alert's log event is written
// by Observe itself, through the logger New was given. Records without a
// principal (refused before authentication) are not watched: there is no
// one to suspend.
//
// Observe keeps, per principal watched, the times of its recent counted
// records — at most threshold+1 per rule — and forgets a principal a
// window after its last one.
func (d *Detector) Observe(rec *audit.Record) {
	if rec == nil || rec.Principal == "" {
		return
	}
	r := &d.rules
	rows := r.MaxRows > 0 && rec.Rows > int64(r.MaxRows)
	destructive := r.MaxDestructivePerMinute > 0 && rec.Phase == audit.Intent && rec.Mode == writeMode
	refusal := r.MaxRefusalsPerMinute > 0 && rec.Phase == audit.Refusal && !suspensionRefusal(rec)
	if !rows && !destructive && !refusal {
		return // most records: no lock, no clock
	}

	now := d.clock()
	var (
		tripped [numRules]bool
		counts  [numRules]int64
	)
	sh := &d.shards[d.shardOf(rec.Principal)]
	sh.mu.Lock()
	p := sh.get(rec.Principal, now)
	if p == nil {
		sh.mu.Unlock()
		d.untracked.Add(1)
		d.untrackedLog.Do(func(n int) {
			d.log.Warn("anomaly: too many principals to watch; records of new ones go unwatched",
				"limit", maxPrincipals, "records", n)
		})
		return
	}
	p.last = now
	if rows {
		tripped[ruleRows], counts[ruleRows] = p.alert(ruleRows, now), rec.Rows
	}
	if destructive {
		n := p.destructive.add(now, int64(window), r.MaxDestructivePerMinute+1)
		tripped[ruleDestructive], counts[ruleDestructive] = n > r.MaxDestructivePerMinute && p.alert(ruleDestructive, now), int64(n)
	}
	if refusal {
		n := p.refusals.add(now, int64(window), r.MaxRefusalsPerMinute+1)
		tripped[ruleRefusals], counts[ruleRefusals] = n > r.MaxRefusalsPerMinute && p.alert(ruleRefusals, now), int64(n)
	}
	sh.mu.Unlock()

	for ru, t := range tripped {
		if t {
			d.raise(rec, rule(ru), counts[ru])
		}
	}
}

// writeMode is how an audit record names a target that may change state.
var writeMode = pipeline.Write.String()

// suspendedMessage starts the message of every refusal Stage makes for a
// suspension, and so the reason of its audit record.
const suspendedMessage = "your access is suspended"

// suspensionRefusal reports whether rec records Stage refusing a suspended
// principal. Only Warden writes a record's reason, so a caller cannot
// forge one.
func suspensionRefusal(rec *audit.Record) bool {
	return rec.ErrorCode == string(pipeline.PermissionDenied) && strings.HasPrefix(rec.Reason, suspendedMessage)
}

// raise reports that rec tripped ru, suspending its principal if the rules
// say so: first, so that by the time anyone reads the alert, the
// principal's next call is refused.
func (d *Detector) raise(rec *audit.Record, ru rule, count int64) {
	threshold := d.threshold(ru)
	a := &Alert{
		Rule:      ruleNames[ru],
		Principal: rec.Principal,
		Tenant:    rec.Tenant,
		Target:    rec.Target,
		Count:     count,
		Threshold: threshold,
		Window:    int(window / time.Second),
		Time:      d.now().UTC(),
		TraceID:   rec.TraceID,
		Suspended: d.rules.Suspend,
	}
	switch ru {
	case ruleRows:
		a.Alert = fmt.Sprintf("%s received a result of %d rows, more than the %d allowed", a.Principal, count, threshold)
	case ruleDestructive:
		a.Alert = fmt.Sprintf("%s made more than %d calls to write tools within a minute", a.Principal, threshold)
	case ruleRefusals:
		a.Alert = fmt.Sprintf("%s had more than %d calls refused within a minute", a.Principal, threshold)
	}
	if a.Suspended {
		// The reason is shown to the suspended caller: it names the rule,
		// not the threshold, which would help the caller stay under it.
		d.suspend(a.Principal, "unusual activity (rule "+a.Rule+")")
	}
	d.alerts.Add(1)
	d.log.LogAttrs(context.Background(), slog.LevelWarn, "anomaly detected",
		slog.String("alert", a.Alert),
		slog.String("rule", a.Rule),
		slog.String("principal", a.Principal),
		slog.String("tenant", a.Tenant),
		slog.String("target", a.Target),
		slog.Int64("count", a.Count),
		slog.Int64("threshold", a.Threshold),
		slog.Int("window", a.Window),
		slog.String("trace_id", a.TraceID),
		slog.Bool("suspended", a.Suspended))
	if d.hook != nil {
		d.hook.enqueue(a)
	}
}

func (d *Detector) threshold(ru rule) int64 {
	switch ru {
	case ruleRows:
		return int64(d.rules.MaxRows)
	case ruleDestructive:
		return int64(d.rules.MaxDestructivePerMinute)
	}
	return int64(d.rules.MaxRefusalsPerMinute)
}

// suspend suspends principal here at once, and asks the persister to
// record it in the store.
func (d *Detector) suspend(principal, reason string) {
	d.mu.Lock()
	if _, ok := d.pending[principal]; !ok {
		d.pending[principal] = reason
		d.npending.Add(1)
	}
	d.mu.Unlock()
	select {
	case d.persistNow <- struct{}{}:
	default: // already asked
	}
}

// persistLoop records pending suspensions in the store, retrying until it
// can: until then they bind this instance only.
func (d *Detector) persistLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.persistNow:
		}
		if d.persist(ctx) {
			continue
		}
		t := time.NewTimer(d.retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		select {
		case d.persistNow <- struct{}{}:
		default:
		}
	}
}

// persist records every pending suspension in the store, and reports
// whether it recorded them all.
func (d *Detector) persist(ctx context.Context) bool {
	d.mu.Lock()
	todo := maps.Clone(d.pending)
	d.mu.Unlock()
	ok := true
	for principal, reason := range todo {
		sctx, cancel := context.WithTimeout(ctx, storeTimeout)
		err := d.store.Suspend(sctx, principal, reason)
		cancel()
		if err != nil {
			ok = false
			d.persistLog.Do(func(n int) {
				d.log.Error("anomaly: a suspension could not be recorded in the store; until it is, it binds this instance only",
					"principal", principal, "failures", n, "err", err)
			})
			continue
		}
		// Void the negative cache before Stage stops consulting pending:
		// a lookup made before the store held the suspension must not let
		// the principal through afterwards.
		d.gen.Add(1)
		d.mu.Lock()
		delete(d.pending, principal)
		d.npending.Add(-1)
		d.mu.Unlock()
		d.log.Debug("anomaly: suspension recorded", "principal", principal)
	}
	return ok
}

// Close stops the background work, abandoning alerts not yet delivered to
// the webhook, and makes a last attempt to record pending suspensions in
// the store: the error says if some could not be, and will not survive a
// restart. Observe and Stage remain safe to call.
func (d *Detector) Close() error {
	d.closeOnce.Do(func() {
		d.cancel()
		d.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		if !d.persist(ctx) {
			d.closeErr = fmt.Errorf("anomaly: suspensions not recorded in the store, and so lost on restart: %d", d.npending.Load())
		}
	})
	return d.closeErr
}

// Stats returns the detector's counters.
func (d *Detector) Stats() Stats {
	s := Stats{
		Alerts:    d.alerts.Load(),
		Untracked: d.untracked.Load(),
		Pending:   int(d.npending.Load()),
	}
	if h := d.hook; h != nil {
		s.WebhookSent, s.WebhookFailed, s.WebhookDropped = h.sent.Load(), h.failed.Load(), h.dropped.Load()
	}
	return s
}

// clock is the time in nanoseconds since the detector started.
func (d *Detector) clock() int64 { return int64(d.now().Sub(d.epoch)) }

func (d *Detector) shardOf(principal string) uint64 {
	return maphash.String(d.seed, principal) % numShards
}

// shard watches some of the principals.
type shard struct {
	mu         sync.Mutex
	principals map[string]*principal
	swept      int64 // clock at the last sweep
}

// get returns the state of principal, creating it if there is room, or
// nil. A principal inactive for a window is forgotten: its windows are
// empty and its alerts no longer suppress anything.
func (sh *shard) get(id string, now int64) *principal {
	if p := sh.principals[id]; p != nil {
		return p
	}
	if sh.principals == nil {
		sh.principals = make(map[string]*principal)
	}
	if now-sh.swept >= int64(window) || len(sh.principals) >= shardCap {
		sh.swept = now
		for k, p := range sh.principals {
			if now-p.last >= int64(window) {
				delete(sh.principals, k)
			}
		}
	}
	if len(sh.principals) >= shardCap {
		return nil
	}
	p := &principal{}
	sh.principals[id] = p
	return p
}

// principal is what is known of one principal's recent records.
type principal struct {
	last                  int64 // clock at the last counted record
	destructive, refusals ring
	alerted               [numRules]int64 // clock at the last alert, per rule
	hasAlerted            [numRules]bool
}

// alert reports whether ru may alert for p at now, and if so notes that it
// did: once per window.
func (p *principal) alert(ru rule, now int64) bool {
	if p.hasAlerted[ru] && now-p.alerted[ru] < int64(window) {
		return false
	}
	p.alerted[ru], p.hasAlerted[ru] = now, true
	return true
}

// ring holds the times of recent events, oldest first: a sliding window
// that remembers at most a limit of events, so its memory is bounded by the
// threshold it serves rather than by the rate of events.
type ring struct {
	ts      []int64
	head, n int
}

// add records an event at t, forgets events at or before t-span, and
// returns how many remain, t's included, up to limit.
func (r *ring) add(t, span int64, limit int) int {
	for r.n > 0 && r.ts[r.head] <= t-span {
		r.head = (r.head + 1) % len(r.ts)
		r.n--
	}
	if r.n == limit {
		r.head = (r.head + 1) % len(r.ts)
		r.n--
	}
	if r.n == len(r.ts) {
		grown := make([]int64, min(limit, max(4, 2*len(r.ts))))
		for i := range r.n {
			grown[i] = r.ts[(r.head+i)%len(r.ts)]
		}
		r.ts, r.head = grown, 0
	}
	r.ts[(r.head+r.n)%len(r.ts)] = t
	r.n++
	return r.n
}
