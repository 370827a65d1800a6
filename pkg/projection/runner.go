package projection

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/eventstore"
)

// Defaults for Options.
const (
	DefaultBatchSize = 256
	DefaultIdleWait  = 2 * time.Second
)

// firstRetry is the first wait before a retry; waits double up to IdleWait.
const firstRetry = 25 * time.Millisecond

// batchFillWait bounds how long a batch waits for messages the server
// said were pending. They are normally already in flight; if they are
// not, the runner applies what it has rather than sit on it.
const batchFillWait = 200 * time.Millisecond

// Options tune a Runner. The zero value is usable.
type Options struct {
	// BatchSize is the most events applied in one transaction
	// (default DefaultBatchSize). Larger batches amortise the commit;
	// a batch is never held back waiting to fill, so a lone event is
	// applied as soon as it arrives.
	BatchSize int
	// Logger receives the runner's logs (default slog.Default()).
	Logger *slog.Logger
	// IdleWait is the longest the runner waits before trying again when it
	// cannot make progress: the stream does not exist yet, the consumer
	// failed, or a batch failed to apply. Waits start at 25ms and double up
	// to IdleWait (default DefaultIdleWait). A caught-up runner does not
	// poll: it holds a pull request open and the server wakes it.
	IdleWait time.Duration
}

// Runner feeds one Projection from its stream.
type Runner struct {
	db      *DB
	js      jetstream.JetStream
	p       Projection
	name    string
	stream  string
	filters []string // nil: the whole stream
	opts    Options
	log     *slog.Logger

	// running stops a second concurrent Run of the same Runner.
	running atomic.Bool

	// mu guards the fields below. The Run goroutine is their only writer
	// (NewRunner writes them before the Runner is shared), and it moves
	// them only after the transaction storing the same checkpoint has
	// committed, so nobody sees a checkpoint the database does not hold.
	// Checkpoint, WaitFor and Status read them from any goroutine; no one
	// holds mu across I/O.
	mu            sync.Mutex
	checkpoint    uint64
	lastAppliedAt time.Time
	// advanced is closed and replaced whenever checkpoint moves: a
	// broadcast that, unlike sync.Cond, WaitFor can select on together
	// with ctx.Done.
	advanced chan struct{}
}

// NewRunner prepares p to run over db: it creates the checkpoint table,
// runs p.Migrate and loads p's stored checkpoint, all in one transaction.
func NewRunner(db *DB, js jetstream.JetStream, p Projection, opts Options) (*Runner, error) {
	switch {
	case db == nil || db.DB == nil:
		return nil, fmt.Errorf("%w: nil database", ErrInvalidConfig)
	case js == nil:
		return nil, fmt.Errorf("%w: nil JetStream", ErrInvalidConfig)
	case p == nil:
		return nil, fmt.Errorf("%w: nil projection", ErrInvalidConfig)
	case p.Name() == "" || p.Stream() == "":
		return nil, fmt.Errorf("%w: projection needs a name and a stream", ErrInvalidConfig)
	case opts.BatchSize < 0 || opts.IdleWait < 0:
		return nil, fmt.Errorf("%w: negative batch size or idle wait", ErrInvalidConfig)
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.IdleWait == 0 {
		opts.IdleWait = DefaultIdleWait
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Runner{
		db:       db,
		js:       js,
		p:        p,
		name:     p.Name(),
		stream:   p.Stream(),
		filters:  slices.Clone(p.Subjects()),
		opts:     opts,
		log:      opts.Logger.With("projection", p.Name(), "stream", p.Stream()),
		advanced: make(chan struct{}),
	}
	if len(r.filters) == 0 {
		r.filters = nil
	}
	if err := r.migrate(context.Background()); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Runner) migrate(ctx context.Context) error {
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate projection %s: %w", r.name, err)
	}
	defer tx.Rollback() // a no-op once committed
	if _, err := tx.ExecContext(ctx, checkpointsDDL); err != nil {
		return fmt.Errorf("migrate projection %s: checkpoints table: %w", r.name, err)
	}
	if err := r.p.Migrate(ctx, tx); err != nil {
		return fmt.Errorf("migrate projection %s: %w", r.name, err)
	}
	seq, at, err := readCheckpoint(ctx, tx, r.name)
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate projection %s: commit: %w", r.name, err)
	}
	r.advance(seq, at)
	return nil
}

// Name is the projection's name.
func (r *Runner) Name() string { return r.name }

// Stream returns the stream the projection consumes.
func (r *Runner) Stream() string { return r.stream }

// Checkpoint is the sequence of the last event applied and committed; an
// in-memory mirror of the stored checkpoint.
func (r *Runner) Checkpoint() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checkpoint
}

