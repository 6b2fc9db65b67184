package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go"

	"github.com/wardenmcp/warden/pipeline"
)

// The entity model; see the package comment.
const (
	principalType cedar.EntityType = "Warden::Principal"
	groupType     cedar.EntityType = "Warden::Group"
	actionType    cedar.EntityType = "Warden::Action"
	toolType      cedar.EntityType = "Warden::Tool"
	resourceType  cedar.EntityType = "Warden::Resource"
	promptType    cedar.EntityType = "Warden::Prompt"
)

var (
	callTool     = cedar.NewEntityUID(actionType, "call_tool")
	readResource = cedar.NewEntityUID(actionType, "read_resource")
	getPrompt    = cedar.NewEntityUID(actionType, "get_prompt")
)

// fields is a set of the names of context fields and principal
// attributes.
type fields uint8

const (
	argumentsField  fields = 1 << iota // context.arguments
	timeField                          // context.time
	clientField                        // context.client
	tenantField                        // context.tenant, principal.tenant
	scopesField                        // principal.scopes
	authMethodField                    // principal.auth_method
)

var fieldNames = [...]string{"arguments", "time", "client", "tenant", "scopes", "auth_method"}

// mentions returns the fields whose names appear in p. A policy can only
// observe a field it names (`context.f`, `context["f"]`, `context has f`,
// or a record literal compared with the whole context, which spells every
// field; an entity's attributes cannot be compared whole), so leaving the
// others out changes no decision. The policy's canonical text is searched,
// not its source, so that escapes in string literals
// (`context["argu\u{6d}ents"]`) cannot hide a name.
func mentions(p *cedar.Policy) fields {
	text := string(p.MarshalCedar())
	var f fields
	for i, name := range fieldNames {
		if strings.Contains(text, name) {
			f |= 1 << i
		}
	}
	return f
}

// target is what is fixed per target: its action and resource entity.
type target struct {
	action   cedar.EntityUID
	resource cedar.Entity
}

// target returns the action and resource entity of spec, built on first use
// and cached: a Spec is fixed at load time and shared by every call. The
// cache lives as long as c; a configuration reload that builds new Specs
// is expected to load the policies anew too.
func (c *Cedar) target(spec *pipeline.Spec) (*target, error) {
	if t, ok := c.resources.Load(spec); ok {
		return t.(*target), nil
	}
	t := &target{}
	var typ cedar.EntityType
	switch spec.Method {
	case pipeline.CallTool:
		t.action, typ = callTool, toolType
	case pipeline.ReadResource:
		t.action, typ = readResource, resourceType
	case pipeline.GetPrompt:
		t.action, typ = getPrompt, promptType
	default:
		return nil, fmt.Errorf("policy: %s has unknown method %d", spec.Name, spec.Method)
	}
	mode := spec.Mode.String()
	t.resource = cedar.Entity{
		UID: cedar.NewEntityUID(typ, cedar.String(spec.Name)),
		Attributes: cedar.NewRecord(cedar.RecordMap{
			"name":      cedar.String(spec.Name),
			"version":   cedar.String(spec.Version),
			"mode":      cedar.String(mode),
			"risk_tier": cedar.String(mode),
			"source":    cedar.String(spec.Source),
			"read_only": cedar.Boolean(spec.Mode == pipeline.Read),
		}),
	}
	v, _ := c.resources.LoadOrStore(spec, t)
	return v.(*target), nil
}

// entities serves the two entities of one request. The principal entity is
// built only if a policy reads it (an attribute, or group membership).
type entities struct {
	resource     cedar.Entity
	principalUID cedar.EntityUID
	p            *pipeline.Principal
	uses         fields
	principal    cedar.Entity
	built        bool
}

func (e *entities) Get(uid cedar.EntityUID) (cedar.Entity, bool) {
	switch uid {
	case e.principalUID:
		if !e.built {
			e.principal = principalEntity(e.principalUID, e.p, e.uses)
			e.built = true
		}
		return e.principal, true
	case e.resource.UID:
		return e.resource, true
	}
	// Groups have no entities of their own: membership is the principal's
	// parents, and groups do not nest.
	return cedar.Entity{}, false
}

