package app

import (
	"context"
	"strconv"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"
	"github.com/furrow/furrow/pkg/pagetoken"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// Catalog reads the brand catalogue read model: brands, channels and
// enrolments.
type Catalog interface {
	Brands(ctx context.Context, f BrandFilter) ([]BrandRow, error)
	Channels(ctx context.Context) ([]ChannelRow, error)
	BrandFarmers(ctx context.Context, f FarmerFilter) ([]BrandFarmerRow, error)
}

// Premiums reads the premium read model: sales, monthly premiums and the
// enrolment periods the dashboard counts.
type Premiums interface {
	// EarningReports lists the reports with a sale sold on or after from
	// that earns under the rule, or that the rule's early end withheld (so
	// that a retried EndRule still finds what it adjusted).
	EarningReports(ctx context.Context, brandID, channel, ruleID string, from domain.Date) ([]string, error)
	// EarningSales lists those sales.
	EarningSales(ctx context.Context, brandID, channel, ruleID string, from domain.Date) ([]domain.SaleView, error)
	FarmerPremiums(ctx context.Context, f PremiumFilter) ([]FarmerPremiumRow, error)
	BrandMonths(ctx context.Context, brandID string) ([]BrandMonthRow, error)
	EnrolmentPeriods(ctx context.Context, brandID string) ([]EnrolmentPeriod, error)
}

// BrandFilter selects brands; zero fields match everything.
type BrandFilter struct {
	County string
	Kind   int32
	Stage  int32
	// After is the last brand id of the previous page.
	After string
	Limit int
}

// BrandRow is a brand as the catalogue holds it.
type BrandRow struct {
	BrandID         string
	Kind            int32
	Name            string
	County          string
	ProductCategory string
	Stage           int32
	StageSince      string
	RegisteredOn    string
	Version         uint64
}

// ChannelRow is a registered channel.
type ChannelRow struct {
	ChannelID string
	Name      string
}

// Enrolment statuses, numbered as furrow.brand.v1.EnrolmentStatus.
const (
	StatusEnrolled  int32 = 1
	StatusSuspended int32 = 2
)

// FarmerFilter selects a brand's farmers.
type FarmerFilter struct {
	BrandID string
	// Status is StatusEnrolled, StatusSuspended or 0 for both.
	Status int32
	After  string
	Limit  int
}

// BrandFarmerRow is a farmer's enrolment as the catalogue holds it.
type BrandFarmerRow struct {
	BrandID       string
	FarmerID      string
	Status        int32
	EnrolledFrom  string
	SuspendedFrom string
	Certificate   string
	Version       uint64
}

// PremiumKey identifies a row of the per-farmer monthly premiums.
type PremiumKey struct {
	FarmerID string
	BrandID  string
	Channel  string
	Month    string
}

// PremiumFilter selects per-farmer monthly premiums; zero fields match
// everything.
type PremiumFilter struct {
	FarmerID string
	BrandID  string
	Channel  string
	From     string // "YYYY-MM"
	To       string
	// After is the last key of the previous page (zero: from the start).
	After PremiumKey
	Limit int
}

// FarmerPremiumRow is what a farmer earned from a brand at a channel in a
// month.
type FarmerPremiumRow struct {
	PremiumKey
	Sales        int32
	GramsSold    int64
	GramsEarning int64
	PremiumFen   int64
}

// BrandMonthRow is a brand's sales and premiums in a month.
type BrandMonthRow struct {
	Month        string
	Sales        int32
	GramsSold    int64
	GramsEarning int64
	PremiumFen   int64
}

// EnrolmentPeriod is a span of days a farmer was enrolled: [From, Until),
// or from From on when Open.
type EnrolmentPeriod struct {
	FarmerID string
	From     domain.Date
	Until    domain.Date
	Open     bool
}

// Paging limits.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
	// maxDashboardMonths bounds a dashboard's month range.
	maxDashboardMonths = 120
)

// Page is a page of query results with the token of the next one.
type Page[T any] struct {
	Items []T
	// Next is empty on the last page.
	Next string
	AsOf eventstore.Position
}

