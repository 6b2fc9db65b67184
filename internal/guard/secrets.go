package guard

import (
	"math"
	"regexp"
	"strings"
)

// The secret rules below are derived from gitleaks' default configuration,
// config/gitleaks.toml at v8.30.1 (https://github.com/gitleaks/gitleaks,
// Copyright (c) 2019 Zachary Rice, MIT License; the license text is in the
// NOTICE file beside this one). Each rule names the gitleaks rule ids it
// comes from. The changes, and why:
//
//   - Only rules whose token has a distinctive literal prefix are kept
//     (plus the generic assignment rule, reimplemented by hand below): they
//     are precise, and a rule anchored at its literal keyword is tried only
//     where the keyword occurs, which is what makes a scan cost
//     microseconds.
//   - gitleaks' allowlists are dropped. They suppress documentation
//     examples and repository paths, which matters when scanning source
//     trees; in a tool result an "EXAMPLE" AWS key is still a key-shaped
//     string the model has no need for, and redacting it costs nothing.
//   - Fixed token lengths become minimum lengths where the token runs on,
//     so that a longer token is redacted whole rather than leaving a tail.
//   - Warden's own API keys (wdn_ + 43 base64url characters), URL
//     credentials and Authorization headers are added.
//
// To refresh: diff gitleaks.toml of a newer release against v8.30.1 for
// the rule ids named here, carry over regex changes, and extend the corpus
// in testdata/secrets.txt with a sample of anything new.

// A rule finds one kind of secret. Each of its keywords starts a match
// (case-sensitively); the regular expression is tried only where a keyword
// occurs, anchored there, on at most window bytes (512 unless set). That
// turns a scan of the whole text per rule into one pass over the text for
// all of them. group selects the submatch to redact (0 for the whole
// match), and a candidate whose Shannon entropy is below minEntropy bits
// per byte is not a secret (gitleaks' "entropy" setting).
type rule struct {
	kind       string
	keywords   []string
	pattern    string
	group      int
	minEntropy float64
	window     int

	re       *regexp.Regexp // pattern, anchored
	boundary bool           // pattern starts with \b, checked by hand
}

// end is the right edge of a token: gitleaks' (?:[\x60'"\s;]|\\[nr]|$),
// widened to anything that cannot continue a token. Go's RE2 has no
// lookahead, so rules that use it put the token in group 1.
const end = `(?:[^A-Za-z0-9_\-]|$)`

