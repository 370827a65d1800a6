package domain

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/limits"
)

// MaxFenPerKg bounds a premium rate (10,000 yuan per kilogram): far above
// any real premium, low enough that sums of premiums cannot overflow. It is
// the API's limit, limits.MaxPremiumFenPerKg.
const MaxFenPerKg = limits.MaxPremiumFenPerKg

// RuleSetID is the aggregate id of a brand's premium rules at a channel.
func RuleSetID(brandID, channel string) string { return pairID(brandID, channel) }

// Segment is a rate in force from a day until the next segment (or the
// end of its rule).
type Segment struct {
	From     Date
	FenPerKg int64
	// Version is the rule version that set the rate.
	Version int32
	// Reason is the revision's reason; empty for the rule's first rate.
	Reason string
}

// Rule is a premium rule: a period and a rate schedule over it.
type Rule struct {
	ID   string
	From Date
	// To is the last day in force (inclusive), unless OpenEnded.
	To        Date
	OpenEnded bool
	// Version counts the rule's events: 1 when set, +1 per revision.
	Version int32
	// Schedule is ordered by From; Schedule[0].From == From.
	Schedule []Segment
	// EndReason is set once the rule was ended early (EndRule), and
	// EndedFrom is the last day it had before: empty when it was
	// open-ended.
	EndReason string
	EndedFrom string
}

// Covers reports whether the rule is in force on d.
func (r *Rule) Covers(d Date) bool { return d >= r.From && (r.OpenEnded || d <= r.To) }

// SegmentOn returns the segment in force on d, which the rule must cover.
func (r *Rule) SegmentOn(d Date) Segment {
	seg := r.Schedule[0]
	for _, s := range r.Schedule[1:] {
		if s.From > d {
			break
		}
		seg = s
	}
	return seg
}

// Period renders the rule's period for messages.
func (r *Rule) Period() string {
	if r.OpenEnded {
		return r.From.String() + " onwards"
	}
	return r.From.String() + " to " + r.To.String()
}

// overlaps reports whether [from, to] (open-ended when open) meets r.
func (r *Rule) overlaps(from, to Date, open bool) bool {
	return from <= r.lastDay() && r.From <= lastDay(to, open)
}

func (r *Rule) lastDay() Date { return lastDay(r.To, r.OpenEnded) }

func lastDay(to Date, open bool) Date {
	if open {
		return MaxDate
	}
	return to
}

func (r *Rule) clone() *Rule {
	c := *r
	c.Schedule = slices.Clone(r.Schedule)
	return &c
}

// Rate is the rate that applies to a sale: which rule, at which version.
type Rate struct {
	RuleID   string
	Version  int32
	FenPerKg int64
	Reason   string
}

// RuleSet holds a brand's premium rules at one channel. It is the unit of
// optimistic concurrency for rules: two commands that would make rules
// overlap both read it, and only the first append succeeds; the loser
// re-reads and sees the overlap. It stays small (a few rules, a few
// revisions each): the sales rated under it live in their reports.
type RuleSet struct {
	brandID string
	channel string
	rules   []*Rule // ordered by From; periods never overlap
	// written maps the stream sequence of each rule event to the rule
	// version it wrote, so a retried command can name its own version.
	written map[uint64]int32
	version uint64
}

var _ Aggregate = (*RuleSet)(nil)

// NewRuleSet returns the empty aggregate, ready to replay events.
func NewRuleSet(brandID, channel string) *RuleSet {
	return &RuleSet{brandID: brandID, channel: channel}
}

// Filter implements Aggregate.
func (s *RuleSet) Filter() string { return RuleSetAggregate(s.brandID, s.channel) }

// Subject implements Aggregate.
func (s *RuleSet) Subject(kind string) string {
	return subject(TypeRules, RuleSetID(s.brandID, s.channel), kind)
}

