package telemetry

import (
	"context"
	"slices"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// propagator is the wire format of trace context in Furrow: W3C Trace
// Context. Inject and Extract use it directly rather than the global
// propagator because events outlive the process that wrote them, so the
// header format is part of the event contract, not a runtime setting.
var propagator propagation.TextMapPropagator = propagation.TraceContext{}

// HeaderCarrier lets a propagator read and write NATS headers. NATS headers
// are case-sensitive and nats.go does not canonicalise keys, so the carrier
// keeps keys exactly as the propagator spells them: lowercase "traceparent"
// and "tracestate", as the W3C specification writes them.
type HeaderCarrier nats.Header

var _ propagation.TextMapCarrier = HeaderCarrier(nil)

// Get returns the first value of key, or "".
func (c HeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces the values of key with value.
func (c HeaderCarrier) Set(key, value string) {
	c[key] = []string{value}
}

// Keys lists the header keys, sorted.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Inject writes the trace context of ctx into h. A nil h has nowhere to
// write and is left alone.
func Inject(ctx context.Context, h nats.Header) {
	if h == nil {
		return
	}
	propagator.Inject(ctx, HeaderCarrier(h))
}

// Extract returns ctx with the remote span context found in h, if any.
func Extract(ctx context.Context, h nats.Header) context.Context {
	return propagator.Extract(ctx, HeaderCarrier(h))
}