// secretRules is compiled once, at init; the order breaks ties between
// overlapping matches (the earlier rule names the finding).
var secretRules = []rule{
	// gitleaks: private-key. The second alternative catches a block whose
	// END line was cut off (a truncated result still leaks the key).
	{kind: "private_key", keywords: []string{"-----BEGIN"}, window: 64 << 10,
		pattern: `-----BEGIN[ A-Z0-9_-]*PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END[ A-Z0-9_-]*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s\\:,-]*)`},
	// Warden's own API keys (internal/keys): wdn_ + 32 bytes in base64url.
	{kind: "warden_api_key", keywords: []string{"wdn_"},
		pattern: `\b(wdn_[A-Za-z0-9_-]{43})` + end, group: 1, minEntropy: 3},
	// gitleaks: aws-access-token.
	{kind: "aws_access_key", keywords: []string{"AKIA", "ASIA", "ABIA", "ACCA", "A3T"},
		pattern: `\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b`, minEntropy: 3},
	// gitleaks: github-pat, github-oauth, github-app-token,
	// github-refresh-token, github-fine-grained-pat.
	{kind: "github_token", keywords: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"},
		pattern: `gh[pousr]_[0-9A-Za-z]{36,}|github_pat_\w{82,}`, minEntropy: 3},
	// gitleaks: gitlab-pat, gitlab-pat-routable, gitlab-deploy-token,
	// gitlab-feed-token, gitlab-runner-authentication-token,
	// gitlab-scim-token, gitlab-oauth-app-secret, gitlab-ptt,
	// gitlab-cicd-job-token, gitlab-rrt, gitlab-kubernetes-agent-token,
	// gitlab-incoming-mail-token, gitlab-feature-flag-client-token.
	{kind: "gitlab_token", keywords: []string{"glpat-", "gldt-", "glft-", "glrt-", "glsoat-", "gloas-", "glptt-", "glcbt-", "glagent-", "glimt-", "glffct-", "GR1348941"},
		pattern: `(?:glpat|gldt|glft|glrt|glsoat|gloas|glagent|glimt|glffct)-[0-9A-Za-z_-]{20,}(?:\.[0-9a-z]{2}[0-9a-z]{7})?|glptt-[0-9a-f]{40}|glcbt-[0-9A-Za-z]{1,5}_[0-9A-Za-z_-]{20,}|GR1348941[\w-]{20,}`, minEntropy: 3},
	// gitleaks: slack-bot-token, slack-user-token, slack-app-token,
	// slack-legacy-*, slack-config-access-token, slack-config-refresh-token.
	{kind: "slack_token", keywords: []string{"xox", "xapp-", "XAPP-"},
		pattern: `xox(?:e\.xox[bp]|[abposre])-[0-9A-Za-z-]{10,}|(?i:xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+)`, minEntropy: 2},
	// gitleaks: slack-webhook-url (the scheme in front is left: it is not
	// the secret).
	{kind: "slack_webhook", keywords: []string{"hooks.slack.com"},
		pattern: `hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{20,}`},
	// gitleaks: stripe-access-token; webhook signing secrets added.
	{kind: "stripe_key", keywords: []string{"sk_test_", "sk_live_", "sk_prod_", "rk_test_", "rk_live_", "rk_prod_", "whsec_"},
		pattern: `\b((?:sk|rk)_(?:test|live|prod)_[0-9A-Za-z]{10,}|whsec_[0-9A-Za-z+/=]{24,})` + end, group: 1, minEntropy: 2},
	// gitleaks: gcp-api-key.
	{kind: "google_api_key", keywords: []string{"AIza"},
		pattern: `\b(AIza[\w-]{35})` + end, group: 1, minEntropy: 3.5},
	// gitleaks: jwt (the header and payload of a JWT are base64url JSON, so
	// both start "eyJ"; the signature is empty for alg "none").
	{kind: "jwt", keywords: []string{"eyJ"}, window: 16 << 10,
		pattern: `\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*`, minEntropy: 3},
	// gitleaks: openai-api-key, plus the newer prefixed key forms.
	{kind: "openai_api_key", keywords: []string{"sk-"},
		pattern: `\bsk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})`, minEntropy: 3},
	// gitleaks: anthropic-api-key, anthropic-admin-api-key.
	{kind: "anthropic_api_key", keywords: []string{"sk-ant-"},
		pattern: `\bsk-ant-(?:api03|admin01)-[A-Za-z0-9_-]{80,}`, minEntropy: 3},
	// gitleaks: npm-access-token.
	{kind: "npm_token", keywords: []string{"npm_"},
		pattern: `\b(npm_[A-Za-z0-9]{36})` + end, group: 1, minEntropy: 2},
	// gitleaks: pypi-upload-token.
	{kind: "pypi_token", keywords: []string{"pypi-AgEIcHlwaS5vcmc"}, window: 2048,
		pattern: `pypi-AgEIcHlwaS5vcmc[\w-]{50,}`, minEntropy: 3},
	// gitleaks: sendgrid-api-token.
	{kind: "sendgrid_api_key", keywords: []string{"SG."},
		pattern: `\b(SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})` + end, group: 1, minEntropy: 2},
	// gitleaks: twilio-api-key.
	{kind: "twilio_api_key", keywords: []string{"SK"},
		pattern: `\bSK[0-9a-fA-F]{32}\b`, minEntropy: 3},
	// gitleaks: digitalocean-pat, digitalocean-access-token,
	// digitalocean-refresh-token.
	{kind: "digitalocean_token", keywords: []string{"dop_v1_", "doo_v1_", "dor_v1_"},
		pattern: `\bdo[opr]_v1_[a-f0-9]{64}\b`, minEntropy: 3},
	// gitleaks: huggingface-access-token.
	{kind: "huggingface_token", keywords: []string{"hf_"},
		pattern: `\b(hf_[A-Za-z]{34})` + end, group: 1, minEntropy: 2},
	// gitleaks: shopify-access-token, shopify-custom-access-token,
	// shopify-private-app-access-token, shopify-shared-secret.
	{kind: "shopify_token", keywords: []string{"shpat_", "shpca_", "shppa_", "shpss_"},
		pattern: `shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}`, minEntropy: 2},
	// gitleaks: databricks-api-token.
	{kind: "databricks_token", keywords: []string{"dapi"},
		pattern: `\bdapi[a-f0-9]{32}(?:-\d)?\b`, minEntropy: 3},
	// gitleaks: age-secret-key.
	{kind: "age_secret_key", keywords: []string{"AGE-SECRET-KEY-1"},
		pattern: `AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}`},
	// Not in gitleaks: bearer and basic credentials in HTTP headers, as
	// they appear in logged requests and error messages.
	{kind: "bearer_token", keywords: []string{"Bearer", "bearer", "BEARER"}, window: 16 << 10,
		pattern: `\b(?i:bearer)[ \t]+([A-Za-z0-9._~+/-]{19,}[A-Za-z0-9_~+/-]=*)`, group: 1, minEntropy: 3},
	{kind: "basic_auth", keywords: []string{"Authorization", "authorization", "AUTHORIZATION"},
		pattern: `\b(?i:authorization)["']?\s*[:=]\s*["']?(?i:basic)[ \t]+([A-Za-z0-9+/]{8,}={0,2})`, group: 1},
	// Not in gitleaks as such (it has curl-auth-user): the password in
	// scheme://user:password@host, as in database connection strings.
	{kind: "url_credentials", keywords: []string{"://"},
		pattern: `://[^\s:@/?#"'<>]+:([^\s@/?#"'<>]+)@[A-Za-z0-9\[]`, group: 1},
}

