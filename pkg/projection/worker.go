package projection

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"

	"github.com/furrow/furrow/pkg/deadletter"
	"github.com/furrow/furrow/pkg/eventstore"
)

// Reasons a worker's consume loop ends without failing.
var (
	// errRetired: the copy is no longer live or shadow (swapped or dropped,
	// perhaps by another process).
	errRetired = errors.New("projection: copy retired")
	// errPaused: an operator paused the projection.
	errPaused = errors.New("projection: paused")
	// errHeld: the copy reached the limit Diff or Swap holds it at.
	errHeld = errors.New("projection: copy held")
	// errBlocked: an event failed past the retry limit under StopOnFailure.
	errBlocked = errors.New("projection: copy stopped at a failing event")
	// errPipelineFailed: a pipelined write of the batch failed (conn.go);
	// the batch is tried again without pipelining.
	errPipelineFailed = errors.New("projection: a pipelined write of the batch failed")
)

// worker feeds one copy of a projection from the stream.
//
// Concurrency: run is the worker's only goroutine that applies events; it
// alone owns the consumer. applyMu is held for every transaction that
// writes the copy (a batch, a redrive of a skipped event) and while a hold
// or a pause is set, so that those return only once no batch is in flight
// and Apply is never called concurrently for one copy. mu guards the
// fields below it; nobody holds mu across I/O; lock order is Runner.mu,
// then worker.mu.
type worker struct {
	r       *Runner
	version int64
	log     *slog.Logger
	// wake nudges a waiting loop: resume, release, redrive.
	wake chan struct{}

	applyMu sync.Mutex

	mu sync.Mutex
	// role is live, shadow or retired.
	role string
	// checkpoint, appliedAt and applied mirror the copy's row; they move
	// only after the transaction storing them committed.
	checkpoint uint64
	appliedAt  time.Time
	applied    uint64
	// advanced is closed and replaced whenever checkpoint moves.
	advanced chan struct{}
	// heartbeat is when the loop last showed it is alive; progressAt when
	// the checkpoint last moved (or the worker started).
	heartbeat  time.Time
	progressAt time.Time
	// startedAt and startApplied give the rate since the worker started.
	startedAt    time.Time
	startApplied uint64
	// caughtUp: the stream had nothing more for the copy at some point.
	caughtUp bool
	// The current failure, if any.
	failSeq   uint64
	attempts  int
	lastErr   string
	lastErrAt time.Time
	// blockedSeq is the event a StopOnFailure copy stopped at (0: none)
	// and deadLetter its dead letter's sequence.
	blockedSeq uint64
	deadLetter uint64
	// A hold lets the copy apply events up to limit and no further;
	// heldOut says it has stopped there.
	holding bool
	limit   uint64
	heldOut bool
	// redrive is a pending operator request to retry blockedSeq.
	redrive *redriveReq
	// running, cancel and done describe the goroutine feeding the copy.
	running bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// redriveReq asks a blocked worker to try its failing event once more.
type redriveReq struct {
	seq   uint64
	reply chan error // buffered: the worker never waits for the requester
}

func (r *Runner) newWorker(c copyRow) *worker {
	return &worker{
		r: r, version: c.Version,
		log:        r.log.With("copy", c.Version),
		wake:       make(chan struct{}, 1),
		role:       c.Role,
		checkpoint: c.Seq, appliedAt: c.UpdatedAt, applied: c.Applied,
		advanced: make(chan struct{}),
	}
}

func (w *worker) nudge() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) getRole() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.role
}

func (w *worker) setRole(role string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.role = role
	w.r.changes.notify()
}

func (w *worker) isRunning() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running
}

func (w *worker) startRunning(cancel context.CancelFunc) chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	w.running, w.cancel, w.done = true, cancel, make(chan struct{})
	w.heartbeat, w.progressAt, w.startedAt, w.startApplied = now, now, now, w.applied
	w.r.changes.notify()
	return w.done
}

// stopRunning cancels the worker's goroutine (if any) without waiting.
func (w *worker) stopRunning() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cancel != nil {
		w.cancel()
	}
}