// Brands lists the brands matching the filter, by brand id.
func (i *Incubator) Brands(ctx context.Context, county string, kind, stage int32, pageSize int32, pageToken string, minPos *eventstore.Position) (Page[BrandRow], error) {
	limit, err := pageLimit(pageSize)
	if err != nil {
		return Page[BrandRow]{}, err
	}
	list := pagetoken.For("brand.brands", county, strconv.Itoa(int(kind)), strconv.Itoa(int(stage)))
	after, err := list.Cursor(pageToken, 1)
	if err != nil {
		return Page[BrandRow]{}, err
	}
	asOf, err := i.catalogAt.WaitFor(ctx, deref(minPos))
	if err != nil {
		return Page[BrandRow]{}, err
	}
	rows, err := i.catalog.Brands(ctx, BrandFilter{County: county, Kind: kind, Stage: stage, After: after[0], Limit: limit + 1})
	if err != nil {
		return Page[BrandRow]{}, err
	}
	p := Page[BrandRow]{Items: rows, AsOf: asOf}
	if len(rows) > limit {
		p.Items = rows[:limit]
		p.Next = list.Next(rows[limit-1].BrandID)
	}
	return p, nil
}

// Channels lists the registered channels.
func (i *Incubator) Channels(ctx context.Context, minPos *eventstore.Position) ([]ChannelRow, eventstore.Position, error) {
	asOf, err := i.catalogAt.WaitFor(ctx, deref(minPos))
	if err != nil {
		return nil, eventstore.Position{}, err
	}
	rows, err := i.catalog.Channels(ctx)
	return rows, asOf, err
}

// BrandFarmers lists a brand's enrolled and suspended farmers.
func (i *Incubator) BrandFarmers(ctx context.Context, brandID string, status int32, pageSize int32, pageToken string, minPos *eventstore.Position) (Page[BrandFarmerRow], error) {
	if err := ident.Check("brand_id", brandID); err != nil {
		return Page[BrandFarmerRow]{}, err
	}
	if status != 0 && status != StatusEnrolled && status != StatusSuspended {
		return Page[BrandFarmerRow]{}, failure.Invalid("status", "unknown enrolment status %d", status)
	}
	limit, err := pageLimit(pageSize)
	if err != nil {
		return Page[BrandFarmerRow]{}, err
	}
	list := pagetoken.For("brand.brand_farmers", brandID, strconv.Itoa(int(status)))
	after, err := list.Cursor(pageToken, 1)
	if err != nil {
		return Page[BrandFarmerRow]{}, err
	}
	if _, err := i.Brand(ctx, brandID); err != nil {
		return Page[BrandFarmerRow]{}, err
	}
	asOf, err := i.catalogAt.WaitFor(ctx, deref(minPos))
	if err != nil {
		return Page[BrandFarmerRow]{}, err
	}
	rows, err := i.catalog.BrandFarmers(ctx, FarmerFilter{BrandID: brandID, Status: status, After: after[0], Limit: limit + 1})
	if err != nil {
		return Page[BrandFarmerRow]{}, err
	}
	p := Page[BrandFarmerRow]{Items: rows, AsOf: asOf}
	if len(rows) > limit {
		p.Items = rows[:limit]
		p.Next = list.Next(rows[limit-1].FarmerID)
	}
	return p, nil
}

// FarmerPremiums lists per-farmer monthly premiums, ordered by farmer,
// brand, channel and month.
func (i *Incubator) FarmerPremiums(ctx context.Context, f PremiumFilter, pageSize int32, pageToken string, minPos *eventstore.Position) (Page[FarmerPremiumRow], error) {
	for field, id := range map[string]string{"farmer_id": f.FarmerID, "brand_id": f.BrandID, "channel": f.Channel} {
		if id != "" {
			if err := ident.Check(field, id); err != nil {
				return Page[FarmerPremiumRow]{}, err
			}
		}
	}
	from, to, err := monthRange(f.From, f.To)
	if err != nil {
		return Page[FarmerPremiumRow]{}, err
	}
	if from != 0 {
		f.From = from.String()
	}
	if to != 0 {
		f.To = to.String()
	}
	limit, err := pageLimit(pageSize)
	if err != nil {
		return Page[FarmerPremiumRow]{}, err
	}
	// The months bound are the normalised ones, so "2026-1" and "2026-01"
	// page alike.
	list := pagetoken.For("brand.farmer_premiums", f.FarmerID, f.BrandID, f.Channel, f.From, f.To)
	after, err := list.Cursor(pageToken, 4)
	if err != nil {
		return Page[FarmerPremiumRow]{}, err
	}
	f.After = PremiumKey{FarmerID: after[0], BrandID: after[1], Channel: after[2], Month: after[3]}
	f.Limit = limit + 1
	asOf, err := i.premiumsAt.WaitFor(ctx, deref(minPos))
	if err != nil {
		return Page[FarmerPremiumRow]{}, err
	}
	rows, err := i.premiums.FarmerPremiums(ctx, f)
	if err != nil {
		return Page[FarmerPremiumRow]{}, err
	}
	p := Page[FarmerPremiumRow]{Items: rows, AsOf: asOf}
	if len(rows) > limit {
		p.Items = rows[:limit]
		k := rows[limit-1].PremiumKey
		p.Next = list.Next(k.FarmerID, k.BrandID, k.Channel, k.Month)
	}
	return p, nil
}

