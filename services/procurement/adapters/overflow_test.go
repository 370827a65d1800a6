package adapters_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/deadletter"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"
	"github.com/furrow/furrow/pkg/projection"
	"github.com/furrow/furrow/pkg/projection/projectiontest"

	"github.com/furrow/furrow/services/procurement/adapters"
	"github.com/furrow/furrow/services/procurement/domain"
)

// The two weigh-ins of math.MaxInt64 g, as a stream written before
// any limit held them: each fits, the county's total of grams (and of
// fen) does not. The purchases read model must not store a float or a
// wrapped total: it stops at the second delivery, blocked and unhealthy
// with the overflow named, the event parked, and the county's totals stay
// those of the first delivery, exactly.
func TestPurchasesStopAtAnOverflowingDelivery(t *testing.T) {
	t.Parallel()
	projectiontest.ForEachStore(t, func(t *testing.T, db *projection.DB) {
		js := natstest.Embedded(t).JetStream(t)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		t.Cleanup(cancel)
		if err := eventstore.EnsureStreams(ctx, js, eventstore.StreamSpec{Name: domain.Stream, Subjects: []string{domain.Subjects}}); err != nil {
			t.Fatal(err)
		}
		r, err := projection.NewRunner(db, js, adapters.PurchasesProjection{},
			projection.Options{MaxRetries: 1, IdleWait: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		rctx, stop := context.WithCancel(ctx)
		go func() { done <- r.Run(rctx) }()
		t.Cleanup(func() { stop(); <-done })

		const amount = 6_271_892_985_061_247_549 // math.MaxInt64 g at 680 fen/kg
		store := eventstore.New(js)
		var seqs []uint64
		for i := range 2 {
			id := fmt.Sprintf("D%d", i+1)
			ev, err := eventstore.NewEvent(domain.DeliverySubject(id, domain.KindDeliveryRecorded), &procurementevents.DeliveryRecorded{
				DeliveryId: id, FarmerId: "F1", Product: "xunwu-navel-orange", Grade: "A", NetGrams: math.MaxInt64,
				PriceFenPerKg: 680, AmountFen: amount, WeighedAt: timestamppb.Now(), County: "Xunwu",
			}, eventstore.Metadata{Actor: "test"})
			if err != nil {
				t.Fatal(err)
			}
			res, err := store.Append(ctx, eventstore.AppendRequest{Stream: domain.Stream, Aggregate: domain.DeliveryAggregate(id), Events: []eventstore.Event{ev}})
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, res.Last)
		}

		var st projection.Status
		for deadline := time.Now().Add(20 * time.Second); ; {
			if st, err = r.Status(ctx); err != nil {
				t.Fatal(err)
			}
			if st.State == projection.StateBlocked || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if st.State != projection.StateBlocked || st.State.Healthy() || st.FailingSeq != seqs[1] || st.Checkpoint != seqs[0] ||
			!strings.Contains(st.Reason, "overflow") {
			t.Fatalf("status = %s at %d, failing %d (%s); want blocked at %d by the overflow of event %d",
				st.State, st.Checkpoint, st.FailingSeq, st.Reason, seqs[0], seqs[1])
		}
		letters, err := deadletter.List(ctx, js, st.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(letters) != 1 || letters[0].SourceSeq != seqs[1] || !strings.Contains(letters[0].Reason, "overflow") {
			t.Errorf("dead letters = %+v, want event %d parked for the overflow", letters, seqs[1])
		}
		// The county's totals (read as CountyTotals does, without the
		// farmers read model this test does not run).
		var deliveries, grams, fen int64
		if err := db.QueryRowContext(ctx, `SELECT deliveries, delivered_grams, delivered_fen FROM procurement_totals
			WHERE scope = '*' AND dimension = 'county' AND key = 'Xunwu'`).Scan(&deliveries, &grams, &fen); err != nil {
			t.Fatal(err)
		}
		if deliveries != 1 || grams != math.MaxInt64 || fen != amount {
			t.Errorf("Xunwu's totals = %d deliveries, %d g, %d fen; want the first delivery's, exactly", deliveries, grams, fen)
		}
	})
}
