package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// loadConcurrency bounds the look-ups a report's facts take at once.
const loadConcurrency = 16

// ReportSales is the command to record a channel's sales report.
type ReportSales struct {
	// Fingerprint of the request as received: the same report id and
	// revision with another fingerprint is ErrIdempotencyMismatch.
	Fingerprint string
	Report      domain.SalesReport
	Meta        eventstore.Metadata
}

// Reported is the outcome of ReportSales.
type Reported struct {
	// Report is the report as the call left it: its revision's batch
	// applied and, when a revision raced the report, the call's own
	// re-rating of it (GetSalesReport gives the current state).
	Report *domain.Report
	// ChangedLines counts the lines whose outcome the call recorded.
	ChangedLines int
	// Result is where the report's batch was written, except that Last is
	// the position of the outcome: the call's re-rating when it made one.
	Result eventstore.AppendResult
}

// ReportSales records a report or a restatement. Its idempotency key is
// the report id and revision: a retry (however late) returns the first
// outcome, exactly: the same changed lines, lines and position, however
// the report changed since. A revision is one atomic batch: its header
// and the events of the lines whose outcome changed.
//
// The lines are rated against the rule sets as read; if one of them
// changes before the batch lands (a revision racing the report), the call
// re-rates the report at once, under its own idempotency key, so a retry
// can tell that re-rating from later ones. Should another process re-rate
// the report first, the call leaves it to them (RerateOnSalesReported
// would do it otherwise) and its outcome is the report as its batch left
// it.
func (i *Incubator) ReportSales(ctx context.Context, cmd ReportSales) (Reported, error) {
	now := i.now()
	in := cmd.Report
	if err := domain.CheckSalesReport(in, now); err != nil {
		return Reported{}, err
	}
	key := fmt.Sprintf("brand.ReportSales:%s#%d", in.ReportID, in.Revision)
	var (
		changes []domain.Change
		facts   domain.SaleFacts
	)
	rep, res, err := execute(ctx, i, func() *domain.Report { return domain.NewReport(in.ReportID) },
		key, cmd.Fingerprint, cmd.Meta,
		func(r *domain.Report) ([]domain.Change, error) {
			var err error
			if facts, err = i.saleFacts(ctx, in, r, now); err != nil {
				return nil, err
			}
			changes, err = r.Record(in, facts)
			return changes, err
		})
	if err != nil {
		return Reported{}, err
	}
	if res.Duplicate {
		return i.reportedBefore(ctx, in.ReportID, key, cmd.Fingerprint, res)
	}
	lines := 0
	for k, c := range changes {
		if c.Aggregate == nil { // a lot's claim is not the report's event
			rep.Apply(res.First+uint64(k), c.Event)
			lines++
		}
	}
	out := Reported{Report: rep, ChangedLines: lines - 1, Result: res}

	var stale []string
	for b, rs := range facts.RuleSets {
		v, err := i.events.Version(ctx, domain.RuleSetAggregate(b, in.Channel))
		if err != nil {
			return Reported{}, err
		}
		if v > rs.Version() {
			stale = append(stale, b)
		}
	}
	if len(stale) == 0 {
		return out, nil
	}
	i.log.InfoContext(ctx, "rule sets changed while the report was rated; re-rating it", "report_id", in.ReportID, "brands", stale)
	if err := i.rerateReported(ctx, &out, key, cmd); err != nil {
		return Reported{}, fmt.Errorf("report %s recorded at %s; re-rating it: %w", in.ReportID, res.Position(), err)
	}
	return out, nil
}

// rerateKey is the idempotency key of the re-rating a ReportSales call
// (under key) makes at once when a revision raced its report.
func rerateKey(key string) string { return key + "/rerate" }

// rerateReported re-rates the report out holds, as its batch left it, and
// moves out to the re-rated report. One attempt: if anything else was
// appended to the report meanwhile (another process re-rated it), the
// report is theirs to bring up to date and out stays as it is.
func (i *Incubator) rerateReported(ctx context.Context, out *Reported, key string, cmd ReportSales) error {
	rep := domain.NewReport(out.Report.ID())
	if err := i.load(ctx, rep); err != nil {
		return err
	}
	if rep.Version() != out.Result.Last {
		return nil
	}
	changes, _, err := i.rerateChanges(ctx, rep)
	if err != nil || len(changes) == 0 {
		return err
	}
	md := cmd.Meta
	if len(out.Result.EventIDs) > 0 {
		md.CausationID = out.Result.EventIDs[0]
	}
	res, err := i.events.Append(ctx, rep, rerateKey(key), cmd.Fingerprint, md, changes...)
	if errors.Is(err, eventstore.ErrConflict) {
		return nil
	}
	if err != nil {
		return err
	}
	for k, c := range changes {
		rep.Apply(res.First+uint64(k), c.Event)
	}
	out.Report, out.Result.Last = rep, res.Last
	return nil
}

