package domain

import (
	"fmt"
	"math"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"
	"github.com/furrow/furrow/pkg/limits"
	"github.com/furrow/furrow/pkg/money"
)

// Reasons a sale earns nothing, numbered as furrow.brand.v1.WithheldReason.
// 0 means the sale earns.
const (
	WithheldNotEnrolled  int32 = 1
	WithheldSuspended    int32 = 2
	WithheldNoRule       int32 = 3
	WithheldWithdrawn    int32 = 4
	WithheldBrandRetired int32 = 5
)

// Causes of a PremiumAdjusted, numbered as furrow.brand.v1.AdjustmentCause.
const (
	CauseRuleRevised    int32 = 1
	CauseReportRestated int32 = 2
	CauseRuleEnded      int32 = 3
)

// Limits of a sales report.
const (
	// MaxReportLines bounds a report so that one revision (a header and at
	// most one event per line) always fits one atomic batch (eventstore.
	// MaxBatch, 1000) with room to spare. Channels split larger reports.
	MaxReportLines = 500
	// MaxGramsPerLine (10,000 tonnes) catches unit mistakes and keeps
	// premiums and their sums far from overflowing. It is the API's limit,
	// limits.MaxSaleGrams.
	MaxGramsPerLine = limits.MaxSaleGrams
	// MaxClockSkew is how far in the future a sold_at may lie: the
	// channel's clock may run slightly ahead of ours.
	MaxClockSkew = 5 * time.Minute
)

// ReportAggregate is the subject filter covering a report's events.
func ReportAggregate(reportID string) string { return filter(TypeReport, reportID) }

// SaleID is the id of a report's sale line, stable across restatements.
func SaleID(reportID, lineID string) string { return reportID + "/" + lineID }

// SaleLine is one line of a channel's sales report, as received.
type SaleLine struct {
	LineID     string
	BrandID    string
	FarmerID   string // may be empty when DeliveryID names the farmer
	DeliveryID string
	Grams      int64
	SoldAt     time.Time
}

// SalesReport is a channel's report (or restatement), as received.
type SalesReport struct {
	ReportID string
	Revision uint32
	Channel  string
	Lines    []SaleLine
}

// CheckSalesReport validates a report's shape, before anything is loaded:
// ids, a revision, line ids unique, grams positive, sold_at not in the
// future. Failures name the field, e.g. "lines[2].grams".
func CheckSalesReport(in SalesReport, now time.Time) error {
	if err := checkIDs("report_id", in.ReportID, "channel", in.Channel); err != nil {
		return err
	}
	if in.Revision == 0 {
		return failure.Invalid("revision", "is required: 1 for a first report, higher for a restatement")
	}
	if len(in.Lines) > MaxReportLines {
		return failure.Invalid("lines", "%d lines; a report holds at most %d (split it)", len(in.Lines), MaxReportLines)
	}
	seen := make(map[string]int, len(in.Lines))
	for i, l := range in.Lines {
		f := func(name string) string { return fmt.Sprintf("lines[%d].%s", i, name) }
		if err := ident.Check(f("line_id"), l.LineID); err != nil {
			return err
		}
		if j, dup := seen[l.LineID]; dup {
			return failure.Invalid(f("line_id"), "%q repeats lines[%d]", l.LineID, j)
		}
		seen[l.LineID] = i
		if err := ident.Check(f("brand_id"), l.BrandID); err != nil {
			return err
		}
		if l.FarmerID == "" && l.DeliveryID == "" {
			return failure.Invalid(f("farmer_id"), "a line names its farmer, its delivery or both")
		}
		if l.FarmerID != "" {
			if err := ident.Check(f("farmer_id"), l.FarmerID); err != nil {
				return err
			}
		}
		if l.DeliveryID != "" {
			if err := ident.Check(f("delivery_id"), l.DeliveryID); err != nil {
				return err
			}
		}
		if l.Grams <= 0 {
			return failure.Invalid(f("grams"), "must be positive, got %d", l.Grams)
		}
		if l.Grams > MaxGramsPerLine {
			return failure.Invalid(f("grams"), "%d g is more than a line may hold, %d g", l.Grams, int64(MaxGramsPerLine))
		}
		if l.SoldAt.IsZero() {
			return failure.Invalid(f("sold_at"), "is required")
		}
		if l.SoldAt.After(now.Add(MaxClockSkew)) {
			return failure.Invalid(f("sold_at"), "%s is in the future", l.SoldAt.UTC().Format(time.RFC3339))
		}
		if d := DateOf(l.SoldAt); d < MinDate {
			return failure.Invalid(f("sold_at"), "%s is before %s", d, MinDate)
		}
	}
	return nil
}