func (w *worker) markStopped() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running = false
	w.r.changes.notify()
}

// stopAndWait stops the worker's goroutine and waits for it to end.
func (w *worker) stopAndWait(ctx context.Context) error {
	w.mu.Lock()
	done, cancel := w.done, w.cancel
	w.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *worker) beat() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.heartbeat = time.Now()
}

func (w *worker) position() (uint64, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.checkpoint, w.advanced
}

// advance moves the in-memory checkpoint forward (never back) and wakes
// every waiter.
func (w *worker) advance(seq uint64, at time.Time, applied int) {
	w.mu.Lock()
	if seq < w.checkpoint {
		w.mu.Unlock()
		return
	}
	moved := seq > w.checkpoint
	w.heartbeat = time.Now() // a busy loop is alive too
	w.checkpoint, w.appliedAt = seq, at
	w.applied += uint64(applied)
	if moved {
		w.progressAt = time.Now()
		close(w.advanced)
		w.advanced = make(chan struct{})
	}
	w.mu.Unlock()
	if moved {
		w.r.mu.Lock()
		if w.r.live == w {
			close(w.r.advanced)
			w.r.advanced = make(chan struct{})
		}
		w.r.mu.Unlock()
		w.r.changes.notify()
	}
}

// run feeds the copy until ctx is done (nil) or the copy is retired or
// its checkpoint rewound (those errors).
func (w *worker) run(ctx context.Context) error {
	retry := newBackoff(w.r.opts.IdleWait)
	waitingForStream := false
	for ctx.Err() == nil {
		w.beat()
		if w.mustWait(ctx) {
			w.idle(ctx)
			continue
		}
		err := w.consume(ctx, retry)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case errors.Is(err, ErrCheckpointRewound):
			return err
		case errors.Is(err, errRetired):
			w.log.InfoContext(ctx, "projection copy retired; its worker stops")
			return err
		case errors.Is(err, errPaused), errors.Is(err, errHeld), errors.Is(err, errBlocked):
			continue
		case errors.Is(err, jetstream.ErrStreamNotFound):
			// Normal while the owning service has not created its stream yet.
			if !waitingForStream {
				w.log.InfoContext(ctx, "projection stream does not exist yet; waiting")
			}
			waitingForStream = true
		default:
			waitingForStream = false
			w.log.WarnContext(ctx, "projection consumer failed; restarting", "error", err)
		}
		if !sleep(ctx, retry.NextBackOff()) {
			return nil
		}
	}
	return nil
}

// mustWait says whether the loop must not consume now: blocked without a
// redrive, held at its limit, or paused.
func (w *worker) mustWait(ctx context.Context) bool {
	w.mu.Lock()
	blocked := w.blockedSeq != 0 && w.redrive == nil
	held := w.holding && w.heldOut
	w.mu.Unlock()
	if blocked || held {
		return true
	}
	p, err := loadPause(ctx, w.r.db, w.r.name)
	if err != nil {
		return false // consume fails on the same database and backs off
	}
	return p.Paused
}

// idle waits for a nudge, ctx, or the next heartbeat.
func (w *worker) idle(ctx context.Context) {
	t := time.NewTimer(min(w.r.beatEvery, w.r.opts.IdleWait))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-w.wake:
	case <-t.C:
	}
}

