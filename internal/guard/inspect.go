package guard

import (
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A Flag marks a likely prompt injection in untrusted text: its kind and
// where it starts, never the text itself.
//
// Kinds of hidden content, which Inspect strips:
//
//	unicode_tag          U+E0000–U+E007F, invisible characters that spell out ASCII
//	zero_width           U+200B–U+200D, U+2060–U+2064, U+180E, U+FEFF
//	bidi_control         U+202A–U+202E, U+2066–U+2069 (embeddings, overrides, isolates)
//	variation_selectors  a variation selector that follows another or starts the text
//	                     (how bytes are smuggled in emoji); one after a character stays
//	ansi_escape          terminal escape sequences (colours, cursor moves, hidden text, links)
//	control_char         other C0 and C1 control characters, except tab, newline and CR
//
// Kinds of instructions addressed to the model, which Inspect reports but
// leaves in place (the result stays truthful; the flag travels with it):
//
//	ignore_instructions  "ignore all previous instructions", "disregard your rules"
//	role_override        "you are now an unrestricted AI", "enable developer mode"
//	system_prompt        "system prompt", chat-template tokens such as <|im_start|>
//	addressed_to_model   "NOTICE TO THE AI ASSISTANT", "if you are an AI", "AI: send ..."
//	tool_directive       "call search_orders", "invoke the delete_user tool"
//	conceal_from_user    "do not tell the user", "without informing the user"
//	exfiltration         "email the results to x@y.example"; reported only together
//	                     with another instruction flag, as a business text asks
//	                     for the same thing every day
type Flag struct {
	Kind string `json:"kind"`
	// Path locates the string within a structure (see InspectValue); it is
	// empty for Inspect.
	Path string `json:"path,omitempty"`
	// Offset is the byte offset in the original, uncleaned string.
	Offset int `json:"offset"`
}

// maxFlagsPerKind bounds the flags one string yields per kind, so that a
// string built to be noisy cannot bloat the audit record; one flag of a
// kind is enough to act on.
const maxFlagsPerKind = 8

// Inspect strips invisible characters and terminal escape sequences from
// untrusted text, and flags them and any instructions addressed to the
// model (see Flag). Instructions are looked for in the cleaned text, so
// hiding a zero-width space inside "ignore" does not hide it. Text with
// nothing to strip is returned as is, without allocating.
func Inspect(s string) (clean string, flags []Flag) {
	clean, removed, flags := strip(s, nil)
	return clean, findInstructions(clean, removed, flags)
}

// InspectValue applies Inspect to every string in a JSON-like value — map
// values and keys, slice elements, json.RawMessage documents — as
// Redactor.Value walks it, and returns the cleaned value with the flags,
// each with its path. The result is v itself where nothing was stripped.
//
// Map keys are cleaned too, unless the cleaned key is already taken, and
// flags come sorted by path, so that the same value always yields the same
// flags in the same order.
func InspectValue(v any) (any, []Flag) {
	w := inspector{}
	out, changed := w.value(v)
	slices.SortStableFunc(w.flags, func(a, b Flag) int { return strings.Compare(a.Path, b.Path) })
	if !changed {
		return v, w.flags
	}
	return out, w.flags
}

type inspector struct {
	segs  []string
	flags []Flag
}

func (w *inspector) text(s string) (string, bool) {
	clean, f := Inspect(s)
	if len(f) > 0 {
		p := strings.Join(w.segs, ".")
		for i := range f {
			f[i].Path = p
		}
		w.flags = append(w.flags, f...)
	}
	return clean, len(clean) != len(s)
}

func (w *inspector) value(v any) (any, bool) {
	switch x := v.(type) {
	case string:
		return w.text(x)
	case map[string]any:
		var out map[string]any
		for k, e := range x {
			w.segs = append(w.segs, k)
			ck, kchanged := w.text(k)
			y, changed := w.value(e)
			w.segs = w.segs[:len(w.segs)-1]
			if _, taken := x[ck]; kchanged && taken {
				ck, kchanged = k, false // keep both entries: the flag stays
			}
			if changed || kchanged {
				if out == nil {
					out = make(map[string]any, len(x))
					for k2, e2 := range x {
						out[k2] = e2
					}
				}
				if kchanged {
					delete(out, k)
				}
				out[ck] = y
			}
		}
		if out == nil {
			return v, false
		}
		return out, true
	case []any:
		var out []any
		for i, e := range x {
			w.segs = append(w.segs, strconv.Itoa(i))
			y, changed := w.value(e)
			w.segs = w.segs[:len(w.segs)-1]
			if changed {
				if out == nil {
					out = slices.Clone(x)
				}
				out[i] = y
			}
		}
		if out == nil {
			return v, false
		}
		return out, true
	case nil, bool, json.Number, float64, float32, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return v, false
	case json.RawMessage:
		d, err := decodeJSON(x)
		if err != nil {
			return v, false // not JSON: nothing a model would read as text
		}
		y, changed := w.value(d)
		if !changed {
			return v, false
		}
		enc, err := json.Marshal(y)
		if err != nil {
			return v, false
		}
		return json.RawMessage(enc), true
	}
	data, err := json.Marshal(v)
	if err != nil {
		return v, false
	}
	d, err := decodeJSON(data)
	if err != nil {
		return v, false
	}
	return w.value(d)
}

// removal records that, up to clean offset at, total bytes were removed
// from the original; it maps clean offsets back to original ones.
type removal struct{ at, total int }

func origOffset(removed []removal, c int) int {
	// The last removal at or before c applies.
	i, found := slices.BinarySearchFunc(removed, c, func(r removal, c int) int { return r.at - c })
	if found {
		for i+1 < len(removed) && removed[i+1].at == c {
			i++
		}
		return c + removed[i].total
	}
	if i == 0 {
		return c
	}
	return c + removed[i-1].total
}

// hiddenKinds are the kinds of flag strip reports.
var hiddenKinds = [...]string{"unicode_tag", "zero_width", "bidi_control", "variation_selectors", "ansi_escape", "control_char"}

// hidden classifies a rune that Inspect strips, or returns "".
func hidden(r rune) string {
	switch {
	case 0xE0000 <= r && r <= 0xE007F:
		return "unicode_tag"
	case 0x200B <= r && r <= 0x200D, 0x2060 <= r && r <= 0x2064, r == 0xFEFF, r == 0x180E:
		return "zero_width"
	case 0x202A <= r && r <= 0x202E, 0x2066 <= r && r <= 0x2069:
		return "bidi_control"
	case r < 0x20 && r != '\t' && r != '\n' && r != '\r', r == 0x7F, 0x80 <= r && r <= 0x9F:
		return "control_char"
	}
	return ""
}

// joins reports whether the joiner r, between the kept rune prev and the
// text rest, does its ordinary job: a zero-width joiner inside an emoji
// sequence (👩‍💻), or a joiner or non-joiner between letters of the Arabic
// and Indic scripts, whose spelling needs them.
func joins(prev rune, rest string, r rune) bool {
	if r != 0x200C && r != 0x200D {
		return false
	}
	next, _ := utf8.DecodeRuneInString(rest)
	if r == 0x200D && isEmoji(prev) && isEmoji(next) {
		return true
	}
	return joiningScript(prev) && joiningScript(next)
}

// isEmoji covers the pictographs, dingbats and modifiers that emoji
// sequences are built from.
func isEmoji(r rune) bool {
	return (0x1F000 <= r && r <= 0x1FAFF) || (0x2600 <= r && r <= 0x27BF) || (0x2B00 <= r && r <= 0x2BFF) || r == 0xFE0F || r == 0x20E3
}

// joiningScript covers Arabic, Syriac and the Indic scripts (Devanagari to
// Sinhala).
func joiningScript(r rune) bool {
	return (0x0600 <= r && r <= 0x08FF) || (0x0900 <= r && r <= 0x0DFF)
}

func isVariationSelector(r rune) bool {
	return (0xFE00 <= r && r <= 0xFE0F) || (0xE0100 <= r && r <= 0xE01EF)
}

// needsStrip is a quick test: printable ASCII, tab, newline and CR need no
// second look.
func needsStrip(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c >= 0x7F {
			return true
		}
	}
	return false
}

