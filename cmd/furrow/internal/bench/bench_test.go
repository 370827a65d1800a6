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
	for _, mode := range []string{"serial", "parallel"} {
		raw, e2e := get("raw-publish/"+mode), get("record-delivery/"+mode)
		if raw > 0 && e2e > 0 {
			fmt.Fprintf(&sb, "  ratio record-delivery/%s : raw-publish/%s = %.2f\n", mode, mode, e2e/raw)
		}
	}
	for _, what := range []string{"post", "load"} {
		cached, uncached := get("long-lived-farmer/"+what+"/cached"), get("long-lived-farmer/"+what+"/uncached")
		if cached > 0 && uncached > 0 {
			fmt.Fprintf(&sb, "  ratio long-lived-farmer/%s cached : uncached = %.1f\n", what, cached/uncached)
		}
	}
	for _, c := range []string{"cached", "uncached"} {
		raw, post := get("raw-publish/serial"), get("long-lived-farmer/post/"+c)
		if raw > 0 && post > 0 {
			fmt.Fprintf(&sb, "  ratio long-lived-farmer/post/%s : raw-publish/serial = %.2f\n", c, post/raw)
		}
	}
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
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(clients / max(1, runtimeProcs()))
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				publish()
			}
		})
		record(b, "raw-publish/parallel", b.N, time.Since(start))
	})
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

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
