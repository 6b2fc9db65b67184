package anomaly

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/wardenmcp/warden/internal/throttle"
)

// Webhook delivery, fixed here rather than configured.
const (
	// webhookQueue bounds the alerts waiting for the webhook; beyond it,
	// alerts are only logged. Alerts are rare — one per principal, rule
	// and minute — so a full queue means the webhook is down or slow.
	webhookQueue = 64
	// webhookAttempts is one delivery and at most two retries.
	webhookAttempts = 3
	// webhookTimeout bounds each attempt, connection included.
	webhookTimeout = 5 * time.Second
)

// webhook posts alerts, one at a time, from a goroutine of its own.
type webhook struct {
	url    string
	host   string // for logs: the URL may carry a secret, the host does not
	client *http.Client
	queue  chan *Alert
	d      *Detector

	dropLog               throttle.Throttle
	sent, failed, dropped atomic.Uint64
}

func newWebhook(rawURL string, client *http.Client, d *Detector) *webhook {
	u, _ := url.Parse(rawURL) // validated by Rules.validate
	if client == nil {
		// A redirect would turn the POST into a GET, or send the alert
		// somewhere no one configured: report it as a failure instead.
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	return &webhook{
		url:     rawURL,
		host:    u.Host,
		client:  client,
		queue:   make(chan *Alert, webhookQueue),
		d:       d,
		dropLog: throttle.Throttle{Every: logEvery, Now: d.now},
	}
}

// enqueue hands a to the delivery goroutine, or drops it if the queue is
// full: Observe never waits for the webhook.
func (w *webhook) enqueue(a *Alert) {
	select {
	case w.queue <- a:
	default:
		w.dropped.Add(1)
		w.dropLog.Do(func(n int) {
			w.d.log.Error("anomaly: the webhook queue is full; alerts are being logged but not sent",
				"host", w.host, "dropped", n)
		})
	}
}

func (w *webhook) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-w.queue:
			w.deliver(ctx, a)
		}
	}
}

// deliver posts a, retrying failures that may pass: network errors,
// timeouts, 408, 429 and 5xx.
func (w *webhook) deliver(ctx context.Context, a *Alert) {
	body, err := json.Marshal(a)
	if err != nil {
		panic(err) // an Alert always encodes
	}
	attempts := 0
	for attempts < webhookAttempts {
		if attempts > 0 && !pause(ctx, w.d.retry<<(attempts-1)) {
			return // shutting down
		}
		attempts++
		var retry bool
		if retry, err = w.post(ctx, body); err == nil {
			w.sent.Add(1)
			w.d.log.Debug("anomaly: alert delivered to the webhook",
				"host", w.host, "rule", a.Rule, "principal", a.Principal, "attempts", attempts)
			return
		}
		if !retry {
			break
		}
	}
	w.failed.Add(1)
	w.d.log.Error("anomaly: the webhook did not accept an alert; it is in this log only",
		"host", w.host, "rule", a.Rule, "principal", a.Principal, "trace_id", a.TraceID,
		"attempts", attempts, "err", err)
}

// post makes one attempt, and says whether another might succeed.
func (w *webhook) post(ctx context.Context, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("making the request to %s: %w", w.host, unwrapURL(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "warden-anomaly")
	resp, err := w.client.Do(req)
	if err != nil {
		return true, fmt.Errorf("posting to %s: %w", w.host, unwrapURL(err))
	}
	// Drain a little, so the connection can be reused; never read a
	// webhook's whole answer.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, nil
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests, c >= 500:
		return true, fmt.Errorf("%s answered %s", w.host, resp.Status)
	default:
		return false, fmt.Errorf("%s answered %s", w.host, resp.Status)
	}
}

// unwrapURL strips the URL from a *url.Error: webhook URLs often carry a
// secret, which must not reach the log.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// pause waits for d, and reports false if ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