// Sale is a reported sale line and what it earns now.
type Sale struct {
	LineID     string
	SaleID     string
	BrandID    string
	FarmerID   string
	DeliveryID string
	// Grams is 0 once the line is withdrawn.
	Grams  int64
	SoldAt time.Time
	// Rate is the rate the sale earns at; zero while it earns nothing.
	Rate       Rate
	PremiumFen int64
	// Withheld is why the sale earns nothing; 0 while it earns.
	Withheld int32
	Detail   string
	// EverEarned: the sale has a PremiumEarned, so every later change to
	// it is a PremiumAdjusted (the ledger credits the one, then the deltas).
	EverEarned bool
}

// Earning reports whether the sale earns a premium now.
func (s *Sale) Earning() bool { return s.Withheld == 0 }

// sameOutcome reports whether next records nothing new about s. The rule
// version is left out: a version that moved without changing the rate
// changed nothing about the premium.
func (s *Sale) sameOutcome(next *Sale) bool {
	return s.Grams == next.Grams && s.SoldAt.Equal(next.SoldAt) && s.DeliveryID == next.DeliveryID &&
		s.Rate.RuleID == next.Rate.RuleID && s.Rate.FenPerKg == next.Rate.FenPerKg &&
		s.PremiumFen == next.PremiumFen && s.Withheld == next.Withheld
}

// Report is one channel sales report with all its revisions. It holds
// every sale's current premium, which is what makes re-rating exact and
// idempotent: a revision's delta for a sale is the new premium minus the
// one recorded here, and a sale already at the new rate needs nothing.
// Reports are bounded (MaxReportLines), so loading one stays cheap, and a
// restatement or re-rating of one report is one atomic batch.
type Report struct {
	id       string
	channel  string
	revision uint32
	sales    map[string]*Sale // by line id
	// rerated sums the re-ratings by the rule version that caused them.
	rerated map[ruleVersion]RevisionEffect
	// premium is Σ the sales' current premiums.
	premium int64
	// overflow, when set, says why premium or rerated stopped following
	// the events: one took a sum beyond int64. The domain's limits keep a
	// report far from it, but a stream written by hand or before the
	// limits held may not; the report then takes no changes.
	overflow error
	version  uint64
}

// ruleVersion names a version of a brand's rule. Rule ids are a brand's
// own: two brands may each have a rule "season" at the same channel, and
// a report may sell both brands.
type ruleVersion struct {
	brandID string
	ruleID  string
	version int32
}

// RevisionEffect is what re-rating for one rule version did to a report.
type RevisionEffect struct {
	Sales    int
	DeltaFen int64
	// Last is the stream sequence of the last of these adjustments (0
	// when there are none).
	Last uint64
}

// Plus returns e and o summed, or an error wrapping money.ErrOverflow. One
// report's effect is bounded by its limits; a sum over reports is not.
func (e RevisionEffect) Plus(o RevisionEffect) (RevisionEffect, error) {
	d, err := money.Add(e.DeltaFen, o.DeltaFen)
	if err != nil {
		return RevisionEffect{}, fmt.Errorf("re-rating delta: %w", err)
	}
	return RevisionEffect{Sales: e.Sales + o.Sales, DeltaFen: d, Last: max(e.Last, o.Last)}, nil
}

