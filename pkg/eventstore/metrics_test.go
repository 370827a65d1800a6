package eventstore_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"
)

// TestAppendMetrics checks that appends are counted by stream and outcome
// once a MeterProvider is installed. It swaps the global provider, so it
// does not run in parallel (the parallel tests start after it).
func TestAppendMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	ctx := context.Background()
	e := newEnv(t, natstest.Embedded(t), 0)
	req := eventstore.AppendRequest{Stream: e.stream, Aggregate: e.subj("a.A1.>"), Expect: eventstore.ExpectNew(),
		IdempotencyKey: "k", Events: []eventstore.Event{ev(e.subj("a.A1.x"), "1"), ev(e.subj("a.A1.y"), "2")}}
	if _, err := e.s.Append(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Append(ctx, req); err != nil { // a retry
		t.Fatal(err)
	}
	req.IdempotencyKey = "other"
	if _, err := e.s.Append(ctx, req); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("want a conflict, got %v", err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				if v, _ := dp.Attributes.Value(attribute.Key("stream")); v.AsString() != e.stream {
					continue
				}
				outcome, _ := dp.Attributes.Value(attribute.Key("outcome"))
				got[m.Name+"/"+outcome.AsString()] += dp.Value
			}
		}
	}
	want := map[string]int64{
		"furrow.eventstore.appends/ok":        1,
		"furrow.eventstore.appends/duplicate": 1,
		"furrow.eventstore.appends/conflict":  1,
		"furrow.eventstore.events/":           2,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}
