package serve

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/telemetry"
)

// ErrUnsafe means the settings would run a service in an unsafe way in
// production; the process refuses to start. Each unsafe setting has its
// own override (--allow-…, see Config.Validate).
var ErrUnsafe = errors.New("unsafe settings")

// MinReplicas is the stream replication a production cluster needs: a
// 3-node JetStream cluster keeps every acknowledged event on a quorum of
// two while one node is down.
const MinReplicas = 3

// Config is everything a production service process is told, from flags
// and the environment. ParseConfig fills it once, in main.
type Config struct {
	// Service names the process (logs, traces, NATS connection name).
	Service string

	// NATSURLs are the cluster's client URLs (nats:// or tls://); the client
	// learns the other nodes from any of them and reconnects forever.
	NATSURLs []string
	// NATSUser and NATSPassword authenticate the service's NATS user
	// (deploy/nats/accounts.conf); or NATSCreds names a JWT creds file.
	NATSUser     string
	NATSPassword string
	NATSCreds    string
	// NATSCA verifies the NATS servers' certificates (TLS to NATS);
	// NATSCert and NATSKey present a client certificate to them.
	NATSCA, NATSCert, NATSKey string
	// StreamReplicas is the fewest replicas the process accepts on the
	// streams it uses; it checks them at start and never changes them.
	StreamReplicas int

	// PostgresDSN is where the projections (read models) live.
	PostgresDSN string

	// GRPCAddr is the gRPC listen address.
	GRPCAddr string
	// TLSCert and TLSKey are the server's certificate; TLSClientCA verifies
	// client certificates (mTLS), whose roles decide what they may call.
	TLSCert, TLSKey, TLSClientCA string
	// GRPCRate and GRPCBurst are each caller's token bucket: calls per
	// second and burst, per client certificate (or peer address without
	// one); GRPCRate 0 turns the rate limit off. See grpcx.Limits.
	GRPCRate  float64
	GRPCBurst int
	// OpsAddr serves /healthz, /readyz and /metrics over plain HTTP for
	// probes and scrapers; empty: none.
	OpsAddr string

	// AllowPlaintextGRPC allows gRPC without TLS: every caller has every
	// role and the actor header is believed (--allow-plaintext-grpc).
	AllowPlaintextGRPC bool
	// AllowNoNATSAuth allows NATS without credentials
	// (--allow-no-nats-auth).
	AllowNoNATSAuth bool
	// AllowFewReplicas allows --stream-replicas below MinReplicas
	// (--allow-few-replicas).
	AllowFewReplicas bool
	// InsecureDev is the deprecated --insecure-dev: ParseConfig turns it
	// into every override, including a binary's own (the ledger's
	// --allow-simulated-provider), and Run says so.
	InsecureDev bool

	LogLevel slog.Level
	LogJSON  bool
	// StartTimeout bounds how long the process waits at start for NATS,
	// PostgreSQL and the streams it consumes.
	StartTimeout time.Duration
	// ShutdownTimeout bounds how long in-flight work may take on shutdown.
	ShutdownTimeout time.Duration
	Telemetry       telemetry.Config
}

