package projection

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/synadia-io/orbit.go/jetstreamext"
)

// Status is a projection's progress, for operators and lag metrics.
type Status struct {
	Name   string
	Stream string
	// Checkpoint is the sequence of the last event applied.
	Checkpoint uint64
	// StreamHead is the stream's last sequence, whatever its subject.
	StreamHead uint64
	// LagEvents counts the events after Checkpoint the projection still
	// has to apply: only those on its subjects, so a filtered projection
	// can be caught up (0) while Checkpoint < StreamHead.
	LagEvents uint64
	// LastAppliedAt is when the checkpoint was last stored; zero if never.
	LastAppliedAt time.Time
}

// Status reports the projection's progress against its stream. The stream
// must allow direct gets (Furrow's streams do) to count the lag.
func (r *Runner) Status(ctx context.Context) (Status, error) {
	r.mu.Lock()
	st := Status{Name: r.name, Stream: r.stream, Checkpoint: r.checkpoint, LastAppliedAt: r.lastAppliedAt}
	r.mu.Unlock()

	stream, err := r.js.Stream(ctx, r.stream)
	if err != nil {
		return st, fmt.Errorf("status of projection %s: %w", r.name, err)
	}
	st.StreamHead = stream.CachedInfo().State.LastSeq
	for _, f := range r.filterList() {
		_, n, err := r.firstAfter(ctx, f, st.Checkpoint)
		if err != nil {
			return st, fmt.Errorf("status of projection %s: %w", r.name, err)
		}
		st.LagEvents += n
	}
	return st, nil
}

// filterList is the projection's filters, ">" standing for the whole stream.
func (r *Runner) filterList() []string {
	if r.filters == nil {
		return []string{">"}
	}
	return r.filters
}

// nextPending returns the first sequence in (after, upTo] the projection
// has to apply, or 0 when there is none. A 0 is only trusted when upTo is
// already in the stream: sequences beyond the head are yet to be written
// and may still match.
func (r *Runner) nextPending(ctx context.Context, after, upTo uint64) (uint64, error) {
	stream, err := r.js.Stream(ctx, r.stream)
	if err != nil {
		return 0, err
	}
	if stream.CachedInfo().State.LastSeq < upTo {
		return upTo, nil
	}
	var next uint64
	for _, f := range r.filterList() {
		seq, _, err := r.firstAfter(ctx, f, after)
		if err != nil {
			return 0, err
		}
		if seq != 0 && seq <= upTo && (next == 0 || seq < next) {
			next = seq
		}
	}
	return next, nil
}

// firstAfter asks the stream, with one direct get, for the first message
// on filter after sequence after: its sequence, and how many such
// messages there are (it included). 0, 0 means none.
func (r *Runner) firstAfter(ctx context.Context, filter string, after uint64) (seq, count uint64, err error) {
	msgs, err := jetstreamext.GetBatch(ctx, r.js, r.stream, 1,
		jetstreamext.GetBatchSeq(after+1), jetstreamext.GetBatchSubject(filter))
	if err != nil {
		return 0, 0, fmt.Errorf("look ahead in %s on %s: %w", r.stream, filter, err)
	}
	// Read to the end so the request's reply subscription is released.
	for raw, err := range msgs {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			return 0, 0, nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("look ahead in %s on %s: %w", r.stream, filter, err)
		}
		if seq != 0 {
			continue
		}
		// Nats-Num-Pending counts the matching messages after this one.
		pending, perr := strconv.ParseUint(raw.Header.Get("Nats-Num-Pending"), 10, 64)
		if perr != nil {
			return 0, 0, fmt.Errorf("look ahead in %s on %s: pending count %q: %w",
				r.stream, filter, raw.Header.Get("Nats-Num-Pending"), perr)
		}
		seq, count = raw.Sequence, pending+1
	}
	return seq, count, nil
}
