// Package consistency lets queries read their own writes: a command returns
// the stream position it wrote, and a query waits, bounded, until its read
// model reflects that position. A position in another stream counts once the
// handler that carries that stream's events into this one has processed it.
//
// A wait lasts at most DefaultTimeout (10 s) or until the caller's
// deadline, whichever comes first; then it fails with an error wrapping
// context.DeadlineExceeded (gRPC DEADLINE_EXCEEDED) that names the
// position asked for and where the read model (or the handler) is.
package consistency

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
)

// DefaultTimeout bounds every wait: a caller with a later deadline (or
// none) still gets an answer after it, so a position that is never reached
// (a typo, a position of another deployment) cannot hold a request, and
// the server's resources, for as long as the client is willing to wait.
const DefaultTimeout = 10 * time.Second

// pollEvery is how often a handler's consumer is asked for its progress.
const pollEvery = 10 * time.Millisecond

// Projection is the read model a query reads.
type Projection interface {
	Stream() string
	Checkpoint() uint64
	WaitFor(ctx context.Context, seq uint64) error
}

// Waiter waits for a read model to reflect positions in its own stream or in
// upstream streams.
type Waiter struct {
	js   jetstream.JetStream
	proj Projection
	// upstream maps a stream name to the durable consumer of the handler
	// that turns that stream's events into events of proj's stream.
	upstream map[string]string
	// maxWait bounds one wait (DefaultTimeout unless WithMaxWait).
	maxWait time.Duration
}

// NewWaiter returns a Waiter for proj. upstream maps each upstream stream to
// the durable consumer whose progress decides when its positions count.
func NewWaiter(js jetstream.JetStream, proj Projection, upstream map[string]string) *Waiter {
	return &Waiter{js: js, proj: proj, upstream: upstream, maxWait: DefaultTimeout}
}

// WithMaxWait sets the bound of every wait (tests shorten it) and returns
// w. It must be called before w is used.
func (w *Waiter) WithMaxWait(d time.Duration) *Waiter {
	if d > 0 {
		w.maxWait = d
	}
	return w
}

// WaitFor returns once the read model reflects pos (immediately for a zero
// position) and the position of its own stream it then reflects.
func (w *Waiter) WaitFor(ctx context.Context, pos eventstore.Position) (eventstore.Position, error) {
	own := w.proj.Stream()
	if pos.Sequence == 0 && pos.Stream == "" {
		return eventstore.Position{Stream: own, Sequence: w.proj.Checkpoint()}, nil
	}
	// The bound applies whatever the caller's deadline: the earlier of the
	// two ends the wait.
	ctx, cancel := context.WithTimeout(ctx, w.maxWait)
	defer cancel()
	target := pos.Sequence
	if pos.Stream != own {
		durable, ok := w.upstream[pos.Stream]
		if !ok {
			return eventstore.Position{}, failure.Invalid("min_position.stream",
				"this query reads stream %s; it cannot wait for a position in %q", own, pos.Stream)
		}
		if err := w.waitConsumer(ctx, pos.Stream, durable, pos.Sequence); err != nil {
			return eventstore.Position{}, err
		}
		// Everything the handler wrote for pos is now in our stream, at or
		// before its current head.
		head, err := w.head(ctx, own)
		if err != nil {
			return eventstore.Position{}, err
		}
		target = head
	}
	if pos.Stream == own && w.proj.Checkpoint() < target {
		// Not reflected yet: a position no command has returned would
		// otherwise be waited for until the bound, or, for a read model
		// that skips the subjects it does not read, answered at once
		// without reflecting anything.
		head, err := w.head(ctx, own)
		if err != nil {
			return eventstore.Position{}, err
		}
		if err := beyondHead(own, target, head); err != nil {
			return eventstore.Position{}, err
		}
	}
	if err := w.proj.WaitFor(ctx, target); err != nil {
		return eventstore.Position{}, w.notReached(ctx, fmt.Sprintf("%s:%d", own, target),
			fmt.Sprintf("the read model is at %s:%d", own, w.proj.Checkpoint()), err)
	}
	return eventstore.Position{Stream: own, Sequence: w.proj.Checkpoint()}, nil
}

