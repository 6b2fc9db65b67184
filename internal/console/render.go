package console

import (
	"bytes"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/wardenmcp/warden/pipeline"
)

// page is what every template is given: the layout's fields, and the
// page's own in Data.
type page struct {
	Title string
	Nav   string // the navigation entry to mark as current
	// Principal and CSRF come from the session: nil and empty when signed
	// out, and then the layout shows no navigation.
	Principal *pipeline.Principal
	CSRF      string
	Alert     string // what went wrong, shown with role=alert
	Flash     string // what just succeeded, shown with role=status
	Data      any
}

// pages are the parsed templates, by name: each is the layout plus
// templates/NAME.html, which defines "content".
type pages map[string]*template.Template

var pageNames = []string{"signin", "approvals", "approval", "audit", "record", "tools", "keys", "upstreams", "upstream", "error", "signedin"}

var funcs = template.FuncMap{
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"human":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"join":    strings.Join,
	"path":    url.PathEscape,
	"pinpath": pinPath,
}

func parsePages() pages {
	ps := pages{}
	for _, n := range pageNames {
		ps[n] = template.Must(template.New(n).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+n+".html"))
	}
	return ps
}

// fallback is served if a page cannot be rendered, which only a broken
// template causes.
const fallback = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Error · Warden console</title></head>` +
	`<body><main><h1>Something went wrong</h1><p role="alert">The page could not be shown; the error is logged.</p></main></body></html>`

// render writes page name with status. It renders into a buffer first, so
// that a template error yields an error page rather than half a page.
func (c *console) render(w http.ResponseWriter, r *http.Request, s *session, status int, name string, p page) {
	if s != nil {
		p.Principal, p.CSRF = s.Principal, s.CSRF
	}
	var b bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&b, "layout", p); err != nil {
		c.log.Error("console: rendering a page", "page", name, "path", r.URL.Path, "err", err)
		status = http.StatusInternalServerError
		b.Reset()
		b.WriteString(fallback)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// fail writes an error page: heading, and a message saying what went wrong
// and what to do.
func (c *console) fail(w http.ResponseWriter, r *http.Request, s *session, status int, heading, msg string) {
	c.render(w, r, s, status, "error", page{Title: heading, Alert: msg})
}

// internal logs err, which the user never sees, and writes a generic error
// page.
func (c *console) internal(w http.ResponseWriter, r *http.Request, s *session, what string, err error) {
	c.log.Error("console: "+what, "path", r.URL.Path, "err", err)
	c.fail(w, r, s, http.StatusInternalServerError, "Something went wrong",
		"Something went wrong on the server; the error is logged. Try again, and if it persists, tell the operator.")
}

// pretty indents JSON for reading; it returns raw as it is if it is not
// valid JSON, and "" if it is empty.
func pretty(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}

// sentence makes an error message, written in Go's lower-case style, a
// sentence for a page.
func sentence(err error) string {
	s := err.Error()
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	s = string(unicode.ToUpper(r)) + s[n:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}
