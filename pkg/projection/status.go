package projection

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/synadia-io/orbit.go/jetstreamext"
)

// State summarises a copy's health.
type State string

// States of a copy. Idle and CatchingUp are healthy; the others need an
// operator's attention (Paused only if nobody meant it).
const (
	// StateIdle: nothing to apply; the loop beats.
	StateIdle State = "idle"
	// StateCatchingUp: events to apply, and the checkpoint moves.
	StateCatchingUp State = "catching_up"
	// StateFailing: a batch fails and is being retried.
	StateFailing State = "failing"
	// StateBlocked: stopped at a parked event (StopOnFailure) until redriven.
	StateBlocked State = "blocked"
	// StateStalled: events to apply but no progress, or no heartbeat, for
	// longer than Options.StallAfter.
	StateStalled State = "stalled"
	// StatePaused: an operator paused the projection.
	StatePaused State = "paused"
	// StateStopped: no runner feeds the copy in this process.
	StateStopped State = "stopped"
)

// Healthy reports whether the state needs no attention.
func (s State) Healthy() bool { return s == StateIdle || s == StateCatchingUp }

// Status is a projection's progress and health, for operators and lag
// metrics. The top-level fields describe the live copy.
type Status struct {
	Name   string
	Stream string
	// Version is the live copy (0 for a projection that is not Versioned).
	Version int64
	// Checkpoint is the sequence of the last event applied.
	Checkpoint uint64
	// StreamHead is the stream's last sequence, whatever its subject.
	StreamHead uint64
	// LagEvents counts the events after Checkpoint the projection still
	// has to apply: only those on its subjects, so a filtered projection
	// can be caught up (0) while Checkpoint < StreamHead.
	LagEvents uint64
	// LagTime is how long ago the stream stored the oldest event still to
	// apply; 0 when caught up.
	LagTime time.Duration
	// LastAppliedAt is when the checkpoint was last stored; zero if never.
	LastAppliedAt time.Time
	// HeartbeatAt is when the live copy's loop last showed it is alive.
	HeartbeatAt time.Time
	State       State
	// Reason explains an unhealthy state.
	Reason      string
	Policy      FailurePolicy
	Paused      bool
	PauseReason string
	Versioned   bool
	// FailingSeq, Attempts and LastError describe the current failure;
	// DeadLetter is the parked event's sequence in the dead-letter stream.
	FailingSeq uint64
	Attempts   int
	LastError  string
	DeadLetter uint64
	// Skipped counts events the live copy moved past under SkipOnFailure
	// and that were not redriven yet.
	Skipped int
	// Copies lists every copy, the live one included, oldest first.
	Copies []CopyStatus
}

// CopyStatus describes one copy of a projection.
type CopyStatus struct {
	Version int64
	// Role is "live", "shadow" or "retired".
	Role       string
	Checkpoint uint64
	// Applied counts the events applied into the copy since it was created.
	Applied uint64
	// FromSeq is the first sequence the copy was built from.
	FromSeq   uint64
	CreatedAt time.Time
	UpdatedAt time.Time
	// The fields below are filled for copies this process feeds.
	State       State
	Reason      string
	HeartbeatAt time.Time
	LagEvents   uint64
	LagTime     time.Duration
	// Rate is events applied per second since the worker started; ETA the
	// time to apply LagEvents at that rate (0 if unknown).
	Rate     float64
	ETA      time.Duration
	CaughtUp bool
	// Total is Applied + LagEvents: a rebuild's "done of total".
	Total      uint64
	FailingSeq uint64
	Attempts   int
	LastError  string
	DeadLetter uint64
}