var _ Aggregate = (*Report)(nil)

// NewReport returns the empty aggregate for id, ready to replay events.
func NewReport(id string) *Report {
	return &Report{id: id, sales: map[string]*Sale{}, rerated: map[ruleVersion]RevisionEffect{}}
}

// Filter implements Aggregate.
func (r *Report) Filter() string { return ReportAggregate(r.id) }

// Subject implements Aggregate.
func (r *Report) Subject(kind string) string { return subject(TypeReport, r.id, kind) }

// Apply implements Aggregate.
func (r *Report) Apply(seq uint64, ev proto.Message) {
	r.version = seq
	switch e := ev.(type) {
	case *brandevents.SalesReported:
		r.channel, r.revision = e.GetChannel(), e.GetRevision()
	case *brandevents.PremiumEarned:
		s := r.sale(e.GetLineId(), e.GetSaleId(), e.GetBrandId(), e.GetFarmerId())
		r.repriced(seq, s, e.GetPremiumFen())
		s.DeliveryID, s.Grams, s.SoldAt = e.GetDeliveryId(), e.GetGrams(), e.GetSoldAt().AsTime()
		s.Rate = Rate{RuleID: e.GetRuleId(), Version: e.GetRuleVersion(), FenPerKg: e.GetFenPerKg()}
		s.PremiumFen, s.Withheld, s.Detail, s.EverEarned = e.GetPremiumFen(), 0, "", true
	case *brandevents.PremiumWithheld:
		s := r.sale(e.GetLineId(), e.GetSaleId(), e.GetBrandId(), e.GetFarmerId())
		r.repriced(seq, s, 0)
		s.DeliveryID, s.Grams, s.SoldAt = e.GetDeliveryId(), e.GetGrams(), e.GetSoldAt().AsTime()
		s.Rate, s.PremiumFen, s.Withheld, s.Detail = Rate{}, 0, e.GetReason(), e.GetDetail()
	case *brandevents.SaleRestated:
		s := r.sale(e.GetLineId(), e.GetSaleId(), e.GetBrandId(), e.GetFarmerId())
		r.repriced(seq, s, e.GetPremiumFen())
		s.DeliveryID, s.Grams, s.SoldAt = e.GetDeliveryId(), e.GetGrams(), e.GetSoldAt().AsTime()
		s.PremiumFen, s.Withheld, s.EverEarned = e.GetPremiumFen(), e.GetWithheldReason(), true
		s.Rate, s.Detail = Rate{}, e.GetReason()
		if s.Withheld == 0 {
			s.Rate, s.Detail = Rate{RuleID: e.GetRuleId(), Version: e.GetRuleVersion(), FenPerKg: e.GetFenPerKg()}, ""
		}
	case *brandevents.PremiumAdjusted:
		s := r.sale(e.GetLineId(), e.GetSaleId(), e.GetBrandId(), e.GetFarmerId())
		r.repriced(seq, s, e.GetPremiumFen())
		s.DeliveryID, s.Grams, s.SoldAt = e.GetDeliveryId(), e.GetGrams(), e.GetSoldAt().AsTime()
		s.PremiumFen, s.Withheld, s.EverEarned = e.GetPremiumFen(), e.GetWithheldReason(), true
		s.Rate, s.Detail = Rate{}, e.GetReason()
		if s.Withheld == 0 {
			s.Rate, s.Detail = Rate{RuleID: e.GetRuleId(), Version: e.GetRuleVersion(), FenPerKg: e.GetFenPerKg()}, ""
		}
		if (e.GetCause() == CauseRuleRevised && s.Withheld == 0) || e.GetCause() == CauseRuleEnded {
			k := ruleVersion{e.GetBrandId(), e.GetRuleId(), e.GetRuleVersion()}
			eff, err := r.rerated[k].Plus(RevisionEffect{Sales: 1, DeltaFen: e.GetDeltaFen(), Last: seq})
			if err != nil {
				r.overflowed(seq, err)
				break
			}
			r.rerated[k] = eff
		}
	}
}

