package consistency_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
	// T:2 exists but is never reached (the read model is paused before
	// it), and UP holds 7 events no handler consumes: the positions the
	// tests wait for in vain.
	if err := r.Pause(ctx, "positions never reached"); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(js)
	for i, stream := range []string{"T", "UP", "UP", "UP", "UP", "UP", "UP", "UP"} {
		subject := fmt.Sprintf("%s.a.%d.happened", strings.ToLower(stream), i)
		ev, err := eventstore.NewEvent(subject, wrapperspb.String("x"), eventstore.Metadata{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Append(ctx, eventstore.AppendRequest{Stream: stream, Aggregate: subject, Events: []eventstore.Event{ev}}); err != nil {
			t.Fatal(err)
		}
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
		{"own stream", eventstore.Position{Stream: "T", Sequence: 2}, []string{"T:2", "at T:1"}},
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
	_, err := w.WaitFor(ctx, eventstore.Position{Stream: "T", Sequence: 2})
	if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() == nil {
		t.Fatalf("err = %v (caller's context: %v), want the caller's deadline to end the wait", err, ctx.Err())
	}
}

// TestPositionBeyondTheHeadIsInvalid: a min_position past its stream's
// head is no command's position. It is refused at once as
// INVALID_ARGUMENT naming the head, in the read model's own stream and
// upstream, rather than waited for until the bound (or, for a read model
// filtering subjects, answered at once as if it were reflected).
func TestPositionBeyondTheHeadIsInvalid(t *testing.T) {
	t.Parallel()
	w := startWaiter(t, time.Minute)
	for _, tc := range []struct {
		pos  eventstore.Position
		want string
	}{
		{eventstore.Position{Stream: "T", Sequence: 3}, "T:3 is beyond the head of stream T (2)"},
		{eventstore.Position{Stream: "UP", Sequence: 1_000}, "UP:1000 is beyond the head of stream UP (7)"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := w.WaitFor(ctx, tc.pos)
		cancel()
		st, _ := status.FromError(grpcx.Status(context.Background(), slog.New(slog.DiscardHandler), err))
		if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.want) {
			t.Errorf("WaitFor(%v) = %v (%s %q), want InvalidArgument saying %q", tc.pos, err, st.Code(), st.Message(), tc.want)
		}
	}
}
