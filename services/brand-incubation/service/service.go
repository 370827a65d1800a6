// Package service wires brand incubation together: its event stream and
// gRPC API.
package service

import (
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"

	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/services/brand-incubation/adapters"
	"github.com/furrow/furrow/services/brand-incubation/app"
	"github.com/furrow/furrow/services/brand-incubation/domain"
	"github.com/furrow/furrow/services/brand-incubation/ports"
)

// Name is the service's name in logs, traces and the admin API.
const Name = "brand-incubation"

// Stream returns brand incubation's stream spec.
func Stream(replicas int) eventstore.StreamSpec {
	return eventstore.StreamSpec{Name: domain.Stream, Subjects: []string{domain.Subjects}, Replicas: replicas}
}

// Service is a wired brand-incubation service.
type Service struct{ grpc *ports.GRPCServer }

// New wires brand incubation. The streams must exist.
func New(js jetstream.JetStream) *Service {
	return &Service{grpc: ports.NewGRPCServer(app.New(adapters.NewBrandRepository(eventstore.New(js))))}
}

// Register adds the brand API to srv.
func (s *Service) Register(srv *grpc.Server) { brandv1.RegisterBrandServiceServer(srv, s.grpc) }