// repriced moves the report's premium from s's current premium to fen.
func (r *Report) repriced(seq uint64, s *Sale, fen int64) {
	if r.overflow != nil {
		return
	}
	p, err := money.Sum(r.premium, -s.PremiumFen, fen)
	if err == nil && s.PremiumFen == math.MinInt64 {
		err = fmt.Errorf("premium of sale %s: %w", s.SaleID, money.ErrOverflow) // -s.PremiumFen wrapped
	}
	if err != nil {
		r.overflowed(seq, err)
		return
	}
	r.premium = p
}

// overflowed remembers the first event whose sums overflowed.
func (r *Report) overflowed(seq uint64, err error) {
	if r.overflow == nil {
		r.overflow = failure.Overflow(fmt.Errorf("report %s at %s:%d: %w", r.id, Stream, seq, err),
			"report %s's premiums overflowed in the stream: it takes no restatements or re-ratings", r.id)
	}
}

// Overflow returns a failed precondition wrapping money.ErrOverflow once an
// event took the report's sums beyond int64, or nil. PremiumFen is then the
// total before that event.
func (r *Report) Overflow() error { return r.overflow }

// RevisionEffect returns what re-rating to a version of a brand's rule did
// to the report's sales: how many it adjusted, by how much in all, and the
// sequence of the last adjustment. It does not matter who re-rated (the
// ReviseRule call or a reaction) nor how often they tried: each sale is
// adjusted once per rate. Later events of the report (another brand's
// revision, a later version, a restatement) leave it unchanged.
func (r *Report) RevisionEffect(brandID, ruleID string, version int32) RevisionEffect {
	return r.rerated[ruleVersion{brandID, ruleID, version}]
}

func (r *Report) sale(lineID, saleID, brandID, farmerID string) *Sale {
	s, ok := r.sales[lineID]
	if !ok {
		s = &Sale{LineID: lineID, SaleID: saleID, BrandID: brandID, FarmerID: farmerID}
		r.sales[lineID] = s
	}
	return s
}

// Version implements Aggregate.
func (r *Report) Version() uint64 { return r.version }

// ID returns the report id.
func (r *Report) ID() string { return r.id }

// Channel returns the reporting channel ("" before the first report).
func (r *Report) Channel() string { return r.channel }

// Revision returns the latest revision (0 before the first report).
func (r *Report) Revision() uint32 { return r.revision }

// Sales returns copies of the report's sales, by line id.
func (r *Report) Sales() []Sale {
	out := make([]Sale, 0, len(r.sales))
	for _, s := range r.sales {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Sale) int { return compareStrings(a.LineID, b.LineID) })
	return out
}

// PremiumFen is the report's total current premium: at most MaxReportLines
// × the largest premium, far inside int64 (see Overflow for a stream
// beyond the limits).
func (r *Report) PremiumFen() int64 { return r.premium }

// EarningBrands returns the brands with an earning sale in the report.
func (r *Report) EarningBrands() []string {
	var out []string
	for _, s := range r.sales {
		if s.Earning() && !slices.Contains(out, s.BrandID) {
			out = append(out, s.BrandID)
		}
	}
	slices.Sort(out)
	return out
}

// SaleFacts is what rating a report's lines depends on beyond the report:
// the application loads it from the streams before asking Record.
type SaleFacts struct {
	Now               time.Time
	ChannelRegistered bool
	// Brands by id; a missing or unregistered brand is unknown.
	Brands map[string]*Brand
	// RuleSets of the report's channel, by brand id.
	RuleSets map[string]*RuleSet
	// Enrolments by EnrolmentID; missing means never enrolled.
	Enrolments map[string]*Enrolment
	// Farmers registered with the ledger.
	Farmers map[string]bool
	// Deliveries maps the procurement deliveries the lines name to their
	// farmers; a missing delivery is unknown.
	Deliveries map[string]string
	// LotGrams maps the same deliveries to the grams they delivered, as
	// corrected; Lots holds the claims on them (and on the lots the
	// report claimed before), by delivery id.
	LotGrams map[string]int64
	Lots     map[string]*Lot
}

