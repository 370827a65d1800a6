package prodtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/natstest"
)

// TestRollingRestartFailsNoCall restarts every replica of procurement and
// the ledger, one after the other, while clients record deliveries and
// read balances with their positions, and requires that no client call
// fails. The clients do what the README tells backends to do: know every
// replica (here a resolver with both addresses; in production a DNS name
// or a Kubernetes headless service), balance calls across them
// (round_robin), and dial with grpcx.RetryServiceConfig, which retries
// UNAVAILABLE. A replica told to stop turns NOT_SERVING, finishes the
// calls in flight and closes its connections; the calls after that go to
// the other replica. At the end the balance equals the acknowledged
// deliveries to the fen.
func TestRollingRestartFailsNoCall(t *testing.T) {
	needs(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dsn, _ := postgresSchema(t)
	cluster := natstest.Cluster(t)
	provisionLog(ctx, t, cluster.JetStream(t), 3)

	common := []string{"--allow-plaintext-grpc", "--allow-no-nats-auth", "--nats-url", strings.Join(cluster.URLs, ","), "--stream-replicas", "3"}
	env := []string{"FURROW_POSTGRES_DSN=" + dsn}
	ledgerArgs := append(common[:len(common):len(common)], "--payment-provider", "simulated", "--allow-simulated-provider", "--allow-dev-pii-key")
	type replica struct {
		p    *proc
		args []string
	}
	replicas := []*replica{
		{start(t, "procurement-a", binaries["procurement"], env, common...), common},
		{start(t, "procurement-b", binaries["procurement"], env, common...), common},
		{start(t, "farmer-ledger-a", binaries["farmer-ledger"], env, ledgerArgs...), ledgerArgs},
		{start(t, "farmer-ledger-b", binaries["farmer-ledger"], env, ledgerArgs...), ledgerArgs},
	}
	binaryOf := func(r *replica) string {
		if strings.HasPrefix(r.p.name, "procurement") {
			return binaries["procurement"]
		}
		return binaries["farmer-ledger"]
	}
	// One client connection per service, over both of its replicas.
	serviceConfig := strings.Replace(grpcx.RetryServiceConfig, "{", `{"loadBalancingConfig": [{"round_robin": {}}],`, 1)
	dialBoth := func(a, b *proc) *grpc.ClientConn {
		r := manual.NewBuilderWithScheme("replicas-" + a.name)
		r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: a.grpcAddr}, {Addr: b.grpcAddr}}})
		conn, err := grpc.NewClient(r.Scheme()+":///service", grpc.WithResolvers(r),
			grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(serviceConfig))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	purchases := procurementv1.NewProcurementServiceClient(dialBoth(replicas[0].p, replicas[1].p))
	ledger := ledgerv1.NewLedgerServiceClient(dialBoth(replicas[2].p, replicas[3].p))

	if _, err := ledger.RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{
		RequestId: "reg-F1", FarmerId: "F1", Name: "Wang Fang", County: "Xunwu",
		Cooperative: "Xunwu Navel Orange Co-op", PayoutAccount: "6222020000000001",
	}); err != nil {
		t.Fatal(err)
	}

	var (
		mu       sync.Mutex
		failures []string
		total    int64
		last     *typesv1.Position
		calls    atomic.Int64
		answered []time.Time // when each read-your-write was answered
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
				res, err := purchases.RecordDelivery(cctx, &procurementv1.RecordDeliveryRequest{
					RequestId: fmt.Sprintf("roll-%d-%d", w, n), FarmerId: "F1", Product: "xunwu-navel-orange",
					Grade: "A", NetGrams: int64(1000 + n), PriceFenPerKg: 680,
				})
				ccancel()
				calls.Add(1)
				if err != nil {
					fail("RecordDelivery roll-%d-%d at %s: %v", w, n, time.Now().Format("15:04:05.000"), err)
					continue
				}
				mu.Lock()
				total += res.GetAmountFen()
				if last == nil || res.GetPosition().GetSequence() > last.GetSequence() {
					last = res.GetPosition()
				}
				mu.Unlock()
				// Read it back on either ledger replica.
				cctx, ccancel = context.WithTimeout(ctx, 20*time.Second)
				_, err = ledger.GetFarmerBalance(cctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: res.GetPosition()})
				ccancel()
				calls.Add(1)
				if err != nil {
					fail("GetFarmerBalance at %v at %s: %v", res.GetPosition(), time.Now().Format("15:04:05.000"), err)
					continue
				}
				mu.Lock()
				answered = append(answered, time.Now())
				mu.Unlock()
			}
		})
	}

	// The rolling restart: each replica stops (SIGTERM), restarts where it
	// ran and is ready before the next one goes.
	time.Sleep(2 * time.Second)
	for _, r := range replicas {
		began := time.Now()
		if err := r.p.stop(t); err != nil {
			t.Errorf("%s exited with %v on SIGTERM\n%s", r.p.name, err, r.p.output())
		}
		r.p = startAt(t, r.p.name, binaryOf(r), r.p.grpcAddr, r.p.opsAddr, env, r.args...)
		t.Logf("%s restarted and ready in %v (%d calls so far)", r.p.name, time.Since(began).Round(10*time.Millisecond), calls.Load())
		time.Sleep(time.Second)
	}
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Errorf("%d of %d calls failed during the rolling restart; the first:\n%s", len(failures), calls.Load(), strings.Join(failures[:min(len(failures), 10)], "\n"))
	}
	res, err := ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: last})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetPurchasesFen() != total {
		t.Errorf("after the rolling restart the balance shows purchases of %d fen; the acknowledged deliveries add up to %d", res.GetPurchasesFen(), total)
	}
	slices.SortFunc(answered, func(a, b time.Time) int { return a.Compare(b) })
	var longest time.Duration
	for i := 1; i < len(answered); i++ {
		longest = max(longest, answered[i].Sub(answered[i-1]))
	}
	t.Logf("rolling restart of 4 replicas under load: %d calls, %d failed; purchases %d fen = the acknowledged deliveries; longest gap between answered reads %v",
		calls.Load(), len(failures), total, longest.Round(time.Millisecond))
}
