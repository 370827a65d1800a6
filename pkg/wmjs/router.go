package wmjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/furrow/furrow/pkg/deadletter"
	"github.com/furrow/furrow/pkg/eventstore"
)

// Headers a dead-lettered message carries besides the original event's
// headers. Together they say why it was parked and where to find the
// original, so an operator can fix the cause and re-drive it.
// They are package deadletter's, which reads them back.
const (
	HeaderDeadLetterReason    = deadletter.HeaderReason
	HeaderDeadLetterHandler   = deadletter.HeaderHandler
	HeaderDeadLetterStream    = deadletter.HeaderStream
	HeaderDeadLetterSequence  = deadletter.HeaderSequence
	HeaderDeadLetterSubject   = deadletter.HeaderSubject
	HeaderDeadLetterDelivered = deadletter.HeaderDelivered
)

// Defaults of DeadLetterConfig.
const (
	DefaultDeadLetterStream     = deadletter.Stream
	DefaultMaxRetries           = 5
	DefaultRetryInitialInterval = 100 * time.Millisecond
	DefaultRetryMaxInterval     = 10 * time.Second
)

// DeadLetterConfig says how a router gives up on a message: how often a
// failing handler is retried in-process, and where the message is parked
// afterwards.
type DeadLetterConfig struct {
	// JS is where the dead-letter stream lives.
	JS jetstream.JetStream
	// Stream is the dead-letter stream; default "DEADLETTER".
	Stream string
	// Subject is where this router parks messages, e.g. "deadletter.ledger".
	// Required; one subject per service keeps their dead letters apart.
	Subject string
	// StreamSubjects are the stream's subjects when it has to be created;
	// default {"deadletter.>"}. Subject is added if they do not cover it.
	StreamSubjects []string
	// Replicas of the stream when it has to be created; default 1. With
	// Provisioned, the fewest replicas the existing stream may have.
	Replicas int
	// Provisioned means an admin created the stream (`furrow admin streams
	// apply`): NewRouter only checks it (it exists, keeps dead letters
	// like events, and its subjects cover Subject) and never creates or
	// updates it, which a production process's NATS user may not.
	Provisioned bool
	// MaxRetries is how many times a failing handler is retried before the
	// message is dead-lettered; default 5, negative means no retries.
	MaxRetries int
	// RetryInitialInterval is the first pause between retries; it doubles
	// from there. Default 100ms.
	RetryInitialInterval time.Duration
	// RetryMaxInterval caps the pause between retries. Default 10s.
	RetryMaxInterval time.Duration
	// Transient says whether an error means "try later" (the database or
	// NATS is down) rather than "this message cannot be handled". A message
	// whose handler still fails with a transient error after the retries
	// is not dead-lettered: it is nacked, and the server redelivers it with
	// a growing delay, so an outage stalls the handler instead of parking
	// every event it sees. Default IsTransient.
	Transient func(error) bool
}

func (c DeadLetterConfig) withDefaults() (DeadLetterConfig, error) {
	if c.JS == nil {
		return c, errors.New("wmjs: DeadLetterConfig.JS is required")
	}
	if !literalSubject(c.Subject) {
		return c, fmt.Errorf("wmjs: dead-letter subject %q must be a literal subject", c.Subject)
	}
	if c.Stream == "" {
		c.Stream = DefaultDeadLetterStream
	}
	if len(c.StreamSubjects) == 0 {
		c.StreamSubjects = []string{"deadletter.>"}
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = DefaultMaxRetries
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	if c.RetryInitialInterval <= 0 {
		c.RetryInitialInterval = DefaultRetryInitialInterval
	}
	if c.RetryMaxInterval <= 0 {
		c.RetryMaxInterval = DefaultRetryMaxInterval
	}
	if c.Transient == nil {
		c.Transient = IsTransient
	}
	return c, nil
}

// EnsureDeadLetterStream creates the dead-letter stream (file storage) or,
// when it exists, adds cfg.Subject to its subjects if they do not cover it.
// A stream that exists in memory storage is an error: dead letters must
// survive a restart.
func EnsureDeadLetterStream(ctx context.Context, cfg DeadLetterConfig) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	want := deadLetterStreamConfig(cfg)
	if !covers(want.Subjects, cfg.Subject) {
		want.Subjects = append(slices.Clone(want.Subjects), cfg.Subject)
	}
	st, err := cfg.JS.Stream(ctx, cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = cfg.JS.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another replica won the race
			st, err = cfg.JS.Stream(ctx, cfg.Stream)
		}
	}
	if err != nil {
		return fmt.Errorf("wmjs: ensure dead-letter stream %s: %w", cfg.Stream, err)
	}
	have := st.CachedInfo().Config
	if have.Storage != jetstream.FileStorage {
		return fmt.Errorf("wmjs: dead-letter stream %s does not use file storage", cfg.Stream)
	}
	if covers(have.Subjects, cfg.Subject) {
		return nil
	}
	have.Subjects = append(have.Subjects, cfg.Subject)
	if _, err := cfg.JS.UpdateStream(ctx, have); err != nil {
		return fmt.Errorf("wmjs: add subject %s to dead-letter stream %s: %w", cfg.Subject, cfg.Stream, err)
	}
	return nil
}

