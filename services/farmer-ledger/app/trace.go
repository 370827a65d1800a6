package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"
	"github.com/furrow/furrow/pkg/money"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// LotEvent is a delivery's weigh-in (Correction 0) or one of its
// corrections, as the trace read model keeps it.
type LotEvent struct {
	EventID       string
	Seq           uint64
	DeliveryID    string
	FarmerID      string
	Correction    int32
	Product       string
	Grade         string
	NetGrams      int64
	PriceFenPerKg int64
	AmountFen     int64
	ReversedFen   int64
	Reason        string
	WeighedAt     time.Time
	Warehouse     string
	County        string
	// Centre is the distribution centre that weighed it in ("": none).
	Centre string
}

// SaleEvent is a premium event of a branded sale.
type SaleEvent struct {
	EventID     string
	Seq         uint64
	Kind        string // earned, withheld, adjusted
	SaleID      string
	ReportID    string
	LineID      string
	DeliveryID  string
	FarmerID    string
	BrandID     string
	Channel     string
	Grams       int64
	SoldAt      time.Time
	RuleID      string
	RuleVersion int32
	FenPerKg    int64
	PremiumFen  int64
	DeltaFen    int64
	Cause       int32
	Withheld    int32
	Reason      string
}

// TraceEntry is a farmer's journal entry as a trace needs it.
type TraceEntry struct {
	EntryID       string
	Seq           uint64
	SourceEventID string
	PayoutID      string
	PayableFen    int64
	PremiumFen    int64
	PaidFen       int64
}

// Traces reads the trace read models.
type Traces interface {
	LotEvents(ctx context.Context, deliveryID string) ([]LotEvent, error)
	FarmerLotEvents(ctx context.Context, farmerID string) ([]LotEvent, error)
	SaleEvents(ctx context.Context, deliveryID string) ([]SaleEvent, error)
	FarmerSaleEvents(ctx context.Context, farmerID string) ([]SaleEvent, error)
	FarmerEntries(ctx context.Context, farmerID string) ([]TraceEntry, error)
	PayoutAmounts(ctx context.Context, farmerID string) (map[string]int64, error)
}

// LotEntry is an entry a lot caused, and where its money went.
type LotEntry struct {
	Entry     TraceEntry
	Kind      string
	AmountFen int64
	Allocated domain.Allocated
}

// LotPayout is a payout's share of a lot.
type LotPayout struct {
	PayoutID  string
	AmountFen int64
	LotFen    int64
	Settled   uint64
}

// LotTotals sums a lot's trace.
type LotTotals struct {
	DeliveredGrams, SoldGrams, EarningGrams int64
	PayableFen, PremiumFen, PaidFen         int64
	UnpaidFen, ReceivableFen                int64
}

// LotTrace is a lot's life (see LedgerService.TraceLot).
type LotTrace struct {
	Deliveries []LotEvent // the weigh-in, then every correction
	Sales      []SaleEvent
	// Current holds each sale's latest event, by sale id.
	Current []SaleEvent
	Entries []LotEntry
	Payouts []LotPayout
	Totals  LotTotals
	AsOf    []eventstore.Position
}

// allOf waits for several read models of one stream.
type allOf []Positions

// AllOf returns Positions that waits for each of ws, which follow the same
// stream (the lots' two trace projections): Head is the first's.
func AllOf(ws ...Positions) Positions { return allOf(ws) }

// WaitFor implements Positions: the position the slowest reflects.
func (a allOf) WaitFor(ctx context.Context, pos eventstore.Position) (eventstore.Position, error) {
	var at eventstore.Position
	for i, w := range a {
		p, err := w.WaitFor(ctx, pos)
		if err != nil {
			return eventstore.Position{}, err
		}
		if i == 0 || p.Sequence < at.Sequence {
			at = p
		}
	}
	return at, nil
}

// Head implements Positions.
func (a allOf) Head(ctx context.Context) (eventstore.Position, error) { return a[0].Head(ctx) }

