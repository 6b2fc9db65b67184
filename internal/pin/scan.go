package pin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The scan's rules.
const (
	RuleInvisible  = "invisible_unicode"
	RuleModel      = "model_instruction"
	RuleReference  = "tool_reference"
	RuleCredential = "credential_request"
	RuleOversized  = "oversized"
)

// ScanOptions configure a Scanner.
type ScanOptions struct {
	// MaxDescription is the largest description (or instructions), in
	// bytes, that is not a finding; 0 means DefaultMaxDescription.
	MaxDescription int
	// OtherTargets are the names of other upstreams' targets: a definition
	// naming one of them (shadowing it) is a finding. Names too short or
	// too plain to tell from prose (no '_', '-' or '.', under 5 bytes) are
	// ignored.
	OtherTargets []string
}

// Scanner looks for poison in definitions. It is safe for concurrent use.
type Scanner struct {
	max    int
	others *regexp.Regexp // nil when there are none
}

// NewScanner returns a scanner with opts.
func NewScanner(opts ScanOptions) *Scanner {
	s := &Scanner{max: opts.MaxDescription}
	if s.max <= 0 {
		s.max = DefaultMaxDescription
	}
	var names []string
	for _, n := range opts.OtherTargets {
		if len(n) >= 5 && strings.ContainsAny(n, "_-.") && !slices.Contains(names, n) {
			names = append(names, regexp.QuoteMeta(n))
		}
	}
	if len(names) > 0 {
		slices.Sort(names)
		s.others = regexp.MustCompile(`(?i)(?:^|[^\w.-])(` + strings.Join(names, "|") + `)(?:$|[^\w-])`)
	}
	return s
}

// pattern is one phrase a rule looks for. The text cannot match unless it
// contains one of the words in any, which is quicker to find than to run
// the expression.
type pattern struct {
	rule string
	any  []string
	re   *regexp.Regexp
}

