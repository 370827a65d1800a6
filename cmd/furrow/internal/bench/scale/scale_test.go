// Package scale is Furrow's scale run (`make bench-scale`, not part of
// `make test`, `make bench` or CI): it fills a `furrow dev` stack with a
// platform's worth of farmers and events through the event store, then
// measures what that size costs: the server's heap, restarting the
// embedded server and the whole stack, rebuilding each projection, the
// latency of GetFarmerBalance and the disk bytes per event.
//
//	go test -run '^$' -bench Scale -benchtime 1x -timeout 0 ./cmd/furrow/internal/bench/scale
//
// FURROW_SCALE_FARMERS (default 1,000,000) and FURROW_SCALE_EVENTS
// (default 10,000,000) set the size; FURROW_SCALE_DIR keeps the data in a
// directory of your choice (default: a temporary one, removed at the end);
// FURROW_SCALE_QUERIES sets how many GetFarmerBalance calls are timed.
//
// The events: one FarmerRegistered per farmer (LEDGER); a programme, and
// per farmer an order and its budget reservation (PROCUREMENT); the rest,
// about seven per farmer at full size, journal entries posting delivery
// payables to the farmers (LEDGER). Deliveries themselves are not
// generated: the ledger's handler would post each again, one at a time,
// and the run would measure that backlog instead. Appends go through
// eventstore.AppendMany (group commit, atomic batches of up to 1,000
// messages, sync always), one request per aggregate, each with its own
// idempotency key, as the services write them.
package scale

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natsembed"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/cmd/furrow/internal/stack"
	ledgerdomain "github.com/furrow/furrow/services/farmer-ledger/domain"
	procurementdomain "github.com/furrow/furrow/services/procurement/domain"
)

// size reads the run's size from the environment.
type size struct {
	farmers, events, queries int
	dir                      string
}

func sizeFromEnv(b *testing.B) size {
	b.Helper()
	num := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("%s=%q: want a positive integer", name, v)
		}
		return n
	}
	s := size{
		farmers: num("FURROW_SCALE_FARMERS", 1_000_000),
		events:  num("FURROW_SCALE_EVENTS", 10_000_000),
		queries: num("FURROW_SCALE_QUERIES", 20_000),
		dir:     os.Getenv("FURROW_SCALE_DIR"),
	}
	if s.events < 3*s.farmers+1 {
		b.Fatalf("%d events cannot hold %d farmers (3 events each, and a programme)", s.events, s.farmers)
	}
	if s.dir == "" {
		s.dir = b.TempDir()
	}
	return s
}

// report prints a figure as "scale NAME = X" (for scripts) and reports it.
func report(b *testing.B, name string, v float64, unit string) {
	b.Helper()
	fmt.Printf("scale %s = %.6g %s\n", name, v, unit)
	b.ReportMetric(v, name+"/"+unit)
}

