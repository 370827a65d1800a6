// Package wmjs runs Watermill handlers over JetStream durable pull consumers.
//
// Furrow's reactions (post a journal entry when a delivery is recorded, earn
// a premium when a sale is reported) must never lose an event and must know
// where they are in the stream. watermill-nats does neither: it auto-acks
// unless told otherwise and hides the stream sequence. This package's
// Subscriber hands a handler one message at a time, acks it at the server
// only after the handler succeeded (and waits for the server to confirm the
// ack before fetching the next one), and puts the stream position in the
// message metadata. NewRouter adds the middleware every Furrow handler needs:
// panic recovery, bounded retries, a dead-letter stream, correlation and
// tracing.
package wmjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/eventstore"
)

// Metadata keys the Subscriber adds to every message besides the JetStream
// headers. They describe one delivery, not the event, so the Publisher never
// writes them back as headers.
const (
	// MetaStream is the name of the stream the message came from.
	MetaStream = "furrow_stream"
	// MetaSequence is the message's stream sequence in decimal: the position
	// a handler or projection records as its checkpoint.
	MetaSequence = "furrow_stream_seq"
	// MetaSubject is the subject the message was stored under.
	MetaSubject = "furrow_subject"
	// MetaDelivered is how many times the server has delivered the message,
	// 1 on the first delivery.
	MetaDelivered = "furrow_num_delivered"
	// MetaTimestamp is when the stream stored the message (RFC 3339, UTC).
	MetaTimestamp = "furrow_stream_time"
)

// transportKeys are the metadata keys that are not message headers.
var transportKeys = map[string]bool{
	MetaStream: true, MetaSequence: true, MetaSubject: true, MetaDelivered: true, MetaTimestamp: true,
}

// ErrClosed means Subscribe was called on a closed Subscriber.
var ErrClosed = errors.New("wmjs: subscriber is closed")

// ErrNoPosition means a message lacks the stream metadata this package's
// Subscriber adds: it did not come from a Subscriber.
var ErrNoPosition = errors.New("wmjs: message has no stream position metadata")

// Defaults of Config.
const (
	// DefaultAckWait is short on purpose: it is how long a message held by
	// a process that died stays un-acked, and a consumer with
	// MaxAckPending 1 moves no further until it is redelivered. A
	// handler that runs longer keeps its message through in-progress
	// signals (every AckWait/3), so it bounds recovery, not handler time.
	DefaultAckWait    = 5 * time.Second
	DefaultNakDelay   = 200 * time.Millisecond
	DefaultMaxDeliver = -1
)

// pullExpiry bounds one pull request. A short pull lets a closed subscriber's
// outstanding request expire quickly on the server instead of catching a
// message for a consumer that is gone (which would then wait out AckWait).
const pullExpiry = 5 * time.Second

// ackTimeout bounds one confirmed ack; ackAttempts bounds how often an
// unconfirmed ack is retried before the server's redelivery takes over.
const (
	ackTimeout  = 5 * time.Second
	ackAttempts = 5
)

