// Package service wires procurement together: its event stream, read
// models and gRPC API.
package service

import (
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/aggregate"
	"github.com/furrow/furrow/pkg/consistency"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/procurement/adapters"
	"github.com/furrow/furrow/services/procurement/app"
	"github.com/furrow/furrow/services/procurement/domain"
	"github.com/furrow/furrow/services/procurement/ports"
)

// Name is the service's name in logs, traces and the admin API.
const Name = "procurement"

// Stream returns procurement's stream spec.
func Stream(replicas int) eventstore.StreamSpec {
	return eventstore.StreamSpec{Name: domain.Stream, Subjects: []string{domain.Subjects}, Replicas: replicas}
}

// SnapshotBucket is the key-value bucket that keeps snapshots of
// procurement's programmes and orders (package aggregate). The admin step
// creates it in production, `furrow dev` at start; without it, loads
// replay the aggregates' events whole.
const SnapshotBucket = "PROCUREMENT_SNAPSHOTS"

// Deps are what procurement needs from its host process.
type Deps struct {
	JS  jetstream.JetStream
	DB  *projection.DB
	Log *slog.Logger
	// Requests, when set, is procurement's request-id registry: the lines
	// of RecordDeliveries are checked against it one by one (the process
	// checks single commands).
	Requests ports.Requests
}

// Service is a wired procurement service.
type Service struct {
	grpc      *ports.GRPCServer
	purchases *projection.Runner
	farmers   *projection.Runner
	centres   *projection.Runner
}

// New wires procurement and prepares its projections (the host runs
// them). The streams must exist.
func New(deps Deps) (*Service, error) {
	log := deps.Log.With("service", Name)
	purchases, err := projection.NewRunner(deps.DB, deps.JS, adapters.PurchasesProjection{}, projection.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	farmers, err := projection.NewRunner(deps.DB, deps.JS, adapters.FarmersProjection{}, projection.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	centres, err := projection.NewRunner(deps.DB, deps.JS, adapters.CentresProjection{}, projection.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	store := eventstore.New(deps.JS)
	cache := aggregate.Options{Snapshots: aggregate.BindSnapshots(deps.JS, SnapshotBucket, log), Logger: log}
	a := app.New(adapters.NewEventStoreWith(store, cache), adapters.NewLedgerFarmers(store), adapters.NewReadModel(deps.DB),
		adapters.NewPositions(deps.JS, purchases, farmers), log)
	grpcServer := ports.NewGRPCServer(a, log).WithRequests(deps.Requests).WithCentres(
		app.NewCentres(adapters.NewCentreReader(deps.DB), consistency.NewWaiter(deps.JS, centres, nil)))
	return &Service{grpc: grpcServer, purchases: purchases, farmers: farmers, centres: centres}, nil
}

// Register adds procurement's gRPC API to srv.
func (s *Service) Register(srv *grpc.Server) {
	procurementv1.RegisterProcurementServiceServer(srv, s.grpc)
}

// Projections returns procurement's projection runners.
func (s *Service) Projections() []*projection.Runner {
	return []*projection.Runner{s.purchases, s.farmers, s.centres}
}