// deadLetterStreamConfig is the dead-letter stream cfg names: the one
// package deadletter describes, under cfg's name and subjects.
func deadLetterStreamConfig(cfg DeadLetterConfig) jetstream.StreamConfig {
	want := deadletter.StreamConfig(cfg.Replicas)
	want.Name, want.Subjects = cfg.Stream, slices.Clone(cfg.StreamSubjects)
	return want
}

// VerifyDeadLetterStream checks the dead-letter stream an admin created:
// it exists (jetstream.ErrStreamNotFound if not), keeps dead letters like
// events (eventstore.VerifyStream), and its subjects cover cfg.Subject.
func VerifyDeadLetterStream(ctx context.Context, cfg DeadLetterConfig) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	want := deadLetterStreamConfig(cfg)
	if err := eventstore.VerifyStream(ctx, cfg.JS, want); err != nil {
		return fmt.Errorf("wmjs: dead-letter %w", err)
	}
	st, err := cfg.JS.Stream(ctx, cfg.Stream)
	if err != nil {
		return fmt.Errorf("wmjs: dead-letter stream %s: %w", cfg.Stream, err)
	}
	if have := st.CachedInfo().Config.Subjects; !covers(have, cfg.Subject) {
		return fmt.Errorf("%w: dead-letter stream %s: subjects %s do not cover %s", eventstore.ErrDrift, cfg.Stream, strings.Join(have, ", "), cfg.Subject)
	}
	return nil
}

// NewRouter returns a Watermill router whose handlers get, outermost first:
//
//   - Correlation: produced messages keep the correlation id;
//   - a poison queue: a message whose handler still fails after the retries
//     is parked in the dead-letter stream and then acked at the source, so
//     the handler moves on (a failure caused by shutdown is not parked, nor
//     a transient one: see DeadLetterConfig.Transient);
//   - Tracing: one consumer span per message, child of the producer's trace;
//   - retry: MaxRetries in-process retries with exponential backoff;
//   - recoverer: a panic becomes an error, so it is retried and parked too.
//
// It creates the dead-letter stream if needed (with dlq.Provisioned, it
// checks the admin's instead: VerifyDeadLetterStream). Handlers are added with
// AddConsumerHandler (or AddHandler with a Publisher) and a Subscriber per
// handler; the router closes the subscribers when it closes.
func NewRouter(logger *slog.Logger, dlq DeadLetterConfig) (*message.Router, error) {
	if logger == nil {
		logger = slog.Default()
	}
	dlq, err := dlq.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ensure := EnsureDeadLetterStream
	if dlq.Provisioned {
		ensure = VerifyDeadLetterStream
	}
	if err := ensure(ctx, dlq); err != nil {
		return nil, err
	}
	wlog := watermill.NewSlogLogger(logger)
	r, err := message.NewRouter(message.RouterConfig{}, wlog)
	if err != nil {
		return nil, fmt.Errorf("wmjs: router: %w", err)
	}
	pub, err := NewPublisher(dlq.JS)
	if err != nil {
		return nil, err
	}
	poison, err := middleware.PoisonQueueWithFilter(
		deadLetterPublisher{pub: pub, log: logger}, dlq.Subject,
		func(err error) bool { return !errors.As(err, new(shutdownError)) && !dlq.Transient(err) },
	)
	if err != nil {
		return nil, fmt.Errorf("wmjs: poison queue: %w", err)
	}
	retry := middleware.Retry{
		MaxRetries:          dlq.MaxRetries,
		InitialInterval:     dlq.RetryInitialInterval,
		MaxInterval:         dlq.RetryMaxInterval,
		Multiplier:          2,
		RandomizationFactor: 0.2, // replicas failing together should not retry in lockstep
		ResetContextOnRetry: true,
	}
	r.AddMiddleware(
		Correlation,
		poison,
		shutdownGuard,
		Metrics,
		Tracing(nil),
		retrying(retry, logger),
		middleware.Recoverer,
	)
	return r, nil
}