// keywordTable maps the first two bytes of every keyword to the keywords
// that start with them (index+1 into keywordLists; 0 for none), so that
// one pass over the text finds every place a rule may match.
var (
	keywordTable [1 << 16]uint8
	keywordLists [][]keywordRule
)

type keywordRule struct {
	keyword string
	rule    int
}

func init() {
	for i := range secretRules {
		r := &secretRules[i]
		r.re = regexp.MustCompile(`^(?:` + r.pattern + `)`)
		r.boundary = strings.HasPrefix(r.pattern, `\b`)
		if r.window == 0 {
			r.window = 512
		}
		for _, k := range r.keywords {
			key := uint16(k[0])<<8 | uint16(k[1])
			if keywordTable[key] == 0 {
				keywordLists = append(keywordLists, nil)
				keywordTable[key] = uint8(len(keywordLists))
			}
			l := &keywordLists[keywordTable[key]-1]
			*l = append(*l, keywordRule{k, i})
		}
	}
	if len(secretRules) > 64 {
		panic("guard: more secret rules than findSecrets tracks")
	}
}

// findSecrets appends the spans of secrets in s to spans.
func findSecrets(s string, spans []span) []span {
	var ends [64]int // where each rule's last match ended: matches do not overlap
	for i := 0; i+1 < len(s); i++ {
		e := keywordTable[uint16(s[i])<<8|uint16(s[i+1])]
		if e == 0 {
			continue
		}
		for _, kr := range keywordLists[e-1] {
			r := &secretRules[kr.rule]
			if i < ends[kr.rule] || !strings.HasPrefix(s[i:], kr.keyword) || (r.boundary && i > 0 && isWordByte(s[i-1])) {
				continue
			}
			m := r.re.FindStringSubmatchIndex(s[i:min(len(s), i+r.window)])
			if m == nil {
				continue
			}
			start, stop := i+m[2*r.group], i+m[2*r.group+1]
			if m[2*r.group] < 0 || (r.minEntropy > 0 && entropy(s[start:stop]) < r.minEntropy) {
				continue
			}
			ends[kr.rule] = i + m[1]
			spans = append(spans, span{start, stop, r.kind, kr.rule})
		}
	}
	return findAssignments(s, spans)
}