// strip removes hidden content from s, appending a flag per run of one
// kind, and returns the clean text with the removals that map its offsets
// back to s.
func strip(s string, flags []Flag) (string, []removal, []Flag) {
	if !needsStrip(s) {
		return s, nil, flags
	}
	var (
		b        strings.Builder
		removed  []removal
		counts   [len(hiddenKinds)]int
		lastKind string
		lastEnd  = -1
	)
	kept := 0 // s[kept:i] is yet to be copied
	cut := func(i, j int, kind string) {
		if b.Cap() == 0 {
			b.Grow(len(s))
		}
		b.WriteString(s[kept:i])
		kept = j
		total := j - i
		if len(removed) > 0 {
			total += removed[len(removed)-1].total
		}
		removed = append(removed, removal{at: b.Len(), total: total})
		if kind == lastKind && i == lastEnd {
			lastEnd = j // the same run goes on
			return
		}
		lastKind, lastEnd = kind, j
		if k := slices.Index(hiddenKinds[:], kind); counts[k] < maxFlagsPerKind {
			counts[k]++
			flags = append(flags, Flag{Kind: kind, Offset: i})
		}
	}
	// last is the last rune kept, which decides whether a joiner or a
	// variation selector that follows does its ordinary job. It is taken
	// from the clean text, not the original, so that cleaning twice
	// changes nothing more.
	var last rune
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7F || c == '\t' || c == '\n' || c == '\r' {
			last = rune(c)
			i++
			continue
		}
		if c == 0x1B {
			cut(i, escapeEnd(s, i+1), "ansi_escape")
			i = kept
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == 0x9B || r == 0x9D || r == 0x90 || r == 0x98 || r == 0x9E || r == 0x9F:
			// C1 forms of CSI, OSC, DCS, SOS, PM and APC.
			cut(i, c1End(s, i+size, r), "ansi_escape")
			i = kept
			continue
		case isVariationSelector(r):
			// One selector after a character chooses how it looks (❤️);
			// one after another, or after nothing, is a way to hide bytes.
			if last == 0 || isVariationSelector(last) {
				cut(i, i+size, "variation_selectors")
				i += size
				continue
			}
		default:
			if kind := hidden(r); kind != "" && !joins(last, s[i+size:], r) {
				cut(i, i+size, kind)
				i += size
				continue
			}
		}
		last = r
		i += size
	}
	if b.Cap() == 0 {
		return s, nil, flags
	}
	b.WriteString(s[kept:])
	return b.String(), removed, flags
}