// Apply implements Aggregate.
func (s *RuleSet) Apply(seq uint64, ev proto.Message) {
	s.version = seq
	if e, ok := ev.(interface{ GetRuleVersion() int32 }); ok {
		if s.written == nil {
			s.written = map[uint64]int32{}
		}
		s.written[seq] = e.GetRuleVersion()
	}
	s.apply(ev)
}

// VersionWrittenAt returns the rule version the event at stream sequence
// seq wrote (0 when seq holds none of this rule set's events).
func (s *RuleSet) VersionWrittenAt(seq uint64) int32 { return s.written[seq] }

func (s *RuleSet) apply(ev proto.Message) {
	switch e := ev.(type) {
	case *brandevents.PremiumRuleSet:
		from, _ := ParseDate("effective_from", e.GetEffectiveFrom())
		r := &Rule{ID: e.GetRuleId(), From: from, Version: e.GetRuleVersion(), OpenEnded: e.GetEffectiveTo() == ""}
		if !r.OpenEnded {
			r.To, _ = ParseDate("effective_to", e.GetEffectiveTo())
		}
		r.Schedule = []Segment{{From: from, FenPerKg: e.GetFenPerKg(), Version: e.GetRuleVersion()}}
		s.rules = append(s.rules, r)
		slices.SortFunc(s.rules, func(a, b *Rule) int { return int(a.From) - int(b.From) })
	case *brandevents.PremiumRuleRevised:
		r := s.Rule(e.GetRuleId())
		if r == nil {
			return
		}
		from, _ := ParseDate("revised_from", e.GetRevisedFrom())
		kept := r.Schedule[:0:0]
		for _, seg := range r.Schedule {
			if seg.From < from {
				kept = append(kept, seg)
			}
		}
		r.Schedule = append(kept, Segment{From: from, FenPerKg: e.GetFenPerKg(), Version: e.GetRuleVersion(), Reason: e.GetReason()})
		r.Version = e.GetRuleVersion()
	case *brandevents.PremiumRuleEnded:
		r := s.Rule(e.GetRuleId())
		if r == nil {
			return
		}
		to, _ := ParseDate("effective_to", e.GetEffectiveTo())
		r.To, r.OpenEnded, r.Version = to, false, e.GetRuleVersion()
		r.EndReason, r.EndedFrom = e.GetReason(), e.GetPreviousEffectiveTo()
		// Segments that start after the end never apply; keeping them would
		// show rates no day can earn.
		kept := r.Schedule[:1:1]
		for _, seg := range r.Schedule[1:] {
			if seg.From <= to {
				kept = append(kept, seg)
			}
		}
		r.Schedule = kept
	}
}

// Version implements Aggregate.
func (s *RuleSet) Version() uint64 { return s.version }

// BrandID returns the brand.
func (s *RuleSet) BrandID() string { return s.brandID }

// Channel returns the channel.
func (s *RuleSet) Channel() string { return s.channel }

// Rules returns the rules, ordered by first day. They must not be modified.
func (s *RuleSet) Rules() []*Rule { return s.rules }