// consume reads the stream from the stored checkpoint on and applies it
// until ctx is done, the consumer fails, or the copy must stop.
func (w *worker) consume(ctx context.Context, retry *backoff.ExponentialBackOff) error {
	start, err := w.reload(ctx)
	if err != nil {
		return err
	}
	r := w.r
	cons, err := r.js.OrderedConsumer(ctx, r.stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: r.filters,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    start + 1,
	})
	if err != nil {
		return fmt.Errorf("consume %s from %d: %w", r.stream, start+1, err)
	}
	defer r.deleteConsumer(ctx, cons)
	// One long-lived pull subscription: an ordered consumer's Fetch would
	// create a new server-side consumer on every call, and waiting on a
	// subscription lets the server wake the runner the moment an event
	// lands instead of the runner polling.
	msgs, err := cons.Messages(jetstream.PullMaxMessages(max(2*r.opts.CatchUpBatchSize, 64)))
	if err != nil {
		return fmt.Errorf("consume %s from %d: %w", r.stream, start+1, err)
	}
	defer msgs.Stop()
	// Stop unblocks Next even while the ordered consumer is busy
	// recreating itself, which ignores the context.
	defer context.AfterFunc(ctx, msgs.Stop)()

	for {
		batch, caughtUp, err := w.nextBatch(ctx, msgs)
		if err != nil {
			return err
		}
		if err := w.applyWithRetry(ctx, batch); err != nil {
			return err
		}
		if caughtUp {
			w.markCaughtUp(ctx)
		}
		retry.Reset() // progress: the consumer works again
	}
}

// checkCaughtUp marks the copy caught up when the stream holds nothing
// after its checkpoint that it has to apply.
func (w *worker) checkCaughtUp(ctx context.Context) {
	w.mu.Lock()
	done, cp := w.caughtUp, w.checkpoint
	w.mu.Unlock()
	if done {
		return
	}
	head, err := w.r.streamHead(ctx)
	if err != nil {
		return
	}
	if head <= cp {
		w.markCaughtUp(ctx)
		return
	}
	if next, err := w.r.nextPending(ctx, cp, head); err == nil && next == 0 {
		w.markCaughtUp(ctx)
	}
}