// escapeEnd returns where the escape sequence whose ESC precedes s[i] ends.
func escapeEnd(s string, i int) int {
	if i >= len(s) {
		return i
	}
	switch c := s[i]; {
	case c == '[':
		return csiEnd(s, i+1)
	case c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_':
		return stringEnd(s, i+1)
	case 0x20 <= c && c <= 0x2F: // nF: intermediates, then a final byte
		j := i
		for j < len(s) && 0x20 <= s[j] && s[j] <= 0x2F {
			j++
		}
		if j < len(s) && 0x30 <= s[j] && s[j] <= 0x7E {
			j++
		}
		return j
	case 0x30 <= c && c <= 0x7E: // Fp, Fe, Fs: one byte
		return i + 1
	}
	return i // a lone ESC
}

func c1End(s string, i int, r rune) int {
	if r == 0x9B {
		return csiEnd(s, i)
	}
	return stringEnd(s, i)
}

// csiEnd skips a control sequence's parameters and intermediates and its
// final byte, stopping early at anything that cannot be part of one.
func csiEnd(s string, i int) int {
	for i < len(s) && 0x30 <= s[i] && s[i] <= 0x3F {
		i++
	}
	for i < len(s) && 0x20 <= s[i] && s[i] <= 0x2F {
		i++
	}
	if i < len(s) && 0x40 <= s[i] && s[i] <= 0x7E {
		i++
	}
	return i
}

