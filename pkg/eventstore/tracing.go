package eventstore

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
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
	return otel.GetTracerProvider().Tracer(instrumentation).Start(ctx, "send "+stream,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("send"),
			semconv.MessagingDestinationName(stream),
			semconv.MessagingBatchMessageCount(events),
		))
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
