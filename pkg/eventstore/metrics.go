package eventstore

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Instruments come from the global MeterProvider, which delegates to the one
// telemetry.Setup installs; with metrics off they cost nothing.
var (
	meter       = otel.Meter("github.com/furrow/furrow/pkg/eventstore")
	appendCount = instrument(meter.Int64Counter("furrow.eventstore.appends",
		metric.WithDescription("Append calls by stream and outcome (ok, duplicate, conflict, idempotency_mismatch, invalid, error)")))
	appendEvents = instrument(meter.Int64Counter("furrow.eventstore.events",
		metric.WithDescription("Events newly written by stream")))
	appendSeconds = instrument(meter.Float64Histogram("furrow.eventstore.append.duration",
		metric.WithUnit("s"), metric.WithDescription("Append latency, including the server's fsync")))
	groupAppends = instrument(meter.Int64Histogram("furrow.eventstore.group.appends",
		metric.WithDescription("Appends per atomic batch of a group commit")))
	groupMessages = instrument(meter.Int64Histogram("furrow.eventstore.group.messages",
		metric.WithDescription("Messages per atomic batch of a group commit")))
)

// instrument drops the creation error: the SDK reports an invalid
// instrument alongside a usable no-op one, and metrics must never stop
// appends.
func instrument[T any](v T, _ error) T { return v }

// recordAppend records one Append's outcome.
func recordAppend(ctx context.Context, req AppendRequest, res AppendResult, err error, took time.Duration) {
	outcome := "ok"
	switch {
	case err == nil && res.Duplicate:
		outcome = "duplicate"
	case err == nil:
	case errors.Is(err, ErrConflict):
		outcome = "conflict"
	case errors.Is(err, ErrIdempotencyMismatch):
		outcome = "idempotency_mismatch"
	case errors.Is(err, ErrInvalidAppend):
		outcome = "invalid"
	default:
		outcome = "error"
	}
	stream := attribute.String("stream", req.Stream)
	appendCount.Add(ctx, 1, metric.WithAttributes(stream, attribute.String("outcome", outcome)))
	appendSeconds.Record(ctx, took.Seconds(), metric.WithAttributes(stream))
	if err == nil && !res.Duplicate {
		appendEvents.Add(ctx, int64(len(req.Events)), metric.WithAttributes(stream))
	}
}

// recordGroup records one group commit's size.
func recordGroup(appends, msgs int) {
	ctx := context.Background()
	groupAppends.Record(ctx, int64(appends))
	groupMessages.Record(ctx, int64(msgs))
}
