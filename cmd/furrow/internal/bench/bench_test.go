// Package bench measures Furrow against the raw JetStream baseline on the
// same machine in the same run: a figure alone says little on a shared,
// noisy machine; the ratio to the baseline is what to compare over time.
//
//	go test -run '^$' -bench . -benchtime 3s ./cmd/furrow/internal/bench
//
// (or `make bench`). TestMain prints the figures and their ratios.
package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"

	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// clients is how many concurrent callers the parallel variants use: a
// warehouse system or platform backend with that many requests in flight.
const clients = 16

// rates collects each benchmark's best rate (operations per second).
var rates sync.Map

func record(b *testing.B, name string, ops int, d time.Duration) {
	b.Helper()
	rate := float64(ops) / d.Seconds()
	b.ReportMetric(rate, "ops/s")
	if old, ok := rates.Load(name); !ok || old.(float64) < rate {
		rates.Store(name, rate)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	printRatios()
	os.Exit(code)
}

func printRatios() {
	var names []string
	rates.Range(func(k, _ any) bool { names = append(names, k.(string)); return true })
	if len(names) == 0 {
		return
	}
	sort.Strings(names)
	get := func(n string) float64 { v, _ := rates.Load(n); f, _ := v.(float64); return f }
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nFurrow benchmark summary (same run, same machine; compare ratios, not times)\n")
	for _, n := range names {
		unit := "ops/s"
		if strings.HasPrefix(n, "cardinality/") {
			unit = ""
		}
		fmt.Fprintf(&sb, "  %-44s %10.1f %s\n", n, get(n), unit)
	}
	// Ratios, one a line as "ratio NAME = X.XX" so a script can read them.
	ratio := func(name string, num, den float64) {
		if num > 0 && den > 0 {
			fmt.Fprintf(&sb, "  ratio %s = %.2f\n", name, num/den)
		}
	}
	for _, mode := range []string{"serial", "parallel"} {
		ratio(fmt.Sprintf("record-delivery/%s : raw-publish/%s", mode, mode), get("record-delivery/"+mode), get("raw-publish/"+mode))
	}
	for _, par := range []string{parallelName(clients), parallelName(4 * clients)} {
		for _, mode := range []string{"group-commit", "alone"} {
			ratio(fmt.Sprintf("append/%s/%s : raw-publish/%s", par, mode, par), get("append/"+par+"/"+mode), get("raw-publish/"+par))
		}
	}
	ratio("append-many/1000 : raw-batch-1000", get("append-many/1000"), get("raw-batch-1000"))
	ratio("record-deliveries/bulk-events : raw-batch-1000", get("record-deliveries/bulk-events"), get("raw-batch-1000"))
	for _, what := range []string{"post", "load"} {
		ratio(fmt.Sprintf("long-lived-farmer/%s cached : uncached", what), get("long-lived-farmer/"+what+"/cached"), get("long-lived-farmer/"+what+"/uncached"))
	}
	for _, c := range []string{"cached", "uncached"} {
		ratio(fmt.Sprintf("long-lived-farmer/post/%s : raw-publish/serial", c), get("long-lived-farmer/post/"+c), get("raw-publish/serial"))
	}
	ratio("farmer-load/snapshot : farmer-load/full", get("farmer-load/snapshot"), get("farmer-load/full"))
	printLatencies(&sb)
	fmt.Print(sb.String())
}

// payload is a DeliveryRecorded event as procurement writes it, so the raw
// baseline publishes the same bytes and headers per message.
func payload(b *testing.B) ([]byte, nats.Header) {
	b.Helper()
	ev, err := eventstore.NewEvent("procurement.delivery.D.delivery_recorded", &procurementevents.DeliveryRecorded{
		DeliveryId: "D0123456789abcdef0123", FarmerId: "F000001", Product: "xunwu-navel-orange", Grade: "A",
		NetGrams: 12_345, PriceFenPerKg: 680, AmountFen: 8395,
	}, eventstore.Metadata{CorrelationID: "wh-7/2026-11-28/000001", CausationID: "wh-7/2026-11-28/000001", Actor: "platform"})
	if err != nil {
		b.Fatal(err)
	}
	h := nats.Header{}
	for _, k := range []string{eventstore.HeaderEventType, eventstore.HeaderSchemaVersion, eventstore.HeaderEventID,
		eventstore.HeaderCorrelationID, eventstore.HeaderCausationID, eventstore.HeaderActor, eventstore.HeaderOccurredAt,
		eventstore.HeaderIdempotency, eventstore.HeaderFingerprint} {
		h.Set(k, strings.Repeat("x", 36))
	}
	return ev.Data, h
}

// BenchmarkRawPublish is the baseline: synchronous JetStream publishes with
// sync always, to a stream configured like Furrow's, in process.
func BenchmarkRawPublish(b *testing.B) {
	js := natstest.Embedded(b).JetStream(b)
	ctx := context.Background()
	if err := eventstore.EnsureStreams(ctx, js, eventstore.StreamSpec{Name: "RAW", Subjects: []string{"raw.>"}}); err != nil {
		b.Fatal(err)
	}
	data, hdr := payload(b)
	var n atomic.Int64
	publish := func() {
		i := n.Add(1)
		m := nats.NewMsg(fmt.Sprintf("raw.delivery.D%d.delivery_recorded", i))
		m.Header = nats.Header{}
		for k, v := range hdr {
			m.Header[k] = v
		}
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprint("m", i))
		m.Data = data
		if _, err := js.PublishMsg(ctx, m); err != nil {
			b.Error(err)
		}
	}
	b.Run("serial", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			publish()
		}
		record(b, "raw-publish/serial", b.N, time.Since(start))
	})
	for _, callers := range []int{clients, 4 * clients} {
		name := "raw-publish/" + parallelName(callers)
		b.Run(strings.TrimPrefix(name, "raw-publish/"), func(b *testing.B) {
			b.SetParallelism(max(1, callers/runtimeProcs()))
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					publish()
				}
			})
			record(b, name, b.N, time.Since(start))
		})
	}
	// The ceiling of bulk ingest: atomic batches of 1,000 such messages,
	// one after the other (one op = one message).
	b.Run("batch-1000", func(b *testing.B) {
		const size = eventstore.MaxBatch
		start := time.Now()
		msgs := 0
		for b.Loop() {
			batch := make([]*nats.Msg, size)
			for k := range batch {
				i := n.Add(1)
				m := nats.NewMsg(fmt.Sprintf("raw.delivery.D%d.delivery_recorded", i))
				m.Header = nats.Header{}
				for k, v := range hdr {
					m.Header[k] = v
				}
				m.Header.Set(jetstream.MsgIDHeader, fmt.Sprint("m", i))
				m.Data = data
				batch[k] = m
			}
			if _, err := jetstreamext.PublishMsgBatch(ctx, js, batch); err != nil {
				b.Fatal(err)
			}
			msgs += size
		}
		record(b, "raw-batch-1000", msgs, time.Since(start))
	})
}

