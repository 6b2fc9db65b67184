package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/wardenmcp/warden/internal/audit"
)

// pageSize is how many audit records a page shows.
const pageSize = 100

// maxSkip bounds the skip parameter of the audit pages' links, which only
// grows past a few when thousands of records share a microsecond.
const maxSkip = 10000

type auditData struct {
	Configured bool
	Filter     auditFilter
	Rows       []*audit.Record
	Next       string       // the next page's URL, or "" on the last
	Chain      *chainStatus // nil until asked for
	VerifyURL  string
}

// auditFilter is the filter form, as typed.
type auditFilter struct {
	Principal, Tenant, Target, Decision, ErrorCode, Since, Until string
}

type chainStatus struct {
	OK   bool
	Text string
}

func (c *console) audit(w http.ResponseWriter, r *http.Request, s *session) {
	v := r.URL.Query()
	f := auditFilter{
		Principal: v.Get("principal"), Tenant: v.Get("tenant"), Target: v.Get("target"),
		Decision: v.Get("decision"), ErrorCode: v.Get("error_code"), Since: v.Get("since"), Until: v.Get("until"),
	}
	d := &auditData{Configured: c.o.Audit != nil, Filter: f}
	p := page{Title: "Audit log", Nav: "audit", Data: d}
	if !d.Configured {
		c.render(w, r, s, http.StatusOK, "audit", p)
		return
	}
	q, before, skip, err := f.query(v, c.now())
	if t := s.Principal.Tenant; err == nil && t != "" && q.Tenant != "" && q.Tenant != t {
		err = fmt.Errorf("tenant: you may read the records of your own tenant (%s) only", t)
	}
	if err != nil {
		p.Alert = sentence(err)
		c.render(w, r, s, http.StatusBadRequest, "audit", p)
		return
	}
	if t := s.Principal.Tenant; t != "" {
		q.Tenant = t // a tenant's principal reads its own tenant's records only
	}
	n := 0
	err = c.o.Audit.Scan(r.Context(), q, func(rec *audit.Record) error {
		if n++; n > skip {
			d.Rows = append(d.Rows, rec)
		}
		return nil
	})
	if err != nil {
		c.internal(w, r, s, "reading the audit log", err)
		return
	}
	if len(d.Rows) > pageSize {
		d.Rows = d.Rows[:pageSize]
		d.Next = nextPage(v, d.Rows, before, skip)
	}
	if v.Get("verify") != "" {
		d.Chain = c.verify(r.Context())
	}
	vv := url.Values{}
	for k, l := range v {
		vv[k] = l
	}
	vv.Set("verify", "1")
	d.VerifyURL = "/console/audit?" + vv.Encode()
	c.render(w, r, s, http.StatusOK, "audit", p)
}

// query turns the filter, and the page position in v, into a query for
// one page and one record more, newest first. Records older than before
// (exclusive), after skipping skip of them, make the page.
func (f auditFilter) query(v url.Values, now time.Time) (q audit.Query, before time.Time, skip int, err error) {
	q = audit.Query{
		Principal: f.Principal, Tenant: f.Tenant, Target: f.Target,
		Decision: audit.Decision(f.Decision), ErrorCode: f.ErrorCode, Desc: true,
	}
	switch q.Decision {
	case "", audit.Allow, audit.Deny:
	default:
		return q, before, 0, fmt.Errorf("decision: %q is neither allow nor deny", f.Decision)
	}
	if q.Since, err = parseTime("since", f.Since, now); err != nil {
		return q, before, 0, err
	}
	if q.Until, err = parseTime("until", f.Until, now); err != nil {
		return q, before, 0, err
	}
	if b := v.Get("before"); b != "" {
		if before, err = time.Parse(time.RFC3339Nano, b); err != nil {
			return q, before, 0, errBadPage
		}
		if q.Until.IsZero() || before.Before(q.Until) {
			q.Until = before
		}
	}
	if sk := v.Get("skip"); sk != "" {
		if skip, err = strconv.Atoi(sk); err != nil || skip < 0 || skip > maxSkip {
			return q, before, 0, errBadPage
		}
	}
	q.Limit = skip + pageSize + 1
	return q, before, skip, nil
}

