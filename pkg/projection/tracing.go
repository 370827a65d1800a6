package projection

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/furrow/furrow/pkg/telemetry"
)

// instrumentation names the tracer of the projections' spans.
const instrumentation = "github.com/furrow/furrow/pkg/projection"

// maxLinks bounds the links of one batch's span: a rebuild's batches hold
// thousands of events, and a trace needs only to find its own.
const maxLinks = 128

// startProcess starts the consumer span of one batch a copy applies,
// "process <stream>" as the OpenTelemetry messaging conventions name it,
// linked to the trace of each event in it (the first maxLinks), so the
// trace of a command shows the read models that took it up. The global
// TracerProvider is looked up per call, so telemetry set up later applies.
func (w *worker) startProcess(ctx context.Context, batch []delivery) (context.Context, trace.Span) {
	r := w.r
	var links []trace.Link
	for _, d := range batch[:min(len(batch), maxLinks)] {
		if sc := trace.SpanContextFromContext(telemetry.Extract(context.Background(), d.msg.Headers())); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKey.String("nats"),
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(r.stream),
		semconv.MessagingConsumerGroupName(r.name),
		semconv.MessagingBatchMessageCount(len(batch)),
		attribute.String(telemetry.KeyProjection, r.name),
		attribute.Int64(telemetry.KeyCopy, w.version),
	}
	if len(batch) > 0 {
		attrs = append(attrs, attribute.Int64("furrow.projection.first_seq", int64(batch[0].seq)),
			attribute.Int64("furrow.projection.last_seq", int64(batch[len(batch)-1].seq)))
	}
	return otel.GetTracerProvider().Tracer(instrumentation).Start(ctx, "process "+r.stream,
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...), trace.WithAttributes(attrs...))
}

// endProcess ends a batch's span. A copy paused, retired or held at a
// limit is not a fault; a batch that failed is.
func endProcess(span trace.Span, err error) {
	if err != nil && !errors.Is(err, errHeld) && !errors.Is(err, errPaused) && !errors.Is(err, errRetired) {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
