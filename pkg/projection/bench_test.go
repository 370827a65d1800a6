package projection_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"
	"github.com/furrow/furrow/pkg/projection"
)

// BenchmarkCatchUp measures how fast a fresh projection applies a
// 10,000-event backlog into SQLite, per batch size.
func BenchmarkCatchUp(b *testing.B) {
	const backlog = 10_000
	js := startJetStream(b, true)
	db := openDB(b, sqliteStore)
	last := preload(b, js, backlog)
	for _, size := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			n := 0
			for b.Loop() {
				n++
				r := newRunner(b, db, js, newCounter(fmt.Sprintf("bench_%d_%d", size, n)),
					projection.Options{BatchSize: size, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- r.Run(ctx) }()
				wait, cancelWait := context.WithTimeout(ctx, time.Minute)
				if err := r.WaitFor(wait, last); err != nil {
					b.Fatal(err)
				}
				cancelWait()
				cancel()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(backlog*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkReadYourWrite measures one append (fsynced) followed by
// WaitFor on its position: what a command-then-query round trip pays.
func BenchmarkReadYourWrite(b *testing.B) {
	js := startJetStream(b, true)
	db := openDB(b, sqliteStore)
	r := newRunner(b, db, js, newCounter("counts"),
		projection.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	start(b, r)
	ctx := context.Background()
	for b.Loop() {
		seqs := appendEvents(b, js, "test.a.ryw")
		if err := r.WaitFor(ctx, seqs[0]); err != nil {
			b.Fatal(err)
		}
	}
}

// rebuildBacklog is how many events BenchmarkRebuild rebuilds, and
// rebuildRounds how many times it measures each rate.
const (
	rebuildBacklog = 20_000
	rebuildRounds  = 3
)

// BenchmarkRebuild measures the rate of a shadow rebuild from zero of a
// 20,000-event stream into SQLite and into PostgreSQL (when
// FURROW_TEST_POSTGRES_DSN is set), next to the raw rate of an ordered
// consumer reading the same stream in the same run, and reports each as a
// ratio of the raw rate: what the projection machinery (decode, SQL,
// checkpoint per batch) costs over reading the stream. Each rate is the
// best of three rounds, the raw read and the rebuilds taking turns, so
// that a burst of load from other work on a shared machine skews neither
// side. Run it with -benchtime 1x.
func BenchmarkRebuild(b *testing.B) {
	js := natstest.Embedded(b).JetStream(b)
	if err := eventstore.EnsureStreams(context.Background(), js, testSpec); err != nil {
		b.Fatal(err)
	}
	last := preload(b, js, rebuildBacklog)
	stores := []store{sqliteStore}
	if os.Getenv(postgresEnv) != "" {
		stores = append(stores, postgresStore)
	} else {
		b.Logf("PostgreSQL: %s is not set; measuring SQLite only", postgresEnv)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rates := map[string]float64{}
	best := func(name string, rate float64) { rates[name] = max(rates[name], rate) }
	runners := map[string]*projection.Runner{}
	for _, s := range stores {
		r := newRunner(b, openDB(b, s), js, newCounter("bench"), projection.Options{Logger: quiet})
		start(b, r)
		waitFor(b, r, last) // the live copy: not measured
		runners[s.name] = r
	}
	for b.Loop() {
		for range rebuildRounds {
			best("raw", rawOrderedRate(b, js, last))
			for _, s := range stores {
				best(s.name, rebuildRate(b, runners[s.name], last))
			}
		}
	}
	b.ReportMetric(rates["raw"], "raw_events/s")
	for _, s := range stores {
		b.ReportMetric(rates[s.name], s.name+"_events/s")
		b.ReportMetric(rates[s.name]/rates["raw"], s.name+"/raw")
	}
	b.ReportMetric(0, "ns/op") // one rebuild per store is the measurement, not an op
}

// rebuildRate rebuilds r's projection into a shadow copy, returns events
// per second until the copy reached last, and drops the copy.
func rebuildRate(b *testing.B, r *projection.Runner, last uint64) float64 {
	b.Helper()
	begin := time.Now()
	v, err := r.Rebuild(context.Background(), projection.RebuildOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for {
		st := status(b, r)
		if c := st.Copies[len(st.Copies)-1]; c.Version == v && c.Checkpoint >= last {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	rate := float64(rebuildBacklog) / time.Since(begin).Seconds()
	if err := r.DropCopy(context.Background(), v); err != nil {
		b.Fatal(err)
	}
	return rate
}

// rawOrderedRate reads the whole stream with an ordered consumer, as a
// runner does, and returns messages per second: the ceiling of any rebuild.
func rawOrderedRate(b *testing.B, js jetstream.JetStream, last uint64) float64 {
	b.Helper()
	ctx := context.Background()
	begin := time.Now()
	cons, err := js.OrderedConsumer(ctx, testStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	msgs, err := cons.Messages(jetstream.PullMaxMessages(2 * projection.DefaultBatchSize))
	if err != nil {
		b.Fatal(err)
	}
	defer msgs.Stop()
	for n := uint64(0); n < last; n++ {
		m, err := msgs.Next()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Metadata(); err != nil { // as the runner does
			b.Fatal(err)
		}
	}
	return float64(last) / time.Since(begin).Seconds()
}
