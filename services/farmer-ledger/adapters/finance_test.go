package adapters_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"
	"github.com/furrow/furrow/pkg/projection/projectiontest"

	"github.com/furrow/furrow/services/farmer-ledger/adapters"
	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// forEachStore runs test on SQLite and on PostgreSQL: the read models'
// SQL must mean the same on both.
func forEachStore(t *testing.T, test func(t *testing.T, db *projection.DB)) {
	projectiontest.ForEachStore(t, test)
}

// feed applies events to the finance projection the way the runner does,
// one transaction per event, at sequences 1, 2, … and times a minute apart.
type feed struct {
	t   *testing.T
	db  *projection.DB
	seq uint64
	at  time.Time
}

func (f *feed) apply(msgs ...proto.Message) {
	f.t.Helper()
	ctx := context.Background()
	for _, m := range msgs {
		f.seq++
		f.at = f.at.Add(time.Minute)
		ev, err := eventstore.NewEvent("ledger.x", m, eventstore.Metadata{Actor: "finance@test"})
		if err != nil {
			f.t.Fatal(err)
		}
		rec := eventstore.Recorded{Stream: "LEDGER", Sequence: f.seq, Time: f.at, Type: ev.Type, ID: "ev", Data: ev.Data,
			Metadata: ev.Metadata}
		tx, err := f.db.BeginTx(ctx, nil)
		if err != nil {
			f.t.Fatal(err)
		}
		if err := (adapters.FinanceProjection{}).Apply(ctx, tx, rec); err != nil {
			tx.Rollback()
			f.t.Fatalf("apply %T at %d: %v", m, f.seq, err)
		}
		if err := tx.Commit(); err != nil {
			f.t.Fatal(err)
		}
	}
}

func entry(id, payoutID string, src *ledgerevents.SourceRef, lines ...*ledgerevents.EntryLine) *ledgerevents.EntryPosted {
	return &ledgerevents.EntryPosted{EntryId: id, FarmerId: "F1", Source: src, Lines: lines, PayoutId: payoutID, Description: id}
}

