package service

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/furrow/furrow/pkg/consistency"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/farmer-ledger/adapters"
	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/ports"
)

// DefaultSettlementPoll is how often the ledger asks the payment provider
// about payouts it accepted but has not settled yet.
const DefaultSettlementPoll = 500 * time.Millisecond

// ProviderDir is where, under Deps.DataDir, the simulated payment provider
// keeps its journal and writes its settlement file.
const ProviderDir = "provider"

// finance is the wiring of the ledger's money side: the finance read model
// and its waiter, and the payment provider.
type finance struct {
	runner   *projection.Runner
	waiter   *consistency.Waiter
	reader   *adapters.FinanceReader
	provider app.PaymentProvider
}

func newFinance(deps Deps, log *slog.Logger, upstream map[string]string) (*finance, error) {
	runner, err := projection.NewRunner(deps.DB, deps.JS, adapters.FinanceProjection{}, projection.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	provider := deps.Provider
	if provider == nil {
		dir := ""
		if deps.DataDir != "" {
			dir = filepath.Join(deps.DataDir, ProviderDir)
		}
		sim, err := adapters.NewSimulatedProvider(adapters.SimulatedProviderConfig{Dir: dir})
		if err != nil {
			return nil, err
		}
		log.Info("payouts go to the simulated payment provider", "settlement_file", sim.SettlementPath())
		provider = sim
	}
	return &finance{
		runner:   runner,
		waiter:   consistency.NewWaiter(deps.JS, runner, upstream),
		reader:   adapters.NewFinanceReader(deps.DB),
		provider: provider,
	}, nil
}

// addHandlers adds the payout saga and the settlement poll to the router.
func (f *finance) addHandlers(deps Deps, ledger *app.Ledger, log *slog.Logger) error {
	sub, stream, err := subscriber(deps, ports.DurableSendPayouts, log)
	if err != nil {
		return fmt.Errorf("payout saga: %w", err)
	}
	deps.Router.AddConsumerHandler(ports.DurableSendPayouts, stream, sub, ports.SendPayouts(ledger))
	every := deps.SettlementPoll
	if every <= 0 {
		every = DefaultSettlementPoll
	}
	deps.Router.AddConsumerHandler("ledger-settle-sent-payouts", "tick", ports.NewTicker(every), ports.SettleSentPayouts(ledger, log))
	return nil
}