// nextPage is the URL of the page after rows, which the query with before
// and skip yielded. It starts with the records as old as the last row's,
// skipping those shown already: several records may share a microsecond.
func nextPage(v url.Values, rows []*audit.Record, before time.Time, skip int) string {
	last := rows[len(rows)-1].Time
	n := 0
	for _, r := range rows {
		if r.Time.Equal(last) {
			n++
		}
	}
	next := last.Add(time.Microsecond)
	if before.Equal(next) { // this page began with records as old as that, too
		n += skip
	}
	nv := url.Values{}
	for k, l := range v {
		nv[k] = l
	}
	nv.Del("verify")
	nv.Set("before", next.UTC().Format(time.RFC3339Nano))
	nv.Set("skip", strconv.Itoa(n))
	return "/console/audit?" + nv.Encode()
}

// verify checks the whole chain; it reads every record.
func (c *console) verify(ctx context.Context) *chainStatus {
	if len(c.o.AuditSecret) == 0 {
		return &chainStatus{Text: "The chain cannot be verified here: the console was given no audit secret."}
	}
	rep, err := audit.Verify(ctx, c.o.Audit, c.o.AuditSecret)
	if err != nil {
		c.log.Error("console: verifying the audit chain", "err", err)
		return &chainStatus{Text: "The chain could not be verified: the audit log could not be read. The error is logged."}
	}
	if !rep.OK {
		ps := make([]string, 0, len(rep.Problems))
		for _, p := range rep.Problems {
			ps = append(ps, fmt.Sprintf("chain %s at seq %d: %s", p.Instance, p.Seq, p.Message))
		}
		return &chainStatus{Text: "Broken: " + strings.Join(ps, "; ") + "."}
	}
	var n int64
	for _, ch := range rep.Chains {
		n += ch.Verified
	}
	return &chainStatus{OK: true, Text: fmt.Sprintf("Intact: %d %s verified, in %d %s.",
		n, plural(int(n), "record", "records"), len(rep.Chains), plural(len(rep.Chains), "chain", "chains"))}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

var (
	errFound   = errors.New("found")
	errBadPage = errors.New("this page's link is not valid: go back to the first page")
)

type recordData struct {
	R    *audit.Record
	JSON string
}

// record shows one audit record. The list links to it with the record's
// time, which lets the store find it by index; without it the console
// reads the instance's chain up to it.
func (c *console) record(w http.ResponseWriter, r *http.Request, s *session) {
	if c.o.Audit == nil {
		c.fail(w, r, s, http.StatusNotFound, "Audit log not configured", "This server keeps no audit log the console can read.")
		return
	}
	inst := r.PathValue("instance")
	seq, err := strconv.ParseInt(r.PathValue("seq"), 10, 64)
	notFound := fmt.Sprintf("The audit log holds no record %s of instance %q.", r.PathValue("seq"), inst)
	if err != nil {
		c.fail(w, r, s, http.StatusNotFound, "No such record", notFound)
		return
	}
	q := audit.Query{Instance: inst}
	if at, err := time.Parse(time.RFC3339Nano, r.URL.Query().Get("at")); err == nil {
		q.Since, q.Until = at, at.Add(time.Microsecond)
	}
	var found *audit.Record
	err = c.o.Audit.Scan(r.Context(), q, func(rec *audit.Record) error {
		if rec.Seq == seq {
			found = rec
			return errFound
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) {
		c.internal(w, r, s, "reading the audit log", err)
		return
	}
	if found == nil || (s.Principal.Tenant != "" && found.Tenant != s.Principal.Tenant) {
		c.fail(w, r, s, http.StatusNotFound, "No such record", notFound)
		return
	}
	js, err := json.MarshalIndent(found, "", "  ")
	if err != nil {
		c.internal(w, r, s, "encoding an audit record", err)
		return
	}
	c.render(w, r, s, http.StatusOK, "record", page{
		Title: fmt.Sprintf("Audit record %s #%d", found.Instance, found.Seq), Nav: "audit",
		Data: recordData{R: found, JSON: string(js)},
	})
}

var days = regexp.MustCompile(`^([0-9]+)d$`)

// parseDuration reads whole days (30d) or a Go duration (12h, 90m).
func parseDuration(s string) (time.Duration, bool) {
	if m := days.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil || n > 100*365 {
			return 0, false
		}
		return time.Duration(n) * 24 * time.Hour, true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil && d > 0
}

// parseTime reads a filter's time: a date, a date and time (UTC unless it
// says otherwise), or an age such as 1h or 7d, which counts back from now.
func parseTime(field, s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, ok := parseDuration(s); ok {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%s: %q is not a time: use a date such as 2026-05-01, a time such as 2026-05-01T14:30:00Z (UTC unless it names a zone), or an age such as 1h or 7d", field, s)
}
