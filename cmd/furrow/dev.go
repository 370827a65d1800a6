package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/furrow/furrow/pkg/dirlock"
	"github.com/furrow/furrow/pkg/telemetry"

	"github.com/furrow/furrow/cmd/furrow/internal/demo"
	"github.com/furrow/furrow/cmd/furrow/internal/stack"

	ledgerdomain "github.com/furrow/furrow/services/farmer-ledger/domain"
	ledger "github.com/furrow/furrow/services/farmer-ledger/service"
)

// devConfig is everything `furrow dev` is told, from flags and environment.
type devConfig struct {
	DataDir  string
	GRPCAddr string
	NATSAddr string
	// HTTPAddr serves the console and the HTTP/JSON API ("" for none);
	// loopback only unless HTTPAllowRemote.
	HTTPAddr        string
	HTTPAllowRemote bool
	// OpsAddr serves /healthz, /readyz and /metrics, as the production
	// binaries' --ops-addr does ("" for none).
	OpsAddr   string
	LogLevel  slog.Level
	LogJSON   bool
	Telemetry telemetry.Config
	// ShutdownTimeout bounds how long in-flight work may take to finish.
	ShutdownTimeout time.Duration
	// Demo loads the demo data set through the gRPC API after start.
	Demo bool
	// PayoutControls: cooling-off after a change of payout account (none by
	// default here, so that walkthroughs can change an account and pay at
	// once) and four-eyes above a threshold (as in production).
	PayoutControls ledgerdomain.PayoutControls
}