// FarmerOf returns the farmer a line names: its farmer_id, or the farmer
// of its delivery (which must agree with farmer_id when both are given).
func FarmerOf(i int, l SaleLine, deliveries map[string]string) (string, error) {
	if l.DeliveryID == "" {
		return l.FarmerID, nil
	}
	farmer, ok := deliveries[l.DeliveryID]
	if !ok {
		return "", failure.NotFound(fmt.Sprintf("lines[%d].delivery_id", i), "delivery %s is not recorded", l.DeliveryID)
	}
	if l.FarmerID != "" && l.FarmerID != farmer {
		return "", failure.Invalid(fmt.Sprintf("lines[%d].farmer_id", i), "is %s, but delivery %s is farmer %s's", l.FarmerID, l.DeliveryID, farmer)
	}
	return farmer, nil
}

// Record rates a report (or a restatement) and returns its events: a
// SalesReported header, a LotClaimed for each lot whose claim by the
// report changed (Change.Aggregate is the lot), then, line by line, what
// changed: PremiumEarned
// for a sale that earns for the first time, PremiumWithheld for one that
// earns nothing and never did, PremiumAdjusted for one that earned before.
// Lines left out of a restatement are withdrawn. Lines whose outcome is
// unchanged emit nothing.
//
// A line earns at the rule in force on its sale day (in CST) if its
// farmer is enrolled that day; a farmer never enrolled, or suspended, a
// retired brand or a day without a rule make it earn nothing, recorded
// with the reason. Everything else refuses the whole report, nothing
// recorded: unknown channel, brand, farmer or delivery, a sale dated
// before its farmer's enrolment (the enrolment or the line is wrong), a
// line that changes brand or farmer in a restatement, lines that would
// claim more of a lot than it delivered (as corrected) beside every other
// report's claims.
func (r *Report) Record(in SalesReport, f SaleFacts) ([]Change, error) {
	if err := CheckSalesReport(in, f.Now); err != nil {
		return nil, err
	}
	if r.overflow != nil {
		return nil, r.overflow
	}
	if !f.ChannelRegistered {
		return nil, failure.NotFound("channel", "channel %s is not registered", in.Channel)
	}
	if r.channel != "" && r.channel != in.Channel {
		return nil, failure.Invalid("channel", "report %s is channel %s's, not %s", r.id, r.channel, in.Channel)
	}
	if r.revision != 0 && in.Revision <= r.revision {
		return nil, preconditionOn("revision", "report %s is at revision %d; a restatement needs a higher revision, got %d",
			r.id, r.revision, in.Revision)
	}
	if r.revision == 0 && len(in.Lines) == 0 {
		return nil, failure.Invalid("lines", "a first report needs at least one line")
	}

	var lines []Change
	present := make(map[string]bool, len(in.Lines))
	brands := map[string]bool{}
	for i, l := range in.Lines {
		next, err := r.rate(i, l, in, f)
		if err != nil {
			return nil, err
		}
		present[l.LineID] = true
		brands[l.BrandID] = true
		if c, ok := r.change(r.sales[l.LineID], next, in.Channel, in.Revision, CauseReportRestated, ""); ok {
			lines = append(lines, c)
		}
	}
	withdrawn := 0
	for _, prev := range r.Sales() {
		if present[prev.LineID] {
			continue
		}
		next := prev
		next.Grams, next.Rate, next.PremiumFen, next.Withheld = 0, Rate{}, 0, WithheldWithdrawn
		next.Detail = fmt.Sprintf("left out of revision %d", in.Revision)
		if c, ok := r.change(&prev, &next, in.Channel, in.Revision, CauseReportRestated, ""); ok {
			lines = append(lines, c)
			withdrawn++
		}
	}

	claims, err := r.lotClaims(in, f)
	if err != nil {
		return nil, err
	}

	head := &brandevents.SalesReported{
		ReportId: r.id, Revision: in.Revision, Channel: in.Channel,
		LineCount: int32(len(in.Lines)), WithdrawnLines: int32(withdrawn),
	}
	ids := make([]string, 0, len(brands))
	for b := range brands {
		ids = append(ids, b)
	}
	slices.Sort(ids)
	for _, b := range ids {
		head.RuleSets = append(head.RuleSets, &brandevents.RuleSetVersion{BrandId: b, Version: f.RuleSets[b].Version()})
	}
	out := append([]Change{{Kind: KindSalesReported, Event: head}}, claims...)
	return append(out, lines...), nil
}

