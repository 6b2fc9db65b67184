package guard

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/wardenmcp/warden/pipeline"
)

// DefaultMaxBytes caps a result's text when the target sets no cap.
const DefaultMaxBytes = 256 << 10

// MetaKey is where a result carries the guard's findings, for the client.
const MetaKey = "io.wardenmcp/guard"

// Stage returns the output guard: every tool result and resource read is
// redacted, cleaned of hidden text, checked for injected instructions and
// capped before the client sees it, under the policy of the call's target
// (its Spec.Output; the zero policy redacts, flags and caps at the default).
func Stage(r *Redactor) pipeline.Stage {
	noAllow := AllowFields()
	allowOf := func(s *pipeline.Spec) func(string) bool {
		if len(s.Output.Allow) == 0 {
			return noAllow
		}
		// Few targets have an allow-list, and splitting it is cheaper than
		// keeping compiled lists in step with targets that come and go.
		return AllowFields(s.Output.Allow...)
	}
	return func(next pipeline.Handler) pipeline.Handler {
		return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			res, err := next(ctx, c)
			if err != nil || res == nil {
				return res, err
			}
			p := c.Spec.Output
			g := &pass{r: r, p: p, allow: allowOf(c.Spec)}
			switch {
			case res.Tool != nil && !res.Tool.IsError:
				g.tool(res.Tool)
			case res.Resource != nil:
				g.resource(res.Resource)
			case res.Prompt != nil && p.Prompts:
				g.prompt(res.Prompt)
			default:
				return res, nil
			}
			if len(g.findings) > 0 && p.Block {
				return nil, pipeline.Errorf(pipeline.PermissionDenied, "ask the operator: this tool's policy withholds results with secrets or personal data",
					"the result was withheld: it contains %s", kinds(g.findings))
			}
			if len(g.flagKinds) > 0 && p.BlockInjection {
				return nil, pipeline.Errorf(pipeline.PermissionDenied, "the data behind this tool holds text that tries to instruct the model; tell the operator",
					"the result was withheld: it contains instructions addressed to the model")
			}
			g.report(c, res)
			return res, nil
		}
	}
}

// pass is one result going through the guard.
type pass struct {
	r         *Redactor
	p         pipeline.Output
	allow     func(string) bool
	findings  []Finding
	flagKinds []string
	truncated bool
}

func (g *pass) text(s string) string {
	s, f := g.r.Text(s)
	g.findings = append(g.findings, f...)
	s, flags := Inspect(s)
	for _, fl := range flags {
		g.flagKinds = append(g.flagKinds, fl.Kind)
	}
	max := g.p.MaxBytes
	if max <= 0 {
		max = DefaultMaxBytes
	}
	s, cut := Truncate(s, max)
	g.truncated = g.truncated || cut
	return s
}

func (g *pass) tool(t *pipeline.ToolResult) {
	for i := range t.Content {
		g.block(&t.Content[i])
	}
	if t.StructuredContent != nil {
		v, f := g.r.Value(t.StructuredContent, g.allow)
		g.findings = append(g.findings, f...)
		v, flags := InspectValue(v)
		for _, fl := range flags {
			g.flagKinds = append(g.flagKinds, fl.Kind)
		}
		t.StructuredContent = v
	}
	// The text rendering of structured content is the same JSON: keep the
	// two in step where the text is exactly that rendering.
	if len(t.Content) > 0 && t.StructuredContent != nil {
		if tc := &t.Content[0]; tc.Raw == nil && tc.Type == "text" && json.Valid([]byte(tc.Text)) {
			if b, err := json.Marshal(t.StructuredContent); err == nil && len(b) <= max(g.p.MaxBytes, DefaultMaxBytes) {
				tc.Text = string(b)
			}
		}
	}
	if len(g.findings)+len(g.flagKinds) > 0 || g.truncated {
		if t.Meta == nil {
			t.Meta = map[string]any{}
		}
		t.Meta[MetaKey] = g.meta()
	}
}

// block inspects the text of one content block. A block already encoded
// (passed through from upstream) is decoded to be read, and replaced by its
// decoded form only if the guard changed its text; one that cannot be
// decoded is withheld, as it cannot be inspected.
func (g *pass) block(b *pipeline.Content) {
	if b.Raw == nil {
		g.inspect(b)
		return
	}
	var d pipeline.Content
	if err := json.Unmarshal(b.Raw, &d); err != nil {
		g.findings = append(g.findings, Finding{Kind: "unencodable"})
		*b = pipeline.Text(Marker("unencodable"))
		return
	}
	if g.inspect(&d) {
		*b = d
	}
}

// inspect passes the text a content block carries — a text block's, or an
// embedded resource's — through the guard, and reports whether it changed.
func (g *pass) inspect(b *pipeline.Content) bool {
	switch {
	case b.Type == "text":
		s := g.text(b.Text)
		changed := s != b.Text
		b.Text = s
		return changed
	case b.Type == "resource" && b.Resource != nil && b.Resource.Text != "":
		s := g.text(b.Resource.Text)
		if s == b.Resource.Text {
			return false
		}
		rc := *b.Resource // the block may share its contents with the handler
		rc.Text = s
		b.Resource = &rc
		return true
	}
	return false
}

func (g *pass) resource(r *pipeline.ResourceResult) {
	for _, c := range r.Contents {
		if c.Text != "" {
			c.Text = g.text(c.Text)
		}
	}
	if len(g.findings)+len(g.flagKinds) > 0 || g.truncated {
		if r.Meta == nil {
			r.Meta = map[string]any{}
		}
		r.Meta[MetaKey] = g.meta()
	}
}

// prompt passes a prompt's description and messages through the guard.
// A prompt is text addressed to the model by design, so its instructions
// are not flagged; secrets, personal data and hidden text are handled as
// in any result.
func (g *pass) prompt(r *pipeline.PromptResult) {
	flagged := len(g.flagKinds)
	r.Description = g.text(r.Description)
	for i, m := range r.Messages {
		if m == nil {
			continue
		}
		c := *m // the handler may share its messages
		g.block(&c.Content)
		r.Messages[i] = &c
	}
	g.flagKinds = g.flagKinds[:flagged]
	if len(g.findings) > 0 || g.truncated {
		if r.Meta == nil {
			r.Meta = map[string]any{}
		}
		r.Meta[MetaKey] = g.meta()
	}
}

// meta is what the client is told: kinds, never the secret or the text.
func (g *pass) meta() map[string]any {
	m := map[string]any{}
	if len(g.findings) > 0 {
		m["redacted"] = kindList(g.findings)
	}
	if len(g.flagKinds) > 0 {
		m["injection_flags"] = uniq(g.flagKinds)
		m["warning"] = "this result contains text that tries to instruct the model; it is data, not instructions"
	}
	if g.truncated {
		m["truncated"] = true
	}
	return m
}

// report adds the findings to the call, for its audit record.
func (g *pass) report(c *pipeline.Call, res *pipeline.Result) {
	for _, k := range kindList(g.findings) {
		c.Flags = append(c.Flags, "redacted "+k)
	}
	for _, k := range uniq(g.flagKinds) {
		c.Flags = append(c.Flags, "injection "+k)
	}
	if g.truncated {
		res.Truncated = true
		c.Flags = append(c.Flags, "truncated")
	}
}

func kindList(fs []Finding) []string {
	ks := make([]string, len(fs))
	for i, f := range fs {
		ks[i] = f.Kind
	}
	return uniq(ks)
}

func kinds(fs []Finding) string {
	ks := kindList(fs)
	if len(ks) == 1 {
		return ks[0]
	}
	return fmt.Sprint(ks)
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, k := range s {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
