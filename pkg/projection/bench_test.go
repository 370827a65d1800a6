package projection_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/furrow/furrow/pkg/projection"
)

// BenchmarkCatchUp measures how fast a fresh projection applies a
// 10,000-event backlog into SQLite, per batch size.
func BenchmarkCatchUp(b *testing.B) {
	const backlog = 10_000
	js := startJetStream(b, true)
	db := openDB(b, filepath.Join(b.TempDir(), "read.db"))
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
	db := openDB(b, filepath.Join(b.TempDir(), "read.db"))
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
