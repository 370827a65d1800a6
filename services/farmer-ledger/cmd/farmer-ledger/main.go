// Command farmer-ledger runs the farmer ledger in production shape: one of
// several stateless replicas against a JetStream cluster and PostgreSQL,
// serving gRPC with mutual TLS. `farmer-ledger -h` lists the flags;
// deploy/README.md says how to run it.
//
// The payment provider must be chosen explicitly. The only one there is
// today is the simulator, which pays nobody: it runs only with
// --payment-provider=simulated and --allow-simulated-provider together, so
// a production deployment cannot fall back to it by omission.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/furrow/furrow/pkg/serve"

	"github.com/furrow/furrow/services/farmer-ledger/adapters"
	"github.com/furrow/furrow/services/farmer-ledger/app"
	ledger "github.com/furrow/furrow/services/farmer-ledger/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "farmer-ledger:", err)
		os.Exit(1)
	}
}

// providerSimulated names the simulated payment provider.
const providerSimulated = "simulated"

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	var providerName, simDir string
	var allowSimulated bool
	cfg, err := serve.ParseConfig(ledger.Name, args, getenv, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&providerName, "payment-provider", getenv("FURROW_PAYMENT_PROVIDER"),
			`who pays farmers out; required. Only "simulated" exists (pays nobody; needs --allow-simulated-provider) [FURROW_PAYMENT_PROVIDER]`)
		fs.BoolVar(&allowSimulated, "allow-simulated-provider", getenv("FURROW_ALLOW_SIMULATED_PROVIDER") == "1",
			"allow --payment-provider=simulated, which pays nobody; development and demos only [FURROW_ALLOW_SIMULATED_PROVIDER=1]")
		fs.StringVar(&simDir, "simulated-provider-dir", getenv("FURROW_SIMULATED_PROVIDER_DIR"),
			"where the simulated provider writes its settlement file; empty: in memory, per replica [FURROW_SIMULATED_PROVIDER_DIR]")
	})
	if err != nil {
		return err
	}
	// The deprecated --insecure-dev sets every override, this one too.
	allowSimulated = allowSimulated || cfg.InsecureDev
	provider, err := paymentProvider(providerName, simDir, allowSimulated)
	if err != nil {
		return err
	}
	var relaxed []serve.Relaxed
	if providerName == providerSimulated {
		relaxed = append(relaxed, serve.Relaxed{Override: "--allow-simulated-provider",
			Weakens: "--payment-provider=simulated: payouts go to a simulator, pay nobody, and are recorded as settled"})
	}
	return serve.Run(ctx, cfg, serve.Service{
		Relaxed:         relaxed,
		InsecureDevAlso: []string{"--allow-simulated-provider"},
		Name:            ledger.Name,
		Short:           "ledger",
		Stream:          ledger.Stream,
		Upstream:        []string{"PROCUREMENT", "BRAND"},
		Consumers:       ledger.Consumers(),
		New: func(d serve.Deps) (serve.Wired, error) {
			return ledger.New(ledger.Deps{JS: d.JS, DB: d.DB, Router: d.Router, Log: d.Log, Provider: provider, BindConsumers: true})
		},
	}, stderr)
}

// paymentProvider returns the provider name asks for, refusing the
// simulator without --allow-simulated-provider.
func paymentProvider(name, simDir string, allowSimulated bool) (app.PaymentProvider, error) {
	switch name {
	case "":
		return nil, fmt.Errorf("refusing to start: %w: --payment-provider is required (the ledger sends real payouts); "+
			"no real provider adapter exists yet: %q with --allow-simulated-provider runs the simulator", serve.ErrUnsafe, providerSimulated)
	case providerSimulated:
		if !allowSimulated {
			return nil, fmt.Errorf("refusing to start: %w: --payment-provider=%s pays nobody; it needs --allow-simulated-provider", serve.ErrUnsafe, providerSimulated)
		}
		return adapters.NewSimulatedProvider(adapters.SimulatedProviderConfig{Dir: simDir})
	default:
		return nil, fmt.Errorf("--payment-provider %q: unknown provider (known: %s)", name, providerSimulated)
	}
}