// rate works out what line i earns.
func (r *Report) rate(i int, l SaleLine, in SalesReport, f SaleFacts) (*Sale, error) {
	field := func(name string) string { return fmt.Sprintf("lines[%d].%s", i, name) }
	brand := f.Brands[l.BrandID]
	if brand == nil || !brand.Registered() {
		return nil, failure.NotFound(field("brand_id"), "brand %s does not exist", l.BrandID)
	}
	farmer, err := FarmerOf(i, l, f.Deliveries)
	if err != nil {
		return nil, err
	}
	if !f.Farmers[farmer] {
		return nil, failure.NotFound(field("farmer_id"), "farmer %s is not registered with the ledger", farmer)
	}
	if prev := r.sales[l.LineID]; prev != nil {
		if prev.BrandID != l.BrandID {
			return nil, failure.Invalid(field("brand_id"), "line %s is brand %s's; a restatement cannot change it (leave the line out and report a new one)",
				l.LineID, prev.BrandID)
		}
		if prev.FarmerID != farmer {
			return nil, failure.Invalid(field("farmer_id"), "line %s is farmer %s's; a restatement cannot change it (leave the line out and report a new one)",
				l.LineID, prev.FarmerID)
		}
	}
	s := &Sale{
		LineID: l.LineID, SaleID: SaleID(r.id, l.LineID), BrandID: l.BrandID, FarmerID: farmer,
		DeliveryID: l.DeliveryID, Grams: l.Grams, SoldAt: l.SoldAt,
	}
	day := DateOf(l.SoldAt)
	enrolment := f.Enrolments[EnrolmentID(l.BrandID, farmer)]
	if enrolment == nil {
		enrolment = NewEnrolment(l.BrandID, farmer)
	}
	standing, since := enrolment.StandingOn(day)
	retiredOn, retired := brand.RetiredOn()
	rs := f.RuleSets[l.BrandID]
	if rs == nil {
		rs = NewRuleSet(l.BrandID, in.Channel)
	}
	switch standing {
	case BeforeEnrolment:
		return nil, preconditionOn(field("sold_at"), "farmer %s is enrolled in brand %s from %s; a sale on %s precedes it",
			farmer, l.BrandID, since, day)
	case NeverEnrolled:
		s.Withheld, s.Detail = WithheldNotEnrolled, fmt.Sprintf("farmer %s is not enrolled in brand %s", farmer, l.BrandID)
		return s, nil
	case Suspended:
		s.Withheld, s.Detail = WithheldSuspended, fmt.Sprintf("farmer %s is suspended from brand %s from %s", farmer, l.BrandID, since)
		return s, nil
	}
	if retired && day >= retiredOn {
		s.Withheld, s.Detail = WithheldBrandRetired, fmt.Sprintf("brand %s is retired since %s", l.BrandID, retiredOn)
		return s, nil
	}
	rate, ok := rs.RateOn(day)
	if !ok {
		s.Withheld, s.Detail = WithheldNoRule, fmt.Sprintf("no premium rule of brand %s at channel %s is in force on %s", l.BrandID, in.Channel, day)
		return s, nil
	}
	fen, err := Premium(field("grams"), l.Grams, rate.FenPerKg)
	if err != nil {
		return nil, err
	}
	s.Rate, s.PremiumFen = rate, fen
	return s, nil
}

