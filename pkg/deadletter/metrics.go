package deadletter

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// infoTimeout bounds one collection's stream info request.
const infoTimeout = 5 * time.Second

// ObserveSize reports the dead-letter stream's size as OpenTelemetry
// gauges, read at every collection from one subject-filtered stream info
// request: furrow.deadletter.letters (dead letters parked, ever: the
// stream denies deletes) and furrow.deadletter.resolved (resolution
// markers), so letters - resolved is the open ones and a rising letters
// is the queue growing. A nil mp means the global MeterProvider.
// Unregister the returned registration on shutdown.
func ObserveSize(mp metric.MeterProvider, js jetstream.JetStream) (metric.Registration, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter("github.com/furrow/furrow/pkg/deadletter")
	letters, err := meter.Int64ObservableGauge("furrow.deadletter.letters",
		metric.WithDescription("Dead letters parked in the DEADLETTER stream (never deleted; subtract resolved for the open ones)"))
	if err != nil {
		return nil, err
	}
	resolved, err := meter.Int64ObservableGauge("furrow.deadletter.resolved",
		metric.WithDescription("Dead letters resolved (redriven or discarded by an operator)"))
	if err != nil {
		return nil, err
	}
	return meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, infoTimeout)
		defer cancel()
		st, err := js.Stream(ctx, Stream)
		if err != nil {
			return nil // no stream yet, or unreachable: a missing figure, not a made-up 0
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(Subjects))
		if err != nil {
			return nil
		}
		var parked, done int64
		for subject, n := range info.State.Subjects {
			if strings.HasPrefix(subject, resolvedPrefix) {
				done += int64(n)
			} else {
				parked += int64(n)
			}
		}
		o.ObserveInt64(letters, parked)
		o.ObserveInt64(resolved, done)
		return nil
	}, letters, resolved)
}
