package adapters_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/money"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/brand-incubation/adapters"
	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// The premium read model's monthly rows are running totals over every
// sale of a farmer (or a brand) in a month, across reports, so nothing but
// int64 bounds them. A sale that would take one beyond it fails to apply
// (so the runner stops the projection there, unhealthy and visible)
// instead of storing a float (SQLite's "x = x + ?") or an anonymous
// "bigint out of range" (PostgreSQL), and the rows keep their exact totals.
func TestPremiumsRefuseASaleThatOverflowsAMonth(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, db *projection.DB) {
		f := newFeed(t, db, adapters.PremiumsProjection{})
		soldAt := timestamppb.New(time.Date(2026, 11, 10, 2, 0, 0, 0, time.UTC))
		sale := func(id string, grams, premium int64) *brandevents.PremiumEarned {
			return &brandevents.PremiumEarned{SaleId: "R1/" + id, BrandId: "xunwu", FarmerId: "F1", Channel: "hema",
				Grams: grams, RuleId: "season", RuleVersion: 1, FenPerKg: 100, PremiumFen: premium, SoldAt: soldAt,
				ReportId: "R1", ReportRevision: 1, LineId: id}
		}
		f.apply(sale("a", math.MaxInt64, math.MaxInt64-1))
		for _, next := range []*brandevents.PremiumEarned{sale("b", 1, 1) /* fits in premium, not in grams */, sale("c", 0, 2)} {
			ev, err := eventstore.NewEvent("brand.x", next, eventstore.Metadata{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = adapters.PremiumsProjection{}.Apply(ctx, tx, eventstore.Recorded{Stream: domain.Stream, Sequence: f.seq + 1, Type: ev.Type, ID: "ev", Data: ev.Data})
			tx.Rollback()
			if !errors.Is(err, money.ErrOverflow) {
				t.Fatalf("applying sale %s: %v; want an error wrapping money.ErrOverflow", next.GetLineId(), err)
			}
		}
		var grams, premium int64
		if err := db.QueryRowContext(context.Background(), `SELECT grams_sold, premium_fen FROM brand_farmer_months
			WHERE farmer_id = 'F1' AND brand_id = 'xunwu' AND channel = 'hema'`).Scan(&grams, &premium); err != nil {
			t.Fatal(err)
		}
		if grams != math.MaxInt64 || premium != math.MaxInt64-1 {
			t.Fatalf("farmer month = %d g, %d fen; want the first sale's, exactly", grams, premium)
		}
	})
}