// change returns the event that moves a sale from prev (nil for a new
// line) to next, or false when nothing changed.
func (r *Report) change(prev, next *Sale, channel string, revision uint32, cause int32, reason string) (Change, bool) {
	if prev != nil && prev.sameOutcome(next) {
		return Change{}, false
	}
	soldAt := timestamppb.New(next.SoldAt)
	switch {
	case prev != nil && prev.EverEarned:
		if reason == "" {
			reason = next.Detail
			if next.Earning() {
				reason = fmt.Sprintf("restated in revision %d", revision)
			}
		}
		if next.PremiumFen == prev.PremiumFen {
			// Nothing to adjust: the sale changed, its premium did not.
			return Change{Kind: KindSaleRestated, Event: &brandevents.SaleRestated{
				SaleId: next.SaleID, BrandId: next.BrandID, FarmerId: next.FarmerID, Channel: channel,
				PremiumFen: next.PremiumFen, RuleId: next.Rate.RuleID, RuleVersion: next.Rate.Version, FenPerKg: next.Rate.FenPerKg,
				Reason: reason, ReportId: r.id, ReportRevision: revision, LineId: next.LineID, DeliveryId: next.DeliveryID,
				Grams: next.Grams, SoldAt: soldAt, WithheldReason: next.Withheld,
			}}, true
		}
		ev := &brandevents.PremiumAdjusted{
			SaleId: next.SaleID, BrandId: next.BrandID, FarmerId: next.FarmerID, Channel: channel,
			// Premiums are bounded (MaxGramsPerLine × MaxFenPerKg), so the
			// difference cannot overflow.
			DeltaFen: next.PremiumFen - prev.PremiumFen, PremiumFen: next.PremiumFen,
			RuleId: next.Rate.RuleID, RuleVersion: next.Rate.Version, FenPerKg: next.Rate.FenPerKg,
			Reason: reason, ReportId: r.id, ReportRevision: revision, LineId: next.LineID,
			DeliveryId: next.DeliveryID, Grams: next.Grams, SoldAt: soldAt,
			PreviousPremiumFen: prev.PremiumFen, Cause: cause, WithheldReason: next.Withheld,
		}
		return Change{Kind: KindPremiumAdjusted, Event: ev}, true
	case next.Earning():
		return Change{Kind: KindPremiumEarned, Event: &brandevents.PremiumEarned{
			SaleId: next.SaleID, BrandId: next.BrandID, FarmerId: next.FarmerID, Channel: channel,
			Grams: next.Grams, RuleId: next.Rate.RuleID, RuleVersion: next.Rate.Version,
			FenPerKg: next.Rate.FenPerKg, PremiumFen: next.PremiumFen, SoldAt: soldAt,
			ReportId: r.id, ReportRevision: revision, LineId: next.LineID, DeliveryId: next.DeliveryID,
		}}, true
	default:
		return Change{Kind: KindPremiumWithheld, Event: &brandevents.PremiumWithheld{
			SaleId: next.SaleID, BrandId: next.BrandID, FarmerId: next.FarmerID, Channel: channel,
			Grams: next.Grams, SoldAt: soldAt, ReportId: r.id, ReportRevision: revision,
			LineId: next.LineID, DeliveryId: next.DeliveryID, Reason: next.Withheld, Detail: next.Detail,
		}}, true
	}
}