// markCaughtUp records that the copy has caught up with the stream; a
// shadow copy of a LateIndexed projection builds its late indexes first
// (and stays not caught up, to try again, if that fails).
func (w *worker) markCaughtUp(ctx context.Context) {
	w.mu.Lock()
	done, role := w.caughtUp, w.role
	w.mu.Unlock()
	if done {
		return
	}
	if _, late := w.r.p.(LateIndexed); late && role == roleShadow {
		if err := w.buildLateIndexes(ctx); err != nil {
			if ctx.Err() == nil {
				w.log.WarnContext(ctx, "projection copy caught up, but building its indexes failed; will retry", "error", err)
			}
			return
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.caughtUp = true
	w.r.changes.notify()
}

// reload reads the stored checkpoint, the truth a (re)start resumes from.
func (w *worker) reload(ctx context.Context) (uint64, error) {
	var (
		seq     int64
		role    string
		updated string
	)
	err := w.r.db.QueryRowContext(ctx, `SELECT seq, role, updated_at FROM projection_copies WHERE name = $1 AND version = $2`,
		w.r.name, w.version).Scan(&seq, &role, &updated)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && role == roleRetired) {
		return 0, errRetired
	}
	if err != nil {
		return 0, fmt.Errorf("load checkpoint of %s copy %d: %w", w.r.name, w.version, err)
	}
	if mem, _ := w.position(); uint64(seq) < mem {
		return 0, fmt.Errorf("%w: %s copy %d stored %d, applied %d", ErrCheckpointRewound, w.r.name, w.version, seq, mem)
	}
	w.advance(uint64(seq), parseTime(updated), 0)
	return uint64(seq), nil
}

// deleteConsumer removes the ordered consumer's server-side state now
// rather than after its inactivity threshold: each restart would
// otherwise leave one behind for minutes.
func (r *Runner) deleteConsumer(ctx context.Context, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := r.js.DeleteConsumer(ctx, r.stream, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		r.log.DebugContext(ctx, "projection consumer not deleted", "consumer", info.Name, "error", err)
	}
}

// starvedBeats is how many idle heartbeats in a row a consumer may
// deliver nothing while the stream holds events for the copy before the
// worker recreates it; a fresh consumer gets as long to start.
const starvedBeats = 5

// errStarved means the consumer stopped delivering events the stream
// holds; the worker recreates it from the stored checkpoint.
var errStarved = errors.New("projection consumer delivers nothing")

// hasWork says whether the stream holds an event after the copy's
// checkpoint that the copy applies.
func (w *worker) hasWork(ctx context.Context) bool {
	cp, _ := w.position()
	head, err := w.r.streamHead(ctx)
	if err != nil || head <= cp {
		return false
	}
	next, err := w.r.nextPending(ctx, cp, head)
	return err == nil && next != 0
}

// delivery is a message with its parsed stream position.
type delivery struct {
	seq    uint64
	stored time.Time
	msg    jetstream.Msg
}

// nextBatch blocks for the next message, beating while it waits, then
// adds the ones the server says are already waiting, up to BatchSize.
// caughtUp reports that the server had nothing more after the batch.
func (w *worker) nextBatch(ctx context.Context, msgs jetstream.MessagesContext) (batch []delivery, caughtUp bool, err error) {
	r := w.r
	var m jetstream.Msg
	starved := 0 // idle waits in a row while the stream held work for us
	for {
		wait, cancel := context.WithTimeout(ctx, r.beatEvery)
		m, err = msgs.Next(jetstream.NextContext(wait))
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			// Nothing arrived for a while: alive. Caught up only if the
			// stream agrees (a fresh consumer may just be slow to start).
			w.beat()
			w.checkCaughtUp(ctx)
			// A consumer that delivers nothing while the stream holds
			// events for this copy has lost its server side (its node
			// died or was cut off) without the client noticing: the
			// copy would look alive and never move. Start afresh from
			// the stored checkpoint.
			if w.hasWork(ctx) {
				starved++
			} else {
				starved = 0
			}
			if starved >= starvedBeats {
				cp, _ := w.position()
				return nil, false, fmt.Errorf("%w: events after %s:%d wait, none delivered for %d heartbeats", errStarved, r.stream, cp, starved)
			}
			continue
		}
		return nil, false, fmt.Errorf("next message from %s: %w", r.stream, err)
	}
	d, pending, err := toDelivery(m)
	if err != nil {
		return nil, false, err
	}
	batch = []delivery{d}
	size := r.opts.BatchSize
	if pending >= uint64(size) {
		// A backlog (a rebuild, a restart after downtime): larger
		// transactions amortise the commit and the checkpoint further.
		size = r.opts.CatchUpBatchSize
	}
	if pending == 0 || size == 1 {
		return batch, pending == 0, nil
	}
	fillCtx, cancel := context.WithTimeout(ctx, batchFillWait)
	defer cancel()
	for len(batch) < size && pending > 0 {
		m, err := msgs.Next(jetstream.NextContext(fillCtx))
		if err != nil {
			// Apply what we have; the next call reports a lasting failure.
			break
		}
		if d, pending, err = toDelivery(m); err != nil {
			return nil, false, err
		}
		batch = append(batch, d)
	}
	return batch, pending == 0, nil
}

func toDelivery(m jetstream.Msg) (delivery, uint64, error) {
	md, err := m.Metadata()
	if err != nil {
		return delivery{}, 0, fmt.Errorf("message on %s: %w", m.Subject(), err)
	}
	return delivery{seq: md.Sequence.Stream, stored: md.Timestamp, msg: m}, md.NumPending, nil
}

// batchError names the event a batch failed on.
type batchError struct {
	seq uint64
	err error
}

func (e *batchError) Error() string { return fmt.Sprintf("event %d: %v", e.seq, e.err) }
func (e *batchError) Unwrap() error { return e.err }

