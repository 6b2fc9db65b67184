package anomaly

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/audit"
)

func TestRulesTripJustBeyondTheirThreshold(t *testing.T) {
	type step struct {
		at    time.Duration
		rec   *audit.Record
		alert string // the rule that must alert now, or "" for none
	}
	s := time.Second
	tests := []struct {
		name  string
		rules Rules
		steps []step
	}{
		{"a result of max_rows rows passes, one more alerts", Rules{MaxRows: 100}, []step{
			{0, result("a", 99), ""},
			{0, result("a", 100), ""},
			{0, result("a", 101), RuleMaxRows},
		}},
		{"three writes a minute pass, a fourth alerts", Rules{MaxDestructivePerMinute: 3}, []step{
			{0, writeIntent("a"), ""},
			{10 * s, writeIntent("a"), ""},
			{20 * s, writeIntent("a"), ""},
			{30 * s, writeIntent("a"), RuleMaxDestructive},
		}},
		{"a write a minute old no longer counts", Rules{MaxDestructivePerMinute: 3}, []step{
			{0, writeIntent("a"), ""},
			{10 * s, writeIntent("a"), ""},
			{20 * s, writeIntent("a"), ""},
			{60 * s, writeIntent("a"), ""}, // the first has just left the window
			{60*s + time.Millisecond, writeIntent("a"), RuleMaxDestructive},
		}},
		{"only writes that run count as destructive", Rules{MaxDestructivePerMinute: 1}, []step{
			{0, result("a", 1), ""},
			{0, result("a", 1), ""},
			{0, oldReadIntent("a"), ""},
			{0, oldReadIntent("a"), ""},
			{0, writeOutcome("a"), ""},
			{0, writeOutcome("a"), ""},
			{0, refusal("a"), ""},
			{0, refusal("a"), ""},
			{0, writeIntent("a"), ""},
			{0, writeIntent("a"), RuleMaxDestructive},
		}},
		{"two refusals a minute pass, a third alerts", Rules{MaxRefusalsPerMinute: 2}, []step{
			{0, refusal("a"), ""},
			{59 * s, refusal("a"), ""},
			{59 * s, refusal("a"), RuleMaxRefusals},
		}},
		{"refusals of a suspended principal do not count", Rules{MaxRefusalsPerMinute: 1}, []step{
			{0, suspendedRefusal("a"), ""},
			{0, suspendedRefusal("a"), ""},
			{0, suspendedRefusal("a"), ""},
			{0, refusal("a"), ""},
			{0, refusal("a"), RuleMaxRefusals},
		}},
		{"principals are counted apart", Rules{MaxDestructivePerMinute: 1}, []step{
			{0, writeIntent("a"), ""},
			{0, writeIntent("b"), ""},
			{0, writeIntent("a"), RuleMaxDestructive},
			{0, writeIntent("b"), RuleMaxDestructive},
		}},
		{"records without a principal are not watched", Rules{MaxRefusalsPerMinute: 1, MaxRows: 1}, []step{
			{0, refusal(""), ""},
			{0, refusal(""), ""},
			{0, result("", 5), ""},
		}},
		{"zero rules watch nothing", Rules{}, []step{
			{0, result("a", 1<<40), ""},
			{0, writeIntent("a"), ""},
			{0, writeIntent("a"), ""},
			{0, refusal("a"), ""},
			{0, refusal("a"), ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.rules, newMemStore())
			for i, st := range tt.steps {
				before := len(e.log.all(alertMsg))
				e.clk.set(st.at)
				e.d.Observe(st.rec)
				got := e.log.all(alertMsg)[before:]
				switch {
				case st.alert == "" && len(got) != 0:
					t.Fatalf("step %d (%s %s at %v): alerts %v, want none", i, st.rec.Phase, st.rec.Principal, st.at, got)
				case st.alert != "" && len(got) != 1:
					t.Fatalf("step %d (%s %s at %v): %d alerts, want one for %s", i, st.rec.Phase, st.rec.Principal, st.at, len(got), st.alert)
				case st.alert != "" && (got[0]["rule"] != st.alert || got[0]["principal"] != st.rec.Principal):
					t.Fatalf("step %d: alert %v, want rule %s for %s", i, got[0], st.alert, st.rec.Principal)
				}
			}
		})
	}
}

func TestOneAlertPerPrincipalRuleAndWindow(t *testing.T) {
	e := newEnv(t, Rules{MaxDestructivePerMinute: 1, MaxRefusalsPerMinute: 1}, newMemStore())
	type key struct {
		rule, principal string
		at              time.Duration
	}
	var got []key
	// a writes every second for 150 s; b is refused at 30 s and 31 s; a
	// is refused at 40 s and 41 s.
	for sec := range 151 {
		at := time.Duration(sec) * time.Second
		e.clk.set(at)
		before := len(e.log.all(alertMsg))
		e.d.Observe(writeIntent("a"))
		if sec == 30 || sec == 31 {
			e.d.Observe(refusal("b"))
		}
		if sec == 40 || sec == 41 {
			e.d.Observe(refusal("a"))
		}
		for _, a := range e.log.all(alertMsg)[before:] {
			got = append(got, key{a["rule"].(string), a["principal"].(string), at})
		}
	}
	want := []key{
		{RuleMaxDestructive, "a", 1 * time.Second},
		{RuleMaxRefusals, "b", 31 * time.Second},
		{RuleMaxRefusals, "a", 41 * time.Second},
		{RuleMaxDestructive, "a", 61 * time.Second},
		{RuleMaxDestructive, "a", 121 * time.Second},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("alerts (rule, principal, time):\n got %v\nwant %v", got, want)
	}
	if s := e.d.Stats(); s.Alerts != uint64(len(want)) {
		t.Errorf("Stats().Alerts = %d, want %d", s.Alerts, len(want))
	}
}