// BenchmarkAppend is the event store's Append alone (no gRPC, no domain,
// nothing running in the background): clients (and 4×clients) callers
// appending one event each to distinct aggregates, with group commit and
// without (every append its own publish, as before group commit); and
// many-1000, AppendMany of 1,000 such appends at once (one op = one
// append), the store's share of bulk ingest.
func BenchmarkAppend(b *testing.B) {
	js := natstest.Embedded(b).JetStream(b)
	ctx := context.Background()
	if err := eventstore.EnsureStreams(ctx, js, eventstore.StreamSpec{Name: "APPEND", Subjects: []string{"append.>"}}); err != nil {
		b.Fatal(err)
	}
	data, _ := payload(b)
	var n atomic.Int64
	request := func() eventstore.AppendRequest {
		i := n.Add(1)
		agg := fmt.Sprintf("append.delivery.D%d", i)
		return eventstore.AppendRequest{Stream: "APPEND", Aggregate: agg + ".>",
			Expect: eventstore.ExpectNew(), IdempotencyKey: fmt.Sprint("k", i), Fingerprint: "f",
			Events: []eventstore.Event{{Subject: agg + ".delivery_recorded", Type: "furrow.procurement.events.v1.DeliveryRecorded", Data: data}},
		}
	}
	for _, callers := range []int{clients, 4 * clients} {
		for _, mode := range []struct {
			name string
			opts eventstore.Options
		}{{"group-commit", eventstore.Options{}}, {"alone", eventstore.Options{NoGroupCommit: true}}} {
			name := fmt.Sprintf("append/%s/%s", parallelName(callers), mode.name)
			b.Run(fmt.Sprintf("%s/callers=%d", mode.name, callers), func(b *testing.B) {
				store := eventstore.NewWithOptions(js, mode.opts)
				b.SetParallelism(max(1, callers/runtimeProcs()))
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := store.Append(ctx, request()); err != nil {
							b.Error(err)
						}
					}
				})
				record(b, name, b.N, time.Since(start))
				st := store.Stats()
				b.ReportMetric(float64(st.Appends)/float64(max(1, st.Publishes)), "appends/publish")
			})
		}
	}
	b.Run("many-1000", func(b *testing.B) {
		store := eventstore.New(js)
		start := time.Now()
		appends := 0
		for b.Loop() {
			reqs := make([]eventstore.AppendRequest, eventstore.MaxBatch)
			for k := range reqs {
				reqs[k] = request()
			}
			for _, o := range store.AppendMany(ctx, reqs) {
				if o.Err != nil {
					b.Fatal(o.Err)
				}
			}
			appends += len(reqs)
		}
		record(b, "append-many/1000", appends, time.Since(start))
	})
}

