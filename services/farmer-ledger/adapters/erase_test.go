package adapters_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/farmer-ledger/adapters"
	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// TestReadModelsForgetAnErasedFarmer: events written before the ledger
// sealed personal data hold it in clear, and so did the read models built
// from them; FarmerErased replaces every personal value the farmer had in
// both read models (a value it never had stays empty), on SQLite and on
// PostgreSQL, and leaves other farmers alone. Sealed values are kept
// sealed (the read models never decrypt).
func TestReadModelsForgetAnErasedFarmer(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, db *projection.DB) {
		ctx := context.Background()
		projections := []projection.Projection{adapters.BalancesProjection{}, adapters.FinanceProjection{}}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range projections {
			if err := p.Migrate(ctx, tx); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		sealed := &ledgerevents.Sealed{KeyId: "dk-1", Ciphertext: []byte("ciphertext")}
		var seq uint64
		apply := func(subject string, m proto.Message) {
			t.Helper()
			seq++
			ev, err := eventstore.NewEvent(subject, m, eventstore.Metadata{Actor: "test"})
			if err != nil {
				t.Fatal(err)
			}
			rec := eventstore.Recorded{Stream: "LEDGER", Sequence: seq, Subject: subject, Time: time.Unix(int64(seq), 0), Type: ev.Type, ID: "ev", Data: ev.Data}
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range projections {
				if err := p.Apply(ctx, tx, rec); err != nil {
					tx.Rollback()
					t.Fatalf("%s: apply %T: %v", p.Name(), m, err)
				}
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		apply("ledger.farmer.F1.farmer_registered", &ledgerevents.FarmerRegistered{FarmerId: "F1", Name: "Wang Fang", County: "Xunwu", PayoutAccount: "6222020000000001"})
		apply("ledger.farmer.F1.payout_requested", &ledgerevents.PayoutRequested{PayoutId: "PO-F1-1", FarmerId: "F1", AmountFen: 100, Currency: "CNY", PayoutAccount: "6222020000000001", RequestId: "r1"})
		apply("ledger.farmer.F2.farmer_registered", &ledgerevents.FarmerRegistered{FarmerId: "F2", County: "Xunwu", SealedName: sealed, SealedPhone: sealed, SealedPayoutAccount: sealed})
		apply("ledger.farmer.F1.farmer_erased", &ledgerevents.FarmerErased{FarmerId: "F1"})

		rows, err := adapters.NewFarmerDirectory(db).Farmers(ctx, app.FarmerFilter{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		want := []app.FarmerRow{
			{FarmerID: "F1", Name: domain.Erased, County: "Xunwu", PayoutAccount: domain.Erased},
			{FarmerID: "F2", Name: domain.SealedText(sealed), County: "Xunwu", Phone: domain.SealedText(sealed), PayoutAccount: domain.SealedText(sealed)},
		}
		if diff := cmp.Diff(want, rows); diff != "" {
			t.Errorf("farmers (-want +got):\n%s", diff)
		}
		p, err := adapters.NewFinanceReader(db).Payout(ctx, "PO-F1-1")
		if err != nil {
			t.Fatal(err)
		}
		if p.Account != domain.Erased {
			t.Errorf("payout PO-F1-1's account = %q, want %q", p.Account, domain.Erased)
		}
	})
}