func BenchmarkScale(b *testing.B) {
	sz := sizeFromEnv(b)
	ctx := context.Background()
	for b.Loop() {
		fmt.Printf("scale run: %d farmers, %d events, data in %s, %d cores\n", sz.farmers, sz.events, sz.dir, runtime.NumCPU())
		baseline := heapInUse()
		st, err := stack.Start(ctx, stack.Config{DataDir: sz.dir, GRPCAddr: "127.0.0.1:0"})
		if err != nil {
			b.Fatal(err)
		}

		begin := time.Now()
		written := generate(b, ctx, eventstore.New(st.JetStream()), sz)
		ingest := time.Since(begin)
		report(b, "ingest-events", float64(written), "events")
		report(b, "ingest-rate", float64(written)/ingest.Seconds(), "events/s")
		caught := time.Now()
		waitCaughtUp(b, ctx, st.Projections(), 24*time.Hour)
		report(b, "projections-caught-up-after-ingest", time.Since(caught).Seconds(), "s")
		report(b, "ingest-and-project", time.Since(begin).Seconds(), "s")
		report(b, "stack-heap-loaded", mib(heapInUse()-baseline), "MiB")
		st.Shutdown(ctx)

		// The embedded server alone: what the store costs it to recover
		// and to hold in memory (per-subject state, indexes).
		before := heapInUse()
		start := time.Now()
		srv, err := natsembed.Start(natsembed.Options{StoreDir: filepath.Join(sz.dir, "jetstream")})
		if err != nil {
			b.Fatal(err)
		}
		report(b, "server-restart", time.Since(start).Seconds(), "s")
		report(b, "server-heap-at-start", mib(heapInUse()-before), "MiB")
		// Recovery reads the store's blocks, which the server caches for a
		// while: the settled heap is what the store costs it to hold.
		time.Sleep(settle)
		report(b, "server-heap", mib(heapInUse()-before), "MiB")
		srv.Shutdown()

		// The whole of furrow dev: server, services, projections caught up.
		before = heapInUse()
		start = time.Now()
		st, err = stack.Start(ctx, stack.Config{DataDir: sz.dir, GRPCAddr: "127.0.0.1:0"})
		if err != nil {
			b.Fatal(err)
		}
		report(b, "furrow-dev-restart-serving", time.Since(start).Seconds(), "s")
		waitCaughtUp(b, ctx, st.Projections(), time.Hour)
		report(b, "furrow-dev-restart-caught-up", time.Since(start).Seconds(), "s")
		report(b, "furrow-dev-heap", mib(heapInUse()-before), "MiB")

		balanceLatency(b, ctx, st, sz)

		jsBytes, dbBytes := dirBytes(b, filepath.Join(sz.dir, "jetstream")), dbFiles(b, sz.dir)
		report(b, "disk-jetstream", mib(jsBytes), "MiB")
		report(b, "disk-jetstream-per-event", float64(jsBytes)/float64(written), "bytes")
		report(b, "disk-sqlite", mib(dbBytes), "MiB")
		report(b, "disk-sqlite-per-event", float64(dbBytes)/float64(written), "bytes")

		for _, r := range st.Projections() {
			rebuild(b, ctx, r)
		}
		st.Shutdown(ctx)
	}
}

// settle is how long the restarted server idles before its heap is read.
const settle = 30 * time.Second

const (
	programID = "scale-2026"
	product   = "xunwu-navel-orange"
	amountFen = 8395
)

var counties = []string{"Xunwu", "Qinglong", "Yongshun", "Baba", "Anxi", "Pingwu", "Lushi", "Zhenning"}

func farmerID(i int) string { return fmt.Sprintf("F%07d", i) }