// ErrNoTracing means the ledger was wired without trace read models.
var ErrNoTracing = errors.New("tracing is not configured")

// waitTraces waits until the trace read models reflect PROCUREMENT and
// BRAND as they are now, the ledger's handlers have posted the entries for
// them, and the finance read model reflects LEDGER as it then is (and
// minPos, if given): a trace is never older than the call.
func (l *Ledger) waitTraces(ctx context.Context, minPos *eventstore.Position) ([]eventstore.Position, error) {
	if l.traces == nil {
		return nil, ErrNoTracing
	}
	if minPos != nil {
		if _, err := l.financePositions.WaitFor(ctx, *minPos); err != nil {
			return nil, err
		}
		for _, w := range []Positions{l.traceLotsAt, l.traceSalesAt} {
			head, err := w.Head(ctx)
			if err == nil && head.Stream == minPos.Stream {
				if _, err := w.WaitFor(ctx, *minPos); err != nil {
					return nil, err
				}
			}
		}
	}
	var asOf []eventstore.Position
	for _, w := range []Positions{l.traceLotsAt, l.traceSalesAt} {
		head, err := w.Head(ctx)
		if err != nil {
			return nil, err
		}
		at, err := w.WaitFor(ctx, head)
		if err != nil {
			return nil, err
		}
		// The ledger's entries for everything upstream so far, too.
		if _, err := l.financePositions.WaitFor(ctx, head); err != nil {
			return nil, err
		}
		asOf = append(asOf, at)
	}
	head, err := l.financePositions.Head(ctx)
	if err != nil {
		return nil, err
	}
	at, err := l.financePositions.WaitFor(ctx, head)
	if err != nil {
		return nil, err
	}
	return append(asOf, at), nil
}