// parallelName names a parallel figure: "parallel" for clients callers,
// "parallel-64" for 64.
func parallelName(callers int) string {
	if callers == clients {
		return "parallel"
	}
	return fmt.Sprintf("parallel-%d", callers)
}

// BenchmarkRecordDelivery is the end-to-end command: a gRPC RecordDelivery
// against the whole stack (validation, farmer check, idempotency, append
// with optimistic concurrency), while the ledger posts the payables and the
// projection applies them in the background.
func BenchmarkRecordDelivery(b *testing.B) {
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
	var run atomic.Int64
	record1 := func(prefix string) {
		i := n.Add(1)
		req := &procurementv1.RecordDeliveryRequest{
			RequestId: fmt.Sprintf("%s-%d", prefix, i), FarmerId: fmt.Sprintf("F%06d", i%farmers),
			Product: "xunwu-navel-orange", Grade: "A", NetGrams: 12_345, PriceFenPerKg: 680,
		}
		if _, err := proc.RecordDelivery(ctx, req); err != nil {
			b.Error(err)
		}
	}
	b.Run("serial", func(b *testing.B) {
		prefix := fmt.Sprint("s", run.Add(1))
		start := time.Now()
		for b.Loop() {
			record1(prefix)
		}
		record(b, "record-delivery/serial", b.N, time.Since(start))
	})
	b.Run("parallel", func(b *testing.B) {
		prefix := fmt.Sprint("p", run.Add(1))
		b.SetParallelism(clients / max(1, runtimeProcs()))
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				record1(prefix)
			}
		})
		record(b, "record-delivery/parallel", b.N, time.Since(start))
	})
}

// BenchmarkRecordDeliveries is bulk ingest end to end: RecordDeliveries
// calls of 1,000 ad-hoc weigh-ins each (a warehouse's day arriving in one
// burst) over gRPC against the whole stack; one op is one line recorded.
func BenchmarkRecordDeliveries(b *testing.B) {
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
	const farmers, lines = 64, 1000
	for i := range farmers {
		id := fmt.Sprintf("F%06d", i)
		if _, err := led.RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{RequestId: "reg-" + id, FarmerId: id, Name: "n", County: "Xunwu"}); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	b.Run("bulk", func(b *testing.B) {
		recorded := 0
		start := time.Now()
		for b.Loop() {
			day := &procurementv1.RecordDeliveriesRequest{Lines: make([]*procurementv1.RecordDeliveryRequest, lines)}
			for k := range day.Lines {
				i := n.Add(1)
				day.Lines[k] = &procurementv1.RecordDeliveryRequest{
					RequestId: fmt.Sprintf("bulk-%d", i), FarmerId: fmt.Sprintf("F%06d", i%farmers),
					Product: "xunwu-navel-orange", Grade: "A", NetGrams: 12_345, PriceFenPerKg: 680,
				}
			}
			res, err := proc.RecordDeliveries(ctx, day)
			if err != nil {
				b.Fatal(err)
			}
			if res.GetRecorded() != lines {
				b.Fatalf("recorded %d of %d lines", res.GetRecorded(), lines)
			}
			recorded += lines
		}
		record(b, "record-deliveries/bulk-events", recorded, time.Since(start))
	})
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