// principalEntity builds the principal's entity with the attributes that
// some policy names.
func principalEntity(uid cedar.EntityUID, p *pipeline.Principal, uses fields) cedar.Entity {
	groups := make([]cedar.EntityUID, len(p.Groups))
	for i, g := range p.Groups {
		groups[i] = cedar.NewEntityUID(groupType, cedar.String(g))
	}
	attrs := make(cedar.RecordMap, 3)
	if uses&tenantField != 0 {
		attrs["tenant"] = cedar.String(p.Tenant)
	}
	if uses&scopesField != 0 {
		scopes := make([]cedar.Value, len(p.Scopes))
		for i, s := range p.Scopes {
			scopes[i] = cedar.String(s)
		}
		attrs["scopes"] = cedar.NewSet(scopes...)
	}
	if uses&authMethodField != 0 {
		attrs["auth_method"] = cedar.String(p.AuthMethod)
	}
	return cedar.Entity{UID: uid, Parents: cedar.NewEntityUIDSet(groups...), Attributes: cedar.NewRecord(attrs)}
}

// request builds the Cedar request and entities for a call.
func (c *Cedar) request(call *pipeline.Call) (*entities, cedar.Request, error) {
	if call.Spec == nil {
		return nil, cedar.Request{}, errors.New("policy: the call has no target spec")
	}
	p := call.Principal
	if p == nil {
		return nil, cedar.Request{}, pipeline.Errorf(pipeline.PermissionDenied, "authenticate: present an API key or token",
			"the call has no verified identity")
	}
	t, err := c.target(call.Spec)
	if err != nil {
		return nil, cedar.Request{}, err
	}
	ctx := make(cedar.RecordMap, 4)
	if c.uses&argumentsField != 0 {
		args, err := arguments(call)
		if err != nil {
			return nil, cedar.Request{}, err
		}
		ctx["arguments"] = args
	}
	if c.uses&timeField != 0 {
		start := call.Start
		if start.IsZero() {
			start = time.Now()
		}
		ctx["time"] = c.clock(start)
	}
	if c.uses&clientField != 0 {
		ctx["client"] = cedar.NewRecord(cedar.RecordMap{
			"name":    cedar.String(call.ClientName),
			"version": cedar.String(call.ClientVersion),
		})
	}
	if c.uses&tenantField != 0 {
		ctx["tenant"] = cedar.String(p.Tenant)
	}
	ents := &entities{
		resource:     t.resource,
		principalUID: cedar.NewEntityUID(principalType, cedar.String(p.ID)),
		p:            p,
		uses:         c.uses,
	}
	req := cedar.Request{
		Principal: ents.principalUID,
		Action:    t.action,
		Resource:  t.resource.UID,
		Context:   cedar.NewRecord(ctx),
	}
	return ents, req, nil
}

type second struct {
	unix int64
	time cedar.Record
}

// clock returns context.time for t, to the second.
func (c *Cedar) clock(t time.Time) cedar.Record {
	unix := t.Unix()
	if s := c.second.Load(); s != nil && s.unix == unix {
		return s.time
	}
	t = time.Unix(unix, 0).UTC()
	rec := cedar.NewRecord(cedar.RecordMap{
		"hour":    cedar.Long(t.Hour()),
		"weekday": cedar.String(t.Weekday().String()),
		"iso":     cedar.String(t.Format(time.RFC3339)),
		"now":     cedar.NewDatetime(t),
	})
	c.second.Store(&second{unix, rec})
	return rec
}

