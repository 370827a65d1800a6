package eventstore_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"
)

// TestAppendManySpan: a bulk append (RecordDeliveries) is one producer
// span, "send <stream>", counting its messages and its failed appends,
// and every event it writes carries that span's trace, so the consumers'
// spans join it. Before, AppendMany made no span: a bulk ingest had no
// trace. It swaps the global TracerProvider, so it does not run in
// parallel.
func TestAppendManySpan(t *testing.T) {
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
	e := newEnv(t, natstest.Embedded(t), 0)
	ctx := context.Background()
	if _, err := e.s.Append(ctx, e.one("a.A0", "k0", eventstore.ExpectNew())); err != nil {
		t.Fatal(err)
	}
	reqs := []eventstore.AppendRequest{
		e.one("a.A1", "k1", eventstore.ExpectNew()),
		e.one("a.A2", "k2", eventstore.ExpectNew()),
		e.one("a.A0", "k3", eventstore.ExpectNew()), // A0 exists: a conflict
	}
	out := e.s.AppendMany(ctx, reqs)
	if out[0].Err != nil || out[1].Err != nil || !errors.Is(out[2].Err, eventstore.ErrConflict) {
		t.Fatalf("outcomes: %+v", out)
	}
	var many sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		for _, a := range s.Attributes() {
			if a.Key == "messaging.batch.message_count" && a.Value.AsInt64() == 3 {
				many = s
			}
		}
	}
	if many == nil {
		t.Fatalf("no producer span of the 3-message AppendMany among %d spans", len(rec.Ended()))
	}
	if many.Name() != "send "+e.stream || many.SpanKind() != trace.SpanKindProducer {
		t.Errorf("span %q kind %v, want \"send %s\", producer", many.Name(), many.SpanKind(), e.stream)
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, a := range many.Attributes() {
		attrs[a.Key] = a.Value
	}
	if v := attrs["furrow.append.failed"]; v.AsInt64() != 1 {
		t.Errorf("furrow.append.failed = %v, want 1 (the conflict)", v.Emit())
	}
	if many.Status().Code == codes.Error {
		t.Errorf("a conflict is not a fault, but the span's status is %v", many.Status())
	}
	// The written events carry the span's trace.
	evs, err := e.s.Load(ctx, e.stream, e.subj("a.A1.>"), 0)
	if err != nil || len(evs) != 1 {
		t.Fatalf("load A1: %v %v", evs, err)
	}
	carrier := propagation.MapCarrier{}
	for k, v := range evs[0].Header {
		if len(v) > 0 {
			carrier[k] = v[0]
		}
	}
	sc := trace.SpanContextFromContext(otel.GetTextMapPropagator().Extract(ctx, carrier))
	if sc.TraceID() != many.SpanContext().TraceID() {
		t.Errorf("A1's event carries trace %v, want the AppendMany span's %v", sc.TraceID(), many.SpanContext().TraceID())
	}
}
