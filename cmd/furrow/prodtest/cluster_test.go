package prodtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/testing/protocmp"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/pkg/natstest"

	"github.com/furrow/furrow/cmd/furrow/internal/metricnames"
)

// TestReplicasOnACluster runs one procurement and two farmer-ledger
// replicas on a 3-node JetStream cluster and one PostgreSQL schema, and
// runs the slice (register a farmer, record deliveries, read the balance
// with min_position) reading from either ledger replica. Both replicas run
// the same projections on the same tables and share the handlers' durable
// consumers: a balance that is exactly the sum of the deliveries on both
// proves nothing was applied or posted twice. Then one replica stops
// gracefully and the other carries on alone.
func TestReplicasOnACluster(t *testing.T) {
	needs(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn, _ := postgresSchema(t)
	cluster := natstest.Cluster(t)
	js := cluster.JetStream(t)
	// The admin step: every stream and durable, before the services start
	// (brand-incubation does not run in this test; its stream exists as it
	// would in production, for the ledger's handlers to consume).
	provisionLog(ctx, t, js, 3)

	// Plain gRPC and a NATS cluster without users: the two overrides this
	// test needs, each by name.
	common := []string{"--allow-plaintext-grpc", "--allow-no-nats-auth", "--nats-url", strings.Join(cluster.URLs, ","), "--stream-replicas", "3"}
	env := []string{"FURROW_POSTGRES_DSN=" + dsn}
	procurement := start(t, "procurement", binaries["procurement"], env, common...)
	ledgerArgs := append(common[:len(common):len(common)], "--payment-provider", "simulated", "--allow-simulated-provider", "--allow-dev-pii-key")
	ledgerA := start(t, "farmer-ledger-a", binaries["farmer-ledger"], env, ledgerArgs...)
	ledgerB := start(t, "farmer-ledger-b", binaries["farmer-ledger"], env, ledgerArgs...)

	purchases := procurementv1.NewProcurementServiceClient(procurement.dial(t))
	ledgers := []ledgerv1.LedgerServiceClient{
		ledgerv1.NewLedgerServiceClient(ledgerA.dial(t)),
		ledgerv1.NewLedgerServiceClient(ledgerB.dial(t)),
	}

	if _, err := ledgers[0].RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{
		RequestId: "reg-F1", FarmerId: "F1", Name: "Wang Fang", County: "Xunwu",
		Cooperative: "Xunwu Navel Orange Co-op", PayoutAccount: "6222020000000001",
	}); err != nil {
		t.Fatal(err)
	}
	balance := func(ledger ledgerv1.LedgerServiceClient, at *typesv1.Position) *ledgerv1.GetFarmerBalanceResponse {
		t.Helper()
		// A slow wait leaves evidence: every consumer's progress on the
		// streams the read depends on, and what each replica logged.
		slow := time.AfterFunc(slowRead, func() {
			t.Logf("GetFarmerBalance at %v still waiting after %v:\n%s", at, slowRead, dumpConsumers(js, "PROCUREMENT", "LEDGER"))
		})
		res, err := ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: at})
		slow.Stop()
		if err != nil {
			t.Fatalf("GetFarmerBalance at %v: %v\n%s\n--- farmer-ledger-a:\n%s\n--- farmer-ledger-b:\n%s",
				at, err, dumpConsumers(js, "PROCUREMENT", "LEDGER"), ledgerA.output(), ledgerB.output())
		}
		res.AsOf = nil
		return res
	}
	deliver := func(n int, grams int64) (*typesv1.Position, int64) {
		t.Helper()
		res, err := purchases.RecordDelivery(ctx, &procurementv1.RecordDeliveryRequest{
			RequestId: fmt.Sprintf("wh7-%03d", n), FarmerId: "F1", Product: "xunwu-navel-orange",
			Grade: "A", NetGrams: grams, PriceFenPerKg: 680,
		})
		if err != nil {
			t.Fatalf("RecordDelivery %d: %v", n, err)
		}
		return res.GetPosition(), res.GetAmountFen()
	}

	// The slice, read on both replicas.
	at, amount := deliver(0, 12345)
	if amount != 8395 {
		t.Fatalf("amount = %d fen, want 8395", amount)
	}
	want := &ledgerv1.GetFarmerBalanceResponse{FarmerId: "F1", PurchasesFen: 8395, AvailableFen: 8395}
	for i, ledger := range ledgers {
		if diff := cmp.Diff(want, balance(ledger, at), protocmp.Transform()); diff != "" {
			t.Errorf("balance on ledger replica %d (-want +got):\n%s", i, diff)
		}
	}

	// More deliveries, each read on the other replica: both race to apply
	// every batch and to handle every delivery.
	total := amount
	for n := 1; n <= 12; n++ {
		at, amount = deliver(n, int64(1000*n+7))
		total += amount
		got := balance(ledgers[n%2], at)
		if got.GetPurchasesFen() != total {
			t.Fatalf("after delivery %d, replica %d: purchases %d fen, want %d", n, n%2, got.GetPurchasesFen(), total)
		}
	}
	want = &ledgerv1.GetFarmerBalanceResponse{FarmerId: "F1", PurchasesFen: total, AvailableFen: total}
	for i, ledger := range ledgers {
		if diff := cmp.Diff(want, balance(ledger, at), protocmp.Transform()); diff != "" {
			t.Errorf("final balance on ledger replica %d (-want +got):\n%s", i, diff)
		}
	}

	// The trace, receivable and distribution-centre read models on
	// PostgreSQL: a delivery at a centre, traced on one replica, the
	// statement read on the other, the county's intake.
	lot, err := purchases.RecordDelivery(ctx, &procurementv1.RecordDeliveryRequest{RequestId: "wh7-dc-1", FarmerId: "F1",
		Product: "xunwu-navel-orange", Grade: "A", NetGrams: 1000, PriceFenPerKg: 680, DistributionCentre: "xunwu-dc-1"})
	if err != nil {
		t.Fatal(err)
	}
	total += lot.GetAmountFen()
	trace, err := ledgers[0].TraceLot(ctx, &ledgerv1.TraceLotRequest{DeliveryId: lot.GetDeliveryId(), MinPosition: lot.GetPosition()})
	if err != nil {
		t.Fatalf("TraceLot: %v", err)
	}
	if tt := trace.GetTotals(); tt.GetPayableFen() != 680 || tt.GetUnpaidFen() != 680 || tt.GetDeliveredGrams() != 1000 ||
		trace.GetCurrent().GetDistributionCentre() != "xunwu-dc-1" {
		t.Errorf("TraceLot on PostgreSQL: %v", trace)
	}
	st, err := ledgers[1].GetFarmerStatement(ctx, &ledgerv1.GetFarmerStatementRequest{FarmerId: "F1", MinPosition: lot.GetPosition()})
	if err != nil {
		t.Fatalf("GetFarmerStatement: %v", err)
	}
	if c := st.GetClosing(); c.GetPurchasesFen() != total || c.GetReceivableFen() != 0 || c.GetAvailableFen() != total {
		t.Errorf("statement's closing balance on PostgreSQL: %v, want %d fen purchased and available", c, total)
	}
	intake, err := purchases.ListCentreIntake(ctx, &procurementv1.ListCentreIntakeRequest{County: "Xunwu", MinPosition: lot.GetPosition()})
	if err != nil {
		t.Fatalf("ListCentreIntake: %v", err)
	}
	shares := map[string]int64{}
	for _, c := range intake.GetCentres() {
		shares[c.GetDistributionCentre()] = c.GetAmountFen()
	}
	if diff := cmp.Diff(map[string]int64{"xunwu-dc-1": 680, "unknown": total - 680}, shares); diff != "" {
		t.Errorf("centre intake on PostgreSQL (-want +got):\n%s", diff)
	}

	// A clawback on PostgreSQL: everything is paid out, then the lot is
	// corrected down (1,000 g → 500 g: 680 → 340 fen): the 340 fen paid
	// too much are the farmer's receivable, available stays at zero.
	paid, err := ledgers[0].RequestPayout(ctx, &ledgerv1.RequestPayoutRequest{RequestId: "pay-all", FarmerId: "F1",
		Amount: &ledgerv1.RequestPayoutRequest_AllAvailable{AllAvailable: true}})
	if err != nil {
		t.Fatalf("RequestPayout: %v", err)
	}
	for {
		p, err := ledgers[1].GetPayout(ctx, &ledgerv1.GetPayoutRequest{PayoutId: paid.GetPayout().GetPayoutId()})
		if err == nil && p.GetPayout().GetStatus() == ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("payout never settled: %v, %v", p, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fixed, err := purchases.CorrectDelivery(ctx, &procurementv1.CorrectDeliveryRequest{RequestId: "fix-dc-1", DeliveryId: lot.GetDeliveryId(),
		NetGrams: 500, Grade: "A", Reason: "half of it was crates"})
	if err != nil {
		t.Fatal(err)
	}
	total -= 340
	owed := balance(ledgers[1], fixed.GetPosition())
	if owed.GetReceivableFen() != 340 || owed.GetAvailableFen() != 0 || owed.GetPurchasesFen() != total {
		t.Errorf("balance after the clawback on PostgreSQL: %v, want receivable 340, available 0, purchases %d", owed, total)
	}
	st, err = ledgers[0].GetFarmerStatement(ctx, &ledgerv1.GetFarmerStatementRequest{FarmerId: "F1", MinPosition: fixed.GetPosition()})
	if err != nil {
		t.Fatalf("GetFarmerStatement: %v", err)
	}
	if c := st.GetClosing(); c.GetReceivableFen() != 340 || c.GetAvailableFen() != 0 {
		t.Errorf("statement's closing balance after the clawback: %v, want receivable 340, available 0", c)
	}

	// The streams are replicated on three nodes.
	for _, name := range []string{"PROCUREMENT", "LEDGER", "DEADLETTER"} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info := st.CachedInfo()
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Errorf("stream %s: %d replicas configured, cluster %+v; want 3 (a leader and 2 replicas)", name, info.Config.Replicas, info.Cluster)
		}
	}

	// The ops listener's metrics: the same OpenTelemetry series furrow dev
	// serves (metricnames.Core), labelled with the service.
	res, err := http.Get("http://" + ledgerB.opsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	have := metricnames.Families(string(metrics))
	for _, name := range metricnames.Core {
		if !have[name] {
			t.Errorf("/metrics of farmer-ledger-b lacks %s", name)
		}
	}
	for _, want := range []string{
		`furrow_projection_lag_events{otel_scope_name="github.com/furrow/furrow/pkg/projection",otel_scope_schema_url="",otel_scope_version="",projection="ledger_balances",service_name="farmer-ledger",stream="LEDGER"} `,
		`rpc_method="furrow.ledger.v1.LedgerService/GetFarmerBalance"`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics of farmer-ledger-b lacks %s:\n%s", want, metrics)
		}
	}

	// One replica drains and exits cleanly; the other handles everything.
	if err := ledgerA.stop(t); err != nil {
		t.Fatalf("farmer-ledger-a after SIGTERM: %v\n%s", err, ledgerA.output())
	}
	at, amount = deliver(99, 5000)
	total += amount
	if got := balance(ledgers[1], at); got.GetPurchasesFen() != total {
		t.Errorf("with one replica left: purchases %d fen, want %d", got.GetPurchasesFen(), total)
	}
	for _, p := range []*proc{ledgerB, procurement} {
		if err := p.stop(t); err != nil {
			t.Errorf("%s after SIGTERM: %v", p.name, err)
		}
	}
}

