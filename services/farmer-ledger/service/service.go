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
	// Keys holds the farmers' data keys (KeyStore); required.
	Keys app.Keys
	// PayoutControls: cooling-off after a change of payout account and
	// four-eyes above a threshold; the zero value has neither.
	PayoutControls domain.PayoutControls
	// Notifier tells farmers about changes of their payout account; nil:
	// adapters.LogNotifier on Log.
	Notifier app.Notifier
	// BindConsumers makes the handlers bind to their durable consumers
	// (Consumers), which an admin created, instead of creating them: a
	// production process's NATS user may not (wmjs.Config.Bind).
	BindConsumers bool
}

// Consumers are the durable consumers of the ledger's handlers: entries
// for procurement's and brand incubation's events, the payout saga, and
// the notices of payout account changes.
// `furrow admin streams apply` creates them; New's handlers consume them.
func Consumers() []wmjs.Config {
	return []wmjs.Config{
		{Stream: upstreamProcurement, Durable: ports.DurableProcurementEntries, FilterSubjects: ports.ProcurementEntrySubjects},
		{Stream: upstreamBrand, Durable: ports.DurableBrandEntries, FilterSubjects: ports.BrandEntrySubjects},
		{Stream: domain.Stream, Durable: ports.DurableSendPayouts, FilterSubjects: ports.PayoutRequestedSubjects},
		{Stream: domain.Stream, Durable: ports.DurableNotifyAccountChanges, FilterSubjects: ports.AccountChangeSubjects},
	}
}

// subscriber returns a subscriber to the durable named durable, as
// Consumers describes it, and the stream it consumes.
func subscriber(deps Deps, durable string, log *slog.Logger) (*wmjs.Subscriber, string, error) {
	for _, c := range Consumers() {
		if c.Durable == durable {
			c.Bind, c.Logger = deps.BindConsumers, log
			sub, err := wmjs.NewSubscriber(deps.JS, c)
			return sub, c.Stream, err
		}
	}
	return nil, "", fmt.Errorf("no durable consumer %s among Consumers()", durable)
}

// Service is a wired farmer ledger.
type Service struct {
	grpc     *ports.GRPCServer
	balances *projection.Runner
	finance  *projection.Runner
	// traces are the trace read models (TraceLot, TraceFarmer).
	traces []*projection.Runner
}

// New wires the ledger: it adds its handlers to deps.Router and prepares
// its projections. The streams must exist.
func New(deps Deps) (*Service, error) {
	log := deps.Log.With("service", Name)
	if deps.Keys == nil {
		return nil, fmt.Errorf("%s: no key store for personal data (service.KeyStore)", Name)
	}
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
	traceLots, err := projection.NewRunner(deps.DB, deps.JS, adapters.TraceDeliveriesProjection, projection.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	traceCorrections, err := projection.NewRunner(deps.DB, deps.JS, adapters.TraceCorrectionsProjection, projection.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	traceSales, err := projection.NewRunner(deps.DB, deps.JS, adapters.TraceSalesProjection{}, projection.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	ledger := app.New(app.Deps{
		Farmers: adapters.NewFarmerRepositoryWith(store, aggregate.Options{
			Snapshots: aggregate.BindSnapshots(deps.JS, SnapshotBucket, log), Logger: log}), Balances: adapters.NewBalanceReader(deps.DB), Positions: waiter,
		Directory: adapters.NewFarmerDirectory(deps.DB), Finance: fin.reader, FinancePositions: fin.waiter,
		Breaks: adapters.NewBreakRepository(store), Provider: fin.provider, Log: log, Keys: deps.Keys,
		PayoutControls: deps.PayoutControls, Notifier: notifier(deps, log), Notices: adapters.NewNoticeRepository(store),
		Traces:       adapters.NewTraceReader(deps.DB),
		TraceLotsAt:  app.AllOf(consistency.NewWaiter(deps.JS, traceLots, nil), consistency.NewWaiter(deps.JS, traceCorrections, nil)),
		TraceSalesAt: consistency.NewWaiter(deps.JS, traceSales, nil),
	})

	for _, h := range []struct {
		durable string
		handler message.NoPublishHandlerFunc
	}{
		{ports.DurableProcurementEntries, ports.PostProcurementEntries(ledger)},
		{ports.DurableBrandEntries, ports.PostBrandEntries(ledger)},
		{ports.DurableNotifyAccountChanges, ports.NotifyAccountChanges(ledger)},
	} {
		sub, stream, err := subscriber(deps, h.durable, log)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		deps.Router.AddConsumerHandler(h.durable, stream, sub, h.handler)
	}

	if err := fin.addHandlers(deps, ledger, log); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	return &Service{grpc: ports.NewGRPCServer(ledger), balances: balances, finance: fin.runner, traces: []*projection.Runner{traceLots, traceCorrections, traceSales}}, nil
}

// Register adds the ledger's gRPC API to srv.
func (s *Service) Register(srv *grpc.Server) { ledgerv1.RegisterLedgerServiceServer(srv, s.grpc) }

// Projections returns the ledger's projection runners.
func (s *Service) Projections() []*projection.Runner {
	return append([]*projection.Runner{s.balances, s.finance}, s.traces...)
}

// notifier is deps.Notifier, or the log notifier.
func notifier(deps Deps, log *slog.Logger) app.Notifier {
	if deps.Notifier != nil {
		return deps.Notifier
	}
	return adapters.LogNotifier{Log: log}
}
