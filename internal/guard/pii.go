package guard

import (
	"regexp"
	"strings"
)

// The PII detectors are hand-written scanners rather than regular
// expressions: each finds candidates in one pass over the bytes, and a
// candidate must then pass the checks that real identifiers pass (Luhn for
// cards, the SSA's allocation rules for SSNs, the IBAN registry's lengths
// and mod-97 for IBANs). That is what keeps order numbers, timestamps and
// product codes intact.

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isAlpha(c byte) bool { return isUpper(c) || ('a' <= c && c <= 'z') }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

// digitGroup is a run of digits in a card-number candidate.
type digitGroup struct {
	start, end int  // byte offsets of the digits
	sep        byte // the separator before the group, 0 for the first
}

// findCards appends the spans of payment card numbers in s: 13 to 19
// digits, optionally in groups separated by single spaces or dashes, with
// a known issuer prefix and a valid Luhn check digit.
func findCards(s string, spans []span) []span {
	var groups [24]digitGroup
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		// A run that continues a word, a decimal or a dotted/dashed number
		// (a version, a date, an IP address) is not a card.
		if i > 0 && (isAlpha(s[i-1]) || s[i-1] == '_' ||
			(i > 1 && (s[i-1] == '.' || s[i-1] == '-' || s[i-1] == '/' || s[i-1] == ':' || s[i-1] == ',') && isDigit(s[i-2]))) {
			i = skipDigits(s, i)
			continue
		}
		n := 0
		j := i
		for n < len(groups) {
			k := skipDigits(s, j)
			groups[n] = digitGroup{start: j, end: k}
			if n > 0 {
				groups[n].sep = s[j-1]
			}
			n++
			if k+1 < len(s) && (s[k] == ' ' || s[k] == '-') && isDigit(s[k+1]) {
				j = k + 1
				continue
			}
			j = k
			break
		}
		// The number must not run on into letters or another number.
		if j < len(s) && (isAlpha(s[j]) || s[j] == '_' ||
			(j+1 < len(s) && (s[j] == '.' || s[j] == ',') && isDigit(s[j+1]))) {
			// Keep only whole leading groups that end before the run does.
			n--
		}
		spans = cardInGroups(s, groups[:n], spans)
		i = j
		if i < len(s) && isDigit(s[i]) {
			i = skipDigits(s, i)
		}
	}
	return spans
}

