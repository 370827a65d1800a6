package bench

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natsembed"
)

// BenchmarkSubjectCardinality measures what per-aggregate subjects cost the
// server: heap and restart time for 100,000 events on 100,000 distinct
// subjects (one per delivery, as procurement.delivery.<id>.delivery_recorded
// does) against the same events on 64 subjects. Publishing is lazy-synced
// and asynchronous because only memory and recovery are measured here.
func BenchmarkSubjectCardinality(b *testing.B) {
	const events = 100_000
	for _, subjects := range []int{64, events} {
		b.Run(fmt.Sprintf("subjects=%d", subjects), func(b *testing.B) {
			for b.Loop() {
				heap, restart := measureCardinality(b, events, subjects)
				b.ReportMetric(float64(heap)/float64(subjects), "heap-bytes/subject")
				b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
				b.ReportMetric(restart.Seconds()*1000, "restart-ms")
				rates.Store(fmt.Sprintf("cardinality/%d-subjects heap-MiB", subjects), float64(heap)/(1<<20))
				rates.Store(fmt.Sprintf("cardinality/%d-subjects restart-ms", subjects), restart.Seconds()*1000)
			}
		})
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func measureCardinality(b *testing.B, events, subjects int) (heap uint64, restart time.Duration) {
	b.Helper()
	dir := b.TempDir()
	before := heapInUse()
	srv, err := natsembed.Start(natsembed.Options{StoreDir: dir, LazySync: true})
	if err != nil {
		b.Fatal(err)
	}
	nc, err := srv.Connect()
	if err != nil {
		b.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := eventstore.EnsureStreams(ctx, js, eventstore.StreamSpec{Name: "CARD", Subjects: []string{"card.>"}}); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 120)
	for i := range events {
		if _, err := js.PublishAsync(fmt.Sprintf("card.delivery.D%012d.delivery_recorded", i%subjects), data); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		b.Fatal("async publishes did not complete")
	}
	nc.Close()
	heap = heapInUse() - before

	srv.Shutdown()
	start := time.Now()
	srv, err = natsembed.Start(natsembed.Options{StoreDir: dir, LazySync: true})
	if err != nil {
		b.Fatal(err)
	}
	nc, err = srv.Connect()
	if err != nil {
		b.Fatal(err)
	}
	js, _ = jetstream.New(nc)
	st, err := js.Stream(ctx, "CARD")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.GetLastMsgForSubject(ctx, "card.delivery.D000000000001.delivery_recorded"); err != nil {
		b.Fatal(err)
	}
	restart = time.Since(start)
	nc.Close()
	srv.Shutdown()
	return heap, restart
}
