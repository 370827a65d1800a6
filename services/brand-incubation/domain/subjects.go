package domain

import (
	"google.golang.org/protobuf/proto"

	"github.com/furrow/furrow/pkg/ident"
)

// Stream is brand incubation's event stream and Subjects the subjects it holds.
const (
	Stream   = "BRAND"
	Subjects = "brand.>"
)

// Aggregate types: the second subject token. Subjects are
// brand.<aggregate type>.<aggregate id>.<event kind>.
const (
	TypeBrand     = "brand"
	TypeChannel   = "channel"
	TypeEnrolment = "enrolment"
	TypeRules     = "rules"
	TypeReport    = "report"
	TypeLot       = "lot"
)

// Event kinds (the last subject token): each event's name in snake_case.
// Other services filter on them, e.g. brand.*.*.premium_earned.
const (
	KindBrandRegistered    = "brand_registered"
	KindBrandStageChanged  = "brand_stage_changed"
	KindChannelRegistered  = "channel_registered"
	KindFarmerEnrolled     = "farmer_enrolled"
	KindFarmerSuspended    = "farmer_suspended"
	KindPremiumRuleSet     = "premium_rule_set"
	KindPremiumRuleRevised = "premium_rule_revised"
	KindPremiumRuleEnded   = "premium_rule_ended"
	KindSalesReported      = "sales_reported"
	KindPremiumEarned      = "premium_earned"
	KindPremiumAdjusted    = "premium_adjusted"
	KindPremiumWithheld    = "premium_withheld"
	KindLotClaimed         = "lot_claimed"
	KindSaleRestated       = "sale_restated"
)

// pairSeparator joins the two ids of a composite aggregate id (brand and
// farmer, brand and channel). Ids are letters, digits, '-' and '_' (see
// ident), so '~' cannot occur in either part and the pair is unambiguous,
// and it is a valid subject-token character.
const pairSeparator = "~"

// pairID is the composite id of an aggregate keyed by two ids.
func pairID(a, b string) string { return a + pairSeparator + b }

// subject is the subject of an event of kind for the aggregate typ/id.
func subject(typ, id, kind string) string { return "brand." + typ + "." + id + "." + kind }

// filter is the subject filter covering all events of the aggregate typ/id.
func filter(typ, id string) string { return "brand." + typ + "." + id + ".>" }

// BrandSubject is the subject of a brand's event of the given kind.
func BrandSubject(brandID, kind string) string { return subject(TypeBrand, brandID, kind) }

// BrandAggregate is the subject filter covering a brand's events.
func BrandAggregate(brandID string) string { return filter(TypeBrand, brandID) }

// RuleSetAggregate is the subject filter covering the premium rules of a
// brand at a channel.
func RuleSetAggregate(brandID, channel string) string {
	return filter(TypeRules, pairID(brandID, channel))
}

// Aggregate is what the repository needs to rebuild an aggregate from its
// events and to append new ones under optimistic concurrency.
type Aggregate interface {
	// Filter is the subject filter covering all the aggregate's events.
	Filter() string
	// Subject is the subject of the aggregate's event of kind.
	Subject(kind string) string
	// Apply folds one recorded event (at stream sequence seq) into the
	// aggregate. Events of types it does not know are skipped.
	Apply(seq uint64, ev proto.Message)
	// Version is the stream sequence of the aggregate's last event, 0 when
	// it has none: the expectation of the next append.
	Version() uint64
}

// Change is one event to append, with its kind (the last subject token).
type Change struct {
	Kind  string
	Event proto.Message
	// Aggregate, when set, is another aggregate the event belongs to, in
	// the same atomic batch as the command's own: the append then also
	// expects Aggregate to be at the version it was loaded at.
	Aggregate Aggregate
}

// checkIDs validates ids given as field/value pairs.
func checkIDs(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := ident.Check(pairs[i], pairs[i+1]); err != nil {
			return err
		}
	}
	return nil
}