// ParseConfig parses a service binary's flags, with defaults from the
// environment through getenv (os.Getenv in main: nothing else reads the
// environment), and validates the result. extra, if not nil, adds the
// binary's own flags to the set before parsing. Asking for -h returns
// flag.ErrHelp.
func ParseConfig(service string, args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet)) (Config, error) {
	fs := flag.NewFlagSet(service, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: %s [flags]

Runs Furrow's %s service in production shape: it connects to a JetStream
cluster, keeps its read models in PostgreSQL and serves gRPC with mutual TLS.
It is stateless: run several replicas against the same cluster and database.
Unsafe settings refuse to start unless each is allowed by name:
--allow-plaintext-grpc (no TLS), --allow-no-nats-auth (no NATS credentials),
--allow-few-replicas (fewer than 3 stream replicas); each override in effect
is logged at WARN. --insecure-dev is a deprecated alias for all of them.
See deploy/README.md.

Passwords come from the environment or files, never from flags:
FURROW_NATS_PASSWORD (or --nats-password-file), FURROW_POSTGRES_DSN.
Tracing: OTEL_TRACES_EXPORTER=otlp (OTEL_EXPORTER_OTLP_*) or console.

Flags (environment variable in brackets):
`, service, service)
		fs.PrintDefaults()
	}
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	cfg := Config{Service: service}
	natsURLs := fs.String("nats-url", env("FURROW_NATS_URL", "nats://127.0.0.1:4222"), "NATS cluster URLs, comma-separated [FURROW_NATS_URL]")
	fs.StringVar(&cfg.NATSUser, "nats-user", getenv("FURROW_NATS_USER"), "NATS user of this service (password in FURROW_NATS_PASSWORD) [FURROW_NATS_USER]")
	passwordFile := fs.String("nats-password-file", getenv("FURROW_NATS_PASSWORD_FILE"), "file holding the NATS password, instead of FURROW_NATS_PASSWORD [FURROW_NATS_PASSWORD_FILE]")
	fs.StringVar(&cfg.NATSCreds, "nats-creds", getenv("FURROW_NATS_CREDS"), "NATS JWT credentials file, instead of user and password [FURROW_NATS_CREDS]")
	fs.StringVar(&cfg.NATSCA, "nats-ca", getenv("FURROW_NATS_CA"), "CA certificate that verifies the NATS servers (TLS) [FURROW_NATS_CA]")
	fs.StringVar(&cfg.NATSCert, "nats-cert", getenv("FURROW_NATS_CERT"), "client certificate for NATS, if the servers verify clients [FURROW_NATS_CERT]")
	fs.StringVar(&cfg.NATSKey, "nats-key", getenv("FURROW_NATS_KEY"), "key of --nats-cert [FURROW_NATS_KEY]")
	replicas := fs.String("stream-replicas", env("FURROW_STREAM_REPLICAS", strconv.Itoa(MinReplicas)), "fewest replicas the service accepts on the streams it uses (checked at start; streams are made by furrow admin streams apply) [FURROW_STREAM_REPLICAS]")
	fs.StringVar(&cfg.PostgresDSN, "postgres-dsn", getenv("FURROW_POSTGRES_DSN"), "PostgreSQL DSN of the read models; prefer the environment, it holds a password [FURROW_POSTGRES_DSN]")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", env("FURROW_GRPC_ADDR", ":7070"), "gRPC listen address [FURROW_GRPC_ADDR]")
	fs.StringVar(&cfg.TLSCert, "tls-cert", getenv("FURROW_TLS_CERT"), "gRPC server certificate (PEM) [FURROW_TLS_CERT]")
	fs.StringVar(&cfg.TLSKey, "tls-key", getenv("FURROW_TLS_KEY"), "key of --tls-cert (PEM) [FURROW_TLS_KEY]")
	fs.StringVar(&cfg.TLSClientCA, "tls-client-ca", getenv("FURROW_TLS_CLIENT_CA"), "CA certificate(s) that sign client certificates (mTLS) [FURROW_TLS_CLIENT_CA]")
	rateFlag := fs.String("grpc-rate", env("FURROW_GRPC_RATE", fmt.Sprint(float64(grpcx.DefaultLimits().Rate))), "gRPC calls per second each client certificate (or address, without one) may make; beyond it RESOURCE_EXHAUSTED; 0: no limit [FURROW_GRPC_RATE]")
	burstFlag := fs.String("grpc-burst", env("FURROW_GRPC_BURST", strconv.Itoa(grpcx.DefaultLimits().Burst)), "gRPC calls each client certificate may make at once above --grpc-rate [FURROW_GRPC_BURST]")
	fs.StringVar(&cfg.OpsAddr, "ops-addr", env("FURROW_OPS_ADDR", ":9090"), `HTTP address of /healthz, /readyz, /metrics; "" for none [FURROW_OPS_ADDR]`)
	fs.BoolVar(&cfg.AllowPlaintextGRPC, "allow-plaintext-grpc", getenv("FURROW_ALLOW_PLAINTEXT_GRPC") == "1", "allow gRPC without TLS: every caller gets every role; development only [FURROW_ALLOW_PLAINTEXT_GRPC=1]")
	fs.BoolVar(&cfg.AllowNoNATSAuth, "allow-no-nats-auth", getenv("FURROW_ALLOW_NO_NATS_AUTH") == "1", "allow NATS without credentials; development only [FURROW_ALLOW_NO_NATS_AUTH=1]")
	fs.BoolVar(&cfg.AllowFewReplicas, "allow-few-replicas", getenv("FURROW_ALLOW_FEW_REPLICAS") == "1", "allow --stream-replicas below 3 (a single NATS server); development only [FURROW_ALLOW_FEW_REPLICAS=1]")
	fs.BoolVar(&cfg.InsecureDev, "insecure-dev", getenv("FURROW_INSECURE_DEV") == "1", "deprecated: sets every --allow-… override; name the ones you need instead [FURROW_INSECURE_DEV=1]")
	level := fs.String("log-level", env("FURROW_LOG_LEVEL", "info"), "log level: debug, info, warn, error [FURROW_LOG_LEVEL]")
	format := fs.String("log-format", env("FURROW_LOG_FORMAT", "json"), "log format: json or text [FURROW_LOG_FORMAT]")
	fs.DurationVar(&cfg.StartTimeout, "start-timeout", 2*time.Minute, "how long to wait at start for NATS, PostgreSQL and upstream streams")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 25*time.Second, "how long in-flight work may take on shutdown")
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("%s takes no arguments, got %q", service, strings.Join(fs.Args(), " "))
	}

	for u := range strings.SplitSeq(*natsURLs, ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.NATSURLs = append(cfg.NATSURLs, u)
		}
	}
	cfg.NATSPassword = getenv("FURROW_NATS_PASSWORD")
	if *passwordFile != "" {
		if cfg.NATSPassword != "" {
			return Config{}, errors.New("give the NATS password in FURROW_NATS_PASSWORD or --nats-password-file, not both")
		}
		b, err := os.ReadFile(*passwordFile)
		if err != nil {
			return Config{}, fmt.Errorf("--nats-password-file: %w", err)
		}
		cfg.NATSPassword = strings.TrimRight(string(b), "\r\n")
	}
	n, err := strconv.Atoi(*replicas)
	if err != nil {
		return Config{}, fmt.Errorf("--stream-replicas %q: want a number", *replicas)
	}
	cfg.StreamReplicas = n
	if cfg.GRPCRate, err = strconv.ParseFloat(*rateFlag, 64); err != nil {
		return Config{}, fmt.Errorf("--grpc-rate %q: want a number", *rateFlag)
	}
	if cfg.GRPCBurst, err = strconv.Atoi(*burstFlag); err != nil {
		return Config{}, fmt.Errorf("--grpc-burst %q: want a number", *burstFlag)
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return Config{}, fmt.Errorf("--log-level: %w", err)
	}
	switch *format {
	case "json":
		cfg.LogJSON = true
	case "text":
	default:
		return Config{}, fmt.Errorf("--log-format %q: want json or text", *format)
	}
	if cfg.InsecureDev {
		cfg.AllowPlaintextGRPC, cfg.AllowNoNATSAuth, cfg.AllowFewReplicas = true, true, true
	}
	cfg.Telemetry = telemetry.ConfigFromEnv(getenv)
	if cfg.Telemetry.ServiceName == "" {
		cfg.Telemetry.ServiceName = service
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// TLS reports whether gRPC is served with mutual TLS.
func (c Config) TLS() bool { return c.TLSCert != "" }

// Limits are the gRPC server's limits: grpcx.DefaultLimits with the
// configured rate limit.
func (c Config) Limits() grpcx.Limits {
	l := grpcx.DefaultLimits()
	l.Rate, l.Burst = rate.Limit(c.GRPCRate), c.GRPCBurst
	return l
}

// natsAuth reports whether the service authenticates to NATS.
func (c Config) natsAuth() bool {
	return c.NATSUser != "" || c.NATSCreds != "" || c.NATSCert != ""
}

// Validate checks the configuration. Settings that cannot work are errors
// whatever the mode. Settings that would work but are unsafe in
// production wrap ErrUnsafe, and each has its own override:
//
//   - gRPC without TLS (no --tls-cert, --tls-key, --tls-client-ca):
//     --allow-plaintext-grpc;
//   - NATS without credentials (no user and password, creds file or
//     client certificate): --allow-no-nats-auth;
//   - stream replicas below MinReplicas: --allow-few-replicas.
//
// A missing PostgreSQL DSN is refused in every mode: a production service
// keeps no state of its own.
func (c Config) Validate() error {
	var bad, unsafe []string
	if c.Service == "" {
		bad = append(bad, "no service name")
	}
	if c.PostgresDSN == "" {
		unsafe = append(unsafe, "no PostgreSQL DSN (FURROW_POSTGRES_DSN or --postgres-dsn): the read models live in PostgreSQL; no override changes that")
	}
	if len(c.NATSURLs) == 0 {
		bad = append(bad, "no NATS URL (--nats-url)")
	}
	for _, raw := range c.NATSURLs {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls") {
			bad = append(bad, fmt.Sprintf("NATS URL %q: want nats://host:port or tls://host:port", raw))
			continue
		}
		if u.User != nil {
			bad = append(bad, fmt.Sprintf("NATS URL %q carries credentials: use --nats-user and FURROW_NATS_PASSWORD", u.Redacted()))
		}
	}
	switch {
	case c.NATSUser != "" && c.NATSPassword == "":
		bad = append(bad, "--nats-user without a password (FURROW_NATS_PASSWORD or --nats-password-file)")
	case c.NATSUser == "" && c.NATSPassword != "":
		bad = append(bad, "a NATS password without --nats-user")
	case c.NATSUser != "" && c.NATSCreds != "":
		bad = append(bad, "give NATS --nats-user or --nats-creds, not both")
	}
	if (c.NATSCert == "") != (c.NATSKey == "") {
		bad = append(bad, "--nats-cert and --nats-key go together")
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		bad = append(bad, fmt.Sprintf("--stream-replicas %d: JetStream allows 1 to 5", c.StreamReplicas))
	}
	if _, _, err := net.SplitHostPort(c.GRPCAddr); err != nil {
		bad = append(bad, fmt.Sprintf("--grpc-addr %q: %v", c.GRPCAddr, err))
	}
	if c.OpsAddr != "" {
		if _, _, err := net.SplitHostPort(c.OpsAddr); err != nil {
			bad = append(bad, fmt.Sprintf("--ops-addr %q: %v", c.OpsAddr, err))
		}
	}
	set := 0
	for _, f := range []string{c.TLSCert, c.TLSKey, c.TLSClientCA} {
		if f != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		bad = append(bad, "mTLS needs all of --tls-cert, --tls-key and --tls-client-ca")
	}
	if c.GRPCRate < 0 || (c.GRPCRate > 0 && c.GRPCBurst < 1) {
		bad = append(bad, fmt.Sprintf("--grpc-rate %g --grpc-burst %d: want a rate of 0 (no limit) or more, and a burst of 1 or more", c.GRPCRate, c.GRPCBurst))
	}
	if c.StartTimeout <= 0 || c.ShutdownTimeout <= 0 {
		bad = append(bad, "--start-timeout and --shutdown-timeout must be positive")
	}
	if len(bad) > 0 {
		return fmt.Errorf("bad configuration:\n  - %s", strings.Join(bad, "\n  - "))
	}

	if set == 0 && !c.AllowPlaintextGRPC {
		unsafe = append(unsafe, "gRPC without TLS: set --tls-cert, --tls-key and --tls-client-ca (mTLS with roles), or pass --allow-plaintext-grpc")
	}
	if !c.natsAuth() && !c.AllowNoNATSAuth {
		unsafe = append(unsafe, "NATS without credentials: set --nats-user and FURROW_NATS_PASSWORD (or --nats-creds), or pass --allow-no-nats-auth")
	}
	if c.StreamReplicas < MinReplicas && !c.AllowFewReplicas {
		unsafe = append(unsafe, fmt.Sprintf("--stream-replicas %d: production streams need %d replicas (a 3-node cluster), or pass --allow-few-replicas", c.StreamReplicas, MinReplicas))
	}
	if len(unsafe) > 0 {
		return fmt.Errorf("refusing to start: %w:\n  - %s", ErrUnsafe, strings.Join(unsafe, "\n  - "))
	}
	return nil
}

// Relaxed is an override in effect: the flag that allowed it and what it
// weakens. Run logs each at WARN at start.
type Relaxed struct {
	Override string
	Weakens  string
}

// relaxed lists the overrides in effect: given, and allowing a setting
// that is actually unsafe (an override for a setting that is safe anyway
// weakens nothing).
func (c Config) relaxed() []Relaxed {
	var out []Relaxed
	if c.AllowPlaintextGRPC && !c.TLS() {
		out = append(out, Relaxed{"--allow-plaintext-grpc", "gRPC without TLS: no client is authenticated, every caller has every role, and the actor a client sends is believed"})
	}
	if c.AllowNoNATSAuth && !c.natsAuth() {
		out = append(out, Relaxed{"--allow-no-nats-auth", "NATS without credentials: the service runs as whatever the server grants anonymous connections"})
	}
	if c.AllowFewReplicas && c.StreamReplicas < MinReplicas {
		out = append(out, Relaxed{"--allow-few-replicas", fmt.Sprintf("streams with %d replica(s) accepted: losing a disk can lose acknowledged events", c.StreamReplicas)})
	}
	return out
}
