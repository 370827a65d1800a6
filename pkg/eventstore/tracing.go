package eventstore

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// instrumentation names the tracer of the event store's spans.
const instrumentation = "github.com/furrow/furrow/pkg/eventstore"

// startSend starts the producer span of one append, "send <stream>", as
// the OpenTelemetry messaging conventions name it. The events' traceparent
// headers are written under it (prepare injects ctx), so every consumer's
// "process <stream>" span is its child. The global TracerProvider is looked
// up per call, so telemetry set up after the Store still applies.
func startSend(ctx context.Context, stream string, events int) (context.Context, trace.Span) {
	name := "send"
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKey.String("nats"),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationName("send"),
		semconv.MessagingBatchMessageCount(events),
	}
	if stream != "" {
		name += " " + stream
		attrs = append(attrs, semconv.MessagingDestinationName(stream))
	}
	return otel.GetTracerProvider().Tracer(instrumentation).Start(ctx, name,
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
}

// startSendMany starts the producer span of a bulk append (AppendMany):
// "send <stream>" when every request goes to one stream (a warehouse's
// day of deliveries), else "send", counting every event.
func startSendMany(ctx context.Context, reqs []AppendRequest) (context.Context, trace.Span) {
	stream, events := "", 0
	for i, r := range reqs {
		if i == 0 {
			stream = r.Stream
		} else if r.Stream != stream {
			stream = ""
		}
		events += len(r.Events)
	}
	return startSend(ctx, stream, events)
}

// endSendMany ends a bulk append's span: how many of its appends failed
// (furrow.append.failed), and an error status only when one failed for
// another reason than a lost race or a reused key.
func endSendMany(span trace.Span, out []AppendOutcome) {
	failed := 0
	for _, o := range out {
		if o.Err == nil {
			continue
		}
		failed++
		if !errors.Is(o.Err, ErrConflict) && !errors.Is(o.Err, ErrIdempotencyMismatch) {
			span.RecordError(o.Err)
			span.SetStatus(codes.Error, o.Err.Error())
		}
	}
	span.SetAttributes(attribute.Int("furrow.append.failed", failed))
	span.End()
}

// endSend ends a producer span with the append's outcome.
func endSend(span trace.Span, res AppendResult, err error) {
	switch {
	case err == nil:
		if len(res.EventIDs) > 0 {
			span.SetAttributes(semconv.MessagingMessageID(res.EventIDs[0]))
		}
	case errors.Is(err, ErrConflict):
		// An expected outcome of optimistic concurrency, not a fault.
		span.SetAttributes(semconv.ErrorTypeKey.String("conflict"))
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