func containsAny(s string, keywords []string) bool {
	for _, k := range keywords {
		if strings.Contains(s, k) {
			return true
		}
	}
	return false
}

// entropy is the Shannon entropy of s in bits per byte.
func entropy(s string) float64 {
	if s == "" {
		return 0
	}
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	n := float64(len(s))
	var h float64
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}

// The generic assignment rule (gitleaks: generic-api-key) finds
// name=value, name: value, "name": "value" and the like where the name
// says the value is a secret and the value looks random. It is written by
// hand rather than as gitleaks' regexp, which has no literal to anchor on
// and costs about as much as all the other rules together.

// secretNames are the endings of a normalised name (lower case, without
// _ - . and spaces) that mark its value as a secret: db_password,
// AWS_SECRET_ACCESS_KEY, clientSecret, x-api-key, refresh_token, ...
var secretNames = [][]byte{
	[]byte("password"), []byte("passwd"), []byte("passphrase"),
	[]byte("secret"), []byte("secretkey"), []byte("privatekey"), []byte("accesskey"),
	[]byte("apikey"), []byte("token"), []byte("credential"), []byte("credentials"),
}

// notSecretNames end in one of secretNames but hold values a model needs:
// pagination cursors are opaque and random-looking, and redacting them
// breaks paging.
var notSecretNames = [][]byte{[]byte("pagetoken"), []byte("nexttoken"), []byte("continuationtoken"), []byte("cursortoken"), []byte("synctoken")}

const (
	maxNameLen  = 64
	maxValueLen = 256
)

// secretName reports whether the name ending just before s[i] (after
// skipping quotes and blanks) marks a secret.
func secretName(s string, i int) bool {
	j := i
	for skipped := 0; j > 0 && skipped < 3 && (s[j-1] == '"' || s[j-1] == '\'' || s[j-1] == ' ' || s[j-1] == '\t'); skipped++ {
		j--
	}
	// Only the end of the name matters: read it backwards, normalised,
	// no further than the longest ending to compare.
	var tail [maxSuffix]byte
	n := 0
	for k := j - 1; k >= 0 && j-k <= maxNameLen && n < len(tail) && isNameByte(s[k]); k-- {
		switch c := s[k]; {
		case c == '_' || c == '-' || c == '.':
		case 'A' <= c && c <= 'Z':
			tail[n] = c + 'a' - 'A'
			n++
		default:
			tail[n] = c
			n++
		}
	}
	return n > 1 && secretEnding[tail[1]][tail[0]] && isSecretTail(tail[:n])
}

// secretEnding[a][b] is true if some name in secretNames ends in the two
// bytes a, b: most names ("id", "email", "created_at") fail this at once.
var secretEnding = func() (t [256][256]bool) {
	for _, x := range secretNames {
		t[x[len(x)-2]][x[len(x)-1]] = true
	}
	return t
}()

// isSecretName reports whether a normalised field name marks a secret.
func isSecretName(name []byte) bool {
	var tail [maxSuffix]byte
	n := 0
	for k := len(name) - 1; k >= 0 && n < len(tail); k-- {
		tail[n] = name[k]
		n++
	}
	return isSecretTail(tail[:n])
}

// isSecretTail reports whether the end of a normalised name, reversed,
// marks a secret.
func isSecretTail(rev []byte) bool {
	for _, x := range notSecretNames {
		if hasReversedSuffix(rev, x) {
			return false
		}
	}
	for _, x := range secretNames {
		if hasReversedSuffix(rev, x) {
			return true
		}
	}
	return false
}

func hasReversedSuffix(rev, suffix []byte) bool {
	if len(rev) < len(suffix) {
		return false
	}
	for i := range suffix {
		if rev[i] != suffix[len(suffix)-1-i] {
			return false
		}
	}
	return true
}

// maxSuffix is the length of the longest name ending compared, in
// notSecretNames ("continuationtoken") and secretNames.
const maxSuffix = 17

