package sql

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
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

// dialect is what compile must know of a database's lexical rules. The
// scanner must agree with the database on where quotes and comments begin
// and end: where it did not, a ';' the scanner took for quoted text could
// end a statement in the database's eyes (SQLite runs every statement of a
// multi-statement text).
type dialect struct {
	// placeholder returns the text of positional placeholder i (1-based).
	placeholder func(i int) string
	// postgres selects PostgreSQL's rules: $tag$ bodies, E'' strings with
	// backslash escapes, nested /* */ comments and '$' inside identifiers.
	// Otherwise SQLite's: `backtick` and [bracket] identifiers, and $name and
	// @name are SQLite's own parameter forms, which Warden refuses.
	postgres bool
}

var (
	sqliteDialect   = &dialect{placeholder: func(i int) string { return "?" + strconv.Itoa(i) }}
	postgresDialect = &dialect{postgres: true, placeholder: func(i int) string { return "$" + strconv.Itoa(i) }}
)

var errPositional = errors.New("use named parameters (:name), not positional or driver-specific placeholders")

// statementKinds are the statements a tool may be: queries and data
// changes. Everything else — ATTACH, PRAGMA, VACUUM INTO, COPY, DO, CALL,
// SET, DDL — can reach beyond the declared data, so it is refused at load.
var statementKinds = []string{"select", "with", "values", "insert", "update", "delete"}

// compile scans stmt once, outside string literals, quoted identifiers,
// comments and dollar-quoted bodies, rewriting each :name to a placeholder
// (a repeated name reuses its index). It refuses more than one statement,
// so that a declaration cannot smuggle a second one.
func compile(stmt string, d *dialect) (*compiled, error) {
	var (
		b     strings.Builder
		c     = &compiled{}
		index = map[string]int{}
		ended bool   // a top-level ';' was seen
		first string // the statement's first keyword
	)
	s := strings.TrimSpace(stmt)
	if strings.IndexByte(s, 0) >= 0 {
		// SQLite reads a statement as a C string: it would stop at the NUL
		// and see a different statement than the one checked here.
		return nil, errors.New("the statement contains a NUL byte")
	}
	for i := 0; i < len(s); {
		ch := s[i]
		if ended && !isSpace(ch) && !strings.HasPrefix(s[i:], "--") && !strings.HasPrefix(s[i:], "/*") {
			return nil, errors.New("a statement must be a single SQL statement; remove everything after the ';'")
		}
		switch {
		case ch == '\'' || ch == '"' || (!d.postgres && ch == '`'):
			j := closeQuote(s, i, ch, false)
			if j < 0 {
				return nil, fmt.Errorf("unterminated %c quote", ch)
			}
			b.WriteString(s[i:j])
			i = j
		case !d.postgres && ch == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, errors.New("unterminated [ identifier")
			}
			b.WriteString(s[i : i+j+1])
			i += j + 1
		case strings.HasPrefix(s[i:], "--"):
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				j = len(s) - i
			}
			b.WriteString(s[i : i+j])
			i += j
		case strings.HasPrefix(s[i:], "/*"):
			j := closeComment(s, i, d.postgres)
			if j < 0 {
				return nil, errors.New("unterminated /* comment")
			}
			b.WriteString(s[i:j])
			i = j
		case d.postgres && ch == '$' && dollarTag(s[i:]) != "":
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
			b.WriteString(d.placeholder(n))
			i = j
		case ch == '?' || (ch == '$' && i+1 < len(s) && isIdent(s[i+1])):
			return nil, errPositional
		case !d.postgres && ch == '@' && i+1 < len(s) && isIdentStart(s[i+1]):
			return nil, errPositional
		case ch == ';':
			ended = true
			i++
		case isIdentStart(ch):
			j := i
			for j < len(s) && (isIdent(s[j]) || (d.postgres && s[j] == '$')) {
				j++
			}
			word := s[i:j]
			if first == "" {
				first = strings.ToLower(word)
				if !slices.Contains(statementKinds, first) {
					return nil, fmt.Errorf("a tool runs a query or a data change (SELECT, WITH, VALUES, INSERT, UPDATE or DELETE), not %s", strings.ToUpper(word))
				}
			}
			if strings.EqualFold(word, "returning") {
				c.returning = true
			}
			b.WriteString(word)
			i = j
			if d.postgres && (word == "E" || word == "e") && i < len(s) && s[i] == '\'' {
				// An escape string: a backslash escapes the next character,
				// a quote included.
				k := closeQuote(s, i, '\'', true)
				if k < 0 {
					return nil, errors.New("unterminated E'' string")
				}
				b.WriteString(s[i:k])
				i = k
			}
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
// s[i], treating a doubled quote as an escaped one and, if backslash is
// set, a backslash as escaping the byte after it. It returns -1 if the
// quote is not closed.
func closeQuote(s string, i int, q byte, backslash bool) int {
	for j := i + 1; j < len(s); j++ {
		switch {
		case backslash && s[j] == '\\':
			j++
		case s[j] == q:
			if j+1 < len(s) && s[j+1] == q {
				j++
				continue
			}
			return j + 1
		}
	}
	return -1
}

// closeComment returns the index just past the end of the /* comment at
// s[i], or -1. PostgreSQL nests block comments; SQLite does not.
func closeComment(s string, i int, nested bool) int {
	depth := 0
	for j := i; j+1 < len(s); j++ {
		switch {
		case s[j] == '/' && s[j+1] == '*' && (nested || depth == 0):
			depth++
			j++
		case s[j] == '*' && s[j+1] == '/':
			depth--
			j++
			if depth == 0 {
				return j + 1
			}
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

// isIdentStart reports whether c may begin an identifier. Both databases
// take every byte of a multi-byte UTF-8 character as a letter.
func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

func isIdent(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