func TestAlertLogEvent(t *testing.T) {
	e := newEnv(t, Rules{MaxRows: 10, Suspend: true}, newMemStore())
	e.d.Observe(result("ci-bot", 11))
	got := e.log.all(alertMsg)
	if len(got) != 1 {
		t.Fatalf("%d alert events, want 1", len(got))
	}
	want := map[string]any{
		"alert":     "ci-bot received a result of 11 rows, more than the 10 allowed",
		"rule":      RuleMaxRows,
		"principal": "ci-bot",
		"tenant":    "acme",
		"target":    "get_customer",
		"count":     int64(11),
		"threshold": int64(10),
		"window":    int64(60),
		"trace_id":  "trace-ci-bot",
		"suspended": true,
	}
	if fmt.Sprint(got[0]) != fmt.Sprint(want) {
		t.Errorf("alert event:\n got %v\nwant %v", got[0], want)
	}
}

func TestPrincipalsAreForgottenAndBounded(t *testing.T) {
	e := newEnv(t, Rules{MaxDestructivePerMinute: 5}, newMemStore())
	// More principals than the bound, each once: the last ones are not
	// watched, and say so.
	for i := range maxPrincipals + 2*numShards*4 {
		e.d.Observe(writeIntent(fmt.Sprint("p", i)))
	}
	if s := e.d.Stats(); s.Untracked == 0 {
		t.Errorf("Stats().Untracked = 0 after %d principals; want some, beyond the bound %d", maxPrincipals+2*numShards*4, maxPrincipals)
	}
	if got := e.log.all("anomaly: too many principals to watch; records of new ones go unwatched"); len(got) != 1 {
		t.Errorf("%d warnings about untracked principals, want 1 (throttled)", len(got))
	}
	// A window later, the idle ones are forgotten and new ones watched.
	e.clk.set(window)
	before := e.d.Stats().Untracked
	for i := range 1000 {
		e.d.Observe(writeIntent(fmt.Sprint("q", i)))
	}
	if s := e.d.Stats(); s.Untracked != before {
		t.Errorf("%d records untracked after every principal went idle for a window, want 0", s.Untracked-before)
	}
	total := 0
	for i := range e.d.shards {
		total += len(e.d.shards[i].principals)
	}
	if total > 1000 {
		t.Errorf("%d principals remembered, want at most the 1000 active in the last window", total)
	}
}

func TestRingRemembersAtMostTheLimit(t *testing.T) {
	var r ring
	for i := range 1000 {
		if n := r.add(int64(i), 1<<40, 11); n != min(i+1, 11) {
			t.Fatalf("after %d events: %d, want %d", i+1, n, min(i+1, 11))
		}
	}
	if len(r.ts) > 11 {
		t.Errorf("ring holds %d slots for a limit of 11", len(r.ts))
	}
	if n := r.add(2000, 1000, 11); n != 1 {
		t.Errorf("after every event left the window: %d, want 1", n)
	}
}

func TestNewRefusesBadRules(t *testing.T) {
	tests := []struct {
		name   string
		rules  Rules
		errHas string
	}{
		{"negative rows", Rules{MaxRows: -1}, "max_rows is -1: use 0 to turn the rule off"},
		{"negative writes", Rules{MaxDestructivePerMinute: -5}, "max_destructive_per_minute is -5"},
		{"too many refusals", Rules{MaxRefusalsPerMinute: maxPerMinute + 1}, "max_refusals_per_minute is 10001, more than 10000"},
		{"plain http off the machine", Rules{WebhookURL: "http://alerts.example.com/hooks/s3cr3t"}, "webhook URL to alerts.example.com must use https"},
		{"not http", Rules{WebhookURL: "ftp://alerts.example.com/s3cr3t"}, "not an absolute http(s) URL"},
		{"relative", Rules{WebhookURL: "/hooks/s3cr3t"}, "not an absolute http(s) URL"},
		{"garbage", Rules{WebhookURL: "https://[::1/s3cr3t"}, "not an absolute http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), tt.rules, newMemStore(), slog.New(slog.DiscardHandler), nil)
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("err = %v, want one saying %q", err, tt.errHas)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error shows the webhook URL, which may carry a secret: %v", err)
			}
		})
	}
	if _, err := New(context.Background(), Rules{}, nil, nil, nil); err == nil {
		t.Errorf("New without a store: no error")
	}
	for _, u := range []string{"https://alerts.example.com/x", "http://127.0.0.1:9/x", "http://[::1]:9/x", "http://localhost/x"} {
		d, err := New(context.Background(), Rules{WebhookURL: u}, newMemStore(), slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Errorf("webhook %s: %v", u, err)
			continue
		}
		d.Close()
	}
}
