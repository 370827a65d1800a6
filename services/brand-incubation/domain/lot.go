package domain

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/money"
)

// LotAggregate is the subject filter covering a lot's claims. A lot is a
// procurement delivery; its id is the delivery id.
func LotAggregate(deliveryID string) string { return filter(TypeLot, deliveryID) }

// LotSubject is the subject of a lot's event of the given kind.
func LotSubject(deliveryID, kind string) string { return subject(TypeLot, deliveryID, kind) }

// Lot is a delivered lot as brand incubation sees it: how many of its
// grams each sales report claims. It is the unit of optimistic concurrency
// for claims: a report that claims more of a lot appends its LotClaimed in
// its own atomic batch, guarded by the lot's version, so two reports that
// read the same claims cannot both land. Lots stay small (one entry per
// report that names them).
type Lot struct {
	id      string
	claims  map[string]int64 // by report id
	total   int64
	version uint64
}

var _ Aggregate = (*Lot)(nil)

// NewLot returns the empty aggregate for a delivery, ready to replay events.
func NewLot(deliveryID string) *Lot { return &Lot{id: deliveryID, claims: map[string]int64{}} }

// Filter implements Aggregate.
func (l *Lot) Filter() string { return LotAggregate(l.id) }

// Subject implements Aggregate.
func (l *Lot) Subject(kind string) string { return LotSubject(l.id, kind) }

// Apply implements Aggregate.
func (l *Lot) Apply(seq uint64, ev proto.Message) {
	l.version = seq
	if e, ok := ev.(*brandevents.LotClaimed); ok {
		l.claims[e.GetReportId()] = e.GetClaimedGrams()
		// Claims are bounded by the lot's grams when made; a sum beyond
		// int64 would need a stream written by hand, and saturates.
		var total int64
		for _, g := range l.claims {
			if t, err := money.Add(total, g); err == nil {
				total = t
			}
		}
		l.total = total
	}
}

// Version implements Aggregate.
func (l *Lot) Version() uint64 { return l.version }

// ID returns the delivery id.
func (l *Lot) ID() string { return l.id }

// Claimed returns the grams every report claims.
func (l *Lot) Claimed() int64 { return l.total }

// ClaimedBy returns the grams a report claims.
func (l *Lot) ClaimedBy(reportID string) int64 { return l.claims[reportID] }

// Kilograms renders grams as kilograms for messages: "400 kg", "0.25 kg".
func Kilograms(grams int64) string {
	sign := ""
	if grams < 0 {
		sign, grams = "-", -grams
	}
	kg, g := grams/1000, grams%1000
	if g == 0 {
		return fmt.Sprintf("%s%s kg", sign, thousands(kg))
	}
	frac := fmt.Sprintf("%03d", g)
	for frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	return fmt.Sprintf("%s%s.%s kg", sign, thousands(kg), frac)
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// lotClaims works out what a report revision claims of each lot its lines
// name (or named before: a lot the revision no longer names is claimed 0),
// checks that no lot is claimed beyond what it delivered, and returns the
// LotClaimed events, by delivery id, for the lots whose claim changed.
func (r *Report) lotClaims(in SalesReport, f SaleFacts) ([]Change, error) {
	type claim struct {
		grams int64
		first int // the first line naming the lot
		lines []*brandevents.LotClaimLine
	}
	next := map[string]*claim{}
	for i, l := range in.Lines {
		if l.DeliveryID == "" {
			continue
		}
		c := next[l.DeliveryID]
		if c == nil {
			c = &claim{first: i}
			next[l.DeliveryID] = c
		}
		g, err := money.Add(c.grams, l.Grams)
		if err != nil {
			return nil, fmt.Errorf("lines naming lot %s: %w", l.DeliveryID, err)
		}
		c.grams = g
		c.lines = append(c.lines, &brandevents.LotClaimLine{SaleId: SaleID(r.id, l.LineID), LineId: l.LineID, BrandId: l.BrandID, Grams: l.Grams})
	}
	ids := make([]string, 0, len(next))
	for id := range next {
		ids = append(ids, id)
	}
	for _, s := range r.sales {
		if s.DeliveryID != "" && s.Grams > 0 && next[s.DeliveryID] == nil {
			next[s.DeliveryID] = &claim{first: -1}
			ids = append(ids, s.DeliveryID)
		}
	}
	slices.Sort(ids)
	var out []Change
	for _, id := range ids {
		c := next[id]
		lot := f.Lots[id]
		if lot == nil {
			lot = NewLot(id)
		}
		prev := lot.ClaimedBy(r.id)
		if c.grams == prev {
			continue
		}
		lotGrams := f.LotGrams[id]
		others := lot.Claimed() - prev
		if c.grams > prev && others+c.grams > lotGrams {
			left := max(lotGrams-lot.Claimed(), 0)
			return nil, preconditionOn(fmt.Sprintf("lines[%d].grams", c.first),
				"lot %s has %s left (%s delivered, %s claimed by sales reports); report %s would claim %s more of it",
				id, Kilograms(left), Kilograms(lotGrams), Kilograms(lot.Claimed()), r.id, Kilograms(c.grams-prev))
		}
		out = append(out, Change{Kind: KindLotClaimed, Aggregate: lot, Event: &brandevents.LotClaimed{
			DeliveryId: id, ReportId: r.id, ReportRevision: in.Revision, Channel: in.Channel,
			ClaimedGrams: c.grams, PreviousGrams: prev, LotGrams: lotGrams, LotClaimedGrams: others + c.grams,
			Lines: c.lines,
		}})
	}
	return out, nil
}
