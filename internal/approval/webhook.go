package approval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Webhook delivery, fixed here rather than configured.
const (
	// webhookQueue bounds the requests waiting for the webhook; beyond
	// it, announcements are dropped (and logged): the request itself is
	// durable and `warden approvals list` shows it.
	webhookQueue = 64
	// webhookTimeout bounds each delivery, connection included.
	webhookTimeout = 5 * time.Second
)

// WebhookFormats are the payloads NewWebhookFormat can post: "json", the
// request itself with "event": "approval_requested", and "slack", a
// message for a Slack incoming webhook.
var WebhookFormats = []string{"json", "slack"}

// NewWebhookFormat returns a notify function for Gate that posts each new
// request to rawURL, in format (one of WebhookFormats; "" is "json"), from
// a goroutine of its own, one at a time. It never blocks the call; the
// goroutine lives as long as the process. A nil client is one that follows
// no redirects. It panics on an unknown format, which configuration
// checks first.
func NewWebhookFormat(rawURL, format string, client *http.Client) func(*Request) {
	var encode func(*Request) ([]byte, error)
	switch format {
	case "", "json":
		encode = jsonPayload
	case "slack":
		encode = slackPayload
	default:
		panic(fmt.Sprintf("approval: unknown webhook format %q (want one of %s)", format, strings.Join(WebhookFormats, ", ")))
	}
	host := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		host = u.Host // the URL may carry a secret, the host does not
	}
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	queue := make(chan []byte, webhookQueue)
	go func() {
		for body := range queue {
			post(client, rawURL, host, body)
		}
	}()
	return func(r *Request) {
		body, err := encode(r)
		if err != nil {
			slog.Error("approval: cannot encode a request for the webhook", "id", r.ID, "err", err)
			return
		}
		select {
		case queue <- body:
		default:
			slog.Error("approval: the webhook queue is full; a request was not announced", "host", host, "id", r.ID)
		}
	}
}

func jsonPayload(r *Request) ([]byte, error) {
	return json.Marshal(struct {
		Event string `json:"event"`
		*Request
	}{"approval_requested", r})
}

func post(client *http.Client, rawURL, host string, body []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		slog.Error("approval: the webhook URL is invalid", "host", host)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		slog.Error("approval: the webhook did not accept a request", "host", host, "err", err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		slog.Error("approval: the webhook did not accept a request", "host", host, "status", resp.StatusCode)
	}
}