// patterns are matched against every string of a definition, lowercased
// and with runs of whitespace as one space. They aim at text addressed to
// the model or asking for secrets, and leave ordinary tool documentation
// ("Use this tool when you need to examine a file", "Only works within
// allowed directories") alone: TestScanBenign holds them to the
// descriptions of real servers.
var patterns = []pattern{
	// Instructions to the model rather than documentation for it.
	{RuleModel, []string{"ignore", "disregard", "forget", "override"}, regexp.MustCompile(`\b(ignore|disregard|forget|override)\b (all |any |the |your )*(previous|prior|above|earlier|preceding|other|system|original)( \w+)? (instructions?|prompts?|directions|rules|guidelines|messages)`)},
	{RuleModel, []string{"user"}, regexp.MustCompile(`\b(do not|don't|dont|never|must not|should not|shouldn't)\b (\w+ ){0,2}(tell|mention|inform|reveal|notify|alert|show|disclose|say|explain)\b[^.]{0,40}\b(the )?users?\b`)},
	{RuleModel, []string{"without"}, regexp.MustCompile(`\bwithout (telling|informing|notifying|alerting|asking|letting)\b[^.]{0,20}\b(the )?users?\b`)},
	{RuleModel, []string{"from the user"}, regexp.MustCompile(`\b(hide|conceal|keep) (this|it|that)( secret)? from the user`)},
	{RuleModel, []string{"the user "}, regexp.MustCompile(`\bthe user (must|should) not (know|see|notice|be told)`)},
	{RuleModel, []string{"<", "["}, regexp.MustCompile(`</?\s*(important|system|instructions?|secret|hidden|admin|assistant|critical)\s*>|\[/?(system|inst|important)\]|<\|im_(start|end)\|>`)},
	{RuleModel, []string{"you are now", "from now on", "new instructions", "system prompt", "act as"}, regexp.MustCompile(`\b(you are now|from now on,? you|new instructions:|system prompt|act as (an?|the) (ai|assistant|admin|system))`)},
	{RuleModel, []string{" tool"}, regexp.MustCompile(`\b(before|after|when) (using|calling|invoking|running) (this|any|any other|every) tools?,? (you )?(must|should|always|need to|have to)\b`)},
	{RuleModel, []string{"must", "should", "required"}, regexp.MustCompile(`\b(you|the (assistant|model|ai|agent|llm))( (must|should|are required to))( always| first| also| now| secretly| silently)* (call|invoke|read|send|forward|include|fetch|exfiltrate|upload|copy|change|replace|redirect|pass)\b`)},
	{RuleModel, []string{"otherwise"}, regexp.MustCompile(`\botherwise the tool (will not|won't|does not|doesn't|cannot) work`)},

	// References to tools or servers other than this one.
	{RuleReference, []string{"instead of", "rather than"}, regexp.MustCompile(`\b(instead of|rather than) (using|calling|invoking) (the )?\S+( tool)?`)},
	{RuleReference, []string{"other", "also present", " tool "}, regexp.MustCompile(`\b(all|any|the) other (tools?|servers?|mcp servers?)\b|\balso present\b.{0,40}\btool\b|\bwhen (the )?\S+ tool is (used|called|invoked)`)},
	{RuleReference, []string{"http"}, regexp.MustCompile(`https?://\S+/(mcp|sse)(\b|/)`)},

	// Requests for credentials and keys.
	{RuleCredential, []string{"ssh", "id_", "env", "mcp.json", ".cursor", "claude_desktop", "aws", "npmrc", "netrc", "git-credentials", "kube", "/etc/", "docker", "pgpass"}, regexp.MustCompile(`~/\.ssh|\bid_(rsa|dsa|ecdsa|ed25519)\b|(^|[\s/'"` + "`" + `(])\.env\b|\bmcp\.json\b|\.cursor/|claude_desktop_config|\.aws/credentials|\.npmrc\b|\.netrc\b|\.git-credentials|\.kube/config|/etc/(passwd|shadow)\b|\.docker/config\.json|\.pgpass\b`)},
	{RuleCredential, []string{"key", "token", "password", "passphrase", "credential", "cookie"}, regexp.MustCompile(`\b(read|send|include|pass|provide|give|share|forward|upload|paste|copy|extract|collect|leak|exfiltrate|append|attach)\b[^.]{0,40}\b(api[ _-]?keys?|access[ _-]?tokens?|bearer tokens?|auth tokens?|secret[ _-]?keys?|private[ _-]?keys?|passwords?|passphrases?|credentials|session cookies?|ssh keys?)\b`)},
}

// Scan returns what it finds in every string of d's body — descriptions,
// titles, schema property descriptions, defaults, enums, keys — each with
// the JSON path of its field. A body that is not JSON has nothing to scan
// (Guard.Check refuses it before).
func (s *Scanner) Scan(d Definition) []Finding {
	dec := json.NewDecoder(bytes.NewReader(d.Body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	var found []Finding
	add := func(f Finding) {
		if !slices.Contains(found, f) {
			found = append(found, f)
		}
	}
	if len(d.Body) > maxDefinition {
		add(Finding{Rule: RuleOversized, Field: "(definition)", Excerpt: fmt.Sprintf("%d bytes (limit %d); only the first %d bytes of text were scanned", len(d.Body), maxDefinition, maxDefinition)})
	}
	budget := maxDefinition
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				p := join(path, k)
				s.text(p, k, false, &budget, add)
				walk(p, v[k])
			}
		case []any:
			for i, e := range v {
				walk(path+"["+strconv.Itoa(i)+"]", e)
			}
		case string:
			long := d.Kind == Instructions && path == "" || path == "description" || strings.HasSuffix(path, ".description")
			field := path
			if field == "" {
				field = string(d.Kind)
			}
			s.text(field, v, long, &budget, add)
		}
	}
	walk("", v)
	return found
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// maxText is the most of one string the patterns read, and maxDefinition
// the most of one definition. A longer string, in whatever field, or a
// longer definition is itself a finding, so that nothing hides past what
// was read, and an upstream cannot make the scan slow.
const (
	maxText       = 64 << 10
	maxDefinition = 256 << 10
)