func skipDigits(s string, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// cardInGroups finds card numbers among consecutive digit groups: the
// longest valid run of whole groups, earliest first.
func cardInGroups(s string, g []digitGroup, spans []span) []span {
	for a := 0; a < len(g); a++ {
		for b := len(g); b > a; b-- {
			if isCard(s, g[a:b]) {
				spans = append(spans, span{g[a].start, g[b-1].end, "card_number", len(secretRules) + 1})
				a = b - 1
				break
			}
		}
	}
	return spans
}

// isCard checks the grouping, the length, the issuer prefix and the Luhn
// digit of a candidate.
func isCard(s string, g []digitGroup) bool {
	var digits [19]byte
	n := 0
	for i, x := range g {
		if i > 1 && x.sep != g[1].sep {
			return false // mixed separators
		}
		if n+x.end-x.start > len(digits) {
			return false
		}
		n += copy(digits[n:], s[x.start:x.end])
	}
	if n < 13 {
		return false
	}
	if len(g) == 1 {
		// Bare digits are taken only at the common lengths. 13 digits
		// starting with 4 would be a Visa of a kind no longer issued, and
		// are far more often an EAN-13 barcode; 17 to 19 digits are far
		// more often 64-bit identifiers and timestamps than the rare long
		// cards, except UnionPay's (62), which are common.
		if n == 13 || (n > 16 && (digits[0] != '6' || digits[1] != '2')) {
			return false
		}
	} else if !cardGrouping(g) {
		return false
	}
	return issuer(digits[:n]) && luhn(digits[:n])
}

// cardGrouping accepts the ways cards are printed: fours with a shorter
// last group (4-4-4-4, 4-4-4-4-3, 4-4-4-1), and 4-6-5 or 4-6-4 (American
// Express, Diners Club).
func cardGrouping(g []digitGroup) bool {
	size := func(i int) int { return g[i].end - g[i].start }
	if len(g) == 3 && size(0) == 4 && size(1) == 6 && (size(2) == 5 || size(2) == 4) {
		return true
	}
	if len(g) < 4 {
		return false
	}
	for i := 0; i < len(g)-1; i++ {
		if size(i) != 4 {
			return false
		}
	}
	last := size(len(g) - 1)
	return 1 <= last && last <= 4
}

// issuer checks the issuer identification number against the length:
// Visa 4 (13, 16, 19), Mastercard 51-55 and 2221-2720 (16), American
// Express 34, 37 (15), Diners Club 30, 36, 38, 39 (14-19), JCB 35
// (16-19), Discover 6011, 644-649, 65 and UnionPay 62 (16-19).
func issuer(d []byte) bool {
	n := len(d)
	two := int(d[0]-'0')*10 + int(d[1]-'0')
	three := two*10 + int(d[2]-'0')
	four := three*10 + int(d[3]-'0')
	switch {
	case d[0] == '4':
		return n == 13 || n == 16 || n == 19
	case 51 <= two && two <= 55, 2221 <= four && four <= 2720:
		return n == 16
	case two == 34 || two == 37:
		return n == 15
	case two == 30 || two == 36 || two == 38 || two == 39:
		return n >= 14
	case two == 35, two == 62, two == 65, four == 6011, 644 <= three && three <= 649:
		return n >= 16
	}
	return false
}

// luhn reports whether the last digit of d is its Luhn check digit.
func luhn(d []byte) bool {
	sum := 0
	for i := len(d) - 1; i >= 0; i-- {
		x := int(d[i] - '0')
		if (len(d)-1-i)%2 == 1 {
			x *= 2
			if x > 9 {
				x -= 9
			}
		}
		sum += x
	}
	return sum%10 == 0
}

// findSSNs appends US Social Security numbers written ddd-dd-dddd, and
// those written without dashes or with spaces where a label says what they
// are ("SSN: 219099999"). The SSA never issues area 000, 666 or 900-999,
// group 00 or serial 0000.
func findSSNs(s string, spans []span) []span {
	for i := 0; i+11 <= len(s); {
		k := strings.IndexByte(s[i:], '-')
		if k < 0 {
			break
		}
		d := i + k // the first dash: ddd-dd-dddd has it at offset 3
		i = d + 1
		a := d - 3
		if a < 0 || a+11 > len(s) || s[a+6] != '-' {
			continue
		}
		if (a > 0 && (isAlnum(s[a-1]) || s[a-1] == '-' || s[a-1] == '.')) ||
			(a+11 < len(s) && (isAlnum(s[a+11]) || ((s[a+11] == '-' || s[a+11] == '.') && a+12 < len(s) && isDigit(s[a+12])))) {
			continue
		}
		if validSSN(s[a:a+3], s[a+4:a+6], s[a+7:a+11]) {
			spans = append(spans, span{a, a + 11, "us_ssn", len(secretRules) + 1})
			i = a + 11
		}
	}
	if containsAny(s, ssnLabels) {
		for _, m := range labelledSSN.FindAllStringSubmatchIndex(s, -1) {
			var d []byte
			for _, c := range []byte(s[m[2]:m[3]]) {
				if isDigit(c) {
					d = append(d, c)
				}
			}
			if len(d) == 9 && validSSN(string(d[:3]), string(d[3:5]), string(d[5:])) {
				spans = append(spans, span{m[2], m[3], "us_ssn", len(secretRules) + 1})
			}
		}
	}
	return spans
}

var (
	ssnLabels   = []string{"SSN", "ssn", "Ssn", "ocial", "OCIAL"}
	labelledSSN = regexp.MustCompile(`(?i:\bssn|social[ \t]+security(?:[ \t]+(?:number|no\.?|#))?)[ \t]*(?:#|no\.?)?[ \t]*[:=]?[ \t]*["']?(\d{3}[ -]?\d{2}[ -]?\d{4})\b`)
)

func validSSN(area, group, serial string) bool {
	for _, p := range [...]string{area, group, serial} {
		for i := 0; i < len(p); i++ {
			if !isDigit(p[i]) {
				return false
			}
		}
	}
	return area != "000" && area != "666" && area[0] != '9' && group != "00" && serial != "0000"
}

// ibanLengths is the length of an IBAN per country, from the SWIFT IBAN
// registry (release 99, 2024), including the countries that use IBANs
// through a partner system.
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
	"BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
	"DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
	"GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
	"IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
	"LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
	"MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
	"PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
	"SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

// findIBANs appends International Bank Account Numbers, written compactly
// or in groups of four separated by single spaces, whose length matches
// their country and whose check digits pass ISO 7064 mod 97-10.
func findIBANs(s string, spans []span) []span {
	for i := 0; i+15 <= len(s); i++ {
		if !isUpper(s[i]) || !isUpper(s[i+1]) || !isDigit(s[i+2]) || !isDigit(s[i+3]) || (i > 0 && isAlnum(s[i-1])) {
			continue
		}
		want := ibanLengths[s[i:i+2]]
		if want == 0 {
			continue
		}
		var buf [34]byte
		n, j := 0, i
		for n < want && j < len(s) {
			c := s[j]
			switch {
			case isDigit(c) || isUpper(c):
				buf[n] = c
				n++
				j++
				continue
			case c == ' ' && n%4 == 0 && j+1 < len(s) && (isDigit(s[j+1]) || isUpper(s[j+1])):
				j++
				continue
			}
			break
		}
		if n != want || (j < len(s) && isAlnum(s[j])) {
			continue
		}
		if mod97(buf[:n]) == 1 {
			spans = append(spans, span{i, j, "iban", len(secretRules) + 1})
			i = j - 1
		}
	}
	return spans
}

// mod97 computes the IBAN check: the first four characters moved to the
// end, letters as 10-35, the whole taken as a number modulo 97.
func mod97(iban []byte) int {
	r := 0
	for k := range iban {
		c := iban[(k+4)%len(iban)]
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	return r
}

// findEmails appends email addresses: a local part, @, and a domain of at
// least two labels whose last is two or more letters.
func findEmails(s string, spans []span) []span {
	for i := 0; i < len(s); {
		k := strings.IndexByte(s[i:], '@')
		if k < 0 {
			break
		}
		at := i + k
		i = at + 1
		a := at
		for a > 0 && at-a < 64 && isLocalByte(s[a-1]) {
			a--
		}
		for a < at && s[a] == '.' {
			a++
		}
		if a == at {
			continue
		}
		// The domain: labels of letters, digits and inner hyphens.
		b, lastDot, labels := at+1, -1, 0
		for b < len(s) {
			l := b
			for b < len(s) && (isAlnum(s[b]) || s[b] == '-') {
				b++
			}
			if b == l {
				break
			}
			labels++
			if b+1 < len(s) && s[b] == '.' && isAlnum(s[b+1]) {
				lastDot = b
				b++
				continue
			}
			break
		}
		if labels < 2 || b-lastDot-1 < 2 {
			continue
		}
		tld := s[lastDot+1 : b]
		alpha := true
		for j := 0; j < len(tld); j++ {
			alpha = alpha && isAlpha(tld[j])
		}
		if !alpha {
			continue
		}
		spans = append(spans, span{a, b, "email", len(secretRules) + 1})
		i = b
	}
	return spans
}

func isLocalByte(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

// findPhones appends phone numbers in international form: + and a country
// code, then 8 to 15 digits in all, optionally grouped by single spaces,
// dashes or dots, with at most one parenthesised group ("+44 (0)20 7946
// 0958"). Without a leading + a number is too easily an order number,
// so North American numbers are taken only as "(212) 555-0101".
func findPhones(s string, spans []span) []span {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '+':
			if i+1 >= len(s) || s[i+1] < '1' || s[i+1] > '9' || (i > 0 && (isAlnum(s[i-1]) || s[i-1] == '+')) {
				continue
			}
			if j, ok := phoneDigits(s, i+1); ok {
				spans = append(spans, span{i, j, "phone", len(secretRules) + 1})
				i = j - 1
			}
		case '(':
			// (ddd) ddd-dddd
			if i+14 <= len(s) && (i == 0 || !isAlnum(s[i-1])) && allDigits(s[i+1:i+4]) && s[i+4] == ')' && s[i+5] == ' ' &&
				allDigits(s[i+6:i+9]) && s[i+9] == '-' && allDigits(s[i+10:i+14]) && (i+14 == len(s) || !isAlnum(s[i+14])) &&
				s[i+1] >= '2' && s[i+6] >= '2' {
				spans = append(spans, span{i, i + 14, "phone", len(secretRules) + 1})
				i += 13
			}
		}
	}
	return spans
}

// phoneDigits reads the digits of an international number from s[i] and
// returns where it ends.
func phoneDigits(s string, i int) (int, bool) {
	digits, parens := 0, 0
	j := i
	for j < len(s) {
		switch c := s[j]; {
		case isDigit(c):
			digits++
			j++
			continue
		case (c == ' ' || c == '-' || c == '.') && j+1 < len(s) && (isDigit(s[j+1]) || s[j+1] == '('):
			j++
			continue
		case c == '(' && parens == 0 && j+2 < len(s) && isDigit(s[j+1]):
			k := j + 1
			for k < len(s) && k-j <= 5 && isDigit(s[k]) {
				k++
			}
			if k < len(s) && s[k] == ')' {
				parens++
				digits += k - j - 1
				j = k + 1
				if j < len(s) && s[j] == ' ' && j+1 < len(s) && isDigit(s[j+1]) {
					j++
				}
				continue
			}
		}
		break
	}
	if digits < 8 || digits > 15 || (j < len(s) && (isAlnum(s[j]) || s[j] == '_')) {
		return 0, false
	}
	return j, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}
