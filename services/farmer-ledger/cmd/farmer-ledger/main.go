// Command farmer-ledger runs the farmer ledger in production shape: one of
// several stateless replicas against a JetStream cluster and PostgreSQL,
// serving gRPC with mutual TLS. `farmer-ledger -h` lists the flags;
// deploy/README.md says how to run it.
//
// The payment provider must be chosen explicitly. The only one there is
// today is the simulator, which pays nobody: it runs only with
// --payment-provider=simulated and --allow-simulated-provider together, so
// a production deployment cannot fall back to it by omission.
//
// Farmers' personal data is sealed under per-farmer data keys kept in the
// JetStream KV bucket LEDGER_KEYS, wrapped by a key-encryption key (KEK).
// --pii-kek-file gives the KEK (32 random bytes, base64, from a secret);
// without it the ledger keeps a development KEK in the bucket itself,
// which only --allow-dev-pii-key allows.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/furrow/furrow/pkg/serve"

	"github.com/furrow/furrow/services/farmer-ledger/adapters"
	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
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
	var providerName, simDir, kekFile, coolingOff, approvalAbove string
	var allowSimulated, allowDevKEK bool
	cfg, err := serve.ParseConfig(ledger.Name, args, getenv, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&providerName, "payment-provider", getenv("FURROW_PAYMENT_PROVIDER"),
			`who pays farmers out; required. Only "simulated" exists (pays nobody; needs --allow-simulated-provider) [FURROW_PAYMENT_PROVIDER]`)
		fs.BoolVar(&allowSimulated, "allow-simulated-provider", getenv("FURROW_ALLOW_SIMULATED_PROVIDER") == "1",
			"allow --payment-provider=simulated, which pays nobody; development and demos only [FURROW_ALLOW_SIMULATED_PROVIDER=1]")
		fs.StringVar(&simDir, "simulated-provider-dir", getenv("FURROW_SIMULATED_PROVIDER_DIR"),
			"where the simulated provider writes its settlement file; empty: in memory, per replica [FURROW_SIMULATED_PROVIDER_DIR]")
		fs.StringVar(&kekFile, "pii-kek-file", getenv("FURROW_PII_KEK_FILE"),
			"file holding the key-encryption key of farmers' personal data (32 random bytes, base64); required unless --allow-dev-pii-key [FURROW_PII_KEK_FILE]")
		fs.BoolVar(&allowDevKEK, "allow-dev-pii-key", getenv("FURROW_ALLOW_DEV_PII_KEY") == "1",
			"without --pii-kek-file, keep a development key-encryption key beside the data keys it wraps; development and demos only [FURROW_ALLOW_DEV_PII_KEY=1]")
		fs.StringVar(&coolingOff, ledger.FlagCoolingOff, envOr(getenv, "FURROW_PAYOUT_COOLING_OFF", domain.DefaultCoolingOff.String()),
			"after a change of payout account, payouts are refused this long (the farmer is notified); 0: none [FURROW_PAYOUT_COOLING_OFF]")
		fs.StringVar(&approvalAbove, ledger.FlagApprovalAboveFen, envOr(getenv, "FURROW_PAYOUT_APPROVAL_ABOVE_FEN", strconv.Itoa(domain.DefaultApprovalAboveFen)),
			"payouts of more than this many fen wait for a second finance approver (four-eyes); 0: none do [FURROW_PAYOUT_APPROVAL_ABOVE_FEN]")
	})
	if err != nil {
		return err
	}
	// The deprecated --insecure-dev sets every override, these too.
	allowSimulated = allowSimulated || cfg.InsecureDev
	allowDevKEK = allowDevKEK || cfg.InsecureDev
	controls, err := ledger.ParsePayoutControls(coolingOff, approvalAbove)
	if err != nil {
		return err
	}
	provider, err := paymentProvider(providerName, simDir, allowSimulated)
	if err != nil {
		return err
	}
	if kekFile == "" && !allowDevKEK {
		return fmt.Errorf("refusing to start: %w: --pii-kek-file is required: without it the key that wraps farmers' data keys "+
			"would be kept beside them (development only: --allow-dev-pii-key)", serve.ErrUnsafe)
	}
	var relaxed []serve.Relaxed
	if providerName == providerSimulated {
		relaxed = append(relaxed, serve.Relaxed{Override: "--allow-simulated-provider",
			Weakens: "--payment-provider=simulated: payouts go to a simulator, pay nobody, and are recorded as settled"})
	}
	if kekFile == "" {
		relaxed = append(relaxed, serve.Relaxed{Override: "--allow-dev-pii-key",
			Weakens: "farmers' personal data: the key that wraps their data keys is kept beside them, in the LEDGER_KEYS bucket"})
	}
	return serve.Run(ctx, cfg, serve.Service{
		Relaxed:         relaxed,
		InsecureDevAlso: []string{"--allow-simulated-provider", "--allow-dev-pii-key"},
		Name:            ledger.Name,
		Short:           "ledger",
		Stream:          ledger.Stream,
		Upstream:        []string{"PROCUREMENT", "BRAND"},
		Consumers:       ledger.Consumers(),
		New: func(d serve.Deps) (serve.Wired, error) {
			// The key bucket is the admin step's (`furrow admin streams
			// apply`), like the streams: without it the ledger refuses.
			keys, err := ledger.KeyStore(ctx, d.JS, kekFile, d.Log)
			if err != nil {
				return nil, err
			}
			return ledger.New(ledger.Deps{JS: d.JS, DB: d.DB, Router: d.Router, Log: d.Log, Provider: provider, Keys: keys,
				PayoutControls: controls, BindConsumers: true})
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

// envOr returns the environment variable key, or def when it is unset.
func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
