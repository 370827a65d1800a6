package projection_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"
)

// TestBatchSpans: every batch a projection applies is a consumer span,
// "process <stream>", naming the projection, its copy and how many events
// it applied, and linked to the trace of the command that wrote each
// event. Before, projections made no spans: a trace ended at the append.
// It swaps the global TracerProvider, so it does not run in parallel.
func TestBatchSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
		_ = tp.Shutdown(context.Background())
	})
	js := startJetStream(t, true)
	db := openDB(t, sqliteStore)
	// A command's append, in its own trace.
	cmdCtx, cmd := tp.Tracer("test").Start(context.Background(), "RecordDelivery")
	res, err := eventstore.New(js).Append(cmdCtx, eventstore.AppendRequest{Stream: testStream, Aggregate: "test.a.1",
		Events: []eventstore.Event{{Subject: "test.a.1", Type: "test.v1.Counted"}}})
	cmd.End()
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner(t, db, js, newCounter("traced"), projection.Options{})
	start(t, r)
	waitFor(t, r, res.Last)

	// The batch's span ends just after the checkpoint WaitFor saw moved.
	var batch sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(5 * time.Second); batch == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, s := range rec.Ended() {
			if s.Name() == "process "+testStream {
				batch = s
			}
		}
	}
	if batch == nil {
		t.Fatalf("no \"process %s\" span among %d", testStream, len(rec.Ended()))
	}
	if batch.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("kind %v, want consumer", batch.SpanKind())
	}
	attrs := map[string]string{}
	for _, a := range batch.Attributes() {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	for k, want := range map[string]string{"projection": "traced", "messaging.consumer.group.name": "traced", "furrow.projection.applied": "1",
		"messaging.batch.message_count": "1", "messaging.destination.name": testStream} {
		if attrs[k] != want {
			t.Errorf("attribute %s = %q, want %q (all: %v)", k, attrs[k], want, attrs)
		}
	}
	linked := false
	for _, l := range batch.Links() {
		linked = linked || l.SpanContext.TraceID() == cmd.SpanContext().TraceID()
	}
	if !linked {
		t.Errorf("the batch's span has no link to the command's trace %v: %v", cmd.SpanContext().TraceID(), batch.Links())
	}
}
