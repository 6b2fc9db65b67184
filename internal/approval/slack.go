package approval

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Slack's limits on the text of blocks, in characters: beyond them Slack
// refuses the whole message, so longer text is cut short.
const (
	slackHeaderMax  = 150
	slackFieldMax   = 2000
	slackSectionMax = 3000
	slackFallback   = 300 // the notification line; Slack's limit is higher
)

// slackMessage is an incoming-webhook payload.
type slackMessage struct {
	Text        string       `json:"text"` // shown in notifications, and where blocks cannot be
	Blocks      []slackBlock `json:"blocks"`
	UnfurlLinks bool         `json:"unfurl_links"`
	UnfurlMedia bool         `json:"unfurl_media"`
}

type slackBlock struct {
	Type     string       `json:"type"`
	Text     *slackText   `json:"text,omitempty"`
	Fields   []*slackText `json:"fields,omitempty"`
	Elements []*slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
	// Verbatim: Slack turns no bare URL, channel name or mention in the
	// text into a link.
	Verbatim bool `json:"verbatim,omitempty"`
}

func mrkdwn(text string) *slackText {
	return &slackText{Type: "mrkdwn", Text: text, Verbatim: true}
}

// slackPayload announces r in a Slack message. Every piece of r goes
// through slackEscape, since the summary, arguments and dry run come from
// the caller: escaped, they cannot form a link, a mention (<!channel>) or
// a date, only text.
func slackPayload(r *Request) ([]byte, error) {
	requester := r.Principal
	if r.Tenant != "" {
		requester += " (" + r.Tenant + ")"
	}
	tool := r.Tool
	if r.ToolVersion != "" {
		tool += " v" + r.ToolVersion
	}
	tier := r.Risk
	if tier == "" {
		tier = "not set"
	}
	if r.Policy != "" {
		tier += " (" + r.Policy + ")"
	}
	group := "GROUP"
	if len(r.Groups) == 1 {
		group = r.Groups[0]
	}
	expires := r.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC")
	field := func(name, value string) *slackText {
		return mrkdwn("*" + name + "*\n" + slackEscape(value, slackFieldMax-len(name)-3))
	}
	blocks := []slackBlock{
		{Type: "header", Text: &slackText{Type: "plain_text", Text: slackEscape("Approval requested: "+r.Tool, slackHeaderMax)}},
		{Type: "section", Fields: []*slackText{
			field("Requester", requester),
			field("Tool", tool),
			field("Tier", tier),
			field("Needed", fmt.Sprintf("%d from %s", r.Needed, strings.Join(r.Groups, " or "))),
			// The date is Slack's own control sequence, which shows it in
			// the reader's time zone; the fallback is UTC.
			mrkdwn(fmt.Sprintf("*Expires*\n<!date^%d^{date_short_pretty} {time}|%s>", r.ExpiresAt.Unix(), expires)),
		}},
		{Type: "section", Text: mrkdwn("*Summary*\n" + slackEscape(r.Summary, slackSectionMax-len("*Summary*\n")))},
	}
	if len(r.DryRun) > 0 {
		const head, tail = "*Dry run*\n```", "```"
		blocks = append(blocks, slackBlock{Type: "section", Text: mrkdwn(head + slackEscape(string(r.DryRun), slackSectionMax-len(head)-len(tail)) + tail)})
	}
	cmd := fmt.Sprintf("warden approvals approve %s --as YOU --groups %s", r.ID, group)
	blocks = append(blocks, slackBlock{Type: "context", Elements: []*slackText{
		mrkdwn(slackEscape("Approval id "+r.ID+" · to approve:", slackFieldMax) + " `" + slackEscape(cmd, slackFieldMax) + "`"),
	}})
	return json.Marshal(slackMessage{
		Text:   slackEscape(fmt.Sprintf("Approval requested: %s by %s: %s", tool, requester, r.Summary), slackFallback),
		Blocks: blocks,
	})
}

// slackEscape escapes s as Slack asks (&, < and > as &amp;, &lt; and
// &gt;), cut short with an ellipsis so that the result has at most limit
// characters, entities counted whole.
func slackEscape(s string, limit int) string {
	var b strings.Builder
	n := 0
	for i, c := range s {
		e := string(c)
		switch c {
		case '&':
			e = "&amp;"
		case '<':
			e = "&lt;"
		case '>':
			e = "&gt;"
		}
		// Keep room for the ellipsis, unless c is the last character.
		room := limit - 1
		if _, size := utf8.DecodeRuneInString(s[i:]); i+size == len(s) {
			room = limit
		}
		if n+utf8.RuneCountInString(e) > room {
			b.WriteString("…")
			break
		}
		b.WriteString(e)
		n += utf8.RuneCountInString(e)
	}
	return b.String()
}
