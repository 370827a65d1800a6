// Package service wires the farmer ledger together: event stream, read
// models, event handlers and the gRPC API.
package service

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"

	"github.com/furrow/furrow/pkg/aggregate"
	"github.com/furrow/furrow/pkg/consistency"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"
	"github.com/furrow/furrow/pkg/wmjs"

	"github.com/furrow/furrow/services/farmer-ledger/adapters"
	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
	"github.com/furrow/furrow/services/farmer-ledger/ports"
)

// Name is the service's name in logs, traces and the admin API.
const Name = "farmer-ledger"

// Upstream streams whose events the ledger accounts for.
const (
	upstreamProcurement = "PROCUREMENT"
	upstreamBrand       = "BRAND"
)

// Stream returns the ledger's stream spec.
func Stream(replicas int) eventstore.StreamSpec {
	return eventstore.StreamSpec{Name: domain.Stream, Subjects: []string{domain.Subjects}, Replicas: replicas}
}

// SnapshotBucket is the key-value bucket that keeps snapshots of the
// ledger's farmers (package aggregate). The admin step creates it in
// production, `furrow dev` at start; without it, loads replay the
// farmers' events whole.
const SnapshotBucket = "LEDGER_SNAPSHOTS"

// Deps are what the ledger needs from its host process.
type Deps struct {
	JS     jetstream.JetStream
	DB     *projection.DB
	Router *message.Router
	Log    *slog.Logger
	// DataDir is where the simulated payment provider keeps its files
	// (<DataDir>/provider/settlement.csv); empty keeps them in memory.
	DataDir string
	// Provider pays farmers out; nil means the simulated provider.
	Provider app.PaymentProvider
	// SettlementPoll is how often late settlements are asked for; default
	// DefaultSettlementPoll.
	SettlementPoll time.Duration
}

// Service is a wired farmer ledger.
type Service struct {
	grpc     *ports.GRPCServer
	balances *projection.Runner
	finance  *projection.Runner
}

// New wires the ledger: it adds its handlers to deps.Router and prepares
// its projections. The streams must exist.
func New(deps Deps) (*Service, error) {
	log := deps.Log.With("service", Name)
	balances, err := projection.NewRunner(deps.DB, deps.JS, adapters.BalancesProjection{}, projection.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	store := eventstore.New(deps.JS)
	upstream := map[string]string{
		upstreamProcurement: ports.DurableProcurementEntries,
		upstreamBrand:       ports.DurableBrandEntries,
	}
	waiter := consistency.NewWaiter(deps.JS, balances, upstream)
	fin, err := newFinance(deps, log, upstream)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	ledger := app.New(app.Deps{
		Farmers: adapters.NewFarmerRepositoryWith(store, aggregate.Options{
			Snapshots: aggregate.BindSnapshots(deps.JS, SnapshotBucket, log), Logger: log}), Balances: adapters.NewBalanceReader(deps.DB), Positions: waiter,
		Directory: adapters.NewFarmerDirectory(deps.DB), Finance: fin.reader, FinancePositions: fin.waiter,
		Breaks: adapters.NewBreakRepository(store), Provider: fin.provider, Log: log,
	})

	for _, h := range []struct {
		stream, durable string
		subjects        []string
		handler         message.NoPublishHandlerFunc
	}{
		{upstreamProcurement, ports.DurableProcurementEntries, ports.ProcurementEntrySubjects, ports.PostProcurementEntries(ledger)},
		{upstreamBrand, ports.DurableBrandEntries, ports.BrandEntrySubjects, ports.PostBrandEntries(ledger)},
	} {
		sub, err := wmjs.NewSubscriber(deps.JS, wmjs.Config{
			Stream: h.stream, Durable: h.durable, FilterSubjects: h.subjects, Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		deps.Router.AddConsumerHandler(h.durable, h.stream, sub, h.handler)
	}

	if err := fin.addHandlers(deps, ledger, log); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	return &Service{grpc: ports.NewGRPCServer(ledger), balances: balances, finance: fin.runner}, nil
}

// Register adds the ledger's gRPC API to srv.
func (s *Service) Register(srv *grpc.Server) { ledgerv1.RegisterLedgerServiceServer(srv, s.grpc) }

// Projections returns the ledger's projection runners.
func (s *Service) Projections() []*projection.Runner {
	return []*projection.Runner{s.balances, s.finance}
}
