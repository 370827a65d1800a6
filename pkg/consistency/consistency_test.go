package consistency_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/furrow/furrow/pkg/consistency"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/natstest"
	"github.com/furrow/furrow/pkg/projection"
)

// counted is a read model that counts the events of stream T.
type counted struct{}

func (counted) Name() string       { return "counted" }
func (counted) Stream() string     { return "T" }
func (counted) Subjects() []string { return nil }
func (counted) Migrate(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS counted (n BIGINT NOT NULL)`)
	return err
}
func (counted) Apply(ctx context.Context, tx *sql.Tx, _ eventstore.Recorded) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO counted (n) VALUES (1)`)
	return err
}

// startWaiter runs the counted read model over a real JetStream stream T
// holding one event, and returns a Waiter over it whose waits are bounded
// by maxWait.
func startWaiter(t *testing.T, maxWait time.Duration) *consistency.Waiter {
	t.Helper()
	js := natstest.Embedded(t).JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if err := eventstore.EnsureStreams(ctx, js, eventstore.StreamSpec{Name: "T", Subjects: []string{"t.>"}},
		eventstore.StreamSpec{Name: "UP", Subjects: []string{"up.>"}}); err != nil {
		t.Fatal(err)
	}
	ev, err := eventstore.NewEvent("t.a.1.happened", wrapperspb.String("x"), eventstore.Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventstore.New(js).Append(ctx, eventstore.AppendRequest{Stream: "T", Aggregate: "t.a.1.>", Events: []eventstore.Event{ev}}); err != nil {
		t.Fatal(err)
	}
	db, err := projection.OpenSQLite(filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r, err := projection.NewRunner(db, js, counted{}, projection.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	w := consistency.NewWaiter(js, r, map[string]string{"UP": "up-handler"}).WithMaxWait(maxWait)
	if _, err := w.WaitFor(ctx, eventstore.Position{Stream: "T", Sequence: 1}); err != nil {
		t.Fatalf("waiting for a position the read model reaches: %v", err)
	}
	return w
}

// TestWaitIsBoundedEvenWhenTheCallerAllowsLonger: a min_position that is
// never reached ends the wait at the documented bound, not at the caller's
// later deadline, with DEADLINE_EXCEEDED naming the position and where the
// read model is.
func TestWaitIsBoundedEvenWhenTheCallerAllowsLonger(t *testing.T) {
	t.Parallel()
	const bound = 300 * time.Millisecond
	w := startWaiter(t, bound)
	for _, tc := range []struct {
		name string
		pos  eventstore.Position
		want []string
	}{
		{"own stream", eventstore.Position{Stream: "T", Sequence: 1_000}, []string{"T:1000", "at T:1"}},
		{"upstream", eventstore.Position{Stream: "UP", Sequence: 7}, []string{"UP:7", "up-handler"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The caller would wait a minute: the bound must cut it short.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			_, err := w.WaitFor(ctx, tc.pos)
			took := time.Since(start)
			if err == nil {
				t.Fatal("waiting for a position never reached: no error")
			}
			if ctx.Err() != nil {
				t.Fatalf("the wait ran to the caller's deadline (%v) instead of the bound %v: %v", took, bound, err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want it to wrap context.DeadlineExceeded", err)
			}
			st, _ := status.FromError(grpcx.Status(context.Background(), slog.New(slog.DiscardHandler), err))
			if st.Code() != codes.DeadlineExceeded {
				t.Fatalf("gRPC code %s (%q), want DeadlineExceeded", st.Code(), st.Message())
			}
			for _, s := range tc.want {
				if !strings.Contains(st.Message(), s) {
					t.Errorf("message %q does not name %q", st.Message(), s)
				}
			}
		})
	}
}

// TestWaitEndsAtTheCallersEarlierDeadline: a caller's deadline shorter
// than the bound ends the wait first.
func TestWaitEndsAtTheCallersEarlierDeadline(t *testing.T) {
	t.Parallel()
	w := startWaiter(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := w.WaitFor(ctx, eventstore.Position{Stream: "T", Sequence: 1_000})
	if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() == nil {
		t.Fatalf("err = %v (caller's context: %v), want the caller's deadline to end the wait", err, ctx.Err())
	}
}
