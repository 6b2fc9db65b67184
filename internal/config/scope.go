package config

import (
	"errors"
	"fmt"
	"strings"
)

// ValidScope reports whether scope may be required or granted, by the same
// rule the configuration's scopes follow: an exact name, no wildcards.
func ValidScope(scope string) error {
	switch {
	case scope == "":
		return errors.New("empty scope: name the exact scope (no scope, no call)")
	case strings.Contains(scope, "*"):
		return fmt.Errorf("scope %q: wildcards are not allowed: name the exact scope", scope)
	case !scopeName.MatchString(scope):
		return fmt.Errorf("%q is not a scope name (letters, digits and . : / _ -)", scope)
	}
	return nil
}