// Status reports the projection's progress against its stream. The stream
// must allow direct gets (Furrow's streams do) to count the lag.
func (r *Runner) Status(ctx context.Context) (Status, error) {
	st := Status{Name: r.name, Stream: r.stream, Policy: r.opts.OnFailure, Versioned: r.versioned}
	rows, err := loadCopies(ctx, r.db, r.name)
	if err != nil {
		return st, fmt.Errorf("status of projection %s: %w", r.name, err)
	}
	pause, err := loadPause(ctx, r.db, r.name)
	if err != nil {
		return st, fmt.Errorf("status of projection %s: %w", r.name, err)
	}
	st.Paused, st.PauseReason = pause.Paused, pause.Reason
	head, err := r.streamHead(ctx)
	if err != nil {
		return st, fmt.Errorf("status of projection %s: %w", r.name, err)
	}
	st.StreamHead = head

	r.mu.Lock()
	live := r.live
	workers := map[int64]*worker{}
	for v, w := range r.workers {
		workers[v] = w
	}
	r.mu.Unlock()

	now := time.Now()
	for _, row := range rows {
		cs := CopyStatus{
			Version: row.Version, Role: row.Role, Checkpoint: row.Seq, Applied: row.Applied,
			FromSeq: row.FromSeq, CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt,
		}
		if row.Role != roleRetired {
			w := workers[row.Version]
			snap := w.snapshot()
			if snap.running && snap.checkpoint >= cs.Checkpoint {
				// One consistent view: the in-memory mirror moved with the
				// flags below, the row may be a batch older or newer.
				cs.Checkpoint, cs.Applied, cs.UpdatedAt = snap.checkpoint, snap.applied, snap.appliedAt
			}
			if err := r.fillLag(ctx, &cs, now); err != nil {
				return st, fmt.Errorf("status of projection %s: %w", r.name, err)
			}
			r.fillState(&cs, w, snap, pause, now)
		}
		st.Copies = append(st.Copies, cs)
		if live != nil && row.Version == live.version {
			st.Version = cs.Version
			st.Checkpoint, st.LagEvents, st.LagTime = cs.Checkpoint, cs.LagEvents, cs.LagTime
			st.LastAppliedAt, st.HeartbeatAt = cs.UpdatedAt, cs.HeartbeatAt
			st.State, st.Reason = cs.State, cs.Reason
			st.FailingSeq, st.Attempts, st.LastError, st.DeadLetter = cs.FailingSeq, cs.Attempts, cs.LastError, cs.DeadLetter
			if st.Skipped, err = countSkipped(ctx, r.db, r.name, row.Version); err != nil {
				return st, fmt.Errorf("status of projection %s: %w", r.name, err)
			}
		}
	}
	return st, nil
}

// fillLag counts the events after the copy's checkpoint and dates the oldest.
func (r *Runner) fillLag(ctx context.Context, cs *CopyStatus, now time.Time) error {
	var oldest time.Time
	for _, f := range r.filterList() {
		_, n, at, err := r.firstAfter(ctx, f, cs.Checkpoint)
		if err != nil {
			return err
		}
		cs.LagEvents += n
		if n > 0 && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
	}
	if !oldest.IsZero() {
		cs.LagTime = max(now.Sub(oldest), 0)
	}
	cs.Total = cs.Applied + cs.LagEvents
	return nil
}

// workerSnapshot is a worker's in-memory state at one instant.
type workerSnapshot struct {
	running              bool
	checkpoint, applied  uint64
	appliedAt, heartbeat time.Time
	progressAt           time.Time
	caughtUp             bool
	failSeq, blockedSeq  uint64
	deadLetter           uint64
	attempts             int
	lastErr              string
	rate                 float64
}

