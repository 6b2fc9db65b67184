package sql

import (
	"errors"
	"fmt"
	"strings"
)

// compiled is a statement with its :name parameters rewritten into the
// dialect's positional placeholders. Values are always bound, never spliced
// into the text.
type compiled struct {
	query     string
	params    []string // params[i] binds placeholder i+1
	returning bool     // the statement has a RETURNING clause
}

// compile scans stmt once, outside string literals, quoted identifiers,
// comments and dollar-quoted bodies, rewriting each :name to placeholder(i)
// (1-based; a repeated name reuses its index). It refuses more than one
// statement, so that a declaration cannot smuggle a second one.
func compile(stmt string, placeholder func(int) string) (*compiled, error) {
	var (
		b     strings.Builder
		c     = &compiled{}
		index = map[string]int{}
		ended bool // a top-level ';' was seen
	)
	s := strings.TrimSpace(stmt)
	for i := 0; i < len(s); {
		ch := s[i]
		if ended && !isSpace(ch) && !strings.HasPrefix(s[i:], "--") && !strings.HasPrefix(s[i:], "/*") {
			return nil, errors.New("a statement must be a single SQL statement; remove everything after the ';'")
		}
		switch {
		case ch == '\'' || ch == '"' || ch == '`':
			j := closeQuote(s, i, ch)
			if j < 0 {
				return nil, fmt.Errorf("unterminated %c quote", ch)
			}
			b.WriteString(s[i:j])
			i = j
		case strings.HasPrefix(s[i:], "--"):
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				j = len(s) - i
			}
			b.WriteString(s[i : i+j])
			i += j
		case strings.HasPrefix(s[i:], "/*"):
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return nil, errors.New("unterminated /* comment")
			}
			b.WriteString(s[i : i+j+4])
			i += j + 4
		case ch == '$' && dollarTag(s[i:]) != "":
			tag := dollarTag(s[i:])
			j := strings.Index(s[i+len(tag):], tag)
			if j < 0 {
				return nil, fmt.Errorf("unterminated %s quote", tag)
			}
			end := i + len(tag) + j + len(tag)
			b.WriteString(s[i:end])
			i = end
		case ch == ':' && i+1 < len(s) && s[i+1] == ':':
			b.WriteString("::") // a PostgreSQL cast
			i += 2
		case ch == ':' && i+1 < len(s) && isIdentStart(s[i+1]):
			j := i + 1
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			name := s[i+1 : j]
			n, ok := index[name]
			if !ok {
				c.params = append(c.params, name)
				n = len(c.params)
				index[name] = n
			}
			b.WriteString(placeholder(n))
			i = j
		case ch == '?' || (ch == '$' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9'):
			return nil, errors.New("use named parameters (:name), not positional placeholders")
		case ch == ';':
			ended = true
			i++
		case isIdentStart(ch):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			if strings.EqualFold(s[i:j], "returning") {
				c.returning = true
			}
			b.WriteString(s[i:j])
			i = j
		default:
			b.WriteByte(ch)
			i++
		}
	}
	c.query = strings.TrimSpace(b.String())
	if c.query == "" {
		return nil, errors.New("empty statement")
	}
	return c, nil
}

// closeQuote returns the index just past the quote that closes the one at
// s[i], treating a doubled quote as an escaped one.
func closeQuote(s string, i int, q byte) int {
	for j := i + 1; j < len(s); j++ {
		if s[j] == q {
			if j+1 < len(s) && s[j+1] == q {
				j++
				continue
			}
			return j + 1
		}
	}
	return -1
}

// dollarTag returns the PostgreSQL dollar-quote opener ($$ or $tag$) at the
// start of s, or "".
func dollarTag(s string) string {
	for j := 1; j < len(s); j++ {
		switch {
		case s[j] == '$':
			return s[:j+1]
		case !isIdent(s[j]) || (j == 1 && s[j] >= '0' && s[j] <= '9'):
			return ""
		}
	}
	return ""
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdent(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