// Rule returns the rule with id, or nil.
func (s *RuleSet) Rule(id string) *Rule {
	for _, r := range s.rules {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// RateOn returns the rate in force on d, if a rule covers it.
func (s *RuleSet) RateOn(d Date) (Rate, bool) {
	for _, r := range s.rules {
		if r.Covers(d) {
			seg := r.SegmentOn(d)
			return Rate{RuleID: r.ID, Version: seg.Version, FenPerKg: seg.FenPerKg, Reason: seg.Reason}, true
		}
	}
	return Rate{}, false
}

// CheckRate validates a rate in fen per kilogram.
func CheckRate(field string, fenPerKg int64) error {
	if fenPerKg < 0 {
		return failure.Invalid(field, "must not be negative, got %d", fenPerKg)
	}
	if fenPerKg > MaxFenPerKg {
		return failure.Invalid(field, "%d is more than the most a rule may pay, %d fen/kg", fenPerKg, MaxFenPerKg)
	}
	return nil
}

// NewRule is what SetPremiumRule asks for.
type NewRule struct {
	RuleID        string
	FenPerKg      int64
	EffectiveFrom string
	// EffectiveTo is the last day (inclusive); empty for open-ended.
	EffectiveTo string
}

// SetRule validates a new rule against the brand, the channel and the
// rules already set, and returns its event. The rule must not overlap any
// other rule of the set.
func (s *RuleSet) SetRule(brand *Brand, channelRegistered bool, n NewRule) (*brandevents.PremiumRuleSet, error) {
	if err := checkIDs("brand_id", s.brandID, "channel", s.channel, "rule_id", n.RuleID); err != nil {
		return nil, err
	}
	if err := CheckRate("fen_per_kg", n.FenPerKg); err != nil {
		return nil, err
	}
	if n.EffectiveFrom == "" {
		return nil, failure.Invalid("effective_from", "is required")
	}
	from, err := ParseDate("effective_from", n.EffectiveFrom)
	if err != nil {
		return nil, err
	}
	open := n.EffectiveTo == ""
	var to Date
	if !open {
		if to, err = ParseDate("effective_to", n.EffectiveTo); err != nil {
			return nil, err
		}
		if to < from {
			return nil, failure.Invalid("effective_to", "%s precedes effective_from %s", to, from)
		}
	}
	if !brand.Registered() {
		return nil, failure.NotFound("brand_id", "brand %s does not exist", s.brandID)
	}
	if !channelRegistered {
		return nil, failure.NotFound("channel", "channel %s is not registered", s.channel)
	}
	if on, retired := brand.RetiredOn(); retired {
		return nil, failure.FailedPrecondition("brand %s is retired since %s: it takes no new premium rules", s.brandID, on)
	}
	if r := s.Rule(n.RuleID); r != nil {
		return nil, failure.AlreadyExists("rule_id", "brand %s already has rule %s at channel %s", s.brandID, n.RuleID, s.channel)
	}
	for _, r := range s.rules {
		if r.overlaps(from, to, open) {
			return nil, preconditionOn("effective_from",
				"the period %s overlaps rule %s (%s) of brand %s at channel %s; rules of one brand and channel never overlap",
				period(from, to, open), r.ID, r.Period(), s.brandID, s.channel)
		}
	}
	ev := &brandevents.PremiumRuleSet{
		BrandId: s.brandID, Channel: s.channel, RuleId: n.RuleID, RuleVersion: 1,
		FenPerKg: n.FenPerKg, EffectiveFrom: from.String(),
	}
	if !open {
		ev.EffectiveTo = to.String()
	}
	return ev, nil
}

// Revision is what ReviseRule and PreviewRevision ask for.
type Revision struct {
	RuleID   string
	FenPerKg int64
	// RevisedFrom is the first day of the new rate; empty: the rule's first day.
	RevisedFrom string
	Reason      string
}

// Revise validates a revision and returns its event, or changed == false
// (and no event) when the rate already is FenPerKg on every day from
// RevisedFrom to the rule's end: revising twice to the same value changes
// nothing. The reason is required unless previewOnly.
func (s *RuleSet) Revise(rv Revision, previewOnly bool) (ev *brandevents.PremiumRuleRevised, changed bool, err error) {
	if err := checkIDs("brand_id", s.brandID, "channel", s.channel, "rule_id", rv.RuleID); err != nil {
		return nil, false, err
	}
	if err := CheckRate("fen_per_kg", rv.FenPerKg); err != nil {
		return nil, false, err
	}
	if !previewOnly {
		if err := requiredText("reason", rv.Reason, limits.MaxTextLen); err != nil {
			return nil, false, err
		}
	}
	r := s.Rule(rv.RuleID)
	if r == nil {
		return nil, false, failure.NotFound("rule_id", "brand %s has no rule %s at channel %s", s.brandID, rv.RuleID, s.channel)
	}
	from, err := optionalDate("revised_from", rv.RevisedFrom, r.From)
	if err != nil {
		return nil, false, err
	}
	if !r.Covers(from) {
		return nil, false, failure.Invalid("revised_from", "%s is outside rule %s (%s)", from, r.ID, r.Period())
	}
	current := r.SegmentOn(from)
	same := current.FenPerKg == rv.FenPerKg
	for _, seg := range r.Schedule {
		if seg.From > from && seg.FenPerKg != rv.FenPerKg {
			same = false
		}
	}
	if same {
		return nil, false, nil
	}
	return &brandevents.PremiumRuleRevised{
		BrandId: s.brandID, Channel: s.channel, RuleId: r.ID, RuleVersion: r.Version + 1,
		FenPerKg: rv.FenPerKg, RevisedFrom: from.String(), Reason: strings.TrimSpace(rv.Reason),
		PreviousFenPerKg: current.FenPerKg,
	}, true, nil
}

// Ending is what EndRule and PreviewEndRule ask for.
type Ending struct {
	RuleID string
	// EffectiveTo is the rule's new last day in force (inclusive).
	EffectiveTo string
	Reason      string
}

// End validates an early end of a rule and returns its event, or changed
// == false (and no event) when the rule already ends on EffectiveTo. A rule
// can only be shortened: EffectiveTo lies between its first day and the
// day before its current last day (any day from its first for an
// open-ended rule). The reason is required unless previewOnly. The sales
// after EffectiveTo are then re-rated like after a revision: no rule
// covers them any more, so they earn nothing.
func (s *RuleSet) End(e Ending, previewOnly bool) (ev *brandevents.PremiumRuleEnded, changed bool, err error) {
	if err := checkIDs("brand_id", s.brandID, "channel", s.channel, "rule_id", e.RuleID); err != nil {
		return nil, false, err
	}
	if e.EffectiveTo == "" {
		return nil, false, failure.Invalid("effective_to", "is required")
	}
	to, err := ParseDate("effective_to", e.EffectiveTo)
	if err != nil {
		return nil, false, err
	}
	if !previewOnly {
		if err := requiredText("reason", e.Reason, limits.MaxTextLen); err != nil {
			return nil, false, err
		}
	}
	r := s.Rule(e.RuleID)
	if r == nil {
		return nil, false, failure.NotFound("rule_id", "brand %s has no rule %s at channel %s", s.brandID, e.RuleID, s.channel)
	}
	if to < r.From {
		return nil, false, failure.Invalid("effective_to", "%s precedes rule %s's first day %s", to, r.ID, r.From)
	}
	if !r.OpenEnded && to == r.To {
		return nil, false, nil
	}
	if !r.OpenEnded && to > r.To {
		return nil, false, preconditionOn("effective_to", "rule %s (%s) already ends before %s; EndRule only shortens a rule", r.ID, r.Period(), to)
	}
	ev = &brandevents.PremiumRuleEnded{
		BrandId: s.brandID, Channel: s.channel, RuleId: r.ID, RuleVersion: r.Version + 1,
		EffectiveTo: to.String(), Reason: strings.TrimSpace(e.Reason),
	}
	if !r.OpenEnded {
		ev.PreviousEffectiveTo = r.To.String()
	}
	return ev, true, nil
}

// With returns a copy of the rule set with ev applied, leaving s as it
// is: what the rules would be after a revision, for a preview.
func (s *RuleSet) With(ev proto.Message) *RuleSet {
	c := &RuleSet{brandID: s.brandID, channel: s.channel, version: s.version}
	for _, r := range s.rules {
		c.rules = append(c.rules, r.clone())
	}
	c.apply(ev)
	return c
}

func period(from, to Date, open bool) string {
	if open {
		return from.String() + " onwards"
	}
	return from.String() + " to " + to.String()
}

// preconditionOn is a FailedPrecondition failure that names the field
// whose value the current state rejects.
func preconditionOn(field, format string, args ...any) error {
	return &failure.Error{Kind: failure.KindFailedPrecondition, Field: field, Msg: fmt.Sprintf(format, args...)}
}
