// Package domain holds brand incubation's aggregates and rules: brands and
// their stages, channels, farmer enrolments, premium rule sets and channel
// sales reports. It does no I/O; aggregates are rebuilt only from their
// events, and every decision is a method that returns the events to append
// (or a failure naming the offending field).
package domain

import (
	"strings"

	"google.golang.org/protobuf/proto"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"
	"github.com/furrow/furrow/pkg/limits"
)

// Brand kinds, numbered as furrow.brand.v1.BrandKind.
const (
	KindRegionalProduct = 1
	KindCountyPublic    = 2
)

// Brand stages, numbered as furrow.brand.v1.BrandStage.
const (
	StageIncubating = 1
	StageLaunched   = 2
	StageRetired    = 3
)

// StagePeriod is a stage a brand entered on a day.
type StagePeriod struct {
	Stage int32
	From  Date
	Note  string
}

// Brand is a regional or county brand, rebuilt from its events.
type Brand struct {
	id         string
	registered *brandevents.BrandRegistered
	stages     []StagePeriod
	version    uint64
}

var _ Aggregate = (*Brand)(nil)

// NewBrand returns the empty aggregate for id, ready to replay events.
func NewBrand(id string) *Brand { return &Brand{id: id} }

// Filter implements Aggregate.
func (b *Brand) Filter() string { return BrandAggregate(b.id) }

// Subject implements Aggregate.
func (b *Brand) Subject(kind string) string { return BrandSubject(b.id, kind) }

// Apply implements Aggregate.
func (b *Brand) Apply(seq uint64, ev proto.Message) {
	b.version = seq
	switch e := ev.(type) {
	case *brandevents.BrandRegistered:
		b.registered = e
		from := MinDate // registered before the day was recorded
		if d, err := ParseDate("registered_on", e.GetRegisteredOn()); err == nil {
			from = d
		}
		b.stages = []StagePeriod{{Stage: StageIncubating, From: from}}
	case *brandevents.BrandStageChanged:
		from, _ := ParseDate("effective_on", e.GetEffectiveOn())
		b.stages = append(b.stages, StagePeriod{Stage: e.GetStage(), From: from, Note: e.GetNote()})
	}
}

// ID returns the brand id.
func (b *Brand) ID() string { return b.id }

// Version implements Aggregate.
func (b *Brand) Version() uint64 { return b.version }

// Registration returns the brand's registration, or nil.
func (b *Brand) Registration() *brandevents.BrandRegistered { return b.registered }

// Registered reports whether the brand exists.
func (b *Brand) Registered() bool { return b.registered != nil }

// Stages returns the brand's stages, oldest first.
func (b *Brand) Stages() []StagePeriod { return append([]StagePeriod(nil), b.stages...) }

// Stage returns the current stage and its first day (0 and 0 for an
// unregistered brand).
func (b *Brand) Stage() StagePeriod {
	if len(b.stages) == 0 {
		return StagePeriod{}
	}
	return b.stages[len(b.stages)-1]
}

// RetiredOn returns the day the brand retired, if it did.
func (b *Brand) RetiredOn() (Date, bool) {
	if s := b.Stage(); s.Stage == StageRetired {
		return s.From, true
	}
	return 0, false
}

// Register validates a registration and returns its event. An empty
// registered_on defaults to today.
func (b *Brand) Register(r *brandevents.BrandRegistered, today Date) (*brandevents.BrandRegistered, error) {
	if err := ident.Check("brand_id", r.GetBrandId()); err != nil {
		return nil, err
	}
	if k := r.GetKind(); k != KindRegionalProduct && k != KindCountyPublic {
		return nil, failure.Invalid("kind", "must be BRAND_KIND_REGIONAL_PRODUCT or BRAND_KIND_COUNTY_PUBLIC")
	}
	if err := requiredText("name", r.GetName(), limits.MaxNameLen); err != nil {
		return nil, err
	}
	if err := requiredText("county", r.GetCounty(), limits.MaxCodeLen); err != nil {
		return nil, err
	}
	if err := optionalText("product_category", r.GetProductCategory(), limits.MaxNameLen); err != nil {
		return nil, err
	}
	on, err := optionalDate("registered_on", r.GetRegisteredOn(), today)
	if err != nil {
		return nil, err
	}
	if b.registered != nil {
		return nil, failure.AlreadyExists("brand_id", "brand %s is already registered", b.id)
	}
	ev := proto.CloneOf(r)
	ev.RegisteredOn = on.String()
	return ev, nil
}

// ChangeStage moves the brand to a later stage from a day on (default
// today): incubating → launched → retired, or incubating → retired.
func (b *Brand) ChangeStage(stage int32, effectiveOn, note string, today Date) (*brandevents.BrandStageChanged, error) {
	if stage != StageLaunched && stage != StageRetired {
		return nil, failure.Invalid("stage", "must be BRAND_STAGE_LAUNCHED or BRAND_STAGE_RETIRED")
	}
	on, err := optionalDate("effective_on", effectiveOn, today)
	if err != nil {
		return nil, err
	}
	if err := optionalText("note", note, limits.MaxTextLen); err != nil {
		return nil, err
	}
	if b.registered == nil {
		return nil, failure.NotFound("brand_id", "brand %s does not exist", b.id)
	}
	cur := b.Stage()
	if stage <= cur.Stage {
		return nil, failure.FailedPrecondition("brand %s is %s since %s; stages only move forward (incubating → launched → retired)",
			b.id, StageName(cur.Stage), cur.From)
	}
	if on < cur.From {
		return nil, failure.Invalid("effective_on", "%s precedes the current stage, %s since %s", on, StageName(cur.Stage), cur.From)
	}
	return &brandevents.BrandStageChanged{
		BrandId: b.id, Stage: stage, PreviousStage: cur.Stage, EffectiveOn: on.String(), Note: note,
	}, nil
}

// StageName is a stage's lower-case name, for messages.
func StageName(stage int32) string {
	switch stage {
	case StageIncubating:
		return "incubating"
	case StageLaunched:
		return "launched"
	case StageRetired:
		return "retired"
	}
	return "unknown"
}

// requiredText checks a mandatory free-text field and its length in
// characters (one of the API's limits, package limits).
func requiredText(field, s string, maxLen int) error {
	if strings.TrimSpace(s) == "" {
		return failure.Invalid(field, "is required")
	}
	return optionalText(field, s, maxLen)
}

// optionalText checks an optional free-text field's length in characters.
func optionalText(field, s string, maxLen int) error {
	return limits.Text(field, s, maxLen)
}