// applyWithRetry applies batch, retrying the whole batch with backoff
// until it commits or ctx is done. Every attempt starts from a rolled-back
// transaction, so a retry sees exactly the state the first attempt saw.
// An event that fails MaxRetries+1 times in a row is parked; then the
// policy decides: skip it (and carry on) or stop at it (errBlocked).
func (w *worker) applyWithRetry(ctx context.Context, batch []delivery) error {
	r := w.r
	retry := newBackoff(r.opts.IdleWait)
	skips := map[uint64]string{}
	var (
		failing uint64
		count   int
	)
	pipelined := true
	for attempt := 1; ; attempt++ {
		req := w.redriveFor(batch)
		err := w.applyBatch(ctx, batch, skips, pipelined)
		if pipelined && errors.Is(err, errPipelineFailed) && ctx.Err() == nil {
			// A write queued by one event failed when a later statement
			// sent it: apply the batch again, each statement on its own,
			// so that the failure, if it persists, names its event.
			if req != nil {
				w.mu.Lock()
				w.redrive = req
				w.mu.Unlock()
			}
			pipelined = false
			continue
		}
		if err == nil || errors.Is(err, errHeld) {
			w.clearFailure()
			if req != nil {
				if cp, _ := w.position(); cp >= req.seq {
					req.reply <- nil
				} else { // a hold cut the batch before the event: later
					w.mu.Lock()
					w.redrive = req
					w.mu.Unlock()
				}
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrCheckpointRewound) || errors.Is(err, errRetired) || errors.Is(err, errPaused) {
			if req != nil {
				req.reply <- err
			}
			return err
		}
		w.beat()
		var be *batchError
		if !errors.As(err, &be) {
			// The database or the stream failed, not an event: retry
			// without counting against any event.
			w.noteFailure(0, err, attempt)
			wait := retry.NextBackOff()
			w.log.ErrorContext(ctx, "projection batch failed; rolled back, will retry",
				"first_seq", batch[0].seq, "last_seq", batch[len(batch)-1].seq, "attempt", attempt, "retry_in", wait, "error", err)
			if req != nil {
				req.reply <- err
				return errBlocked
			}
			if !sleep(ctx, wait) {
				return ctx.Err()
			}
			continue
		}
		if i := slices.IndexFunc(batch, func(d delivery) bool { return d.seq == be.seq }); i > 0 {
			// Commit the events before the failing one, so the copy stops
			// exactly at it, not at the start of its batch.
			switch perr := w.applyBatch(ctx, batch[:i], skips, pipelined); {
			case perr == nil:
				batch = batch[i:]
			case errors.Is(perr, errHeld):
				return perr
			}
		}
		if be.seq == failing {
			count++
		} else {
			failing, count = be.seq, 1
		}
		w.noteFailure(be.seq, be.err, count)
		if req != nil {
			w.log.ErrorContext(ctx, "projection redrive failed; still stopped", "failed_seq", be.seq, "error", be.err)
			req.reply <- fmt.Errorf("%w: %s:%d: %v", ErrStillFailing, r.stream, be.seq, be.err)
			return errBlocked
		}
		if count <= r.opts.MaxRetries {
			wait := retry.NextBackOff()
			w.log.ErrorContext(ctx, "projection batch failed; rolled back, will retry",
				"first_seq", batch[0].seq, "last_seq", batch[len(batch)-1].seq, "failed_seq", be.seq,
				"attempt", count, "retry_in", wait, "error", be.err)
			if !sleep(ctx, wait) {
				return ctx.Err()
			}
			continue
		}
		d := findDelivery(batch, be.seq)
		dl, perr := w.park(ctx, d, count, be.err.Error())
		if perr != nil {
			// Never move past an event without having parked it.
			wait := retry.NextBackOff()
			w.log.ErrorContext(ctx, "projection could not park failing event; will retry", "failed_seq", be.seq, "error", perr, "retry_in", wait)
			if !sleep(ctx, wait) {
				return ctx.Err()
			}
			continue
		}
		if r.opts.OnFailure == SkipOnFailure {
			w.log.ErrorContext(ctx, "projection skipped a failing event; parked in the dead-letter stream",
				"failed_seq", be.seq, "attempts", count, "dead_letter", dl, "error", be.err)
			skips[be.seq] = be.err.Error()
			failing, count = 0, 0
			retry.Reset()
			continue
		}
		w.mu.Lock()
		w.blockedSeq, w.deadLetter = be.seq, dl
		w.mu.Unlock()
		r.changes.notify()
		w.log.ErrorContext(ctx, "projection stopped at a failing event; fix the cause, then redrive it",
			"failed_seq", be.seq, "attempts", count, "dead_letter", dl, "error", be.err)
		return errBlocked
	}
}

func findDelivery(batch []delivery, seq uint64) delivery {
	for _, d := range batch {
		if d.seq == seq {
			return d
		}
	}
	return batch[0] // unreachable: batchError names an event of the batch
}

// redriveFor takes the pending redrive request if batch holds its event.
func (w *worker) redriveFor(batch []delivery) *redriveReq {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.redrive == nil || batch[0].seq > w.redrive.seq || batch[len(batch)-1].seq < w.redrive.seq {
		return nil
	}
	req := w.redrive
	w.redrive = nil
	return req
}

func (w *worker) noteFailure(seq uint64, err error, attempts int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failSeq, w.attempts, w.lastErr, w.lastErrAt = seq, attempts, err.Error(), time.Now()
	w.r.changes.notify()
}

func (w *worker) clearFailure() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failSeq, w.attempts, w.lastErr = 0, 0, ""
	w.blockedSeq, w.deadLetter = 0, 0
	w.r.changes.notify()
}