// Dashboard is a brand's figures by month.
type Dashboard struct {
	BrandID string
	// EnrolledNow counts the farmers enrolled today.
	EnrolledNow int
	Months      []DashboardMonth
	AsOf        eventstore.Position
}

// DashboardMonth is a brand's figures for one month.
type DashboardMonth struct {
	BrandMonthRow
	// Enrolled counts the farmers enrolled on at least one day of it.
	Enrolled int
}

// BrandDashboard returns a brand's enrolled farmers, grams sold and
// premiums by month, from monthFrom to monthTo ("YYYY-MM"; by default
// from its first month with enrolments or sales to the current month).
func (i *Incubator) BrandDashboard(ctx context.Context, brandID, monthFrom, monthTo string, minPos *eventstore.Position) (Dashboard, error) {
	if err := ident.Check("brand_id", brandID); err != nil {
		return Dashboard{}, err
	}
	from, to, err := monthRange(monthFrom, monthTo)
	if err != nil {
		return Dashboard{}, err
	}
	if _, err := i.Brand(ctx, brandID); err != nil {
		return Dashboard{}, err
	}
	asOf, err := i.premiumsAt.WaitFor(ctx, deref(minPos))
	if err != nil {
		return Dashboard{}, err
	}
	months, err := i.premiums.BrandMonths(ctx, brandID)
	if err != nil {
		return Dashboard{}, err
	}
	periods, err := i.premiums.EnrolmentPeriods(ctx, brandID)
	if err != nil {
		return Dashboard{}, err
	}
	d, err := dashboard(brandID, months, periods, from, to, i.today())
	d.AsOf = asOf
	return d, err
}

// dashboard assembles a brand's months from its monthly rows and its
// farmers' enrolment periods. A zero from or to takes the default.
func dashboard(brandID string, months []BrandMonthRow, periods []EnrolmentPeriod, from, to domain.Month, today domain.Date) (Dashboard, error) {
	d := Dashboard{BrandID: brandID, Months: []DashboardMonth{}}
	current := map[string]bool{}
	for _, p := range periods {
		if p.Open && p.From <= today {
			current[p.FarmerID] = true
		}
	}
	d.EnrolledNow = len(current)

	if to == 0 {
		to = today.Month()
	}
	if from == 0 {
		from = to
		for _, m := range months {
			if mm, err := domain.ParseMonth("month", m.Month); err == nil && mm < from {
				from = mm
			}
		}
		for _, p := range periods {
			if p.From.Month() < from {
				from = p.From.Month()
			}
		}
		from = max(from, to-maxDashboardMonths+1)
	}
	if from > to {
		return d, failure.Invalid("month_from", "%s is after month_to %s", from, to)
	}
	if to-from >= maxDashboardMonths {
		return d, failure.Invalid("month_to", "%s..%s spans more than %d months", from, to, maxDashboardMonths)
	}
	byMonth := make(map[string]BrandMonthRow, len(months))
	for _, m := range months {
		byMonth[m.Month] = m
	}
	for m := from; m <= to; m++ {
		row := byMonth[m.String()]
		row.Month = m.String()
		first, last := m.First(), m.Last()
		enrolled := map[string]bool{}
		for _, p := range periods {
			if p.From <= last && (p.Open || (p.From < p.Until && p.Until > first)) {
				enrolled[p.FarmerID] = true
			}
		}
		d.Months = append(d.Months, DashboardMonth{BrandMonthRow: row, Enrolled: len(enrolled)})
	}
	return d, nil
}

// monthRange parses an optional "YYYY-MM" range (0 for a bound not given).
func monthRange(from, to string) (domain.Month, domain.Month, error) {
	var f, t domain.Month
	var err error
	if from != "" {
		if f, err = domain.ParseMonth("month_from", from); err != nil {
			return 0, 0, err
		}
	}
	if to != "" {
		if t, err = domain.ParseMonth("month_to", to); err != nil {
			return 0, 0, err
		}
	}
	if f != 0 && t != 0 && f > t {
		return 0, 0, failure.Invalid("month_from", "%s is after month_to %s", f, t)
	}
	return f, t, nil
}

func pageLimit(size int32) (int, error) {
	switch {
	case size < 0:
		return 0, failure.Invalid("page_size", "must not be negative")
	case size == 0:
		return defaultPageSize, nil
	case size > maxPageSize:
		return maxPageSize, nil
	}
	return int(size), nil
}

func deref(p *eventstore.Position) eventstore.Position {
	if p == nil {
		return eventstore.Position{}
	}
	return *p
}