// advance moves the in-memory checkpoint forward (never back) and wakes
// every WaitFor.
func (r *Runner) advance(seq uint64, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq < r.checkpoint || (seq == r.checkpoint && !at.After(r.lastAppliedAt)) {
		return
	}
	moved := seq > r.checkpoint
	r.checkpoint, r.lastAppliedAt = seq, at
	if moved {
		close(r.advanced)
		r.advanced = make(chan struct{})
	}
}

// position returns the checkpoint and the channel closed when it next moves.
func (r *Runner) position() (uint64, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checkpoint, r.advanced
}

// Run applies events until ctx is done, then returns nil. Consumer and
// database failures and failing batches are logged and retried, so it
// returns an error only for ErrRunning and ErrCheckpointRewound.
func (r *Runner) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return fmt.Errorf("run projection %s: %w", r.name, ErrRunning)
	}
	defer r.running.Store(false)

	r.log.InfoContext(ctx, "projection started", "checkpoint", r.Checkpoint())
	retry := backoff{max: r.opts.IdleWait}
	waitingForStream := false
	for {
		err := r.consume(ctx, &retry)
		if ctx.Err() != nil {
			r.log.InfoContext(context.WithoutCancel(ctx), "projection stopped", "checkpoint", r.Checkpoint())
			return nil
		}
		if errors.Is(err, ErrCheckpointRewound) {
			r.log.ErrorContext(ctx, "projection checkpoint moved backwards; stopping", "error", err)
			return fmt.Errorf("run projection %s: %w", r.name, err)
		}
		wait := retry.next()
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			// Normal while the owning service has not created its stream yet.
			if !waitingForStream {
				r.log.InfoContext(ctx, "projection stream does not exist yet; waiting")
			}
			waitingForStream = true
		default:
			waitingForStream = false
			r.log.WarnContext(ctx, "projection consumer failed; restarting", "error", err, "retry_in", wait)
		}
		if !sleep(ctx, wait) {
			r.log.InfoContext(context.WithoutCancel(ctx), "projection stopped", "checkpoint", r.Checkpoint())
			return nil
		}
	}
}

// consume reads the stream from the stored checkpoint on and applies it
// until ctx is done or the consumer fails.
func (r *Runner) consume(ctx context.Context, retry *backoff) error {
	start, err := r.reload(ctx)
	if err != nil {
		return err
	}
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
	msgs, err := cons.Messages(jetstream.PullMaxMessages(max(2*r.opts.BatchSize, 64)))
	if err != nil {
		return fmt.Errorf("consume %s from %d: %w", r.stream, start+1, err)
	}
	defer msgs.Stop()
	// Stop unblocks Next even while the ordered consumer is busy
	// recreating itself, which ignores the context.
	defer context.AfterFunc(ctx, msgs.Stop)()

	for {
		batch, err := r.nextBatch(ctx, msgs)
		if err != nil {
			return err
		}
		if err := r.applyWithRetry(ctx, batch); err != nil {
			return err
		}
		retry.reset() // progress: the consumer works again
	}
}

// reload reads the stored checkpoint, the truth a (re)start resumes from.
func (r *Runner) reload(ctx context.Context) (uint64, error) {
	tx, err := r.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, fmt.Errorf("load checkpoint of %s: %w", r.name, err)
	}
	defer tx.Rollback() // read-only: nothing to keep
	seq, at, err := readCheckpoint(ctx, tx, r.name)
	if err != nil {
		return 0, err
	}
	if mem := r.Checkpoint(); seq < mem {
		return 0, fmt.Errorf("%w: %s stored %d, applied %d", ErrCheckpointRewound, r.name, seq, mem)
	}
	r.advance(seq, at)
	return seq, nil
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

// delivery is a message with its parsed stream position.
type delivery struct {
	seq    uint64
	stored time.Time
	msg    jetstream.Msg
}