// retrying is the retry middleware, logging each retry as a warning that
// names the handler and the message: a retry is the expected answer to a
// failure that may pass (a provider that timed out, a lost race), not an
// error. The errors are logged when the retries run out: the router's
// "Handler returned error" and the poison queue's "message dead-lettered".
func retrying(retry middleware.Retry, logger *slog.Logger) message.HandlerMiddleware {
	quiet := watermill.NewSlogLoggerWithLevelMapping(logger, map[slog.Level]slog.Level{slog.LevelError: slog.LevelWarn})
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			r := retry
			r.Logger = quiet.With(watermill.LogFields{
				"handler_name": message.HandlerNameFromCtx(msg.Context()),
				"stream":       msg.Metadata.Get(MetaStream),
				"seq":          msg.Metadata.Get(MetaSequence),
			})
			return r.Middleware(h)(msg)
		}
	}
}

// Correlation copies the consumed event's correlation id to every message
// the handler produces (the event's own id when it has none: it started the
// chain), and makes the consumed event the produced messages' cause.
// Values the handler set itself are kept.
func Correlation(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		produced, err := h(msg)
		id := msg.Metadata.Get(eventstore.HeaderEventID)
		corr := msg.Metadata.Get(eventstore.HeaderCorrelationID)
		if corr == "" {
			corr = id
		}
		for _, p := range produced {
			setDefault(p, eventstore.HeaderCorrelationID, corr)
			setDefault(p, eventstore.HeaderCausationID, id)
		}
		return produced, err
	}
}

func setDefault(m *message.Message, key, value string) {
	if value == "" || m.Metadata.Get(key) != "" {
		return
	}
	if m.Metadata == nil {
		m.Metadata = message.Metadata{}
	}
	m.Metadata.Set(key, value)
}

// instrumentation names this package's tracer.
const instrumentation = "github.com/furrow/furrow/pkg/wmjs"

// traceContext is the wire format of trace context in event headers. It is
// fixed rather than taken from the global propagator: events outlive the
// process that wrote them, so the format is part of the event contract.
var traceContext = propagation.TraceContext{}

// Tracing starts a consumer span per message, named after the handler, as
// a child of the trace in the message's traceparent/tracestate metadata;
// the handler sees it in msg.Context(). Produced messages without trace
// context get the span's. A nil tp means the global TracerProvider, looked
// up per message so that telemetry set up after the router still applies.
func Tracing(tp trace.TracerProvider) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			provider := tp
			if provider == nil {
				provider = otel.GetTracerProvider()
			}
			ctx := traceContext.Extract(msg.Context(), propagation.MapCarrier(msg.Metadata))
			handler := message.HandlerNameFromCtx(ctx)
			stream := msg.Metadata.Get(MetaStream)
			// "process <stream>", the messaging conventions' consumer span;
			// the handler is its consumer group (its durable consumer).
			ctx, span := provider.Tracer(instrumentation).Start(ctx, "process "+stream,
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(
					semconv.MessagingSystemKey.String("nats"),
					semconv.MessagingOperationTypeProcess,
					semconv.MessagingOperationName("process"),
					semconv.MessagingDestinationName(stream),
					semconv.MessagingConsumerGroupName(handler),
					semconv.MessagingMessageID(msg.UUID),
					attribute.String("furrow.subject", msg.Metadata.Get(MetaSubject)),
					attribute.String("furrow.stream_seq", msg.Metadata.Get(MetaSequence)),
				))
			defer span.End()
			msg.SetContext(ctx)

			produced, err := h(msg)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, "handler failed")
			}
			for _, p := range produced {
				if p.Metadata.Get(eventstore.HeaderTraceParent) == "" {
					if p.Metadata == nil {
						p.Metadata = message.Metadata{}
					}
					traceContext.Inject(ctx, propagation.MapCarrier(p.Metadata))
				}
			}
			return produced, err
		}
	}
}

// shutdownError marks a failure that happened because the message's
// context ended (the subscriber is closing), not because of the message.
type shutdownError struct{ err error }

func (e shutdownError) Error() string { return e.err.Error() }
func (e shutdownError) Unwrap() error { return e.err }

// shutdownGuard keeps the poison queue from parking a message whose
// handler failed only because the process is shutting down: retries stop
// with a context error then, and such a message belongs back on its stream.
func shutdownGuard(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx := msg.Context()
		produced, err := h(msg)
		if err != nil && ctx.Err() != nil {
			return produced, shutdownError{err}
		}
		return produced, err
	}
}