// applyBatch applies the events of batch the stored checkpoint does not
// cover (and, under a hold, not beyond its limit), records the events of
// skips as skipped, and stores the new checkpoint, in one transaction.
//
// pipelined lets a PostgreSQL transaction queue its writes and send them
// in round trips of many (conn.go); when one of them fails, applyBatch
// returns errPipelineFailed, whichever event's Apply or the commit it
// surfaced in.
func (w *worker) applyBatch(ctx context.Context, batch []delivery, skips map[uint64]string, pipelined bool) (err error) {
	w.applyMu.Lock()
	defer w.applyMu.Unlock()
	r := w.r
	w.mu.Lock()
	holding, limit := w.holding, w.limit
	w.mu.Unlock()
	held := false
	if holding {
		n := 0
		for n < len(batch) && batch[n].seq <= limit {
			n++
		}
		held = n < len(batch)
		batch = batch[:n]
		if len(batch) == 0 {
			w.setHeldOut()
			return errHeld
		}
	}
	ctx, span := w.startProcess(ctx, batch)
	defer func() { endProcess(span, err) }()
	txCtx := ctx
	if pipelined {
		var tag *pipelineTag
		txCtx, tag = withPipeline(ctx)
		defer func() {
			if err != nil && tag.failed.Load() {
				err = fmt.Errorf("%w: %w", errPipelineFailed, err)
			}
		}()
	}
	tx, release, err := r.db.beginWrite(txCtx)
	if err != nil {
		return fmt.Errorf("begin batch: %w", err)
	}
	defer release()
	defer tx.Rollback() // a no-op once committed
	// A locked read (SQLite's write lock taken at BEGIN, FOR UPDATE on
	// PostgreSQL), so the skip below also holds against another runner of
	// the same copy on this database.
	var (
		stored   int64
		role     string
		paused   int
		storedAt string
	)
	err = tx.QueryRowContext(ctx, `SELECT c.seq, c.role, s.paused, c.updated_at FROM projection_copies c
		JOIN projection_state s ON s.name = c.name
		WHERE c.name = $1 AND c.version = $2`+r.db.dialect.forUpdate("c"), r.name, w.version).Scan(&stored, &role, &paused, &storedAt)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && role == roleRetired) {
		return errRetired
	}
	if err != nil {
		return fmt.Errorf("read checkpoint of %s copy %d: %w", r.name, w.version, err)
	}
	if paused != 0 {
		return errPaused
	}
	if mem, _ := w.position(); uint64(stored) < mem {
		return fmt.Errorf("%w: %s copy %d stored %d, applied %d", ErrCheckpointRewound, r.name, w.version, stored, mem)
	}
	last := uint64(stored)
	applied := 0
	cctx := withCopy(ctx, w.version)
	now := time.Now().UTC()
	for _, d := range batch {
		if d.seq <= last {
			continue // redelivered, or applied by another runner: never twice
		}
		if reason, ok := skips[d.seq]; ok {
			if _, err := tx.ExecContext(ctx, `INSERT INTO projection_skipped (name, version, seq, reason, skipped_at)
				VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name, version, seq) DO NOTHING`,
				r.name, w.version, int64(d.seq), reason, formatTime(now)); err != nil {
				return fmt.Errorf("record skipped event %d: %w", d.seq, err)
			}
			last = d.seq
			continue
		}
		ev, err := eventstore.FromMsg(r.stream, d.seq, d.msg.Subject(), d.stored, d.msg.Headers(), d.msg.Data())
		if err != nil {
			return &batchError{seq: d.seq, err: err}
		}
		if err := r.apply(cctx, tx, ev); err != nil {
			return &batchError{seq: d.seq, err: fmt.Errorf("apply %s: %w", ev.Type, err)}
		}
		last = d.seq
		applied++
	}
	span.SetAttributes(attribute.Int("furrow.projection.applied", applied))
	if last != uint64(stored) {
		if _, err := tx.ExecContext(ctx, `UPDATE projection_copies SET seq = $1, applied = applied + $2, updated_at = $3
			WHERE name = $4 AND version = $5`, int64(last), applied, formatTime(now), r.name, w.version); err != nil {
			return fmt.Errorf("write checkpoint of %s copy %d: %w", r.name, w.version, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit batch: %w", err)
		}
		w.advance(last, now, applied)
	} else {
		// Another runner of this copy applied the batch: catch up with it.
		w.advance(last, parseTime(storedAt), 0)
	}
	if held {
		w.setHeldOut()
		return errHeld
	}
	return nil
}