// generate writes the run's events and returns how many it wrote.
func generate(b *testing.B, ctx context.Context, store *eventstore.Store, sz size) int {
	b.Helper()
	md := eventstore.Metadata{CorrelationID: "scale", Actor: "scale"}
	event := func(subject string, m proto.Message) eventstore.Event {
		ev, err := eventstore.NewEvent(subject, m, md)
		if err != nil {
			b.Fatal(err)
		}
		return ev
	}
	req := func(stream, aggregate, key string, ev eventstore.Event) eventstore.AppendRequest {
		return eventstore.AppendRequest{Stream: stream, Aggregate: aggregate, Expect: eventstore.ExpectAny,
			IdempotencyKey: key, Fingerprint: key, Events: []eventstore.Event{ev}}
	}
	var written atomic.Int64
	// run makes n requests with build(i) in chunks, several chunks in flight.
	run := func(what string, n int, build func(i int) eventstore.AppendRequest) {
		const chunk, workers = 4_000, 4
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					from := int(next.Add(chunk)) - chunk
					if from >= n || b.Failed() {
						return
					}
					reqs := make([]eventstore.AppendRequest, 0, chunk)
					for i := from; i < min(from+chunk, n); i++ {
						reqs = append(reqs, build(i))
					}
					for i, o := range store.AppendMany(ctx, reqs) {
						if o.Err != nil {
							b.Errorf("%s %d: %v", what, from+i, o.Err)
							return
						}
					}
					written.Add(int64(len(reqs)))
				}
			})
		}
		wg.Wait()
		if b.Failed() {
			b.FailNow()
		}
		fmt.Printf("scale generated %d %s in %s (%.0f/s)\n", n, what, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
	}

	run("farmer registrations", sz.farmers, func(i int) eventstore.AppendRequest {
		id := farmerID(i)
		return req(ledgerdomain.Stream, ledgerdomain.FarmerAggregate(id), "ledger.RegisterFarmer:scale-"+id,
			event(ledgerdomain.FarmerSubject(id, ledgerdomain.KindRegistered), &ledgerevents.FarmerRegistered{
				FarmerId: id, Name: "Farmer " + id, County: counties[i%len(counties)], Cooperative: "coop-" + strconv.Itoa(i%500),
				Phone: fmt.Sprintf("138%08d", i), PayoutAccount: fmt.Sprintf("6222%012d", i),
			}))
	})
	period := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	run("programmes", 1, func(int) eventstore.AppendRequest {
		return req(procurementdomain.Stream, procurementdomain.ProgramAggregate(programID), "procurement.OpenProgram:"+programID,
			event(procurementdomain.ProgramSubject(programID, procurementdomain.KindProgramOpened), &procurementevents.ProgramOpened{
				ProgramId: programID, Name: "Scale 2026", BudgetFen: 1 << 60,
				PeriodStart: timestamppb.New(period), PeriodEnd: timestamppb.New(period.AddDate(1, 0, 0)),
				Products: []string{product}, Counties: counties,
			}))
	})
	order := func(i int) string { return procurementdomain.OrderIDFor("scale-po-" + strconv.Itoa(i)) }
	run("orders", sz.farmers, func(i int) eventstore.AppendRequest {
		id := order(i)
		return req(procurementdomain.Stream, procurementdomain.OrderAggregate(id), "procurement.PlaceOrder:scale-po-"+strconv.Itoa(i),
			event(procurementdomain.OrderSubject(id, procurementdomain.KindOrderPlaced), &procurementevents.OrderPlaced{
				OrderId: id, ProgramId: programID, FarmerId: farmerID(i), County: counties[i%len(counties)], Product: product,
				Prices:       []*procurementevents.GradePrice{{Grade: "A", PriceFenPerKg: 680}, {Grade: "B", PriceFenPerKg: 520}},
				OrderedGrams: 1_000_000, ToleranceBp: 500, MaxGrams: 1_050_000, ReservedFen: 714_000,
				WindowStart: timestamppb.New(period), WindowEnd: timestamppb.New(period.AddDate(0, 6, 0)), OriginWarehouse: "wh-7",
			}))
	})
	run("budget reservations", sz.farmers, func(i int) eventstore.AppendRequest {
		return req(procurementdomain.Stream, procurementdomain.ProgramAggregate(programID), "procurement.Reserve:scale-po-"+strconv.Itoa(i),
			event(procurementdomain.ProgramSubject(programID, procurementdomain.KindBudgetReserved), &procurementevents.BudgetReserved{
				ProgramId: programID, OrderId: order(i), AmountFen: 714_000,
			}))
	})
	entries := sz.events - 3*sz.farmers - 1
	run("journal entries", entries, func(i int) eventstore.AppendRequest {
		f := farmerID(i % sz.farmers)
		src := fmt.Sprintf("scale-delivery-%d", i)
		return req(ledgerdomain.Stream, ledgerdomain.FarmerAggregate(f), "ledger.PostEntryOnDeliveryRecorded:"+src,
			event(ledgerdomain.FarmerSubject(f, ledgerdomain.KindEntryPosted), &ledgerevents.EntryPosted{
				EntryId: "E-" + src, FarmerId: f, Description: "delivery " + src + ": 12345 g " + product + " at 680 fen/kg",
				Source: &ledgerevents.SourceRef{Stream: procurementdomain.Stream, Sequence: uint64(i + 1), EventId: src,
					EventType: "furrow.procurement.events.v1.DeliveryRecorded"},
				Lines: []*ledgerevents.EntryLine{
					{Account: ledgerdomain.AccountProcurementExpense, DebitFen: amountFen},
					{Account: ledgerdomain.FarmerAccount(f, ledgerdomain.FarmerPayable), CreditFen: amountFen},
				},
			}))
	})
	return int(written.Load())
}

