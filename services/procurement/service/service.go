// Package service wires procurement together: its event stream and gRPC API.
package service

import (
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/eventstore"

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

// Deps are what procurement needs from its host process.
type Deps struct {
	JS  jetstream.JetStream
	Log *slog.Logger
}

// Service is a wired procurement service.
type Service struct {
	grpc *ports.GRPCServer
}

// New wires procurement. The streams must exist.
func New(deps Deps) (*Service, error) {
	store := eventstore.New(deps.JS)
	a := app.New(adapters.NewDeliveryRepository(store), adapters.NewLedgerFarmers(store))
	return &Service{grpc: ports.NewGRPCServer(a)}, nil
}

// Register adds procurement's gRPC API to srv.
func (s *Service) Register(srv *grpc.Server) {
	procurementv1.RegisterProcurementServiceServer(srv, s.grpc)
}