func parseDevConfig(args []string, stderr io.Writer, getenv func(string) string) (devConfig, error) {
	fs := flag.NewFlagSet("furrow dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: furrow dev [flags]

Runs Furrow in one process: an embedded JetStream server (sync: always), the
procurement, brand-incubation and farmer-ledger services on one gRPC address
(with health checking and reflection), and SQLite read models in the data
directory. Ctrl-C shuts down gracefully; nothing acknowledged is lost.

The data directory belongs to one process: a second furrow dev on it exits,
naming the first one's pid. Outside NATS clients (--nats-addr) without
credentials only read; the user "admin", whose password furrow dev makes
once into <data-dir>/nats-admin-password, may change streams.

Metrics (gRPC calls, appends, handler outcomes, projection lag, dead
letters) are OpenTelemetry instruments, served as Prometheus text on
--ops-addr's /metrics and pushed as well when OTEL_METRICS_EXPORTER is
"otlp" or "console". Tracing is off unless OTEL_TRACES_EXPORTER is "otlp"
(OTEL_EXPORTER_OTLP_* say where) or "console".

Flags (environment variable in brackets):
`)
		fs.PrintDefaults()
	}
	cfg := devConfig{}
	fs.StringVar(&cfg.DataDir, "data-dir", envOr(getenv, "FURROW_DATA_DIR", ".furrow"), "data directory [FURROW_DATA_DIR]")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", envOr(getenv, "FURROW_GRPC_ADDR", "127.0.0.1:7070"), "gRPC listen address [FURROW_GRPC_ADDR]")
	fs.StringVar(&cfg.NATSAddr, "nats-addr", envOr(getenv, "FURROW_NATS_ADDR", "127.0.0.1:4222"), `NATS listen address for outside tools; "" for none [FURROW_NATS_ADDR]`)
	fs.StringVar(&cfg.HTTPAddr, "http-addr", envOr(getenv, "FURROW_HTTP_ADDR", "127.0.0.1:7080"), `console and HTTP/JSON API listen address, loopback only (no login); "" for none [FURROW_HTTP_ADDR]`)
	fs.StringVar(&cfg.OpsAddr, "ops-addr", envOr(getenv, "FURROW_OPS_ADDR", "127.0.0.1:7090"), `HTTP address of /healthz, /readyz, /metrics; "" for none [FURROW_OPS_ADDR]`)
	fs.BoolVar(&cfg.HTTPAllowRemote, "http-allow-remote", getenv("FURROW_HTTP_ALLOW_REMOTE") == "1", "allow a non-loopback --http-addr: anyone who reaches it may do everything [FURROW_HTTP_ALLOW_REMOTE=1]")
	level := fs.String("log-level", envOr(getenv, "FURROW_LOG_LEVEL", "info"), "log level: debug, info, warn, error [FURROW_LOG_LEVEL]")
	fs.BoolVar(&cfg.LogJSON, "log-json", getenv("FURROW_LOG_JSON") == "1", "log as JSON [FURROW_LOG_JSON=1]")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "how long in-flight work may take on shutdown")
	fs.BoolVar(&cfg.Demo, "demo", getenv("FURROW_DEMO") == "1", "load the demo data set (idempotent: loading twice changes nothing) [FURROW_DEMO=1]")
	coolingOff := fs.String(ledger.FlagCoolingOff, envOr(getenv, "FURROW_PAYOUT_COOLING_OFF", "0"),
		"after a change of payout account, payouts are refused this long, e.g. 1m (production: 24h); 0: none [FURROW_PAYOUT_COOLING_OFF]")
	approvalAbove := fs.String(ledger.FlagApprovalAboveFen, envOr(getenv, "FURROW_PAYOUT_APPROVAL_ABOVE_FEN", strconv.Itoa(ledgerdomain.DefaultApprovalAboveFen)),
		"payouts of more than this many fen wait for a second approver (four-eyes; the approver is the x-furrow-actor header here); 0: none do [FURROW_PAYOUT_APPROVAL_ABOVE_FEN]")
	if err := fs.Parse(args); err != nil {
		return devConfig{}, asUsage(err)
	}
	controls, err := ledger.ParsePayoutControls(*coolingOff, *approvalAbove)
	if err != nil {
		return devConfig{}, err
	}
	cfg.PayoutControls = controls
	if fs.NArg() > 0 {
		return devConfig{}, usagef("furrow dev takes no arguments, got %q", strings.Join(fs.Args(), " "))
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return devConfig{}, fmt.Errorf("-log-level: %w", err)
	}
	if cfg.HTTPAddr != "" && !cfg.HTTPAllowRemote {
		if err := stack.CheckLoopback(cfg.HTTPAddr); err != nil {
			return devConfig{}, fmt.Errorf("--http-addr: %w", err)
		}
	}
	cfg.Telemetry = telemetry.ConfigFromEnv(getenv)
	cfg.Telemetry.ServiceName = "furrow-dev"
	return cfg, nil
}

// loadDemo loads the demo data set through the gRPC API at addr, as a
// platform backend would.
func loadDemo(ctx context.Context, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("demo data: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := demo.Load(ctx, conn); err != nil {
		return fmt.Errorf("demo data: %w", err)
	}
	return nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func runDev(ctx context.Context, cfg devConfig, stdout, stderr io.Writer) error {
	var h slog.Handler
	if cfg.LogJSON {
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel})
	} else {
		h = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel})
	}
	log := slog.New(telemetry.NewLogHandler(h))

	shutdownTracing, err := telemetry.Setup(ctx, cfg.Telemetry)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx)
	}()

	st, err := stack.Start(ctx, stack.Config{DataDir: cfg.DataDir, GRPCAddr: cfg.GRPCAddr, NATSAddr: cfg.NATSAddr, HTTPAddr: cfg.HTTPAddr, OpsAddr: cfg.OpsAddr, Log: log,
		PayoutControls: cfg.PayoutControls})
	if err != nil {
		if ctx.Err() != nil {
			// Ctrl-C during start-up: stopping is what was asked for.
			log.Info("start-up interrupted; furrow dev stopped", "cause", err)
			return nil
		}
		if errors.Is(err, dirlock.ErrLocked) {
			return fmt.Errorf("%w; stop that process or give this one another --data-dir", err)
		}
		return err
	}
	if cfg.Demo {
		if err := loadDemo(ctx, st.GRPCAddr()); err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
			defer cancel()
			st.Shutdown(sctx)
			if ctx.Err() != nil {
				log.Info("demo loading interrupted; furrow dev stopped", "cause", err)
				return nil
			}
			return err
		}
		log.Info("demo data loaded", "program", demo.ProgramID)
	}
	abs, _ := filepath.Abs(cfg.DataDir)
	natsURL, natsAdmin := st.NATSURL(), ""
	if natsURL == "" {
		natsURL = "(no listener)"
	} else {
		natsURL += "  (JetStream, sync: always; streams PROCUREMENT, LEDGER, BRAND; read-only without credentials)"
		natsAdmin = fmt.Sprintf("  admin     %s  (NATS user that may change streams: nats --server URL …; password in %s)\n",
			st.NATSAdminURL(), filepath.Join(abs, stack.NATSAdminPasswordFile))
	}
	console := "(off)"
	if a := st.HTTPAddr(); a != "" {
		console = "http://" + a + "/  (HTTP/JSON API under /v1, OpenAPI at /openapi.json)"
	}
	ops := "(off)"
	if a := st.OpsAddr(); a != "" {
		ops = "http://" + a + "/metrics  (Prometheus, from OpenTelemetry; also /healthz, /readyz)"
	}
	tracing, metrics := cfg.Telemetry.Exporter, cfg.Telemetry.MetricsExporter
	if tracing == "" {
		tracing = "none"
	}
	if metrics == "" {
		metrics = "none"
	}
	fmt.Fprintf(stdout, `Furrow dev is running.
  gRPC      %s  (ProcurementService, BrandService, LedgerService, AdminService, health, reflection)
  NATS      %s
%s  console   %s
  metrics   %s
  data      %s
  tracing   %s, metrics push %s
Try:  grpcurl -plaintext %s list
Stop with Ctrl-C.
`, st.GRPCAddr(), natsURL, natsAdmin, console, ops, abs, tracing, metrics, st.GRPCAddr())
	log.Info("furrow dev started", "grpc", st.GRPCAddr(), "nats", st.NATSURL(), "http", st.HTTPAddr(), "ops", st.OpsAddr(), "data_dir", abs)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-st.Err():
		log.Error("a component failed; shutting down", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	st.Shutdown(sctx)
	log.Info("furrow dev stopped")
	return runErr
}