// Config configures a Subscriber and the durable consumer it owns.
type Config struct {
	// Stream is the stream to consume, e.g. "PROCUREMENT". It is also the
	// only topic Subscribe accepts.
	Stream string
	// Durable is the durable consumer's name, e.g. "ledger-post-entries".
	// Every replica of a handler uses the same name and so shares progress.
	Durable string
	// FilterSubjects restricts the consumer to these subjects, e.g.
	// {"procurement.*.*.delivery_recorded"}; empty means the whole stream.
	FilterSubjects []string
	// AckWait is how long the server waits for an ack before redelivering.
	// While a handler runs the Subscriber tells the server it is still in
	// progress, so AckWait bounds how long a crashed process holds a message,
	// not how long a handler may take. Default 5s.
	AckWait time.Duration
	// MaxDeliver bounds deliveries per message; default -1 (unbounded):
	// the router's retry and dead-letter middleware bound it instead, so a
	// message is never silently dropped by the server.
	MaxDeliver int
	// MaxAckPending is how many unacked messages the consumer allows across
	// all subscribers sharing Durable. The default 1 keeps the whole
	// consumer in stream order even with several replicas (only one works at
	// a time); raise it only for handlers that tolerate reordering.
	MaxAckPending int
	// NakDelay is the redelivery delay after the first Nack of a message;
	// it doubles with every further delivery, up to maxNakDelay, so a
	// handler that fails through an outage does not hammer it. Default 200ms.
	NakDelay time.Duration
	// Bind makes Subscribe bind to the existing durable consumer and check
	// its configuration (VerifyConsumer) instead of creating or updating
	// it. Production processes bind: their consumers belong to an admin
	// identity (`furrow admin streams apply`), and their NATS users may
	// not create, change or delete them. A missing consumer is then an
	// error (jetstream.ErrConsumerNotFound), a drifted one eventstore.ErrDrift.
	Bind bool
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Stream == "" || c.Durable == "" {
		return c, errors.New("wmjs: Config.Stream and Config.Durable are required")
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 1
	}
	if c.NakDelay <= 0 {
		c.NakDelay = DefaultNakDelay
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Subscriber is a Watermill Subscriber over one durable JetStream pull
// consumer.
//
// Concurrency: each Subscribe starts one goroutine that alone owns its
// consumer handle, its output channel and the message in flight; it fetches
// the next message only after the previous one was acked (confirmed by the
// server) or nacked. mu guards closed and cancels; Close cancels every
// goroutine and waits for them on wg. js and cfg are read-only.
type Subscriber struct {
	js  jetstream.JetStream
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	closed  bool
	cancels []context.CancelFunc
	wg      sync.WaitGroup
}

var _ message.Subscriber = (*Subscriber)(nil)

// NewSubscriber validates cfg and returns a Subscriber. It does not touch
// the server: Subscribe creates the consumer.
func NewSubscriber(js jetstream.JetStream, cfg Config) (*Subscriber, error) {
	if js == nil {
		return nil, errors.New("wmjs: a JetStream handle is required")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With(slog.String("stream", cfg.Stream), slog.String("durable", cfg.Durable))
	return &Subscriber{js: js, cfg: cfg, log: log}, nil
}

// ConsumerConfig is the durable consumer Subscribe creates or updates (or,
// with Config.Bind, expects): explicit acks (nothing is acked until a
// handler succeeded) from the start of the stream.
func (s *Subscriber) ConsumerConfig() jetstream.ConsumerConfig { return consumerConfig(s.cfg) }

// Consumer returns the durable consumer configuration c describes, with
// its defaults filled in: what ApplyConsumer creates and VerifyConsumer
// expects.
func (c Config) Consumer() (jetstream.ConsumerConfig, error) {
	c, err := c.withDefaults()
	if err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	return consumerConfig(c), nil
}

func consumerConfig(c Config) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        c.Durable,
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        c.AckWait,
		MaxDeliver:     c.MaxDeliver,
		MaxAckPending:  c.MaxAckPending,
		FilterSubjects: c.FilterSubjects,
	}
}

// Subscribe creates or updates the durable consumer (with Config.Bind:
// binds to it and checks it) and starts delivering
// its messages, one at a time, on the returned channel. topic must equal
// Config.Stream: a Subscriber consumes exactly one stream, and a mismatch
// means the handler was wired to the wrong subscriber.
//
// The channel is closed when ctx is cancelled or Close is called. A message
// neither acked nor nacked by then is handed back to the server at once
// (see handBack), which redelivers it to another subscriber; when the
// process dies instead, the server redelivers it after AckWait.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if topic != s.cfg.Stream {
		return nil, fmt.Errorf("wmjs: subscribe to %q: this subscriber consumes stream %q", topic, s.cfg.Stream)
	}
	if s.isClosed() {
		return nil, ErrClosed
	}
	cons, err := s.ensureConsumer(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed { // Close ran while the consumer was being created
		cancel()
		return nil, ErrClosed
	}
	s.cancels = append(s.cancels, cancel)
	out := make(chan *message.Message)
	s.wg.Add(1)
	go s.run(ctx, cons, out)
	return out, nil
}

func (s *Subscriber) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	if s.cfg.Bind {
		return VerifyConsumer(ctx, s.js, s.cfg)
	}
	cons, err := s.js.CreateOrUpdateConsumer(ctx, s.cfg.Stream, s.ConsumerConfig())
	if err != nil {
		return nil, fmt.Errorf("wmjs: create consumer %s on %s: %w", s.cfg.Durable, s.cfg.Stream, err)
	}
	return cons, nil
}