// snapshot reads w's state under its lock; a nil worker is not running.
func (w *worker) snapshot() workerSnapshot {
	if w == nil {
		return workerSnapshot{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	s := workerSnapshot{
		running: w.running, checkpoint: w.checkpoint, applied: w.applied, appliedAt: w.appliedAt,
		heartbeat: w.heartbeat, progressAt: w.progressAt, caughtUp: w.caughtUp,
		failSeq: w.failSeq, blockedSeq: w.blockedSeq, deadLetter: w.deadLetter, attempts: w.attempts, lastErr: w.lastErr,
	}
	if elapsed := time.Since(w.startedAt).Seconds(); w.running && elapsed > 0 && w.applied >= w.startApplied {
		s.rate = float64(w.applied-w.startApplied) / elapsed
	}
	return s
}

// fillState derives the copy's state from its worker (nil: not fed here).
func (r *Runner) fillState(cs *CopyStatus, w *worker, snap workerSnapshot, pause pauseState, now time.Time) {
	if w == nil {
		cs.State, cs.Reason = StateStopped, "no runner feeds this copy in this process"
		if pause.Paused {
			cs.State, cs.Reason = StatePaused, pauseReason(pause)
		}
		return
	}
	running := snap.running
	cs.HeartbeatAt, cs.CaughtUp = snap.heartbeat, snap.caughtUp
	cs.FailingSeq, cs.Attempts, cs.LastError, cs.DeadLetter = snap.failSeq, snap.attempts, snap.lastErr, snap.deadLetter
	blocked, progressAt := snap.blockedSeq, snap.progressAt
	cs.Rate = snap.rate
	if cs.Rate > 0 && cs.LagEvents > 0 {
		cs.ETA = time.Duration(float64(cs.LagEvents) / cs.Rate * float64(time.Second))
	}
	stall := r.opts.StallAfter
	switch {
	case !running:
		cs.State, cs.Reason = StateStopped, "the runner is not running"
	case pause.Paused:
		cs.State, cs.Reason = StatePaused, pauseReason(pause)
	case blocked != 0:
		cs.State = StateBlocked
		cs.Reason = fmt.Sprintf("stopped at %s:%d after %d attempts (dead letter %d): %s; fix the cause, then redrive it",
			r.stream, blocked, cs.Attempts, cs.DeadLetter, cs.LastError)
	case now.Sub(cs.HeartbeatAt) > stall:
		cs.State, cs.Reason = StateStalled, fmt.Sprintf("no heartbeat for %s", now.Sub(cs.HeartbeatAt).Round(time.Second))
	case cs.LastError != "" && cs.LagEvents > 0 && now.Sub(progressAt) > stall:
		cs.State = StateStalled
		cs.Reason = fmt.Sprintf("no progress for %s with %d events waiting; last error at %d: %s",
			now.Sub(progressAt).Round(time.Second), cs.LagEvents, cs.FailingSeq, cs.LastError)
	case cs.LastError != "":
		cs.State = StateFailing
		cs.Reason = fmt.Sprintf("retrying (attempt %d): %s", cs.Attempts, cs.LastError)
		if cs.FailingSeq != 0 {
			cs.Reason = fmt.Sprintf("event %s:%d failed %d times, retrying: %s", r.stream, cs.FailingSeq, cs.Attempts, cs.LastError)
		}
	case cs.LagEvents > 0 && now.Sub(progressAt) > stall:
		cs.State = StateStalled
		cs.Reason = fmt.Sprintf("no progress for %s with %d events waiting", now.Sub(progressAt).Round(time.Second), cs.LagEvents)
	case cs.LagEvents > 0:
		cs.State = StateCatchingUp
	default:
		cs.State = StateIdle
	}
}

func pauseReason(p pauseState) string {
	s := "paused by an operator at " + p.At.UTC().Format(time.RFC3339)
	if p.Reason != "" {
		s += ": " + p.Reason
	}
	return s
}

// filterList is the projection's filters, ">" standing for the whole stream.
func (r *Runner) filterList() []string {
	if r.filters == nil {
		return []string{">"}
	}
	return slices.Clone(r.filters)
}

// nextPending returns the first sequence in (after, upTo] the projection
// has to apply, or 0 when there is none. A 0 is only trusted when upTo is
// already in the stream: sequences beyond the head are yet to be written
// and may still match.
func (r *Runner) nextPending(ctx context.Context, after, upTo uint64) (uint64, error) {
	head, err := r.streamHead(ctx)
	if err != nil {
		return 0, err
	}
	if head < upTo {
		return upTo, nil
	}
	var next uint64
	for _, f := range r.filterList() {
		seq, _, _, err := r.firstAfter(ctx, f, after)
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
// on filter after sequence after: its sequence, how many such messages
// there are (it included), and when it was stored. 0, 0 means none.
func (r *Runner) firstAfter(ctx context.Context, filter string, after uint64) (seq, count uint64, stored time.Time, err error) {
	msgs, err := jetstreamext.GetBatch(ctx, r.js, r.stream, 1,
		jetstreamext.GetBatchSeq(after+1), jetstreamext.GetBatchSubject(filter))
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("look ahead in %s on %s: %w", r.stream, filter, err)
	}
	// Read to the end so the request's reply subscription is released.
	for raw, err := range msgs {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			return 0, 0, time.Time{}, nil
		}
		if err != nil {
			return 0, 0, time.Time{}, fmt.Errorf("look ahead in %s on %s: %w", r.stream, filter, err)
		}
		if seq != 0 {
			continue
		}
		// Nats-Num-Pending counts the matching messages after this one.
		pending, perr := strconv.ParseUint(raw.Header.Get("Nats-Num-Pending"), 10, 64)
		if perr != nil {
			return 0, 0, time.Time{}, fmt.Errorf("look ahead in %s on %s: pending count %q: %w",
				r.stream, filter, raw.Header.Get("Nats-Num-Pending"), perr)
		}
		seq, count, stored = raw.Sequence, pending+1, raw.Time
	}
	return seq, count, stored, nil
}