func (w *worker) setHeldOut() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.heldOut = true
}

// holdAt lets the copy apply events up to limit and no further until
// release. It returns once no batch is in flight.
func (w *worker) holdAt(limit uint64) {
	w.applyMu.Lock()
	defer w.applyMu.Unlock()
	w.mu.Lock()
	w.holding, w.limit, w.heldOut = true, limit, false
	w.mu.Unlock()
	w.nudge()
}

// holdHere holds the copy at its current checkpoint and returns it.
func (w *worker) holdHere() uint64 {
	w.applyMu.Lock()
	defer w.applyMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.holding, w.limit, w.heldOut = true, w.checkpoint, false
	return w.checkpoint
}

// release ends a hold.
func (w *worker) release() {
	w.mu.Lock()
	w.holding, w.heldOut = false, false
	w.mu.Unlock()
	w.nudge()
}

// park stores the failing event in the dead-letter stream, unless the
// last dead letter of this projection is already this event of this copy
// (a restart failing on it again), and returns the dead letter's sequence.
func (w *worker) park(ctx context.Context, d delivery, attempts int, reason string) (uint64, error) {
	r := w.r
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if st, err := r.js.Stream(ctx, deadletter.Stream); err == nil {
		if last, err := st.GetLastMsgForSubject(ctx, r.opts.DeadLetterSubject); err == nil &&
			last.Header.Get(deadletter.HeaderSequence) == strconv.FormatUint(d.seq, 10) &&
			last.Header.Get(deadletter.HeaderCopy) == strconv.FormatInt(w.version, 10) {
			if l, err := deadletter.Get(ctx, r.js, last.Sequence); err == nil && l.Parked() {
				return l.Seq, nil
			}
		}
	}
	l := deadletter.Letter{
		Kind: deadletter.KindProjection, Consumer: r.name, Copy: w.version, Policy: r.opts.OnFailure.String(),
		SourceStream: r.stream, SourceSeq: d.seq, SourceSubject: d.msg.Subject(), SourceTime: d.stored,
		Reason: reason, Attempts: attempts, Header: d.msg.Headers(), Data: d.msg.Data(),
	}
	msgID := fmt.Sprintf("projection:%s:v%d:%d", r.name, w.version, d.seq)
	return deadletter.Park(ctx, r.js, r.opts.DeadLetterSubject, msgID, l)
}