func (s *Subscriber) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops every subscription and waits for their goroutines. A message
// in flight is handed back (see Subscribe).
func (s *Subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	cancels := s.cancels
	s.cancels = nil
	s.mu.Unlock()
	for _, cancel := range cancels {
		cancel()
	}
	s.wg.Wait()
	return nil
}

// run is the goroutine of one subscription; it owns cons and out.
func (s *Subscriber) run(ctx context.Context, cons jetstream.Consumer, out chan<- *message.Message) {
	defer s.wg.Done()
	defer close(out)
	failures := 0
	pause := newBackoff()
	for ctx.Err() == nil {
		jm, err := s.next(ctx, cons)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
				failures = 0 // an idle pull expired: nothing to consume yet
				pause.Reset()
				continue
			}
			failures++
			s.log.WarnContext(ctx, "fetch failed", slog.Any("error", err), slog.Int("failures", failures))
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
				c, err := s.ensureConsumer(ctx)
				if err == nil {
					cons = c
				} else {
					// Bound to an admin's consumer: it must be recreated
					// (`furrow admin streams apply`) before this can go on.
					s.log.ErrorContext(ctx, "durable consumer missing", slog.Any("error", err))
				}
			}
			sleep(ctx, pause.NextBackOff())
			continue
		}
		failures = 0
		pause.Reset()
		s.deliver(ctx, jm, out)
	}
}

// next pulls one message, waiting at most pullExpiry.
func (s *Subscriber) next(ctx context.Context, cons jetstream.Consumer) (jetstream.Msg, error) {
	pctx, cancel := context.WithTimeout(ctx, pullExpiry)
	defer cancel()
	return cons.Next(jetstream.FetchContext(pctx))
}

// deliver hands jm to the handler and settles it at the server according
// to what the handler did. It returns once the message is settled or
// abandoned, so the caller never has two messages in flight.
func (s *Subscriber) deliver(ctx context.Context, jm jetstream.Msg, out chan<- *message.Message) {
	meta, err := jm.Metadata()
	if err != nil {
		// Not a JetStream delivery: nothing to hand over or ack.
		s.log.ErrorContext(ctx, "message without JetStream metadata", slog.String("subject", jm.Subject()), slog.Any("error", err))
		return
	}
	msgCtx, cancel := context.WithCancel(ctx)
	defer cancel() // Watermill's contract: a settled message's context is done.
	m := toMessage(jm, meta)
	m.SetContext(msgCtx)
	log := s.log.With(slog.Uint64("seq", meta.Sequence.Stream), slog.Uint64("delivered", meta.NumDelivered))

	select {
	case out <- m:
	case <-ctx.Done():
		s.handBack(jm, log) // pulled, never handled
		return
	}

	// Keep the message ours while the handler works; if this process dies
	// the heartbeats stop and the server redelivers after AckWait.
	progress := time.NewTicker(s.cfg.AckWait / 3)
	defer progress.Stop()
	for {
		select {
		case <-m.Acked():
			s.ack(ctx, jm, log)
			return
		case <-m.Nacked():
			if ctx.Err() != nil {
				s.handBack(jm, log)
				return
			}
			if err := jm.NakWithDelay(nakDelay(s.cfg.NakDelay, meta.NumDelivered)); err != nil {
				log.WarnContext(ctx, "nak failed", slog.Any("error", err))
			}
			return
		case <-progress.C:
			if err := jm.InProgress(); err != nil {
				log.WarnContext(ctx, "in-progress signal failed", slog.Any("error", err))
			}
		case <-ctx.Done():
			select {
			case <-m.Acked(): // the handler finished just as we stopped: keep its work
				s.ack(ctx, jm, log)
			default:
				s.handBack(jm, log)
			}
			return
		}
	}
}

// handBack returns a message this subscription will not finish, because
// it is stopping, to the server at once (a Nak without delay): a replica
// that still runs gets it now rather than after AckWait, which a durable
// with MaxAckPending 1 would spend stalled. The handler may still be
// finishing its work (its context is done); handlers are idempotent by the
// source event, so the other replica's run of it changes nothing twice. A
// process that dies cannot hand back: then AckWait decides.
func (s *Subscriber) handBack(jm jetstream.Msg, log *slog.Logger) {
	if err := jm.Nak(); err != nil {
		log.Warn("hand back on stop failed; redelivered after AckWait", slog.Any("error", err))
	}
}

