package wmjs

import (
	"context"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Instruments come from the global MeterProvider (see pkg/telemetry); with
// metrics off they cost nothing. Creation errors come with usable no-op
// instruments and are dropped: metrics must never stop a handler.
var (
	meter         = otel.Meter("github.com/furrow/furrow/pkg/wmjs")
	handled, _    = meter.Int64Counter("furrow.handler.messages", metric.WithDescription("Messages a handler finished, by handler and outcome (ok, failed after retries, shutdown)"))
	handleTime, _ = meter.Float64Histogram("furrow.handler.duration", metric.WithUnit("s"), metric.WithDescription("Time to handle a message, retries included"))
)

// Metrics counts each message's final outcome per handler. It sits inside
// the poison queue, so "failed" means the retries were exhausted and the
// message is about to be dead-lettered (or redelivered, for a transient
// error).
func Metrics(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		start := time.Now()
		produced, err := h(msg)
		outcome := "ok"
		switch {
		case err == nil:
		case errors.As(err, new(shutdownError)) || errors.Is(err, context.Canceled):
			outcome = "shutdown"
		default:
			outcome = "failed"
		}
		ctx := context.WithoutCancel(msg.Context())
		name := attribute.String("handler", message.HandlerNameFromCtx(msg.Context()))
		handled.Add(ctx, 1, metric.WithAttributes(name, attribute.String("outcome", outcome)))
		handleTime.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(name))
		return produced, err
	}
}