// TraceLot returns a lot's life: its delivery and corrections, its sales
// and their premium events, the entries they caused and, allocated first-in
// first-out over all of the farmer's entries (domain.Allocate), where each
// entry's money went.
func (l *Ledger) TraceLot(ctx context.Context, deliveryID string, minPos *eventstore.Position) (LotTrace, error) {
	if err := ident.Check("delivery_id", deliveryID); err != nil {
		return LotTrace{}, err
	}
	asOf, err := l.waitTraces(ctx, minPos)
	if err != nil {
		return LotTrace{}, err
	}
	var t LotTrace
	t.AsOf = asOf
	if t.Deliveries, err = l.traces.LotEvents(ctx, deliveryID); err != nil {
		return LotTrace{}, err
	}
	if len(t.Deliveries) == 0 {
		return LotTrace{}, failure.NotFound("delivery_id", "the ledger has seen no delivery %s", deliveryID)
	}
	farmerID := t.Deliveries[0].FarmerID
	if t.Sales, err = l.traces.SaleEvents(ctx, deliveryID); err != nil {
		return LotTrace{}, err
	}
	t.Current = currentSales(t.Sales)
	entries, err := l.traces.FarmerEntries(ctx, farmerID)
	if err != nil {
		return LotTrace{}, err
	}
	amounts, err := l.traces.PayoutAmounts(ctx, farmerID)
	if err != nil {
		return LotTrace{}, err
	}
	kinds := map[string]string{}
	for _, d := range t.Deliveries {
		kinds[d.EventID] = "payable"
		if d.Correction > 0 {
			kinds[d.EventID] = "correction"
		}
	}
	for _, s := range t.Sales {
		kinds[s.EventID] = "premium_" + s.Kind
	}
	items := make([]domain.TraceItem, 0, len(entries))
	for _, e := range entries {
		accrued, err := money.Add(e.PayableFen, e.PremiumFen)
		if err != nil {
			return LotTrace{}, fmt.Errorf("trace of lot %s: entry %s: %w", deliveryID, e.EntryID, err)
		}
		items = append(items, domain.TraceItem{EntryID: e.EntryID, AccruedFen: accrued, PaidFen: e.PaidFen, PayoutID: e.PayoutID})
	}
	alloc, err := domain.Allocate(items)
	if err != nil {
		return LotTrace{}, fmt.Errorf("trace of lot %s: %w", deliveryID, err)
	}
	settledAt := map[string]uint64{}
	for _, e := range entries {
		if e.PaidFen > 0 {
			settledAt[e.PayoutID] = e.Seq
		}
	}
	payouts := map[string]*LotPayout{}
	sum := func(dst *int64, v int64) error {
		s, err := money.Add(*dst, v)
		*dst = s
		return err
	}
	for k, e := range entries {
		kind, ok := kinds[e.SourceEventID]
		if !ok || items[k].AccruedFen == 0 {
			continue
		}
		le := LotEntry{Entry: e, Kind: kind, AmountFen: items[k].AccruedFen}
		if a := alloc[e.EntryID]; a != nil {
			le.Allocated = *a
		}
		t.Entries = append(t.Entries, le)
		var errs []error
		if kind == "payable" || kind == "correction" {
			errs = append(errs, sum(&t.Totals.PayableFen, le.AmountFen))
		} else {
			errs = append(errs, sum(&t.Totals.PremiumFen, le.AmountFen))
		}
		if le.AmountFen > 0 {
			errs = append(errs, sum(&t.Totals.UnpaidFen, le.Allocated.Open))
		} else {
			errs = append(errs, sum(&t.Totals.ReceivableFen, le.Allocated.Open))
		}
		for _, p := range le.Allocated.Parts {
			if p.Kind != domain.AllocPayout {
				continue
			}
			lp := payouts[p.PayoutID]
			if lp == nil {
				lp = &LotPayout{PayoutID: p.PayoutID, AmountFen: amounts[p.PayoutID], Settled: settledAt[p.PayoutID]}
				payouts[p.PayoutID] = lp
			}
			errs = append(errs, sum(&lp.LotFen, p.Fen), sum(&t.Totals.PaidFen, p.Fen))
		}
		if err := errors.Join(errs...); err != nil {
			return LotTrace{}, fmt.Errorf("trace of lot %s: %w", deliveryID, err)
		}
	}
	for _, p := range payouts {
		t.Payouts = append(t.Payouts, *p)
	}
	slices.SortFunc(t.Payouts, func(a, b LotPayout) int { return int(a.Settled) - int(b.Settled) })
	t.Totals.DeliveredGrams = t.Deliveries[len(t.Deliveries)-1].NetGrams
	var errs []error
	for _, s := range t.Current {
		errs = append(errs, sum(&t.Totals.SoldGrams, s.Grams))
		if s.Withheld == 0 && s.Kind != "withheld" {
			errs = append(errs, sum(&t.Totals.EarningGrams, s.Grams))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return LotTrace{}, fmt.Errorf("trace of lot %s: %w", deliveryID, err)
	}
	return t, nil
}

// currentSales returns each sale's latest event, by sale id.
func currentSales(evs []SaleEvent) []SaleEvent {
	last := map[string]SaleEvent{}
	for _, e := range evs {
		last[e.SaleID] = e
	}
	out := make([]SaleEvent, 0, len(last))
	for _, e := range last {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b SaleEvent) int {
		switch {
		case a.SaleID < b.SaleID:
			return -1
		case a.SaleID > b.SaleID:
			return 1
		}
		return 0
	})
	return out
}

// TraceMonth is one month of a farmer's produce in grams and fen.
type TraceMonth struct {
	Month                      string
	Deliveries                 int
	DeliveredGrams, PayableFen int64
	BrandedGrams, EarningGrams int64
	PremiumFen                 int64
}

// cst is China Standard Time, the calendar of months.
var cst = time.FixedZone("CST", 8*60*60)

