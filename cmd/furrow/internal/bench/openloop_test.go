package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// openLoopFor is how long the open-loop run offers load.
const openLoopFor = 3 * time.Second

// visibilityEvery: one RecordDelivery in this many is followed by a
// GetFarmerBalance that waits for its position.
const visibilityEvery = 10

// latencies holds the open-loop figures for the summary, by name.
var latencies sync.Map

// BenchmarkOpenLoop measures latency the way a platform backend sees it:
// an open-loop load generator offers RecordDelivery and GetFarmerBalance,
// each at half the stack's measured parallel RecordDelivery capacity
// (record-delivery/parallel from this run, or measured here for a second
// when that benchmark did not run), for openLoopFor, whether or not
// earlier requests have come back. Every request's latency is measured
// from the time it was meant to be sent, not from when it was sent, so a
// stall counts against every request it delays (coordinated omission
// corrected, as wrk2 and HdrHistogram do; all latencies are kept and
// sorted). One RecordDelivery in visibilityEvery is followed, as soon as it
// returns, by a GetFarmerBalance with its position as min_position: the
// time until that answers is the command's visibility latency (the
// ledger's handler has posted the payable and the balances projection
// shows it).
func BenchmarkOpenLoop(b *testing.B) {
	ctx := context.Background()
	st, err := stack.Start(ctx, stack.Config{DataDir: b.TempDir(), GRPCAddr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Shutdown(ctx)
	conn, err := grpc.NewClient(st.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	led, proc := ledgerv1.NewLedgerServiceClient(conn), procurementv1.NewProcurementServiceClient(conn)
	const farmers = 64
	for i := range farmers {
		id := fmt.Sprintf("F%06d", i)
		if _, err := led.RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{RequestId: "reg-" + id, FarmerId: id, Name: "n", County: "Xunwu"}); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	deliver := func(ctx context.Context) (*procurementv1.RecordDeliveryResponse, error) {
		i := n.Add(1)
		return proc.RecordDelivery(ctx, &procurementv1.RecordDeliveryRequest{
			RequestId: fmt.Sprintf("open-%d", i), FarmerId: fmt.Sprintf("F%06d", i%farmers),
			Product: "xunwu-navel-orange", Grade: "A", NetGrams: 12_345, PriceFenPerKg: 680,
		})
	}
	capacity, _ := rates.Load("record-delivery/parallel")
	capacityRate, _ := capacity.(float64)
	if capacityRate == 0 {
		capacityRate = closedLoopRate(ctx, b, deliver, time.Second)
		// Let the ledger's handler work off what that wrote, so the open
		// loop does not start behind.
		res, err := deliver(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := visible(ctx, led, res); err != nil {
			b.Fatal(err)
		}
	}
	rate := capacityRate / 2
	b.Logf("capacity %.0f/s: offering %.0f RecordDelivery/s and %.0f GetFarmerBalance/s for %s", capacityRate, rate, rate, openLoopFor)
	rates.Store("open-loop/offered record-delivery", rate)

	var (
		mu                     sync.Mutex
		record, balance, shown []time.Duration
		failed                 atomic.Int64
		last                   *procurementv1.RecordDeliveryResponse // the highest position written
	)
	keep := func(to *[]time.Duration, d time.Duration) {
		mu.Lock()
		*to = append(*to, d)
		mu.Unlock()
	}
	// Requests alternate: even slots RecordDelivery, odd GetFarmerBalance,
	// so each is offered at rate.
	slots := int(2 * rate * openLoopFor.Seconds())
	interval := float64(time.Second) / (2 * rate)
	var wg sync.WaitGroup
	begin := time.Now().Add(10 * time.Millisecond)
	for slot := range slots {
		intended := begin.Add(time.Duration(float64(slot) * interval))
		if d := time.Until(intended); d > 0 {
			time.Sleep(d)
		}
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if slot%2 == 1 {
				_, err := led.GetFarmerBalance(rctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: fmt.Sprintf("F%06d", rand.IntN(farmers))})
				if err != nil {
					failed.Add(1)
					return
				}
				keep(&balance, time.Since(intended))
				return
			}
			res, err := deliver(rctx)
			if err != nil {
				failed.Add(1)
				return
			}
			returned := time.Now()
			keep(&record, returned.Sub(intended))
			mu.Lock()
			if last == nil || res.GetPosition().GetSequence() > last.GetPosition().GetSequence() {
				last = res
			}
			mu.Unlock()
			if slot/2%visibilityEvery != 0 {
				return
			}
			if _, err := led.GetFarmerBalance(rctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F000000",
				MinPosition: res.GetPosition()}); err != nil {
				failed.Add(1)
				return
			}
			keep(&shown, time.Since(returned))
		})
	}
	wg.Wait()
	// How fast the ledger's handler turned the deliveries into postings:
	// all of them, from the first send until the last is visible.
	if last != nil {
		if err := visible(ctx, led, last); err != nil {
			b.Error(err)
		}
		rates.Store("open-loop/deliveries visible", float64(len(record))/time.Since(begin).Seconds())
	}
	if f := failed.Load(); f > 0 {
		b.Errorf("%d requests failed", f)
	}
	for _, l := range []struct {
		name string
		lat  []time.Duration
	}{{"record-delivery", record}, {"get-farmer-balance", balance}, {"visibility", shown}} {
		for _, q := range []struct {
			name string
			q    float64
		}{{"p50", 0.50}, {"p99", 0.99}, {"p999", 0.999}} {
			ms := quantile(l.lat, q.q).Seconds() * 1000
			latencies.Store(fmt.Sprintf("%s %s-ms", l.name, q.name), ms)
			b.ReportMetric(ms, fmt.Sprintf("%s-%s-ms", l.name, q.name))
		}
	}
	b.ReportMetric(rate, "offered-deliveries/s")
}

// visible waits until the farmer balances reflect res.
func visible(ctx context.Context, led ledgerv1.LedgerServiceClient, res *procurementv1.RecordDeliveryResponse) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	_, err := led.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F000000", MinPosition: res.GetPosition()})
	return err
}

// closedLoopRate measures how many calls of op a second clients callers
// sustain, each waiting for its answer before the next call.
func closedLoopRate(ctx context.Context, b *testing.B, op func(context.Context) (*procurementv1.RecordDeliveryResponse, error), d time.Duration) float64 {
	var done atomic.Int64
	stop := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if _, err := op(ctx); err != nil {
					b.Error(err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds()
}

// quantile returns the q-quantile of lat (nearest rank), sorting it.
func quantile(lat []time.Duration, q float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return lat[min(len(lat)-1, int(q*float64(len(lat))))]
}

// printLatencies appends the open-loop latencies to the summary, one a line
// as "latency NAME = X".
func printLatencies(sb *strings.Builder) {
	var names []string
	latencies.Range(func(k, _ any) bool { names = append(names, k.(string)); return true })
	slices.Sort(names)
	for _, name := range names {
		v, _ := latencies.Load(name)
		fmt.Fprintf(sb, "  latency %s = %.2f\n", name, v.(float64))
	}
}
