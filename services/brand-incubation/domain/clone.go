package domain

import (
	"maps"
	"slices"
	"strings"
)

// Clone methods: each returns a deep copy, so that a cache of aggregates
// (package aggregate) can hand out copies that callers fold events into
// and decide on without touching the cached one. Event messages kept by an
// aggregate are shared: events are facts, never modified.

// Clone returns a deep copy of the brand.
func (b *Brand) Clone() *Brand {
	c := *b
	c.stages = slices.Clone(b.stages)
	return &c
}

// Clone returns a copy of the channel.
func (ch *Channel) Clone() *Channel {
	c := *ch
	return &c
}

// Clone returns a deep copy of the enrolment.
func (e *Enrolment) Clone() *Enrolment {
	c := *e
	c.changes = slices.Clone(e.changes)
	return &c
}

// Clone returns a deep copy of the rule set.
func (s *RuleSet) Clone() *RuleSet {
	c := *s
	c.rules = make([]*Rule, len(s.rules))
	for i, r := range s.rules {
		c.rules[i] = r.clone()
	}
	c.written = maps.Clone(s.written)
	return &c
}

// Clone returns a deep copy of the report.
func (r *Report) Clone() *Report {
	c := *r
	c.sales = make(map[string]*Sale, len(r.sales))
	for id, s := range r.sales {
		sc := *s
		c.sales[id] = &sc
	}
	c.rerated = maps.Clone(r.rerated)
	return &c
}

// Clone returns a deep copy of the lot.
func (l *Lot) Clone() *Lot {
	c := *l
	c.claims = maps.Clone(l.claims)
	return &c
}

// NewEnrolmentByID returns the empty enrolment of an EnrolmentID
// ("<brand>~<farmer>"), for loaders that key aggregates by one id.
func NewEnrolmentByID(id string) *Enrolment {
	brand, farmer, _ := strings.Cut(id, pairSeparator)
	return NewEnrolment(brand, farmer)
}

// NewRuleSetByID returns the empty rule set of a RuleSetID
// ("<brand>~<channel>").
func NewRuleSetByID(id string) *RuleSet {
	brand, channel, _ := strings.Cut(id, pairSeparator)
	return NewRuleSet(brand, channel)
}

// EnrolmentAggregate is the subject filter covering an enrolment's events,
// by EnrolmentID.
func EnrolmentAggregate(id string) string { return filter(TypeEnrolment, id) }

// RuleSetAggregateByID is the subject filter covering a rule set's events,
// by RuleSetID.
func RuleSetAggregateByID(id string) string { return filter(TypeRules, id) }

// ChannelAggregate is the subject filter covering a channel's events.
func ChannelAggregate(id string) string { return filter(TypeChannel, id) }

// ID returns the enrolment's id (EnrolmentID).
func (e *Enrolment) ID() string { return EnrolmentID(e.brandID, e.farmerID) }

// ID returns the rule set's id (RuleSetID).
func (s *RuleSet) ID() string { return RuleSetID(s.brandID, s.channel) }