// maxControlString bounds how much of an unterminated OSC/DCS string is
// taken as part of it.
const maxControlString = 4096

// stringEnd finds the end of a control string (OSC, DCS, ...): BEL, ESC \
// or the C1 string terminator; unterminated, it runs to the end of the
// line.
func stringEnd(s string, i int) int {
	for j := i; j < len(s) && j-i < maxControlString; j++ {
		switch s[j] {
		case 0x07:
			return j + 1
		case 0x1B:
			if j+1 < len(s) && s[j+1] == '\\' {
				return j + 2
			}
			return j
		case '\n':
			return j
		case 0xC2:
			if j+1 < len(s) && s[j+1] == 0x9C {
				return j + 2
			}
		}
	}
	return min(len(s), i+maxControlString)
}

// An instruction rule matches text addressed to the model. Each match
// begins with one of the rule's start words (or with '<' or '[' for the
// chat-template tokens); the pattern is tried, anchored, only where one of
// them begins a word, on at most instructionWindow bytes of the text, case
// insensitively. That keeps the cost to one pass over the words of the
// text, without copying it.
type instruction struct {
	kind    string
	starts  []string
	pattern string
	weak    bool // reported only if a strong instruction flag is present
	// notBefore lists words that, following the match, show it was about
	// something else ("the AI team").
	notBefore []string
	// imperative requires the start word to begin a sentence or clause,
	// or to follow a word that makes it an order.
	imperative bool

	re *regexp.Regexp
}

const instructionWindow = 256

// Addressees: unambiguous names for a model, and the ambiguous ones
// (a person may be an assistant) that count only in unambiguous framings.
const (
	addressee = `(?:ai|a\.i|llms?|(?:large\s+)?language\s+models?|chat\s*bots?|claude|chatgpt|gpt(?:-?\d[a-z0-9.]*)?|ai\s+(?:assistant|agent|model|system|bot)s?)`
	anyone    = `(?:` + addressee + `|assistant)`
)

