package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// rerated is what re-rating for one version of a brand's rule did to the
// reports it touched, and the position that covers it.
type rerated struct {
	adjusted int
	deltaFen int64
	// last is the sequence of the revision or of the last of its
	// adjustments, whichever is later: a position at or after every event
	// the revision caused, and one that later events of the same reports
	// (another brand's revision, a restatement) do not move.
	last uint64
}

// rerateRule re-rates every report with a sale earning under the brand's
// rule on or after from, and sums what the rule's version did to them:
// the PremiumAdjusted events of that brand, rule and version, whoever
// wrote them, so that the sum is the same however often it runs. It first
// waits until the premium read model reflects the stream up to the
// revision (seq), so it sees every sale earned before the revision; a
// report written concurrently with the revision, rated against the rule
// set before it, re-rates itself (ReportSales) or is caught by
// RerateOnSalesReported.
func (i *Incubator) rerateRule(ctx context.Context, brandID, channel, ruleID string, version int32, from domain.Date, seq uint64, md eventstore.Metadata) (rerated, error) {
	if _, err := i.premiumsAt.WaitFor(ctx, position(seq)); err != nil {
		return rerated{}, err
	}
	reports, err := i.premiums.EarningReports(ctx, brandID, channel, ruleID, from)
	if err != nil {
		return rerated{}, err
	}
	sum := rerated{last: seq}
	for _, id := range reports {
		rep, err := i.rerateReport(ctx, id, md)
		if err != nil {
			return sum, err
		}
		// One report's effect is bounded; their sum is checked.
		eff := rep.RevisionEffect(brandID, ruleID, version)
		total, err := domain.RevisionEffect{Sales: sum.adjusted, DeltaFen: sum.deltaFen}.Plus(eff)
		if err != nil {
			return sum, fmt.Errorf("re-rate %s/%s/%s version %d: %w", brandID, channel, ruleID, version, err)
		}
		sum.adjusted, sum.deltaFen = total.Sales, total.DeltaFen
		sum.last = max(sum.last, eff.Last)
	}
	if sum.adjusted > 0 {
		i.log.InfoContext(ctx, "premiums re-rated", "brand_id", brandID, "channel", channel, "rule_id", ruleID,
			"rule_version", version, "reports", len(reports), "sales", sum.adjusted, "delta_fen", sum.deltaFen)
	}
	return sum, nil
}

// rerateReport brings a report's earning sales to the rates their rule
// sets give them now, and returns the report as it then stands: one
// atomic batch of PremiumAdjusted (a report has at most
// domain.MaxReportLines sales), appended expecting the version the
// decision was made on. The decision is a function of the report and the
// rule sets, so running it again, or beside another process running it,
// appends nothing more: the loser of a race reloads and finds the sales
// already at their rates.
func (i *Incubator) rerateReport(ctx context.Context, reportID string, md eventstore.Metadata) (*domain.Report, error) {
	for attempt := 0; ; attempt++ {
		rep := domain.NewReport(reportID)
		if err := i.load(ctx, rep); err != nil {
			return nil, err
		}
		changes, versions, err := i.rerateChanges(ctx, rep)
		if err != nil || len(changes) == 0 {
			return rep, err
		}
		// The key names the report version the decision was made on: a
		// retry of this very append is recognised as a duplicate, and the
		// fingerprint (the rule sets' versions) tells a retry from a newer
		// decision on the same version.
		key := "brand.Rerate:" + reportID + "@" + strconv.FormatUint(rep.Version(), 10)
		res, err := i.events.Append(ctx, rep, key, versions, md, changes...)
		switch {
		case errors.Is(err, eventstore.ErrConflict), errors.Is(err, eventstore.ErrIdempotencyMismatch), err == nil && res.Duplicate:
			// Someone else changed the report (or did this very thing):
			// look again.
			if attempt < maxConflictRetries {
				continue
			}
			return nil, failure.Conflict(fmt.Errorf("re-rate report %s: %w", reportID, eventstore.ErrConflict))
		case err != nil:
			return nil, fmt.Errorf("re-rate report %s: %w", reportID, err)
		}
		for k, c := range changes {
			rep.Apply(res.First+uint64(k), c.Event)
		}
		return rep, nil
	}
}

// rerateChanges returns the adjustments that bring rep's earning sales to
// the rates their brands' rule sets give them now, and the rule sets'
// versions the decision was made on ("brand@version,…").
func (i *Incubator) rerateChanges(ctx context.Context, rep *domain.Report) ([]domain.Change, string, error) {
	ruleSets := map[string]*domain.RuleSet{}
	var versions []string
	for _, b := range rep.EarningBrands() {
		rs := domain.NewRuleSet(b, rep.Channel())
		if err := i.load(ctx, rs); err != nil {
			return nil, "", err
		}
		ruleSets[b] = rs
		versions = append(versions, b+"@"+strconv.FormatUint(rs.Version(), 10))
	}
	changes, err := rep.Rerate(ruleSets)
	return changes, strings.Join(versions, ","), err
}

// RerateOnSalesReported re-rates a report that was rated against a rule
// set a revision has changed since: a report and a revision that race may
// be appended in either order, and when the report lands after the
// revision but was rated before it, the revision's re-rating pass may not
// have seen it. Most reports need nothing; checking costs one look-up per
// rule set the report used.
func (i *Incubator) RerateOnSalesReported(ctx context.Context, src eventstore.Recorded, ev *brandevents.SalesReported) error {
	stale, err := i.staleRuleSets(ctx, ev.GetChannel(), ev.GetRuleSets())
	if err != nil || !stale {
		return err
	}
	md := eventstore.Metadata{CorrelationID: src.Metadata.CorrelationID, CausationID: src.ID, Actor: "brand-incubation/rerate-on-sales-reported"}
	_, err = i.rerateReport(ctx, ev.GetReportId(), md)
	return err
}

// staleRuleSets reports whether any of the rule sets a report was rated
// against has changed since.
func (i *Incubator) staleRuleSets(ctx context.Context, channel string, used []*brandevents.RuleSetVersion) (bool, error) {
	for _, u := range used {
		v, err := i.events.Version(ctx, domain.RuleSetAggregate(u.GetBrandId(), channel))
		if err != nil {
			return false, err
		}
		if v > u.GetVersion() {
			return true, nil
		}
	}
	return false, nil
}
