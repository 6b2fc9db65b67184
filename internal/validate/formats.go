package validate

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"time"
)

// Formats lists the values of the JSON Schema "format" keyword that Warden
// enforces. A configuration naming any other format is refused at load time,
// because an unenforced format would be a silent gap in validation.
var Formats = map[string]func(string) error{
	"date":      layout(time.DateOnly),
	"date-time": layout(time.RFC3339),
	"time":      layout("15:04:05Z07:00"),
	"email": func(s string) error {
		a, err := mail.ParseAddress(s)
		if err != nil || a.Address != s || a.Name != "" {
			return fmt.Errorf("is not a plain email address")
		}
		return nil
	},
	"uuid": func(s string) error {
		if !uuidRE.MatchString(s) {
			return fmt.Errorf("is not a UUID")
		}
		return nil
	},
	"uri": func(s string) error {
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" {
			return fmt.Errorf("is not an absolute URI")
		}
		return nil
	},
	"ipv4": func(s string) error {
		if ip := net.ParseIP(s); ip == nil || ip.To4() == nil {
			return fmt.Errorf("is not an IPv4 address")
		}
		return nil
	},
	"ipv6": func(s string) error {
		if ip := net.ParseIP(s); ip == nil || ip.To4() != nil {
			return fmt.Errorf("is not an IPv6 address")
		}
		return nil
	},
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func layout(l string) func(string) error {
	return func(s string) error {
		if _, err := time.Parse(l, s); err != nil {
			return fmt.Errorf("is not a valid %s value (want the form %s)", l, l)
		}
		return nil
	}
}

func checkFormat(format, s string) error {
	check, ok := Formats[format]
	if !ok {
		return fmt.Errorf("unsupported format %q", format)
	}
	return check(s)
}
