package lifecycle

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/embedded"

	"github.com/furrow/furrow/pkg/deadletter"
	"github.com/furrow/furrow/pkg/projection"
)

// ObserveGauges registers the gauges a process reads when metrics are
// collected: its projections' lag and health and the dead-letter stream's
// size. `furrow dev` and the production binaries call it alike, so both
// export the same series; pass the result to Parts.LagMetrics.
func ObserveGauges(js jetstream.JetStream, runners []*projection.Runner) (metric.Registration, error) {
	lag, err := projection.ObserveLag(nil, runners)
	if err != nil {
		return nil, fmt.Errorf("projection metrics: %w", err)
	}
	dlq, err := deadletter.ObserveSize(nil, js)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("dead-letter metrics: %w", err), lag.Unregister())
	}
	return &registrations{rs: []metric.Registration{lag, dlq}}, nil
}

// registrations unregisters several registrations as one.
type registrations struct {
	embedded.Registration
	rs []metric.Registration
}

var _ metric.Registration = (*registrations)(nil)

// Unregister unregisters every registration.
func (r *registrations) Unregister() error {
	var errs []error
	for _, r := range r.rs {
		errs = append(errs, r.Unregister())
	}
	return errors.Join(errs...)
}