// Head returns the current head of the read model's own stream: a position
// that covers every event written before the call. A report that must not
// miss anything already acknowledged (a reconciliation after a recorded
// decision, a trial balance) waits for it.
func (w *Waiter) Head(ctx context.Context) (eventstore.Position, error) {
	own := w.proj.Stream()
	head, err := w.head(ctx, own)
	if err != nil {
		return eventstore.Position{}, err
	}
	return eventstore.Position{Stream: own, Sequence: head}, nil
}

// waitConsumer waits until the durable consumer has acknowledged every
// message on its subjects up to seq. The ack floor alone can lag when the
// last messages before seq are on other subjects, and the consumer's pending
// count is updated asynchronously after a publish, so neither is trusted
// alone: the consumer is caught up when no message on its filters lies
// between its ack floor and seq.
func (w *Waiter) waitConsumer(ctx context.Context, stream, durable string, seq uint64) error {
	want := fmt.Sprintf("%s:%d", stream, seq)
	where := func() string {
		return fmt.Sprintf("handler %s has processed %s up to %d", durable, stream, w.ackFloor(stream, durable))
	}
	st, err := w.js.Stream(ctx, stream)
	if err != nil {
		return w.notReached(ctx, want, "", err)
	}
	// Looking the stream up fetched its head: no second request.
	if err := beyondHead(stream, seq, st.CachedInfo().State.LastSeq); err != nil {
		return err
	}
	for {
		done, err := w.consumerReached(ctx, st, durable, seq)
		if err != nil {
			return w.notReached(ctx, want, where(), err)
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return w.notReached(ctx, want, where(), ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}

func (w *Waiter) consumerReached(ctx context.Context, st jetstream.Stream, durable string, seq uint64) (bool, error) {
	c, err := st.Consumer(ctx, durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false, nil // the handler has not started yet
	}
	if err != nil {
		return false, err
	}
	// Looking the consumer up fetched its current info: no second request.
	info := c.CachedInfo()
	floor := info.AckFloor.Stream
	if floor >= seq {
		return true, nil
	}
	filters := info.Config.FilterSubjects
	if info.Config.FilterSubject != "" {
		filters = append(filters, info.Config.FilterSubject)
	}
	if len(filters) == 0 {
		filters = []string{">"}
	}
	for _, f := range filters {
		next, err := st.GetMsg(ctx, floor+1, jetstream.WithGetMsgSubject(f))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return false, err
		}
		if next.Sequence <= seq {
			return false, nil // a message the handler must still process
		}
	}
	return true, nil
}

func (w *Waiter) head(ctx context.Context, stream string) (uint64, error) {
	// Looking the stream up fetches its current info: one round trip.
	s, err := w.js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("head of %s: %w", stream, err)
	}
	return s.CachedInfo().State.LastSeq, nil
}

// ackFloor is how far a handler's durable consumer has acknowledged its
// stream, for an error message (0 when it cannot be told).
func (w *Waiter) ackFloor(stream, durable string) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := w.js.Consumer(ctx, stream, durable)
	if err != nil {
		return 0
	}
	return c.CachedInfo().AckFloor.Stream
}

// notReached explains a wait that ended without reaching want; where says
// how far the read model (or handler) got. A wait that ran out of time
// wraps context.DeadlineExceeded, whether the bound or the caller's
// deadline ended it.
func (w *Waiter) notReached(ctx context.Context, want, where string, err error) error {
	if ctx.Err() != nil {
		if where != "" {
			where = "; " + where
		}
		return fmt.Errorf("min_position %s not reached within %s (the longest a query waits) or the request's deadline%s: %w",
			want, w.maxWait, where, context.DeadlineExceeded)
	}
	return fmt.Errorf("wait for %s: %w", want, err)
}

// beyondHead refuses a position past the head of its stream: every
// position a command returns is at or before the head once it is
// acknowledged, so a later one is a mistake of the caller's, never
// something to wait for.
func beyondHead(stream string, seq, head uint64) error {
	if seq <= head {
		return nil
	}
	return failure.Invalid("min_position.sequence",
		"%s:%d is beyond the head of stream %s (%d): pass the position a command returned", stream, seq, stream, head)
}
