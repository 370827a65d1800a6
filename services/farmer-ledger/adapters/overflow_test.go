package adapters_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/deadletter"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/farmer-ledger/adapters"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// appendLedger appends msg to the LEDGER stream as one event of its own.
func appendLedger(t *testing.T, js jetstream.JetStream, subject string, msg proto.Message) uint64 {
	t.Helper()
	ev, err := eventstore.NewEvent(subject, msg, eventstore.Metadata{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := eventstore.New(js).Append(context.Background(), eventstore.AppendRequest{
		Stream: domain.Stream, Aggregate: subject, Events: []eventstore.Event{ev},
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.Last
}

// payableEntry makes amount payable to F1: an entry the domain writes
// for a delivery.
func payableEntry(id string, amount int64) *ledgerevents.EntryPosted {
	return &ledgerevents.EntryPosted{EntryId: "E-" + id, FarmerId: "F1", Description: id,
		Source: &ledgerevents.SourceRef{Stream: "PROCUREMENT", Sequence: 1, EventId: id},
		Lines: []*ledgerevents.EntryLine{
			{Account: domain.AccountProcurementExpense, DebitFen: amount},
			{Account: domain.FarmerAccount("F1", domain.FarmerPayable), CreditFen: amount},
		}}
}

// Two entries each of which fits, whose sum on the farmer's payable (and on
// the procurement expense) does not: the domain refuses the second today,
// but a stream written before it checked holds both. Neither read model may
// store a wrapped or rounded total: each stops at the second entry, says
// why in its status (blocked, unhealthy, the overflow named), parks the
// event, and keeps answering with the exact totals before it. On SQLite,
// `x = x + ?` silently turns into a float on overflow; on PostgreSQL it
// fails with "bigint out of range".
func TestReadModelsStopAtAnOverflowingEntry(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, db *projection.DB) {
		js := natstest.Embedded(t).JetStream(t)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		t.Cleanup(cancel)
		if err := eventstore.EnsureStreams(ctx, js, eventstore.StreamSpec{Name: domain.Stream, Subjects: []string{domain.Subjects}}); err != nil {
			t.Fatal(err)
		}
		opts := projection.Options{MaxRetries: 1, IdleWait: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
		var runners []*projection.Runner
		for _, p := range []projection.Projection{adapters.BalancesProjection{}, adapters.FinanceProjection{}} {
			r, err := projection.NewRunner(db, js, p, opts)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			rctx, stop := context.WithCancel(ctx)
			go func() { done <- r.Run(rctx) }()
			t.Cleanup(func() { stop(); <-done })
			runners = append(runners, r)
		}

		const amount = 6_271_892_985_061_247_549 // MaxInt64 g at 680 fen/kg
		appendLedger(t, js, domain.FarmerSubject("F1", domain.KindRegistered),
			&ledgerevents.FarmerRegistered{FarmerId: "F1", Name: "Wang Fang", County: "Xunwu", PayoutAccount: "6222"})
		first := appendLedger(t, js, domain.FarmerSubject("F1", domain.KindEntryPosted), payableEntry("d1", amount))
		second := appendLedger(t, js, domain.FarmerSubject("F1", domain.KindEntryPosted), payableEntry("d2", amount))

		for _, r := range runners {
			var st projection.Status
			deadline := time.Now().Add(20 * time.Second)
			for {
				var err error
				if st, err = r.Status(ctx); err != nil {
					t.Fatal(err)
				}
				if st.State == projection.StateBlocked || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if st.State != projection.StateBlocked || st.State.Healthy() || st.FailingSeq != second || st.Checkpoint != first ||
				!strings.Contains(st.Reason, "overflow") || st.DeadLetter == 0 {
				t.Errorf("%s: status = %s at %d, failing %d (%s); want blocked at %d by the overflow of event %d, parked",
					st.Name, st.State, st.Checkpoint, st.FailingSeq, st.Reason, first, second)
			}
			letters, err := deadletter.List(ctx, js, st.Name)
			if err != nil {
				t.Fatal(err)
			}
			if len(letters) != 1 || letters[0].SourceSeq != second || !strings.Contains(letters[0].Reason, "overflow") {
				t.Errorf("%s: dead letters = %+v, want event %d parked for the overflow", st.Name, letters, second)
			}
		}

		// The read models still hold the exact totals before the entry.
		b, err := adapters.NewBalanceReader(db).Balance(ctx, "F1")
		if err != nil || b.PurchasesFen != amount {
			t.Errorf("balance = %+v, %v; want %d fen payable", b, err, int64(amount))
		}
		accounts, _, err := adapters.NewFinanceReader(db).Accounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range accounts {
			if a.DebitFen != 0 && a.DebitFen != amount || a.CreditFen != 0 && a.CreditFen != amount {
				t.Errorf("account %+v; want the first entry's %d fen", a, int64(amount))
			}
		}
		st, err := adapters.NewFinanceReader(db).Statement(ctx, "F1", time.Time{}, time.Now().Add(time.Hour))
		if err != nil || st.Closing.PurchasesFen != amount || len(st.Entries) != 1 {
			t.Errorf("statement = %+v, %v; want the first entry, closing at %d fen", st, err, int64(amount))
		}
		assertIntegers(t, db)
	})
}

// assertIntegers fails if a money column holds anything but an integer
// (SQLite stores an overflowing sum as a REAL).
func assertIntegers(t *testing.T, db *projection.DB) {
	t.Helper()
	if db.Dialect() != "sqlite" {
		return // PostgreSQL's BIGINT holds nothing else
	}
	for table, cols := range map[string][]string{
		"ledger_balances": {"purchases_fen", "premiums_fen", "held_fen", "paid_fen"},
		"ledger_accounts": {"debit_fen", "credit_fen"},
	} {
		for _, c := range cols {
			var n int
			q := fmt.Sprintf(`SELECT COUNT(*) FROM %s WHERE typeof(%s) <> 'integer'`, table, c)
			if err := db.QueryRowContext(context.Background(), q).Scan(&n); err != nil && err != sql.ErrNoRows {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("%s.%s: %d rows hold a non-integer", table, c, n)
			}
		}
	}
}
