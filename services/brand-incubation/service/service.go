// Package service wires brand incubation together: its event stream, its
// read models, its reactions and its gRPC API.
package service

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"

	"github.com/furrow/furrow/pkg/consistency"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"
	"github.com/furrow/furrow/pkg/wmjs"

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

// Deps are what brand incubation needs from its host process.
type Deps struct {
	JS     jetstream.JetStream
	DB     *projection.DB
	Router *message.Router
	Log    *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// BindConsumers makes the reactions bind to their durable consumers
	// (Consumers), which an admin created, instead of creating them: a
	// production process's NATS user may not (wmjs.Config.Bind).
	BindConsumers bool
}

// Consumers are the durable consumers of brand incubation's reactions.
// `furrow admin streams apply` creates them; New's reactions consume them.
func Consumers() []wmjs.Config {
	return []wmjs.Config{
		{Stream: domain.Stream, Durable: ports.DurableRerateOnPremiumRuleRevised, FilterSubjects: []string{ports.SubjectsPremiumRuleRevised}},
		{Stream: domain.Stream, Durable: ports.DurableRerateOnSalesReported, FilterSubjects: []string{ports.SubjectsSalesReported}},
		{Stream: domain.Stream, Durable: ports.DurableRerateOnPremiumRuleEnded, FilterSubjects: []string{ports.SubjectsPremiumRuleEnded}},
	}
}

// Service is a wired brand-incubation service.
type Service struct {
	grpc    *ports.GRPCServer
	runners []*projection.Runner
}

// New wires brand incubation: it prepares its projections and adds its
// reactions to deps.Router. The streams must exist.
func New(deps Deps) (*Service, error) {
	log := deps.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("service", Name)
	opts := projection.Options{Logger: log}
	catalog, err := projection.NewRunner(deps.DB, deps.JS, adapters.CatalogProjection{}, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	premiums, err := projection.NewRunner(deps.DB, deps.JS, adapters.PremiumsProjection{}, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	deliveries, err := projection.NewRunner(deps.DB, deps.JS, adapters.DeliveriesProjection{}, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	lots, err := projection.NewRunner(deps.DB, deps.JS, adapters.LotsProjection{}, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	lotCorrections, err := projection.NewRunner(deps.DB, deps.JS, adapters.LotCorrectionsProjection{}, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	store := eventstore.New(deps.JS)
	a := app.New(app.Deps{
		Events:     adapters.NewEvents(store),
		Farmers:    adapters.NewLedgerFarmers(store),
		Deliveries: adapters.NewDeliveryDirectory(deps.DB, store, lots, lotCorrections),
		Catalog:    adapters.NewCatalogReader(deps.DB),
		Premiums:   adapters.NewPremiumsReader(deps.DB),
		CatalogAt:  consistency.NewWaiter(deps.JS, catalog, nil),
		PremiumsAt: consistency.NewWaiter(deps.JS, premiums, nil),
		Log:        log,
		Now:        deps.Now,
	})

	handlers := map[string]message.NoPublishHandlerFunc{
		ports.DurableRerateOnPremiumRuleRevised: ports.RerateOnPremiumRuleRevised(a),
		ports.DurableRerateOnSalesReported:      ports.RerateOnSalesReported(a),
		ports.DurableRerateOnPremiumRuleEnded:   ports.RerateOnPremiumRuleEnded(a),
	}
	for _, cfg := range Consumers() {
		handler, ok := handlers[cfg.Durable]
		if !ok {
			return nil, fmt.Errorf("%s: no reaction consumes %s", Name, cfg.Durable)
		}
		cfg.Bind, cfg.Logger = deps.BindConsumers, log
		sub, err := wmjs.NewSubscriber(deps.JS, cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		deps.Router.AddConsumerHandler(cfg.Durable, cfg.Stream, sub, handler)
	}
	return &Service{grpc: ports.NewGRPCServer(a), runners: []*projection.Runner{catalog, premiums, deliveries, lots, lotCorrections}}, nil
}

// Register adds the brand API to srv.
func (s *Service) Register(srv *grpc.Server) { brandv1.RegisterBrandServiceServer(srv, s.grpc) }

// Projections returns the service's projection runners.
func (s *Service) Projections() []*projection.Runner { return s.runners }