// text scans one string; sized says whether it is a description, whose
// length the policy limits. The patterns read no more than *budget bytes,
// which they use up.
func (s *Scanner) text(field, v string, sized bool, budget *int, add func(Finding)) {
	if limit := s.max; sized && len(v) > limit || len(v) > maxText {
		if !sized {
			limit = maxText
		}
		add(Finding{Rule: RuleOversized, Field: field, Excerpt: fmt.Sprintf("%d bytes (limit %d): %s", len(v), limit, excerpt(v, 0, 60))})
		if len(v) > maxText {
			cut := maxText
			for cut > 0 && !utf8.RuneStart(v[cut]) {
				cut--
			}
			v = v[:cut]
		}
	}
	for i, r := range v {
		if invisible(r) {
			add(Finding{Rule: RuleInvisible, Field: field, Excerpt: excerpt(v, i, 0)})
			break
		}
	}
	if *budget <= 0 {
		return
	}
	*budget -= len(v)
	norm := normalize(v)
	for _, p := range patterns {
		if !containsAny(norm, p.any) {
			continue
		}
		if loc := p.re.FindStringIndex(norm); loc != nil {
			add(Finding{Rule: p.rule, Field: field, Excerpt: excerpt(norm, loc[0], loc[1]-loc[0])})
		}
	}
	if s.others != nil {
		if m := s.others.FindStringSubmatchIndex(v); m != nil {
			add(Finding{Rule: RuleReference, Field: field, Excerpt: excerpt(v, m[2], m[3]-m[2])})
		}
	}
}

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// invisible reports whether r is a character a reader does not see but a
// model reads: format characters (zero-width spaces and joiners, bidi
// controls, the tag characters U+E0000–U+E007F that spell ASCII
// invisibly), control characters other than tab and newline, the
// variation selectors past U+FE0F that can carry bytes, and private-use
// characters. U+200D (zero-width joiner) inside emoji sequences is also
// reported: descriptions have no need for it.
func invisible(r rune) bool {
	switch {
	case r == '\t' || r == '\n' || r == '\r':
		return false
	case r == utf8.RuneError:
		return true
	case unicode.Is(unicode.Cf, r), unicode.Is(unicode.Cc, r), unicode.Is(unicode.Co, r):
		return true
	case r >= 0xE0100 && r <= 0xE01EF, r >= 0xE0000 && r <= 0xE007F:
		return true
	case r == 0x115F || r == 0x1160 || r == 0x3164 || r == 0xFFA0: // Hangul fillers, rendered blank
		return true
	}
	return false
}

// normalize lowercases v, makes every run of whitespace one space, and
// drops invisible characters, so that a phrase split by them still
// matches (they are findings of their own).
func normalize(v string) string {
	var b strings.Builder
	b.Grow(len(v))
	space := false
	for _, r := range v {
		switch {
		case invisible(r):
			continue
		case unicode.IsSpace(r):
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// excerpt is up to about 80 printable bytes of v around v[at:at+n], with
// invisible characters shown as \u escapes.
func excerpt(v string, at, n int) string {
	const ctx = 20
	start := max(at-ctx, 0)
	end := min(at+max(n, 1)+ctx, len(v))
	if n > 60 {
		end = min(at+60+ctx, len(v))
	}
	for start > 0 && !utf8.RuneStart(v[start]) {
		start--
	}
	for end < len(v) && !utf8.RuneStart(v[end]) {
		end++
	}
	var b strings.Builder
	if start > 0 {
		b.WriteString("…")
	}
	for _, r := range v[start:end] {
		switch {
		case r == '\n' || r == '\t' || r == '\r':
			b.WriteByte(' ')
		case invisible(r) || !unicode.IsPrint(r) && r != ' ':
			if r > 0xFFFF {
				fmt.Fprintf(&b, `\U%08X`, r)
			} else {
				fmt.Fprintf(&b, `\u%04X`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	if end < len(v) {
		b.WriteString("…")
	}
	return b.String()
}
