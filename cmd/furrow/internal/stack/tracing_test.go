package stack_test

import (
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/eventstore"
)

// TestTraceFlowsFromGRPCThroughEventsIntoHandlers checks that one trace
// covers the RecordDelivery call, the DeliveryRecorded event's traceparent,
// the ledger handler that consumes it and the entry it appends. It sets the
// global TracerProvider, so it does not run in parallel, and runs before the
// parallel tests start their stacks.
func TestTraceFlowsFromGRPCThroughEventsIntoHandlers(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))

	c := startStack(t, t.TempDir())
	ctx := testCtx(t)
	register(t, c, "F1")
	res, err := c.procurement.RecordDelivery(ctx, &procurementv1.RecordDeliveryRequest{
		RequestId: "traced", FarmerId: "F1", Product: "chestnut", NetGrams: 1000, PriceFenPerKg: 1200})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: res.GetPosition()}); err != nil {
		t.Fatal(err)
	}

	var rpcTrace string
	for _, s := range rec.Ended() {
		if s.Name() == "furrow.procurement.v1.ProcurementService/RecordDelivery" {
			rpcTrace = s.SpanContext().TraceID().String()
		}
	}
	if rpcTrace == "" {
		t.Fatal("no server span for RecordDelivery")
	}
	store := eventstore.New(c.st.JetStream())
	delivered, err := store.Load(ctx, "PROCUREMENT", "procurement.>", 0)
	if err != nil || len(delivered) != 1 {
		t.Fatalf("load: %d events, %v", len(delivered), err)
	}
	if tp := delivered[0].Header.Get("traceparent"); !strings.Contains(tp, rpcTrace) {
		t.Fatalf("DeliveryRecorded traceparent %q is not in trace %s", tp, rpcTrace)
	}
	// The handler span ends just after the ack; give it a moment.
	// The append is a producer span, "send PROCUREMENT", in the call's
	// trace; the event's traceparent names it, so the handler's consumer
	// span is its child.
	var send sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "send PROCUREMENT" && s.SpanKind() == trace.SpanKindProducer && s.SpanContext().TraceID().String() == rpcTrace &&
			hasAttr(s, "messaging.system", "nats") && hasAttr(s, "messaging.destination.name", "PROCUREMENT") {
			send = s
		}
	}
	if send == nil {
		t.Fatal("no producer span \"send PROCUREMENT\" in the RecordDelivery trace")
	}
	if tp := delivered[0].Header.Get("traceparent"); !strings.Contains(tp, send.SpanContext().SpanID().String()) {
		t.Fatalf("DeliveryRecorded traceparent %q does not name the producer span %s", tp, send.SpanContext().SpanID())
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		found := false
		for _, s := range rec.Ended() {
			if s.Name() == "process PROCUREMENT" && s.SpanKind() == trace.SpanKindConsumer &&
				hasAttr(s, "messaging.consumer.group.name", "ledger-post-entries-procurement") &&
				s.SpanContext().TraceID().String() == rpcTrace {
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no ledger handler span in the RecordDelivery trace")
		}
		time.Sleep(20 * time.Millisecond)
	}
	entries, err := store.Load(ctx, "LEDGER", "ledger.farmer.F1.entry_posted", 0)
	if err != nil || len(entries) != 1 {
		t.Fatalf("load entries: %d, %v", len(entries), err)
	}
	if tp := entries[0].Header.Get("traceparent"); !strings.Contains(tp, rpcTrace) {
		t.Fatalf("EntryPosted traceparent %q is not in trace %s", tp, rpcTrace)
	}
	if entries[0].Metadata.CausationID != delivered[0].ID || entries[0].Metadata.CorrelationID != "traced" {
		t.Fatalf("entry metadata = %+v, want causation %s and correlation traced", entries[0].Metadata, delivered[0].ID)
	}
}

// hasAttr reports whether span s has attribute key with string value v.
func hasAttr(s sdktrace.ReadOnlySpan, key, v string) bool {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key && kv.Value.Emit() == v {
			return true
		}
	}
	return false
}