// nextBatch blocks for the next message, then adds the ones the server
// says are already waiting, up to BatchSize.
func (r *Runner) nextBatch(ctx context.Context, msgs jetstream.MessagesContext) ([]delivery, error) {
	m, err := msgs.Next(jetstream.NextContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("next message from %s: %w", r.stream, err)
	}
	d, pending, err := toDelivery(m)
	if err != nil {
		return nil, err
	}
	batch := []delivery{d}
	if pending == 0 || r.opts.BatchSize == 1 {
		return batch, nil
	}
	fillCtx, cancel := context.WithTimeout(ctx, batchFillWait)
	defer cancel()
	for len(batch) < r.opts.BatchSize && pending > 0 {
		m, err := msgs.Next(jetstream.NextContext(fillCtx))
		if err != nil {
			// Apply what we have; the next call reports a lasting failure.
			break
		}
		if d, pending, err = toDelivery(m); err != nil {
			return nil, err
		}
		batch = append(batch, d)
	}
	return batch, nil
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
func (r *Runner) applyWithRetry(ctx context.Context, batch []delivery) error {
	retry := backoff{max: r.opts.IdleWait}
	for attempt := 1; ; attempt++ {
		err := r.applyBatch(ctx, batch)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrCheckpointRewound) {
			return err
		}
		wait := retry.next()
		attrs := []any{
			"first_seq", batch[0].seq, "last_seq", batch[len(batch)-1].seq,
			"attempt", attempt, "retry_in", wait, "error", err,
		}
		if be := (*batchError)(nil); errors.As(err, &be) {
			attrs = append(attrs, "failed_seq", be.seq)
		}
		r.log.ErrorContext(ctx, "projection batch failed; rolled back, will retry", attrs...)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// applyBatch applies the events of batch the stored checkpoint does not
// cover, and stores the new checkpoint, in one transaction.
func (r *Runner) applyBatch(ctx context.Context, batch []delivery) error {
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin batch: %w", err)
	}
	defer tx.Rollback() // a no-op once committed
	// Read under the write lock (BEGIN IMMEDIATE), so the skip below also
	// holds against another runner of the same projection on this database.
	stored, storedAt, err := readCheckpoint(ctx, tx, r.name)
	if err != nil {
		return err
	}
	if mem := r.Checkpoint(); stored < mem {
		return fmt.Errorf("%w: %s stored %d, applied %d", ErrCheckpointRewound, r.name, stored, mem)
	}
	last := stored
	for _, d := range batch {
		if d.seq <= last {
			continue // redelivered, or applied by another runner: never twice
		}
		ev, err := eventstore.FromMsg(r.stream, d.seq, d.msg.Subject(), d.stored, d.msg.Headers(), d.msg.Data())
		if err != nil {
			return &batchError{seq: d.seq, err: err}
		}
		if err := r.p.Apply(ctx, tx, ev); err != nil {
			return &batchError{seq: d.seq, err: fmt.Errorf("apply %s: %w", ev.Type, err)}
		}
		last = d.seq
	}
	if last == stored {
		r.advance(stored, storedAt)
		return nil
	}
	now := time.Now().UTC()
	if err := writeCheckpoint(ctx, tx, r.name, last, now); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit batch: %w", err)
	}
	r.advance(last, now)
	return nil
}

// WaitFor returns nil once the projection reflects the stream up to seq,
// or ctx's error (wrapped) when ctx ends first. Pass the position a
// command returned to read its own writes.
//
// For a projection over the whole stream that means Checkpoint() >= seq.
// A filtered projection's checkpoint only moves on events it consumes, so
// it may never reach a position written on another subject; WaitFor then
// also returns once no event the projection consumes lies between its
// checkpoint and seq (asking the stream, which must allow direct gets).
func (r *Runner) WaitFor(ctx context.Context, seq uint64) error {
	// recheckAt is the checkpoint at which a filtered projection asks the
	// stream again: the next event it must apply on the way to seq.
	var recheckAt uint64
	for {
		cur, advanced := r.position()
		if cur >= seq {
			return nil
		}
		if r.filters != nil && cur >= recheckAt {
			next, err := r.nextPending(ctx, cur, seq)
			switch {
			case err == nil && next == 0:
				return nil
			case err == nil:
				recheckAt = next
			case ctx.Err() != nil:
				return fmt.Errorf("projection %s: wait for %s:%d (at %d): %w", r.name, r.stream, seq, cur, ctx.Err())
			default:
				// Fall back to waiting for the checkpoint itself.
				r.log.DebugContext(ctx, "projection cannot look ahead in stream", "error", err)
				recheckAt = seq
			}
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			cur, _ = r.position()
			return fmt.Errorf("projection %s: wait for %s:%d (at %d): %w", r.name, r.stream, seq, cur, ctx.Err())
		}
	}
}

// backoff yields doubling waits from firstRetry up to max.
type backoff struct {
	max  time.Duration
	wait time.Duration
}

func (b *backoff) next() time.Duration {
	if b.wait == 0 {
		b.wait = min(firstRetry, b.max)
	} else {
		b.wait = min(2*b.wait, b.max)
	}
	return b.wait
}

func (b *backoff) reset() { b.wait = 0 }

// sleep waits d or until ctx is done, reporting whether it slept the full d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