// deadLetterPublisher turns the message Watermill's PoisonQueue hands it
// into a dead letter: the original event's headers, minus the NATS control
// headers of the original publish (an expected-stream or expected-sequence
// header would make the dead letter's publish fail), plus the
// Furrow-Dead-Letter-* headers.
type deadLetterPublisher struct {
	pub *Publisher
	log *slog.Logger
}

func (d deadLetterPublisher) Publish(subject string, msgs ...*message.Message) error {
	for _, m := range msgs {
		dl := deadLetter(m)
		d.log.ErrorContext(m.Context(), "message dead-lettered",
			slog.String("handler", m.Metadata.Get(middleware.PoisonedHandlerKey)),
			slog.String("stream", m.Metadata.Get(MetaStream)),
			slog.String("seq", m.Metadata.Get(MetaSequence)),
			slog.String("message_id", m.UUID),
			slog.String("dead_letter_subject", subject),
			slog.String("reason", m.Metadata.Get(middleware.ReasonForPoisonedKey)),
		)
		if err := d.pub.Publish(subject, dl); err != nil {
			return err
		}
	}
	return nil
}

func (d deadLetterPublisher) Close() error { return nil }

var poisonKeys = map[string]bool{
	middleware.ReasonForPoisonedKey:  true,
	middleware.PoisonedTopicKey:      true,
	middleware.PoisonedHandlerKey:    true,
	middleware.PoisonedSubscriberKey: true,
}

func deadLetter(m *message.Message) *message.Message {
	// The decision to park was made after every retry: finish it even if
	// shutdown starts now (shutdownGuard keeps shutdown failures out).
	dl := message.NewMessageWithContext(context.WithoutCancel(m.Context()), m.UUID, m.Payload)
	for k, v := range m.Metadata {
		if strings.HasPrefix(k, "Nats-") || transportKeys[k] || poisonKeys[k] {
			continue
		}
		dl.Metadata.Set(k, v)
	}
	handler := m.Metadata.Get(middleware.PoisonedHandlerKey)
	stream, seq := m.Metadata.Get(MetaStream), m.Metadata.Get(MetaSequence)
	dl.Metadata.Set(HeaderDeadLetterReason, headerValue(m.Metadata.Get(middleware.ReasonForPoisonedKey)))
	dl.Metadata.Set(HeaderDeadLetterHandler, handler)
	dl.Metadata.Set(HeaderDeadLetterStream, stream)
	dl.Metadata.Set(HeaderDeadLetterSequence, seq)
	dl.Metadata.Set(HeaderDeadLetterSubject, m.Metadata.Get(MetaSubject))
	dl.Metadata.Set(HeaderDeadLetterDelivered, m.Metadata.Get(MetaDelivered))
	dl.Metadata.Set(deadletter.HeaderKind, deadletter.KindHandler)
	dl.Metadata.Set(deadletter.HeaderStoredAt, m.Metadata.Get(MetaTimestamp))
	// Parking the same delivery twice (the source ack was lost) stores it
	// once; different handlers parking the same event each keep theirs.
	dl.Metadata.Set(jetstream.MsgIDHeader, "deadletter:"+handler+":"+stream+":"+seq)
	return dl
}

// headerValue makes s fit in one header line of bounded length.
func headerValue(s string) string { return deadletter.HeaderValue(s) }

// transientError marks an error as transient (see Transient).
type transientError struct{ err error }

func (e transientError) Error() string { return e.err.Error() }
func (e transientError) Unwrap() error { return e.err }

// Transient marks err as transient: the handler could not do its work now
// (a dependency is down) but the message itself is fine. A handler returns
// Transient(err) so that an outage does not dead-letter its messages.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return transientError{err}
}

// IsTransient is the default DeadLetterConfig.Transient: errors marked with
// Transient, and NATS failures that say the server could not be reached or
// did not answer in time (a JetStream outage, not a bad message).
func IsTransient(err error) bool {
	switch {
	case errors.As(err, new(transientError)),
		errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrNoServers),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return true
	}
	return false
}

// literalSubject reports whether s is a valid subject without wildcards.
func literalSubject(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
	}
	return true
}

// covers reports whether one of patterns matches the literal subject.
func covers(patterns []string, subject string) bool {
	for _, p := range patterns {
		if subjectMatches(p, subject) {
			return true
		}
	}
	return false
}

func subjectMatches(pattern, subject string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range pt {
		if tok == ">" {
			return len(st) > i
		}
		if i >= len(st) || (tok != "*" && tok != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}