// normaliseName appends name to dst lower-cased and without _ - . and
// spaces, the form isSecretName expects.
func normaliseName(dst []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '_' || c == '-' || c == '.' || c == ' ':
		case 'A' <= c && c <= 'Z':
			dst = append(dst, c+'a'-'A')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func isNameByte(c byte) bool {
	return c == '_' || c == '-' || c == '.' || isAlnum(c)
}

// isValueByte reports whether c may be part of an assigned secret value:
// anything printable but blanks, quotes, colons and the punctuation that
// ends a value in JSON, YAML, query strings, shell and SQL.
func isValueByte(c byte) bool {
	if c <= ' ' || c == 0x7f {
		return false
	}
	switch c {
	case '"', '\'', '`', ',', ';', ':', '&', '<', '>', '(', ')', '{', '}', '[', ']', '\\':
		return false
	}
	return true
}

// findAssignments appends the values of secret-named assignments in s.
func findAssignments(s string, spans []span) []span {
	for op := 0; op < len(s); op++ {
		if c := s[op]; (c != '=' && c != ':') || op == 0 || !secretName(s, op) {
			continue
		}
		// Skip the rest of the operator (:=, ==, =>, ::) and what opens
		// the value.
		v := op + 1
		for n := 0; v < len(s) && n < 5 && (s[v] == '=' || s[v] == '>' || s[v] == ':' || s[v] == ' ' || s[v] == '\t' || s[v] == '"' || s[v] == '\'' || s[v] == '`'); n++ {
			v++
		}
		w := v
		for w < len(s) && w-v < maxValueLen && isValueByte(s[w]) {
			w++
		}
		if w-v == maxValueLen && w < len(s) && isValueByte(s[w]) {
			continue // too long to be a credential: a document, not a secret
		}
		for w > v && s[w-1] == '.' {
			w-- // a full stop ends the sentence, not the secret
		}
		if w < len(s) && (s[w] == '(' || s[w] == '{') {
			continue // code: token = getToken(...), token := oauth2.Token{
		}
		if looksRandom(s[v:w]) {
			spans = append(spans, span{v, w, "generic_secret", len(secretRules)})
			op = w
		}
	}
	return spans
}

// qualifiedName reports whether v is identifiers joined by dots, as code
// refers to a field or a type.
func qualifiedName(v string) bool {
	dots := 0
	start := true
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '.':
			if start {
				return false
			}
			dots++
			start = true
		case isAlpha(c) || c == '_':
			start = false
		case isDigit(c):
			if start {
				return false
			}
		default:
			return false
		}
	}
	return dots > 0 && !start
}

// looksRandom reports whether an assigned value looks like a generated
// secret rather than a word, a number, a placeholder or a reference.
func looksRandom(v string) bool {
	if len(v) < 8 {
		return false
	}
	switch v[0] {
	case '$', '%', '<', '*':
		return false // ${VAR}, %VAR%, <redacted>, ****
	}
	var lower, upper, digit, other, punct bool
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case 'a' <= c && c <= 'z':
			lower = true
		case 'A' <= c && c <= 'Z':
			upper = true
		case '0' <= c && c <= '9':
			digit = true
		case c == '_' || c == '.' || c == '-':
			punct = true
		default:
			other = true
		}
	}
	if !digit && !other {
		// Letters joined by _ . - are names, not secrets: os.Getenv,
		// validJWT, DEFAULT_TOKEN (gitleaks allowlists ^[a-zA-Z_.-]+$).
		return false
	}
	if !other && qualifiedName(v) {
		return false // ed25519.PrivateKey, config.v2.token
	}
	other = other || punct
	classes := 0
	for _, b := range []bool{lower, upper, digit, other} {
		if b {
			classes++
		}
	}
	if classes < 2 {
		return false
	}
	// A random string of n bytes over a 60-odd letter alphabet has entropy
	// close to log2(n) when n is small; ask for most of that, capped at
	// gitleaks' 3.5 bits for long values.
	return entropy(v) >= math.Min(3.5, 0.85*math.Log2(float64(len(v))))
}
