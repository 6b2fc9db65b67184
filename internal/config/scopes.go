package config

import "slices"

// Scopes returns every scope the configuration's targets require, sorted,
// for the protected resource metadata.
func (c *Config) Scopes() []string {
	var out []string
	add := func(s string) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, t := range c.Tools {
		add(t.Scope)
	}
	for _, r := range c.Resources {
		add(r.Scope)
	}
	for _, p := range c.Prompts {
		add(p.Scope)
	}
	slices.Sort(out)
	return out
}