// Rerate returns the adjustments that bring the report's earning sales to
// the rates ruleSets (by brand id) give them now, in line order. A sale
// already at its rate needs nothing, so re-rating twice, or re-rating a
// report a restatement already brought up to date, appends nothing.
func (r *Report) Rerate(ruleSets map[string]*RuleSet) ([]Change, error) {
	if r.overflow != nil {
		return nil, r.overflow
	}
	var out []Change
	for _, s := range r.Sales() {
		rs := ruleSets[s.BrandID]
		if !s.Earning() || rs == nil {
			continue
		}
		got, changed, err := Rerate(rs, DateOf(s.SoldAt), s.Grams, s.Rate, s.PremiumFen)
		if err != nil {
			return nil, fmt.Errorf("re-rate sale %s: %w", s.SaleID, err)
		}
		if !changed || got.DeltaFen == 0 {
			// A re-rating that leaves the premium as it is writes nothing
			// (the ledger would post a zero entry): the sale keeps the rate
			// it was last rated at.
			continue
		}
		next := s
		next.Rate, next.PremiumFen = got.Rate, got.PremiumFen
		reason, cause := got.Rate.Reason, CauseRuleRevised
		if !got.Covered {
			// The sale's rule was ended before its day: the adjustment
			// names the rule and the version that ended it.
			cause = CauseRuleEnded
			next.Withheld = WithheldNoRule
			next.Detail = fmt.Sprintf("no premium rule of brand %s at channel %s is in force on %s", s.BrandID, r.channel, DateOf(s.SoldAt))
			reason = next.Detail
			if rule := rs.Rule(s.Rate.RuleID); rule != nil {
				next.Rate = Rate{RuleID: rule.ID, Version: rule.Version}
				if rule.EndReason != "" {
					reason = fmt.Sprintf("rule %s ended after %s: %s", rule.ID, rule.To, rule.EndReason)
				}
			}
		} else if reason == "" {
			reason = fmt.Sprintf("rule %s version %d", got.Rate.RuleID, got.Rate.Version)
		}
		if c, ok := r.change(&s, &next, r.channel, r.revision, cause, reason); ok {
			out = append(out, c)
		}
	}
	return out, nil
}

// SaleView is what a read model knows of an earning sale: enough to
// preview a revision exactly as Rerate would apply it.
type SaleView struct {
	SaleID     string
	FarmerID   string
	SoldOn     Date
	Grams      int64
	PremiumFen int64
	Rate       Rate
}

// FarmerDelta is what a revision changes for one farmer.
type FarmerDelta struct {
	FarmerID  string
	Sales     int
	Grams     int64
	BeforeFen int64
	AfterFen  int64
	DeltaFen  int64
}

// PreviewDeltas re-rates sales against after (the rule set as a revision
// would leave it) with the same function Rerate uses, and sums the changes
// per farmer, ordered by farmer id. Sales that would not change are left
// out.
func PreviewDeltas(after *RuleSet, sales []SaleView) ([]FarmerDelta, error) {
	by := map[string]*FarmerDelta{}
	for _, s := range sales {
		got, changed, err := Rerate(after, s.SoldOn, s.Grams, s.Rate, s.PremiumFen)
		if err != nil {
			return nil, fmt.Errorf("preview sale %s: %w", s.SaleID, err)
		}
		if !changed || got.DeltaFen == 0 {
			continue // as Report.Rerate: nothing would be written
		}
		d := by[s.FarmerID]
		if d == nil {
			d = &FarmerDelta{FarmerID: s.FarmerID}
			by[s.FarmerID] = d
		}
		d.Sales++
		for _, step := range []struct {
			sum *int64
			add int64
		}{{&d.Grams, s.Grams}, {&d.BeforeFen, s.PremiumFen}, {&d.AfterFen, got.PremiumFen}, {&d.DeltaFen, got.DeltaFen}} {
			if *step.sum, err = money.Add(*step.sum, step.add); err != nil {
				return nil, fmt.Errorf("preview farmer %s: %w", s.FarmerID, err)
			}
		}
	}
	out := make([]FarmerDelta, 0, len(by))
	for _, d := range by {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b FarmerDelta) int { return compareStrings(a.FarmerID, b.FarmerID) })
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