var instructionRules = []instruction{
	{kind: "ignore_instructions",
		starts: []string{"ignore", "ignoring", "disregard", "disregarding", "forget", "override", "bypass", "skip"},
		pattern: `(?:ignore|ignoring|disregard|disregarding|forget|override|bypass|skip)\s+(?:(?:the|of|these|those|my)\s+)*(?:all|any|every|previous|prior|above|earlier|preceding|former|original|existing|initial|system|your|developer|safety|other)\s+(?:(?:the|of|previous|prior|above|earlier|preceding|former|original|existing|initial|system|your|developer|safety)\s+){0,3}(?:instructions?|prompts?|directives?|guidelines|guardrails|rules|context)\b` +
			`|(?:ignore|disregard|forget)\s+(?:everything|anything|all)\s+(?:(?:you\s+were\s+told|written|said|stated)\s+)?(?:above|previously|so\s+far|(?:before|prior\s+to)\s+this)\b`},
	{kind: "role_override",
		starts: []string{"you", "enter", "enable", "activate", "switch", "jailbreak", "jailbroken"},
		pattern: `you(?:\s+are|'re|’re)\s+now\s+(?:(?:a|an|the|in|my|no\s+longer)\s+)?(?:[a-z0-9-]+\s+){0,2}?(?:assistant|ai|model|chatbot|persona|dan|jailbroken|unrestricted|unfiltered|uncensored)\b` +
			`|(?:enter|enable|activate|switch\s+to|you\s+are\s+(?:now\s+)?in)\s+(?:the\s+)?(?:developer|god|dan|jailbreak|unrestricted|sudo|debug)\s+mode\b` +
			`|jailbr(?:eak|oken)\b`},
	{kind: "system_prompt",
		starts:  []string{"system", "reveal", "print", "show", "repeat", "output", "leak", "dump", "<", "["},
		pattern: `system\s+prompts?\b|(?:reveal|print|show|repeat|output|leak|dump)\s+your\s+(?:initial\s+|original\s+|hidden\s+)?(?:prompt|instructions)\b|<\|[a-z_]{2,24}\|>|\[/?inst\]|<</?sys>>|</?system>`},
	{kind: "addressed_to_model",
		starts: []string{"notice", "message", "note", "instruction", "instructions", "attention", "warning", "important", "reminder", "memo", "directive", "request", "command", "alert",
			"dear", "hey", "hi", "hello", "attn", "psst", "if", "ai", "assistant", "llm", "chatbot"},
		pattern: `(?:notice|message|note|instructions?|attention|warning|important|reminder|memo|directive|request|command|alert)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?` + addressee + `\b` +
			`|(?:dear|hey|hi|hello|attention|attn|psst)[\s,:]+(?:the\s+)?` + anyone + `\b` +
			`|if\s+you\s+are\s+(?:an?\s+)?(?:` + anyone + `|automated\s+(?:system|agent|assistant)|agent)\b` +
			`|important\b[^.\n]{0,60}?\bto\s+(?:the\s+|any\s+|all\s+)?` + addressee + `\b` +
			`|(?:ai|assistant|llm|chatbot)\s*[:,]\s*(?:you\s+(?:must|should|will|need\s+to|are\s+required\s+to)\s+|please\s+)?(?:ignore|disregard|forget|call|invoke|send|email|forward|do\s+not|don't|never|always|stop|execute|reveal|print|output|respond|reply|say|tell|list|fetch|retrieve|export|delete|transfer|exfiltrate|include|append)\b`,
		notBefore: []string{"team", "teams", "department", "group", "project", "projects", "initiative", "committee", "roadmap", "budget", "vendor", "vendors", "product", "products", "feature", "features", "tool", "tools", "platform", "pilot", "program", "strategy", "policy", "lab", "research", "engineer", "engineers", "unit", "working", "council", "office", "center", "centre", "division", "squad", "guild", "lead", "leads", "manager", "managers"}},
	// Only in the imperative, not in "agents may call search_orders".
	{kind: "tool_directive", imperative: true,
		starts:  []string{"call", "invoke", "execute", "trigger"},
		pattern: "(?:call|invoke|execute|trigger)\\s+(?:the\\s+)?(?:(?:tool|function)\\s+)?[`\"']?[a-z][a-z0-9]*(?:_[a-z0-9]+)+"},
	{kind: "conceal_from_user",
		starts: []string{"do", "don", "dont", "never", "without", "keep", "hide", "user", "human"},
		pattern: `(?:do\s+not|don't|don’t|dont|never|without)\s+(?:tell(?:ing)?|inform(?:ing)?|notify(?:ing)?|mention(?:ing)?|reveal(?:ing)?|disclos(?:e|ing)|alert(?:ing)?|warn(?:ing)?)\s+(?:this\s+|it\s+|anything\s+)?(?:to\s+)?(?:the\s+)?(?:user|human|requester|operator)s?\b` +
			`|(?:keep|hide)\s+(?:this|it|these\s+instructions)\s+(?:secret\s+|hidden\s+)?from\s+(?:the\s+)?(?:user|human)s?\b` +
			`|(?:user|human)\s+(?:must|should)\s+(?:not|never)\s+(?:know|see|be\s+told|find\s+out)\b`},
	{kind: "exfiltration", weak: true,
		starts:  []string{"send", "email", "e", "forward", "post", "upload", "exfiltrate", "leak", "transmit", "copy", "share"},
		pattern: `(?:send|e-?mail|forward|post|upload|exfiltrate|leak|transmit|copy|share)\b[^.\n]{0,80}?\bto\s+(?:[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}|https?://\S+)`},
}

// imperativeWords, before a tool directive, make it an order.
var imperativeWords = []string{"please", "now", "then", "and", "also", "immediately", "silently", "quietly", "first", "must", "should", "always", "never"}

