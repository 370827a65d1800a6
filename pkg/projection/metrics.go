package projection

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// statusTimeout bounds one collection's status queries per projection.
const statusTimeout = 5 * time.Second

// ObserveLag reports each runner's lag (events and seconds) and health
// (1 healthy, 0 not) as OpenTelemetry gauges, read from Status at every
// collection. A nil mp means the global MeterProvider (see pkg/telemetry),
// which reports nothing while metrics are off. Unregister the returned
// registration on shutdown.
func ObserveLag(mp metric.MeterProvider, runners []*Runner) (metric.Registration, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter("github.com/furrow/furrow/pkg/projection")
	lagEvents, err := meter.Int64ObservableGauge("furrow.projection.lag.events",
		metric.WithDescription("Events on the projection's subjects not yet applied to its live copy"))
	if err != nil {
		return nil, err
	}
	lagSeconds, err := meter.Float64ObservableGauge("furrow.projection.lag.seconds", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest event the live copy has not applied (0 when caught up)"))
	if err != nil {
		return nil, err
	}
	healthy, err := meter.Int64ObservableGauge("furrow.projection.healthy",
		metric.WithDescription("1 while the projection is idle or catching up; 0 when failing, blocked, stalled, paused or stopped"))
	if err != nil {
		return nil, err
	}
	return meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		for _, r := range runners {
			sctx, cancel := context.WithTimeout(ctx, statusTimeout)
			st, err := r.Status(sctx)
			cancel()
			if err != nil {
				continue // a missing figure says more than a made-up one
			}
			attrs := metric.WithAttributes(attribute.String("projection", st.Name), attribute.String("stream", st.Stream))
			o.ObserveInt64(lagEvents, int64(st.LagEvents), attrs)
			o.ObserveFloat64(lagSeconds, st.LagTime.Seconds(), attrs)
			ok := int64(0)
			if st.State == StateIdle || st.State == StateCatchingUp {
				ok = 1
			}
			o.ObserveInt64(healthy, ok, attrs)
		}
		return nil
	}, lagEvents, lagSeconds, healthy)
}