// reportedBefore rebuilds the outcome of the ReportSales call under key
// that wrote res: the report folded up to that call's batch, or to its own
// re-rating when it made one, whatever was appended since.
//
// The call's batch was found at res, but this load may be answered by a
// replica that does not hold it yet: it loads until the report reflects
// res.Last (the batch's last event of the report).
func (i *Incubator) reportedBefore(ctx context.Context, reportID, key, fingerprint string, res eventstore.AppendResult) (Reported, error) {
	var (
		h    *history
		seen *eventstore.Requests
	)
	err := eventstore.Reflecting(ctx, res.Last, func(ctx context.Context) (uint64, error) {
		h = &history{Report: domain.NewReport(reportID)}
		var err error
		seen, err = i.events.Load(ctx, h)
		return h.Version(), err
	})
	if err != nil {
		return Reported{}, fmt.Errorf("load report %s: %w", reportID, err)
	}
	upTo := res.Last
	if r, ok, _ := seen.Check(rerateKey(key), fingerprint); ok {
		upTo = r.Last
	}
	rep := domain.NewReport(reportID)
	lines := 0
	for _, e := range h.events {
		if e.seq <= upTo {
			rep.Apply(e.seq, e.msg)
		}
		if e.seq > res.First && e.seq <= res.Last {
			lines++ // the batch's line events (its lot claims are not the report's)
		}
	}
	out := res
	out.Last = upTo
	return Reported{Report: rep, ChangedLines: lines, Result: out}, nil
}

// history records a report's events as they are loaded, so that the
// report can be folded up to a past position.
type history struct {
	*domain.Report
	events []struct {
		seq uint64
		msg proto.Message
	}
}

// Apply implements domain.Aggregate.
func (h *history) Apply(seq uint64, ev proto.Message) {
	h.Report.Apply(seq, ev)
	h.events = append(h.events, struct {
		seq uint64
		msg proto.Message
	}{seq, ev})
}

// saleFacts loads what rating in's lines depends on: the channel, the
// deliveries' farmers, which farmers the ledger knows, and the brands,
// their rule sets at the channel and the farmers' enrolments.
func (i *Incubator) saleFacts(ctx context.Context, in domain.SalesReport, rep *domain.Report, now time.Time) (domain.SaleFacts, error) {
	f := domain.SaleFacts{
		Now: now, Brands: map[string]*domain.Brand{}, RuleSets: map[string]*domain.RuleSet{},
		Enrolments: map[string]*domain.Enrolment{}, Farmers: map[string]bool{}, Deliveries: map[string]string{},
		LotGrams: map[string]int64{}, Lots: map[string]*domain.Lot{},
	}
	ch := domain.NewChannel(in.Channel)
	if err := i.load(ctx, ch); err != nil {
		return f, err
	}
	f.ChannelRegistered = ch.Registered()
	if !f.ChannelRegistered {
		return f, nil // Record refuses the report; nothing else matters
	}

	var mu sync.Mutex // guards f's maps while loaders run
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(loadConcurrency)
	seen := map[string]bool{}
	for _, l := range in.Lines {
		if l.DeliveryID != "" && !seen["d:"+l.DeliveryID] {
			seen["d:"+l.DeliveryID] = true
			g.Go(func() error {
				lot, found, err := i.deliveries.Lot(gctx, l.DeliveryID)
				if found {
					mu.Lock()
					f.Deliveries[l.DeliveryID], f.LotGrams[l.DeliveryID] = lot.FarmerID, lot.Grams
					mu.Unlock()
				}
				return err
			})
		}
		if !seen["b:"+l.BrandID] {
			seen["b:"+l.BrandID] = true
			g.Go(func() error {
				b, rs := domain.NewBrand(l.BrandID), domain.NewRuleSet(l.BrandID, in.Channel)
				if err := i.load(gctx, b); err != nil {
					return err
				}
				if err := i.load(gctx, rs); err != nil {
					return err
				}
				mu.Lock()
				f.Brands[l.BrandID], f.RuleSets[l.BrandID] = b, rs
				mu.Unlock()
				return nil
			})
		}
	}
	// The claims on every lot the report names now or named before.
	lots := []string{}
	for _, l := range in.Lines {
		lots = append(lots, l.DeliveryID)
	}
	for _, s := range rep.Sales() {
		lots = append(lots, s.DeliveryID)
	}
	for _, id := range lots {
		if id == "" || seen["l:"+id] || ident.Check("delivery_id", id) != nil {
			continue
		}
		seen["l:"+id] = true
		g.Go(func() error {
			lot := domain.NewLot(id)
			if err := i.load(gctx, lot); err != nil {
				return err
			}
			mu.Lock()
			f.Lots[id] = lot
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return f, err
	}

	// Farmers next: a delivery line's farmer is known only now.
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(loadConcurrency)
	for k, l := range in.Lines {
		farmer, err := domain.FarmerOf(k, l, f.Deliveries)
		if err != nil || ident.Check("farmer_id", farmer) != nil {
			continue // Record reports it, with the line's field
		}
		if !seen["f:"+farmer] {
			seen["f:"+farmer] = true
			g.Go(func() error {
				known, err := i.farmers.Registered(gctx, farmer)
				mu.Lock()
				f.Farmers[farmer] = known
				mu.Unlock()
				return err
			})
		}
		id := domain.EnrolmentID(l.BrandID, farmer)
		if !seen["e:"+id] {
			seen["e:"+id] = true
			g.Go(func() error {
				e := domain.NewEnrolment(l.BrandID, farmer)
				if err := i.load(gctx, e); err != nil {
					return err
				}
				mu.Lock()
				f.Enrolments[id] = e
				mu.Unlock()
				return nil
			})
		}
	}
	return f, g.Wait()
}

// SalesReport returns a report, read from its events.
func (i *Incubator) SalesReport(ctx context.Context, reportID string) (*domain.Report, error) {
	if err := ident.Check("report_id", reportID); err != nil {
		return nil, err
	}
	rep := domain.NewReport(reportID)
	if err := i.load(ctx, rep); err != nil {
		return nil, err
	}
	if rep.Revision() == 0 {
		return nil, failure.NotFound("report_id", "report %s does not exist", reportID)
	}
	return rep, nil
}