// instructionStarts maps each start word to the rules it may begin.
var instructionStarts = map[string][]int{}

func init() {
	for i := range instructionRules {
		r := &instructionRules[i]
		// Case-insensitive, and any Unicode space where a space may be:
		// "IGNORE\u00a0previous instructions" is still an instruction.
		pat := strings.ReplaceAll(r.pattern, `[\s,:]`, `[\s\pZ,:]`)
		pat = strings.ReplaceAll(pat, `\s`, `[\s\pZ]`)
		pat = strings.ReplaceAll(pat, `[\s\pZ]\pZ,:]`, `[\s\pZ,:]`)
		r.re = regexp.MustCompile(`^(?i:` + pat + `)`)
		for _, w := range r.starts {
			instructionStarts[w] = append(instructionStarts[w], i)
		}
	}
	if len(instructionRules) > 16 {
		panic("guard: more instruction rules than findInstructions tracks")
	}
}

// findInstructions appends flags for instructions addressed to the model
// in clean, with offsets mapped back through removed.
func findInstructions(clean string, removed []removal, flags []Flag) []Flag {
	var (
		weak   []Flag
		strong bool
		ends   [16]int // where each rule's last match ended
		counts [16]int
		buf    [16]byte
	)
	for i := 0; i < len(clean); {
		c := clean[i]
		var word, key string
		switch {
		case c == '<' || c == '[':
			word, key = clean[i:i+1], clean[i:i+1]
		case isAlpha(c):
			j := i + 1
			for j < len(clean) && isAlpha(clean[j]) {
				j++
			}
			word = clean[i:j]
			if (i > 0 && isWordByte(clean[i-1])) || len(word) > len(buf) {
				i = j // inside a word ("x_ignore", "2fa"), or no start word
				continue
			}
			for k := range len(word) {
				buf[k] = word[k] | 0x20 // ASCII letters only: lower case
			}
			key = string(buf[:len(word)]) // not allocated: used only as a map key
		default:
			i++
			continue
		}
		for _, k := range instructionStarts[key] {
			p := &instructionRules[k]
			if i < ends[k] || counts[k] == maxFlagsPerKind || (p.imperative && !imperativeAt(clean, i)) {
				continue
			}
			m := p.re.FindStringIndex(clean[i:min(len(clean), i+instructionWindow)])
			if m == nil || (len(p.notBefore) > 0 && containsFold(p.notBefore, nextWord(clean, i+m[1]))) {
				continue
			}
			ends[k], counts[k] = i+m[1], counts[k]+1
			f := Flag{Kind: p.kind, Offset: origOffset(removed, i)}
			if p.weak {
				weak = append(weak, f)
				continue
			}
			strong = true
			flags = append(flags, f)
		}
		i += len(word)
	}
	if strong {
		flags = append(flags, weak...)
	}
	slices.SortStableFunc(flags, func(a, b Flag) int { return a.Offset - b.Offset })
	return flags
}

func containsFold(words []string, w string) bool {
	for _, x := range words {
		if strings.EqualFold(x, w) {
			return true
		}
	}
	return false
}

// imperativeAt reports whether the word at s[i] is in the imperative:
// first in the text, a sentence or a clause, or after a word such as
// "please" or "then".
func imperativeAt(s string, i int) bool {
	j := i
	for j > 0 && (s[j-1] == ' ' || s[j-1] == '\t') {
		j--
	}
	if j == 0 {
		return true
	}
	switch s[j-1] {
	case '.', '!', '?', ':', ';', ',', '\n', '\r', '"', '(', '-':
		return true
	}
	if j == i {
		return false
	}
	k := j
	for k > 0 && isAlpha(s[k-1]) {
		k--
	}
	return containsFold(imperativeWords, s[k:j])
}

func isWordByte(c byte) bool { return isAlnum(c) || c == '_' }

// nextWord returns the word that follows s[i:], skipping blanks.
func nextWord(s string, i int) string {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	j := i
	for j < len(s) && isAlpha(s[j]) {
		j++
	}
	return s[i:j]
}