func TestFinanceProjection(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, db *projection.DB) {
		ctx := context.Background()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // Migrate runs on every start: twice must do no harm
			if err := (adapters.FinanceProjection{}).Migrate(ctx, tx); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		start := time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)
		f := &feed{t: t, db: db, at: start}
		up := &ledgerevents.SourceRef{Stream: "PROCUREMENT", Sequence: 7, EventId: "d1", EventType: "furrow.procurement.events.v1.DeliveryRecorded"}
		own := &ledgerevents.SourceRef{Stream: "LEDGER", EventId: "req", EventType: "furrow.ledger.events.v1.PayoutRequested"}
		ownSettled := &ledgerevents.SourceRef{Stream: "LEDGER", EventId: "settled", EventType: "furrow.ledger.events.v1.PayoutSettled"}
		settledAt := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
		f.apply(
			entry("E1", "", up, &ledgerevents.EntryLine{Account: "platform:procurement_expense", DebitFen: 5_000}, &ledgerevents.EntryLine{Account: "farmer:F1:payable", CreditFen: 5_000}),  // seq 1, 08:01
			&ledgerevents.PayoutRequested{PayoutId: "PO-F1-1", FarmerId: "F1", AmountFen: 1_200, Currency: "CNY", PayoutAccount: "6222", RequestId: "r1"},                                    // seq 2
			entry("E2", "PO-F1-1", own, &ledgerevents.EntryLine{Account: "farmer:F1:held", DebitFen: 1_200}, &ledgerevents.EntryLine{Account: "platform:payout_clearing", CreditFen: 1_200}), // seq 3, 08:03
			&ledgerevents.PayoutSent{PayoutId: "PO-F1-1", FarmerId: "F1", ProviderReference: "SIM-1"},
			&ledgerevents.PayoutSettled{PayoutId: "PO-F1-1", FarmerId: "F1", ProviderReference: "SIM-1", AmountFen: 1_200, SettledAt: timestamppb.New(settledAt)},
			entry("E3", "PO-F1-1", ownSettled,
				&ledgerevents.EntryLine{Account: "farmer:F1:paid", DebitFen: 1_200}, &ledgerevents.EntryLine{Account: "farmer:F1:held", CreditFen: 1_200},
				&ledgerevents.EntryLine{Account: "platform:payout_clearing", DebitFen: 1_200}, &ledgerevents.EntryLine{Account: "provider:settlement", CreditFen: 1_200}), // seq 6, 08:06
			&ledgerevents.PayoutRequested{PayoutId: "PO-F1-2", FarmerId: "F1", AmountFen: 300, Currency: "CNY", PayoutAccount: "6222", RequestId: "r2"},
			&ledgerevents.PayoutBreakResolved{BreakId: "B0123456789abcdef", Decision: "accepted", Note: "timing"},
		)
		r := adapters.NewFinanceReader(db)

		// The statement from 08:02: opening has the delivery, the entries
		// the two payout entries, the closing all three.
		st, err := r.Statement(ctx, "F1", start.Add(2*time.Minute), start.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		want := app.Statement{
			From: start.Add(2 * time.Minute), To: start.Add(time.Hour),
			Opening: domain.Balance{FarmerID: "F1", PurchasesFen: 5_000},
			Entries: []app.StatementEntry{
				{EntryID: "E2", Seq: 3, PostedAt: start.Add(3 * time.Minute), Description: "E2", PayoutID: "PO-F1-1",
					Source: app.SourceRef{Stream: "LEDGER", Sequence: 2, EventID: "req", EventType: "furrow.ledger.events.v1.PayoutRequested"},
					Change: domain.Balance{FarmerID: "F1", HeldFen: 1_200},
					Lines:  []app.JournalLine{{Account: "farmer:F1:held", DebitFen: 1_200}, {Account: "platform:payout_clearing", CreditFen: 1_200}}},
				{EntryID: "E3", Seq: 6, PostedAt: start.Add(6 * time.Minute), Description: "E3", PayoutID: "PO-F1-1",
					Source: app.SourceRef{Stream: "LEDGER", Sequence: 5, EventID: "settled", EventType: "furrow.ledger.events.v1.PayoutSettled"},
					Change: domain.Balance{FarmerID: "F1", HeldFen: -1_200, PaidFen: 1_200},
					Lines: []app.JournalLine{{Account: "farmer:F1:paid", DebitFen: 1_200}, {Account: "farmer:F1:held", CreditFen: 1_200},
						{Account: "platform:payout_clearing", DebitFen: 1_200}, {Account: "provider:settlement", CreditFen: 1_200}}},
			},
			Closing: domain.Balance{FarmerID: "F1", PurchasesFen: 5_000, PaidFen: 1_200},
		}
		if diff := cmp.Diff(want, st); diff != "" {
			t.Fatalf("statement (-want +got):\n%s", diff)
		}

		for _, tc := range []struct {
			at   app.BalancePoint
			want domain.Balance
			last uint64
		}{
			{app.BalancePoint{Seq: 3}, domain.Balance{FarmerID: "F1", PurchasesFen: 5_000, HeldFen: 1_200}, 3},
			{app.BalancePoint{Time: start.Add(time.Minute)}, domain.Balance{FarmerID: "F1", PurchasesFen: 5_000}, 1},
			{app.BalancePoint{Time: start}, domain.Balance{FarmerID: "F1"}, 0},
		} {
			b, last, err := r.BalanceAt(ctx, "F1", tc.at)
			if err != nil || b != tc.want || last != tc.last {
				t.Errorf("BalanceAt(%+v) = %+v, %d, %v; want %+v, %d", tc.at, b, last, err, tc.want, tc.last)
			}
		}

		accounts, entries, err := r.Accounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantAccounts := []domain.AccountTotal{
			{Account: "farmer:F1:held", DebitFen: 1_200, CreditFen: 1_200},
			{Account: "farmer:F1:paid", DebitFen: 1_200},
			{Account: "farmer:F1:payable", CreditFen: 5_000},
			{Account: "platform:payout_clearing", DebitFen: 1_200, CreditFen: 1_200},
			{Account: "platform:procurement_expense", DebitFen: 5_000},
			{Account: "provider:settlement", CreditFen: 1_200},
		}
		if diff := cmp.Diff(wantAccounts, accounts); diff != "" || entries != 3 {
			t.Fatalf("accounts (-want +got), %d entries:\n%s", entries, diff)
		}

		payouts, err := r.Payouts(ctx, app.PayoutFilter{FarmerID: "F1", Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(payouts) != 2 || payouts[0].Status != domain.PayoutStatusSettled || !payouts[0].CompletedAt.Equal(settledAt) ||
			payouts[1].Status != domain.PayoutStatusRequested || payouts[1].RequestedSeq != 7 {
			t.Fatalf("payouts: %+v", payouts)
		}
		if sent, err := r.Payouts(ctx, app.PayoutFilter{Status: domain.PayoutStatusRequested, AfterSeq: 2, Limit: 10}); err != nil || len(sent) != 1 || sent[0].ID != "PO-F1-2" {
			t.Fatalf("requested after seq 2: %+v, %v", sent, err)
		}
		recon, err := r.ReconciliationPayouts(ctx, domain.Period{From: settledAt, To: settledAt.Add(time.Second)}, []string{"PO-F1-2", "PO-F9-9"})
		if err != nil {
			t.Fatal(err)
		}
		if len(recon) != 2 || recon[0].ID != "PO-F1-1" || recon[1].ID != "PO-F1-2" {
			t.Fatalf("reconciliation payouts: %+v", recon)
		}
		res, err := r.Resolutions(ctx, []string{"B0123456789abcdef", "Bffffffffffffffff"})
		if err != nil {
			t.Fatal(err)
		}
		if got := res["B0123456789abcdef"]; len(res) != 1 || got.Decision != "accepted" || got.Actor != "finance@test" || got.Seq != 8 {
			t.Fatalf("resolutions: %+v", res)
		}
	})
}