// waitCaughtUp waits until every runner's live copy has nothing left to
// apply, printing progress now and then.
func waitCaughtUp(b *testing.B, ctx context.Context, runners []*projection.Runner, limit time.Duration) {
	b.Helper()
	deadline := time.Now().Add(limit)
	lastPrint := time.Now()
	for {
		var lag uint64
		var behind []string
		for _, r := range runners {
			st, err := r.Status(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if !st.State.Healthy() {
				b.Fatalf("projection %s: %s (%s)", st.Name, st.State, st.Reason)
			}
			if st.LagEvents > 0 {
				lag += st.LagEvents
				behind = append(behind, fmt.Sprintf("%s %d", st.Name, st.LagEvents))
			}
		}
		if lag == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("projections not caught up after %s: %v", limit, behind)
		}
		if time.Since(lastPrint) > 30*time.Second {
			fmt.Printf("scale projections behind: %v\n", behind)
			lastPrint = time.Now()
		}
		time.Sleep(time.Second)
	}
}

// balanceLatency times GetFarmerBalance of random farmers from 8 clients.
func balanceLatency(b *testing.B, ctx context.Context, st *stack.Stack, sz size) {
	b.Helper()
	conn, err := grpc.NewClient(st.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	led := ledgerv1.NewLedgerServiceClient(conn)
	const clients = 8
	lat := make([]time.Duration, sz.queries)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < sz.queries; i = int(next.Add(1)) - 1 {
				f := rand.IntN(sz.farmers)
				t0 := time.Now()
				res, err := led.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: farmerID(f)})
				lat[i] = time.Since(t0)
				if err != nil {
					b.Errorf("GetFarmerBalance %s: %v", farmerID(f), err)
					return
				}
				if want := entriesOf(f, sz) * amountFen; res.GetPurchasesFen() != want {
					b.Errorf("%s: purchases %d, want %d", farmerID(f), res.GetPurchasesFen(), want)
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if b.Failed() {
		b.FailNow()
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))].Seconds() * 1000 }
	report(b, "get-farmer-balance-rate", float64(sz.queries)/took.Seconds(), "calls/s")
	report(b, "get-farmer-balance-p50", pct(0.50), "ms")
	report(b, "get-farmer-balance-p99", pct(0.99), "ms")
	report(b, "get-farmer-balance-p999", pct(0.999), "ms")
}

// entriesOf is how many entries generate posted to farmer f.
func entriesOf(f int, sz size) int64 {
	entries := sz.events - 3*sz.farmers - 1
	n := entries / sz.farmers
	if f < entries%sz.farmers {
		n++
	}
	return int64(n)
}

// rebuild rebuilds r's projection from the first event into a shadow
// copy, times it, and drops the copy.
func rebuild(b *testing.B, ctx context.Context, r *projection.Runner) {
	b.Helper()
	start := time.Now()
	v, err := r.Rebuild(ctx, projection.RebuildOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var applied uint64
	lastPrint := time.Now()
	for {
		st, err := r.Status(ctx)
		if err != nil {
			b.Fatal(err)
		}
		i := slices.IndexFunc(st.Copies, func(c projection.CopyStatus) bool { return c.Version == v })
		if i < 0 {
			b.Fatalf("%s: copy %d gone", r.Name(), v)
		}
		c := st.Copies[i]
		if c.CaughtUp && c.LagEvents == 0 {
			applied = c.Applied
			break
		}
		if !c.State.Healthy() {
			b.Fatalf("%s copy %d: %s (%s)", r.Name(), v, c.State, c.Reason)
		}
		if time.Since(lastPrint) > 30*time.Second {
			fmt.Printf("scale rebuilding %s: %d of %d\n", r.Name(), c.Applied, c.Total)
			lastPrint = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	report(b, "rebuild-"+r.Name(), took.Seconds(), "s")
	if applied > 0 {
		report(b, "rebuild-"+r.Name()+"-rate", float64(applied)/took.Seconds(), "events/s")
	}
	if err := r.DropCopy(ctx, v); err != nil {
		b.Fatal(err)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

func dirBytes(b *testing.B, dir string) uint64 {
	b.Helper()
	var n uint64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += uint64(info.Size())
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// dbFiles is the size of the SQLite read models (database, WAL).
func dbFiles(b *testing.B, dir string) uint64 {
	b.Helper()
	var n uint64
	for _, f := range []string{"projections.db", "projections.db-wal"} {
		if info, err := os.Stat(filepath.Join(dir, f)); err == nil {
			n += uint64(info.Size())
		}
	}
	return n
}
