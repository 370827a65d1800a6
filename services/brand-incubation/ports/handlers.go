package ports

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/wmjs"

	"github.com/furrow/furrow/services/brand-incubation/app"
)

// Durable consumer names of brand incubation's reactions, and the subjects
// they follow. Renaming a durable starts its consumer over from the
// beginning of the stream (harmless: the reactions are idempotent, but
// slow).
const (
	DurableRerateOnPremiumRuleRevised = "brand-rerate-on-premium-rule-revised"
	DurableRerateOnSalesReported      = "brand-rerate-on-sales-reported"
	DurableRerateOnPremiumRuleEnded   = "brand-rerate-on-premium-rule-ended"

	SubjectsPremiumRuleRevised = "brand.*.*.premium_rule_revised"
	SubjectsSalesReported      = "brand.*.*.sales_reported"
	SubjectsPremiumRuleEnded   = "brand.*.*.premium_rule_ended"
)

// RerateOnPremiumRuleRevised returns the Watermill handler that finishes
// the re-rating of each PremiumRuleRevised event.
func RerateOnPremiumRuleRevised(a *app.Incubator) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		rec, ev, err := decode[*brandevents.PremiumRuleRevised](msg)
		if err != nil {
			return err
		}
		return a.RerateOnPremiumRuleRevised(msg.Context(), rec, ev)
	}
}

// RerateOnSalesReported returns the Watermill handler that re-rates a
// report rated against a rule set that has changed since.
func RerateOnSalesReported(a *app.Incubator) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		rec, ev, err := decode[*brandevents.SalesReported](msg)
		if err != nil {
			return err
		}
		return a.RerateOnSalesReported(msg.Context(), rec, ev)
	}
}

// RerateOnPremiumRuleEnded returns the Watermill handler that finishes
// the re-rating of each PremiumRuleEnded event.
func RerateOnPremiumRuleEnded(a *app.Incubator) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		rec, ev, err := decode[*brandevents.PremiumRuleEnded](msg)
		if err != nil {
			return err
		}
		return a.RerateOnPremiumRuleEnded(msg.Context(), rec, ev)
	}
}

// decode rebuilds the event a message carries and checks its type.
func decode[E any](msg *message.Message) (eventstore.Recorded, E, error) {
	var zero E
	rec, err := wmjs.Recorded(msg)
	if err != nil {
		return rec, zero, err
	}
	ev, err := eventstore.Decode(rec)
	if err != nil {
		return rec, zero, err
	}
	e, ok := ev.(E)
	if !ok {
		return rec, zero, fmt.Errorf("%s seq %d is a %s, not a %T", rec.Stream, rec.Sequence, rec.Type, zero)
	}
	return rec, e, nil
}
