// Package lifecycle stops a Furrow process in the order that loses nothing:
// stop taking requests and let in-flight ones finish, stop the event
// handlers (they ack only after success), stop the projections at a
// checkpoint, then drain NATS and close the database. `furrow dev` and the
// production binaries share it.
package lifecycle

import (
	"context"
	"io"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
)

// Parts are what a running process stops; any may be nil (leave an
// interface field unset rather than holding a nil pointer).
type Parts struct {
	// Health is told first, so load balancers stop sending requests.
	Health interface{ Shutdown() }
	GRPC   *grpc.Server
	// LagMetrics is the projections' metrics registration.
	LagMetrics metric.Registration
	Router     *message.Router
	// StopWorkers cancels the projections' and handlers' context and waits
	// for their goroutines to return.
	StopWorkers func()
	NATS        *nats.Conn
	DB          io.Closer
}

// Stop shuts the parts down in order. ctx bounds the waits for in-flight
// gRPC calls and for the NATS drain; past it they are cut short.
func Stop(ctx context.Context, p Parts) {
	if p.Health != nil {
		p.Health.Shutdown()
	}
	if p.GRPC != nil {
		done := make(chan struct{})
		go func() { p.GRPC.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			p.GRPC.Stop()
		}
	}
	if p.LagMetrics != nil {
		_ = p.LagMetrics.Unregister()
	}
	if p.Router != nil {
		_ = p.Router.Close()
	}
	if p.StopWorkers != nil {
		p.StopWorkers()
	}
	if p.NATS != nil {
		if p.NATS.IsConnected() {
			_ = p.NATS.Drain()
			for p.NATS.IsDraining() && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
		}
		p.NATS.Close()
	}
	if p.DB != nil {
		_ = p.DB.Close()
	}
}
