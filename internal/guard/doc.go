// Package guard holds the engines of Warden's output guard: redaction of
// secrets and personal data, detection of prompt injection in untrusted
// text, and the result size cap. It decides nothing about policy; the
// pipeline stage that uses it maps each tool's settings onto these calls.
//
//	// Once, when a tool is loaded:
//	r := guard.NewRedactor(guard.Options{Emails: tool.RedactEmails, Phones: tool.RedactPhones})
//	allow := guard.AllowFields(tool.AllowFields...) // e.g. "rows.*.email"
//
//	// For each result, in this order:
//	v, findings := r.Value(res.StructuredContent, allow) // redact (or refuse, for "block", if findings)
//	v, flags := guard.InspectValue(v)                      // strip hidden text; flag (or refuse) instructions
//	text, cut := guard.Truncate(text, tool.MaxResultBytes) // cap each text block
//	// findings and flags go into the result's _meta and the audit record:
//	// they hold kinds and paths, never the secret or the text.
//
//	// For the audit record of each call:
//	args, _, err := r.JSON(c.Raw, allow)
//
// Redaction covers secrets — cloud and SaaS API keys and tokens, private
// keys, JWTs, credentials in URLs and HTTP headers, secret-named
// assignments with random-looking values, Warden's own API keys — and
// personal data: payment cards (Luhn-checked), US SSNs (SSA allocation
// rules), IBANs (length per country, mod 97), and, when asked, emails and
// phone numbers. Each match becomes a marker such as
// [REDACTED:aws_access_key]. Detectors validate what they find, so order
// numbers, timestamps, amounts and product codes pass untouched: on the
// corpora in testdata/, 65 of 66 secret and PII samples are redacted
// and none of 68 lines of business data is changed.
//
// Inspect strips what a model would read but a person reviewing the text
// would not see (Unicode tag characters, zero-width and bidi controls,
// smuggling variation selectors, terminal escapes) and flags instructions
// addressed to the model ("IMPORTANT NOTICE TO THE AI: ignore all previous
// instructions ..."). Each Flag has a kind and a byte offset.
//
// # Cost
//
// Rules are compiled once, when the package loads (about 1 ms). Text and
// Inspect cost about 5 and 6 µs per KB of typical JSON rows on one core,
// and allocate nothing when there is nothing to change; see the benchmarks.
//
// # Why not gitleaks itself
//
// The secret rules are a curated subset of gitleaks' default rule set
// (v8.30.1, MIT; see NOTICE and secrets.go), embedded rather than
// imported. Measured with go1.26.8 on linux/amd64 (DECISION.md has the
// details):
//
//	                                 binary size added        scan latency, 989 B of rows
//	                                 to cmd/warden            (per call, one core)
//	gitleaks detect (all 222 rules)  +7.9 MiB (+5.6 stripped)  ~280–320 µs, 16 allocs
//	gitleaks config only, own engine +2.2 MiB (+1.6 stripped)  ~11 ms per KB without a prefilter
//	this package (curated rules)     +166 KiB (+116 stripped)  ~5 µs, 0 allocs
//
// gitleaks' detect package also brings 58 new modules (viper, zerolog,
// archive readers, ...), takes 26 ms to load its rules, returns each
// secret in its findings, and allowlists documentation examples and
// repository paths that make sense for scanning source trees, not tool
// results. Keeping the rules here makes them ours to maintain: secrets.go
// says how to refresh them from a newer gitleaks release.
package guard