// arguments returns the call's arguments as a record. It reads what the
// validate stage will read: c.Args when the transport already decoded
// them (always, for resources and prompts), else a tool call's raw JSON,
// decoded the same way, so that a policy judges the values the handler
// will get: the last of duplicate keys wins, and numbers pass through
// float64 (an integer beyond 2^53 is rounded for both).
func arguments(c *pipeline.Call) (cedar.Record, error) {
	if c.Args != nil || c.Spec.Method != pipeline.CallTool {
		return record(c.Args)
	}
	raw := bytes.TrimSpace(c.Raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return cedar.Record{}, nil
	}
	if raw[0] != '{' {
		return cedar.Record{}, pipeline.Errorf(pipeline.InvalidArgument, "pass the arguments as an object of named values",
			"arguments must be a JSON object")
	}
	var args map[string]any
	if err := json.Unmarshal(raw, &args); err != nil {
		return cedar.Record{}, pipeline.Errorf(pipeline.InvalidArgument, "", "arguments are not valid JSON")
	}
	return record(args)
}

func record(m map[string]any) (cedar.Record, error) {
	if len(m) == 0 {
		return cedar.Record{}, nil
	}
	rm := make(cedar.RecordMap, len(m))
	for k, v := range m {
		cv, err := value(v)
		if err != nil {
			return cedar.Record{}, fmt.Errorf("argument %s: %w", k, err)
		}
		if cv != nil {
			rm[cedar.String(k)] = cv
		}
	}
	return cedar.NewRecord(rm), nil
}

// value converts a decoded JSON value; nil for null, which is left out.
func value(v any) (cedar.Value, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return cedar.String(x), nil
	case bool:
		return cedar.Boolean(x), nil
	case json.Number:
		return number(string(x)), nil
	case float64:
		return number(strconv.FormatFloat(x, 'g', -1, 64)), nil
	case int:
		return cedar.Long(x), nil
	case int64:
		return cedar.Long(x), nil
	case map[string]any:
		return record(x)
	case []any:
		vals := make([]cedar.Value, 0, len(x))
		for _, e := range x {
			cv, err := value(e)
			if err != nil {
				return nil, err
			}
			if cv != nil {
				vals = append(vals, cv)
			}
		}
		return cedar.NewSet(vals...), nil
	case []string:
		vals := make([]cedar.Value, len(x))
		for i, s := range x {
			vals[i] = cedar.String(s)
		}
		return cedar.NewSet(vals...), nil
	}
	// Leaving an unknown value out could let a forbid guarded by `has`
	// through; refusing to decide fails closed.
	return nil, fmt.Errorf("policy: unsupported argument type %T", v)
}

// number converts the text of a number exactly: a Long if it is an
// integer that fits, else a decimal if four decimal places hold it, else
// the text itself as a String. It works on the digits, so 0.1 (the
// shortest text of the float64 nearest 0.1) is decimal("0.1").
func number(text string) cedar.Value {
	s, neg := strings.CutPrefix(text, "-")
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e > 1000 || e < -1000 {
			return cedar.String(text)
		}
		mant, exp = s[:i], e
	}
	whole, frac, _ := strings.Cut(mant, ".")
	// The value is digits × 10^exp, with digits free of leading and
	// trailing zeros.
	digits := strings.TrimLeft(whole+frac, "0")
	exp -= len(frac)
	for len(digits) > 0 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
		exp++
	}
	if digits == "" {
		return cedar.Long(0)
	}
	if len(digits) > 19 {
		return cedar.String(text)
	}
	u, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return cedar.String(text)
	}
	limit := uint64(math.MaxInt64)
	if neg {
		limit++
	}
	if exp >= 0 {
		// An integer: a Long if it fits.
		for ; exp > 0; exp-- {
			if u > limit/10 {
				return cedar.String(text)
			}
			u *= 10
		}
		if u > limit {
			return cedar.String(text)
		}
		return cedar.Long(signed(u, neg))
	}
	if exp < -4 {
		return cedar.String(text)
	}
	// Scale to ten-thousandths.
	for ; exp > -4; exp-- {
		if u > limit/10 {
			return cedar.String(text)
		}
		u *= 10
	}
	if u > limit {
		return cedar.String(text)
	}
	d, err := cedar.NewDecimal(signed(u, neg), -4)
	if err != nil {
		return cedar.String(text)
	}
	return d
}

func signed(u uint64, neg bool) int64 {
	if neg {
		return int64(-u) // -u wraps so that 1<<63 becomes MinInt64
	}
	return int64(u)
}
