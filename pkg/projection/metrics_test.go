package projection_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/furrow/furrow/pkg/projection"
)

// TestObserveLag reads the lag gauges of a projection that has not applied
// three events and then of the same projection caught up.
func TestObserveLag(t *testing.T) {
	t.Parallel()
	js := startJetStream(t, true)
	db := openDB(t, sqliteStore)
	r := newRunner(t, db, js, newCounter("lagged", "test.>"), projection.Options{})
	last := appendEvents(t, js, repeat("test.a.1", 3)...)

	reader := sdkmetric.NewManualReader()
	reg, err := projection.ObserveLag(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), []*projection.Runner{r})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	gauges := func() map[string]float64 {
		t.Helper()
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch g := m.Data.(type) {
				case metricdata.Gauge[int64]:
					for _, dp := range g.DataPoints {
						if v, _ := dp.Attributes.Value(attribute.Key("projection")); v.AsString() == "lagged" {
							out[m.Name] = float64(dp.Value)
						}
					}
				case metricdata.Gauge[float64]:
					for _, dp := range g.DataPoints {
						if v, _ := dp.Attributes.Value(attribute.Key("projection")); v.AsString() == "lagged" {
							out[m.Name] = dp.Value
						}
					}
				}
			}
		}
		return out
	}
	before := gauges()
	if before["furrow.projection.lag.events"] != 3 || before["furrow.projection.healthy"] != 0 {
		t.Fatalf("before running: %v, want 3 events behind and not healthy (stopped)", before)
	}
	start(t, r)
	waitFor(t, r, last[len(last)-1])
	after := gauges()
	if after["furrow.projection.lag.events"] != 0 || after["furrow.projection.lag.seconds"] != 0 || after["furrow.projection.healthy"] != 1 {
		t.Fatalf("caught up: %v, want no lag and healthy", after)
	}
}
