package app

import (
	"context"
	"fmt"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// SetPremiumRule is the command to set a premium rule.
type SetPremiumRule struct {
	RequestID   string
	Fingerprint string
	BrandID     string
	Channel     string
	Rule        domain.NewRule
	Meta        eventstore.Metadata
}

// SetPremiumRule sets a rule once per request id. Two concurrent rules
// that would overlap both read the rule set; the one that appends second
// fails its expectation, re-reads, and is refused for the overlap.
func (i *Incubator) SetPremiumRule(ctx context.Context, cmd SetPremiumRule) (eventstore.AppendResult, error) {
	if err := checkCommand(cmd.RequestID, "brand_id", cmd.BrandID, "channel", cmd.Channel, "rule_id", cmd.Rule.RuleID); err != nil {
		return eventstore.AppendResult{}, err
	}
	_, res, err := execute(ctx, i, func() *domain.RuleSet { return domain.NewRuleSet(cmd.BrandID, cmd.Channel) },
		"brand.SetPremiumRule:"+cmd.RequestID, cmd.Fingerprint, cmd.Meta,
		func(rs *domain.RuleSet) ([]domain.Change, error) {
			if err := domain.CheckRate("fen_per_kg", cmd.Rule.FenPerKg); err != nil {
				return nil, err // before any I/O
			}
			b := domain.NewBrand(cmd.BrandID)
			if err := i.load(ctx, b); err != nil {
				return nil, err
			}
			ch := domain.NewChannel(cmd.Channel)
			if err := i.load(ctx, ch); err != nil {
				return nil, err
			}
			ev, err := rs.SetRule(b, ch.Registered(), cmd.Rule)
			return one(domain.KindPremiumRuleSet, ev, err)
		})
	return res, err
}

// ReviseRule is the command to revise a rule's rate.
type ReviseRule struct {
	RequestID   string
	Fingerprint string
	BrandID     string
	Channel     string
	Revision    domain.Revision
	Meta        eventstore.Metadata
}

// Revised is what ReviseRule did.
type Revised struct {
	RuleVersion int32
	Changed     bool
	// Adjusted and DeltaFen sum the re-ratings to the revision's rate,
	// whoever made them (this call, an earlier attempt, the reaction).
	Adjusted int
	DeltaFen int64
	// Position is the revision's, or the last adjustment's.
	Position eventstore.Position
}

// ReviseRule records a revision once per request id and re-rates the
// premiums earned under the rule from the revised day on, before it
// returns.
//
// A revision can touch more sales than one atomic batch holds, so it is
// applied in steps, each safe to repeat: the PremiumRuleRevised event
// first (the decision, under the rule set's optimistic concurrency), then
// one atomic batch of PremiumAdjusted per report whose sales it changes.
// Each report batch brings the report's sales to the current rates and is
// appended expecting the report's version, so a step repeated, or run by
// two processes at once, adjusts each sale at most once. Should this call
// stop half-way (deadline, crash), the RerateOnPremiumRuleRevised reaction
// finishes the job, and retrying the call with the same request id resumes
// it too.
func (i *Incubator) ReviseRule(ctx context.Context, cmd ReviseRule) (Revised, error) {
	if err := checkCommand(cmd.RequestID, "brand_id", cmd.BrandID, "channel", cmd.Channel, "rule_id", cmd.Revision.RuleID); err != nil {
		return Revised{}, err
	}
	changed := false
	rs, res, err := execute(ctx, i, func() *domain.RuleSet { return domain.NewRuleSet(cmd.BrandID, cmd.Channel) },
		"brand.ReviseRule:"+cmd.RequestID, cmd.Fingerprint, cmd.Meta,
		func(rs *domain.RuleSet) ([]domain.Change, error) {
			ev, ch, err := rs.Revise(cmd.Revision, false)
			changed = ch
			if err != nil || !ch {
				return nil, err
			}
			return []domain.Change{{Kind: domain.KindPremiumRuleRevised, Event: ev}}, nil
		})
	if err != nil {
		return Revised{}, err
	}
	rule := rs.Rule(cmd.Revision.RuleID)
	out := Revised{RuleVersion: rule.Version, Position: position(res.Last)}
	if !res.Duplicate && !changed {
		return out, nil
	}
	out.Changed = true
	if v := rs.VersionWrittenAt(res.First); res.Duplicate && v != 0 {
		out.RuleVersion = v // a retry: the version the first attempt wrote
	} else {
		out.RuleVersion++ // rs is the rule set the revision was decided on
	}
	from, err := domain.ParseDate("revised_from", cmd.Revision.RevisedFrom)
	if cmd.Revision.RevisedFrom == "" {
		from, err = rule.From, nil
	}
	if err != nil {
		return Revised{}, err
	}
	md := cmd.Meta
	if len(res.EventIDs) > 0 {
		md.CausationID = res.EventIDs[0]
	}
	rr, err := i.rerateRule(ctx, cmd.BrandID, cmd.Channel, rule.ID, out.RuleVersion, from, res.Last, md)
	if err != nil {
		return Revised{}, fmt.Errorf("revision of rule %s recorded at %s; re-rating its premiums: %w", rule.ID, out.Position, err)
	}
	out.Adjusted, out.DeltaFen, out.Position = rr.adjusted, rr.deltaFen, position(rr.last)
	return out, nil
}

// PreviewRevision asks what a revision would change.
type PreviewRevision struct {
	BrandID     string
	Channel     string
	Revision    domain.Revision
	MinPosition *eventstore.Position
}

// Preview is what a revision would change, per farmer.
type Preview struct {
	RuleVersion int32
	Changed     bool
	Farmers     []domain.FarmerDelta
	Sales       int
	DeltaFen    int64
	AsOf        eventstore.Position
}

// PreviewRevision computes the per-farmer deltas a revision would cause,
// appending nothing. It re-rates the earning sales the premium read model
// holds (waiting until it reflects every sale reported before the call)
// with the very function re-rating applies, against the rule set as the
// revision would leave it: with no sale reported in between, the preview
// equals what ReviseRule then does.
func (i *Incubator) PreviewRevision(ctx context.Context, q PreviewRevision) (Preview, error) {
	if err := checkIDs("brand_id", q.BrandID, "channel", q.Channel, "rule_id", q.Revision.RuleID); err != nil {
		return Preview{}, err
	}
	rs := domain.NewRuleSet(q.BrandID, q.Channel)
	if err := i.load(ctx, rs); err != nil {
		return Preview{}, err
	}
	ev, changed, err := rs.Revise(q.Revision, true)
	if err != nil {
		return Preview{}, err
	}
	rule := rs.Rule(q.Revision.RuleID)
	if !changed {
		return Preview{RuleVersion: rule.Version, Farmers: []domain.FarmerDelta{}}, nil
	}
	asOf, err := i.waitPremiumsNow(ctx, q.MinPosition)
	if err != nil {
		return Preview{}, err
	}
	from, _ := domain.ParseDate("revised_from", ev.GetRevisedFrom()) // the domain wrote it
	sales, err := i.premiums.EarningSales(ctx, q.BrandID, q.Channel, rule.ID, from)
	if err != nil {
		return Preview{}, err
	}
	return sumPreview(q.BrandID, q.Channel, ev.GetRuleVersion(), asOf, rs.With(ev), sales)
}

// waitPremiumsNow waits until the premium read model reflects minPos (if
// given) and everything in the stream when it was called.
func (i *Incubator) waitPremiumsNow(ctx context.Context, minPos *eventstore.Position) (eventstore.Position, error) {
	if minPos != nil {
		if _, err := i.premiumsAt.WaitFor(ctx, *minPos); err != nil {
			return eventstore.Position{}, err
		}
	}
	head, err := i.events.Head(ctx)
	if err != nil {
		return eventstore.Position{}, err
	}
	return i.premiumsAt.WaitFor(ctx, position(head))
}

// RuleSet returns a brand's rules at a channel, read from their events.
func (i *Incubator) RuleSet(ctx context.Context, brandID, channel string) (*domain.RuleSet, error) {
	if err := checkIDs("brand_id", brandID, "channel", channel); err != nil {
		return nil, err
	}
	rs := domain.NewRuleSet(brandID, channel)
	if err := i.load(ctx, rs); err != nil {
		return nil, err
	}
	if len(rs.Rules()) == 0 {
		b := domain.NewBrand(brandID)
		if err := i.load(ctx, b); err != nil {
			return nil, err
		}
		if !b.Registered() {
			return nil, failure.NotFound("brand_id", "brand %s does not exist", brandID)
		}
	}
	return rs, nil
}

// RerateOnPremiumRuleRevised finishes the re-rating a revision calls for,
// whatever became of the ReviseRule call that recorded it. It is
// idempotent: sales already at the rule's current rate are left alone.
func (i *Incubator) RerateOnPremiumRuleRevised(ctx context.Context, src eventstore.Recorded, ev *brandevents.PremiumRuleRevised) error {
	from, err := domain.ParseDate("revised_from", ev.GetRevisedFrom())
	if err != nil {
		return fmt.Errorf("rerate on %s seq %d: %w", src.Type, src.Sequence, err)
	}
	md := eventstore.Metadata{CorrelationID: src.Metadata.CorrelationID, CausationID: src.ID, Actor: "brand-incubation/rerate-on-premium-rule-revised"}
	_, err = i.rerateRule(ctx, ev.GetBrandId(), ev.GetChannel(), ev.GetRuleId(), ev.GetRuleVersion(), from, src.Sequence, md)
	return err
}

// EndRule is the command to end a rule early.
type EndRule struct {
	RequestID   string
	Fingerprint string
	BrandID     string
	Channel     string
	Ending      domain.Ending
	Meta        eventstore.Metadata
}

// EndRule records an early end once per request id and re-rates the
// premiums earned under the rule after its new last day, before it
// returns: the same steps as ReviseRule (the decision under the rule set's
// optimistic concurrency, then one atomic batch per report), finished by
// RerateOnPremiumRuleEnded should the call stop half-way. The sales after
// the end earn nothing (withheld NO_RULE); their adjustments name the
// rule and the version that ended it, so the outcome counts them whoever
// wrote them.
func (i *Incubator) EndRule(ctx context.Context, cmd EndRule) (Revised, error) {
	if err := checkCommand(cmd.RequestID, "brand_id", cmd.BrandID, "channel", cmd.Channel, "rule_id", cmd.Ending.RuleID); err != nil {
		return Revised{}, err
	}
	changed := false
	rs, res, err := execute(ctx, i, func() *domain.RuleSet { return domain.NewRuleSet(cmd.BrandID, cmd.Channel) },
		"brand.EndRule:"+cmd.RequestID, cmd.Fingerprint, cmd.Meta,
		func(rs *domain.RuleSet) ([]domain.Change, error) {
			ev, ch, err := rs.End(cmd.Ending, false)
			changed = ch
			if err != nil || !ch {
				return nil, err
			}
			return []domain.Change{{Kind: domain.KindPremiumRuleEnded, Event: ev}}, nil
		})
	if err != nil {
		return Revised{}, err
	}
	rule := rs.Rule(cmd.Ending.RuleID)
	out := Revised{RuleVersion: rule.Version, Position: position(res.Last)}
	if !res.Duplicate && !changed {
		return out, nil
	}
	out.Changed = true
	if v := rs.VersionWrittenAt(res.First); res.Duplicate && v != 0 {
		out.RuleVersion = v
	} else {
		out.RuleVersion++
	}
	to, err := domain.ParseDate("effective_to", cmd.Ending.EffectiveTo)
	if err != nil {
		return Revised{}, err
	}
	md := cmd.Meta
	if len(res.EventIDs) > 0 {
		md.CausationID = res.EventIDs[0]
	}
	rr, err := i.rerateRule(ctx, cmd.BrandID, cmd.Channel, rule.ID, out.RuleVersion, to+1, res.Last, md)
	if err != nil {
		return Revised{}, fmt.Errorf("end of rule %s recorded at %s; re-rating its premiums: %w", rule.ID, out.Position, err)
	}
	out.Adjusted, out.DeltaFen, out.Position = rr.adjusted, rr.deltaFen, position(rr.last)
	return out, nil
}

// PreviewEndRule asks what ending a rule would change.
type PreviewEndRule struct {
	BrandID     string
	Channel     string
	Ending      domain.Ending
	MinPosition *eventstore.Position
}

// PreviewEndRule computes the per-farmer deltas an early end would cause,
// appending nothing, the way PreviewRevision does: the earning sales after
// the new last day, re-rated against the rule set as the end would leave
// it with the function re-rating applies.
func (i *Incubator) PreviewEndRule(ctx context.Context, q PreviewEndRule) (Preview, error) {
	if err := checkIDs("brand_id", q.BrandID, "channel", q.Channel, "rule_id", q.Ending.RuleID); err != nil {
		return Preview{}, err
	}
	rs := domain.NewRuleSet(q.BrandID, q.Channel)
	if err := i.load(ctx, rs); err != nil {
		return Preview{}, err
	}
	ev, changed, err := rs.End(q.Ending, true)
	if err != nil {
		return Preview{}, err
	}
	rule := rs.Rule(q.Ending.RuleID)
	if !changed {
		return Preview{RuleVersion: rule.Version, Farmers: []domain.FarmerDelta{}}, nil
	}
	asOf, err := i.waitPremiumsNow(ctx, q.MinPosition)
	if err != nil {
		return Preview{}, err
	}
	to, _ := domain.ParseDate("effective_to", ev.GetEffectiveTo()) // the domain wrote it
	sales, err := i.premiums.EarningSales(ctx, q.BrandID, q.Channel, rule.ID, to+1)
	if err != nil {
		return Preview{}, err
	}
	return sumPreview(q.BrandID, q.Channel, ev.GetRuleVersion(), asOf, rs.With(ev), sales)
}

// sumPreview re-rates sales against after and sums the deltas.
func sumPreview(brandID, channel string, version int32, asOf eventstore.Position, after *domain.RuleSet, sales []domain.SaleView) (Preview, error) {
	deltas, err := domain.PreviewDeltas(after, sales)
	if err != nil {
		return Preview{}, err
	}
	p := Preview{RuleVersion: version, Changed: true, Farmers: deltas, AsOf: asOf}
	for _, d := range deltas {
		total, err := domain.RevisionEffect{Sales: p.Sales, DeltaFen: p.DeltaFen}.Plus(domain.RevisionEffect{Sales: d.Sales, DeltaFen: d.DeltaFen})
		if err != nil {
			return Preview{}, fmt.Errorf("preview of %s/%s: %w", brandID, channel, err)
		}
		p.Sales, p.DeltaFen = total.Sales, total.DeltaFen
	}
	return p, nil
}

// RerateOnPremiumRuleEnded finishes the re-rating an early end calls for,
// whatever became of the EndRule call that recorded it. It is idempotent:
// sales already withheld are left alone.
func (i *Incubator) RerateOnPremiumRuleEnded(ctx context.Context, src eventstore.Recorded, ev *brandevents.PremiumRuleEnded) error {
	to, err := domain.ParseDate("effective_to", ev.GetEffectiveTo())
	if err != nil {
		return fmt.Errorf("rerate on %s seq %d: %w", src.Type, src.Sequence, err)
	}
	md := eventstore.Metadata{CorrelationID: src.Metadata.CorrelationID, CausationID: src.ID, Actor: "brand-incubation/rerate-on-premium-rule-ended"}
	_, err = i.rerateRule(ctx, ev.GetBrandId(), ev.GetChannel(), ev.GetRuleId(), ev.GetRuleVersion(), to+1, src.Sequence, md)
	return err
}