// TraceFarmer returns a farmer's months (CST) from monthFrom to monthTo
// ("YYYY-MM", inclusive; empty: open): deliveries by weigh-in month, as
// corrected; sales by sale month, as they stand now.
func (l *Ledger) TraceFarmer(ctx context.Context, farmerID, monthFrom, monthTo string, minPos *eventstore.Position) ([]TraceMonth, TraceMonth, []eventstore.Position, error) {
	if err := ident.Check("farmer_id", farmerID); err != nil {
		return nil, TraceMonth{}, nil, err
	}
	for _, m := range []struct{ field, v string }{{"month_from", monthFrom}, {"month_to", monthTo}} {
		if m.v == "" {
			continue
		}
		if _, err := time.Parse("2006-01", m.v); err != nil {
			return nil, TraceMonth{}, nil, failure.Invalid(m.field, "%q is not a month YYYY-MM", m.v)
		}
	}
	asOf, err := l.waitTraces(ctx, minPos)
	if err != nil {
		return nil, TraceMonth{}, nil, err
	}
	if _, err := l.Farmer(ctx, farmerID); err != nil {
		return nil, TraceMonth{}, nil, err
	}
	lots, err := l.traces.FarmerLotEvents(ctx, farmerID)
	if err != nil {
		return nil, TraceMonth{}, nil, err
	}
	sales, err := l.traces.FarmerSaleEvents(ctx, farmerID)
	if err != nil {
		return nil, TraceMonth{}, nil, err
	}
	months := map[string]*TraceMonth{}
	month := func(t time.Time) *TraceMonth {
		m := t.In(cst).Format("2006-01")
		if months[m] == nil {
			months[m] = &TraceMonth{Month: m}
		}
		return months[m]
	}
	// A delivery's month is its weigh-in's; its figures the latest event's.
	type lot struct{ first, last LotEvent }
	byID := map[string]*lot{}
	var order []string
	for _, e := range lots {
		if b := byID[e.DeliveryID]; b != nil {
			b.last = e
			continue
		}
		byID[e.DeliveryID] = &lot{first: e, last: e}
		order = append(order, e.DeliveryID)
	}
	var errs []error
	add := func(dst *int64, v int64) {
		s, err := money.Add(*dst, v)
		*dst = s
		errs = append(errs, err)
	}
	for _, id := range order {
		b := byID[id]
		m := month(b.first.WeighedAt)
		m.Deliveries++
		add(&m.DeliveredGrams, b.last.NetGrams)
		add(&m.PayableFen, b.last.AmountFen)
	}
	for _, s := range currentSales(sales) {
		m := month(s.SoldAt)
		add(&m.BrandedGrams, s.Grams)
		if s.Kind != "withheld" && s.Withheld == 0 {
			add(&m.EarningGrams, s.Grams)
			add(&m.PremiumFen, s.PremiumFen)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, TraceMonth{}, nil, fmt.Errorf("trace of farmer %s: %w", farmerID, err)
	}
	var out []TraceMonth
	var total TraceMonth
	for _, m := range months {
		if (monthFrom != "" && m.Month < monthFrom) || (monthTo != "" && m.Month > monthTo) {
			continue
		}
		out = append(out, *m)
		total.Deliveries += m.Deliveries
		for _, p := range [][2]*int64{{&total.DeliveredGrams, &m.DeliveredGrams}, {&total.PayableFen, &m.PayableFen},
			{&total.BrandedGrams, &m.BrandedGrams}, {&total.EarningGrams, &m.EarningGrams}, {&total.PremiumFen, &m.PremiumFen}} {
			add(p[0], *p[1])
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, TraceMonth{}, nil, fmt.Errorf("trace of farmer %s: %w", farmerID, err)
	}
	slices.SortFunc(out, func(a, b TraceMonth) int {
		switch {
		case a.Month < b.Month:
			return -1
		case a.Month > b.Month:
			return 1
		}
		return 0
	})
	return out, total, asOf, nil
}