// ack acks jm and waits for the server's confirmation, retrying a few
// times: an ack is idempotent, and an unconfirmed ack may have been lost.
// If it never gets through, the server redelivers and the handler's
// idempotency absorbs the repeat.
func (s *Subscriber) ack(ctx context.Context, jm jetstream.Msg, log *slog.Logger) {
	attempt := 0
	_, _ = backoff.Retry(ctx, func() (struct{}, error) {
		attempt++
		// The handler succeeded: confirm even while shutting down.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
		defer cancel()
		err := jm.DoubleAck(actx)
		if err == nil || errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
			return struct{}{}, nil
		}
		log.WarnContext(ctx, "ack not confirmed", slog.Any("error", err), slog.Int("attempt", attempt))
		return struct{}{}, err
	}, backoff.WithBackOff(newBackoff()), backoff.WithMaxTries(ackAttempts), backoff.WithMaxElapsedTime(0))
}

// toMessage builds the Watermill message for one delivery.
func toMessage(jm jetstream.Msg, meta *jetstream.MsgMetadata) *message.Message {
	h := jm.Headers()
	id := h.Get(eventstore.HeaderEventID)
	if id == "" {
		id = eventstore.Position{Stream: meta.Stream, Sequence: meta.Sequence.Stream}.String()
	}
	m := message.NewMessage(id, jm.Data())
	for k, v := range h {
		if len(v) > 0 {
			m.Metadata.Set(k, v[0])
		}
	}
	m.Metadata.Set(MetaStream, meta.Stream)
	m.Metadata.Set(MetaSequence, strconv.FormatUint(meta.Sequence.Stream, 10))
	m.Metadata.Set(MetaSubject, jm.Subject())
	m.Metadata.Set(MetaDelivered, strconv.FormatUint(meta.NumDelivered, 10))
	m.Metadata.Set(MetaTimestamp, meta.Timestamp.UTC().Format(time.RFC3339Nano))
	return m
}

// Sequence returns the stream sequence of a message from a Subscriber.
func Sequence(m *message.Message) (uint64, error) {
	v := m.Metadata.Get(MetaSequence)
	if v == "" {
		return 0, fmt.Errorf("%w: message %s", ErrNoPosition, m.UUID)
	}
	seq, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: message %s: sequence %q", ErrNoPosition, m.UUID, v)
	}
	return seq, nil
}

// Recorded rebuilds the event envelope of a message from a Subscriber, so a
// handler reads an event the same way whether it came from Load or from a
// consumer. Only the first value of each header survives the trip through
// Watermill metadata.
func Recorded(m *message.Message) (eventstore.Recorded, error) {
	seq, err := Sequence(m)
	if err != nil {
		return eventstore.Recorded{}, err
	}
	stored, err := time.Parse(time.RFC3339Nano, m.Metadata.Get(MetaTimestamp))
	if err != nil {
		return eventstore.Recorded{}, fmt.Errorf("%w: message %s: timestamp: %v", ErrNoPosition, m.UUID, err)
	}
	h := nats.Header{}
	for k, v := range m.Metadata {
		if !transportKeys[k] {
			h.Set(k, v)
		}
	}
	return eventstore.FromMsg(m.Metadata.Get(MetaStream), seq, m.Metadata.Get(MetaSubject), stored, h, m.Payload)
}

// maxNakDelay caps the redelivery delay of a message nacked again and again.
const maxNakDelay = 30 * time.Second

// nakDelay is the redelivery delay after the delivered-th delivery failed.
//
// It stays hand-written: the state of this backoff is the server's
// delivery count (meta.NumDelivered), not a sequence this process walks —
// the message may have failed last in another replica or before a
// restart. backoff.ExponentialBackOff is a stateful iterator; getting the
// n-th wait from it means replaying n NextBackOff calls on a fresh one,
// which is longer and no clearer than this loop.
func nakDelay(first time.Duration, delivered uint64) time.Duration {
	d := first
	for i := uint64(1); i < delivered && d < maxNakDelay; i++ {
		d *= 2
	}
	return min(d, maxNakDelay)
}

// newBackoff paces a failing fetch or ack: 100ms doubling, at most 5s,
// without jitter (one subscription retries its own connection; nothing to
// spread).
func newBackoff() *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     100 * time.Millisecond,
		RandomizationFactor: 0,
		Multiplier:          2,
		MaxInterval:         5 * time.Second,
	}
	b.Reset()
	return b
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