// slowRead is how long a read-your-writes wait runs before the test logs
// the consumers' state; a healthy wait takes milliseconds.
const slowRead = 3 * time.Second

// dumpConsumers describes every consumer of the given streams: delivered
// and ack floor positions, messages pending and ack-pending, pull requests
// waiting, and the consumer's leader — what a stuck wait needs explained.
func dumpConsumers(js jetstream.JetStream, streams ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var b strings.Builder
	for _, name := range streams {
		st, err := js.Stream(ctx, name)
		if err != nil {
			fmt.Fprintf(&b, "stream %s: %v\n", name, err)
			continue
		}
		info := st.CachedInfo()
		fmt.Fprintf(&b, "stream %s: last_seq %d msgs %d\n", name, info.State.LastSeq, info.State.Msgs)
		lister := st.ListConsumers(ctx)
		for ci := range lister.Info() {
			leader := ""
			if ci.Cluster != nil {
				leader = ci.Cluster.Leader
			}
			fmt.Fprintf(&b, "  consumer %-45s delivered %d ack_floor %d pending %d ack_pending %d redelivered %d waiting %d leader %s ack_wait %v max_ack_pending %d\n",
				ci.Name, ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumPending, ci.NumAckPending, ci.NumRedelivered,
				ci.NumWaiting, leader, ci.Config.AckWait, ci.Config.MaxAckPending)
		}
		if err := lister.Err(); err != nil {
			fmt.Fprintf(&b, "  list consumers: %v\n", err)
		}
	}
	return b.String()
}
