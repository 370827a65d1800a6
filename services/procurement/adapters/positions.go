package adapters

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/consistency"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/procurement/app"
	"github.com/furrow/furrow/services/procurement/domain"
)

// Positions makes procurement's queries wait for a position in either
// stream its read models follow: PROCUREMENT (its own commands) or LEDGER
// (a farmer's registration, for county totals).
type Positions struct {
	own     *consistency.Waiter
	streams map[string]*consistency.Waiter
}

var _ app.Positions = (*Positions)(nil)

// NewPositions returns Positions over the purchases projection and the
// farmers projection.
func NewPositions(js jetstream.JetStream, purchases, farmers consistency.Projection) *Positions {
	own := consistency.NewWaiter(js, purchases, nil)
	return &Positions{own: own, streams: map[string]*consistency.Waiter{
		purchases.Stream(): own,
		farmers.Stream():   consistency.NewWaiter(js, farmers, nil),
	}}
}

// WaitFor implements app.Positions.
func (p *Positions) WaitFor(ctx context.Context, pos *eventstore.Position) (eventstore.Position, error) {
	if pos != nil && (pos.Stream != "" || pos.Sequence != 0) {
		w, ok := p.streams[pos.Stream]
		if !ok {
			return eventstore.Position{}, failure.Invalid("min_position.stream",
				"procurement's queries follow %s and %s, not %q", domain.Stream, LedgerStream, pos.Stream)
		}
		if _, err := w.WaitFor(ctx, *pos); err != nil {
			return eventstore.Position{}, err
		}
	}
	return p.own.WaitFor(ctx, eventstore.Position{})
}
