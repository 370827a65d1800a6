// Package serve runs one Furrow service as a production process: the shape
// of the procurement, brand-incubation and farmer-ledger binaries, which
// differ only in the service they wire. Each binary's main parses a Config
// (ParseConfig) and calls Run with its Service.
//
// A process connects to a JetStream cluster (reconnecting forever), checks
// the streams and durable consumers it uses, opens its read models in
// PostgreSQL, runs its projections and event handlers, and serves
// its gRPC API, the AdminService over its own projections and handlers,
// health checking and reflection. With TLS configured, gRPC requires
// client certificates for everything but health checks and enforces the
// role table (auth.go). An HTTP listener serves /healthz, /readyz and
// /metrics for probes and scrapers.
//
// A process never creates or changes a stream or a durable consumer: an
// admin identity does (`furrow admin streams apply`, the migration step
// before services start), and a service's NATS user may not. At start it
// verifies its own stream, the dead-letter stream, the upstream streams
// its handlers consume and its durable consumers (eventstore.VerifyStream,
// wmjs.VerifyConsumer): it waits while one is missing and refuses to start
// on one that drifted from what it needs (fewer replicas than
// --stream-replicas, deletes or purges allowed, limits or TTLs that drop
// events, …), naming the setting.
//
// The process keeps no state: every replica shares the cluster and the
// database. Handlers share durable consumers (each event goes to one
// replica); each replica runs every projection, and the projection
// runner's locked checkpoint read lets only one of them apply a batch
// (pkg/projection).
//
// It lives in pkg rather than under cmd/furrow because the three service
// binaries are in their services' modules, and Go's internal packages are
// visible only inside the tree that holds them.
package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"

	"github.com/furrow/furrow/pkg/admin"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/lifecycle"
	"github.com/furrow/furrow/pkg/projection"
	"github.com/furrow/furrow/pkg/requests"
	"github.com/furrow/furrow/pkg/telemetry"
	"github.com/furrow/furrow/pkg/wmjs"
)

// Service describes the service a process runs.
type Service struct {
	// Name is the service's name in logs, traces and the admin API,
	// e.g. "farmer-ledger".
	Name string
	// Short is its token in NATS subjects and must match its NATS user's
	// permissions (deploy/nats/accounts.conf): handler dead letters go to
	// deadletter.<Short>, and the connection's inboxes are _INBOX_<Short>.*.
	Short string
	// Stream returns the spec of the service's own stream; the process
	// verifies the stream keeps it, with at least the replicas it is given.
	Stream func(replicas int) eventstore.StreamSpec
	// Upstream names other services' streams the service's handlers
	// consume; the process waits for them to exist and checks they keep
	// events the way its own stream must, before it starts its handlers.
	Upstream []string
	// Consumers are the durable consumers of the service's handlers. The
	// process waits for them to exist and checks their configuration
	// before its handlers bind to them (New must set wmjs.Config.Bind).
	Consumers []wmjs.Config
	// Relaxed are the binary's own overrides in effect (the ledger's
	// --allow-simulated-provider), logged at WARN at start with the
	// process's own.
	Relaxed []Relaxed
	// InsecureDevAlso names the binary's own overrides that the deprecated
	// --insecure-dev sets too, for its deprecation warning.
	InsecureDevAlso []string
	// New wires the service over the process's connections.
	New func(Deps) (Wired, error)
}

// Deps are what a process hands to Service.New.
type Deps struct {
	JS     jetstream.JetStream
	DB     *projection.DB
	Router *message.Router
	Log    *slog.Logger
	// Requests is the service's request-id registry (pkg/requests): the
	// process checks every command's request_id against it; a service
	// whose requests hold several commands (RecordDeliveries) checks their
	// ids itself.
	Requests *requests.Registry
}

// Wired is a wired service.
type Wired interface {
	Register(*grpc.Server)
	Projections() []*projection.Runner
}

// Run runs svc with cfg until ctx is done (SIGINT or SIGTERM in main), then
// drains: health checks and /readyz turn NOT_SERVING, gRPC finishes the
// calls in flight (bounded by cfg.ShutdownTimeout), the handlers finish
// their messages, the projections stop at a checkpoint and the NATS
// connection drains. Logs go to logOut. It returns an error when start-up
// fails or a part that should run until shutdown fails.
func Run(ctx context.Context, cfg Config, svc Service, logOut io.Writer) error {
	if svc.Name == "" || svc.Short == "" || svc.Stream == nil || svc.New == nil {
		return errors.New("serve: a Service needs a Name, a Short name, a Stream and New")
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	// The service's own logs say which service they are from (its wiring
	// adds the attribute itself); the process's logs say it here.
	base := newLogger(cfg, logOut)
	log := base.With("service", svc.Name)
	p := &process{cfg: cfg, svc: svc, log: log, base: base, errs: make(chan error, 8)}
	if cfg.InsecureDev {
		log.Warn("--insecure-dev is deprecated: it sets every --allow-… override; pass only the ones you need",
			"sets", "--allow-plaintext-grpc --allow-no-nats-auth --allow-few-replicas"+svc.insecureDevAlso())
	}
	for _, r := range append(cfg.relaxed(), svc.Relaxed...) {
		log.Warn("unsafe override in effect", "override", r.Override, "weakens", r.Weakens)
	}
	shutdownTracing, err := telemetry.Setup(ctx, cfg.Telemetry)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx)
	}()

	// The ops listener comes first: /healthz answers while the process
	// waits for its dependencies, /readyz only once it serves.
	if cfg.OpsAddr != "" {
		if err := p.startOps(); err != nil {
			p.shutdown()
			return err
		}
	}
	if err := p.start(ctx); err != nil {
		p.shutdown()
		if ctx.Err() != nil {
			log.Info("stopped while starting")
			return nil
		}
		return err
	}
	log.Info("serving", "grpc", p.lis.Addr().String(), "tls", cfg.TLS(), "nats", strings.Join(cfg.NATSURLs, ","),
		"stream_replicas", cfg.StreamReplicas, "ops", p.opsAddr(), "limits", cfg.Limits().String())

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-p.errs:
		log.Error("a component failed; shutting down", "error", runErr)
	}
	p.shutdown()
	log.Info("stopped")
	return runErr
}

func (s Service) insecureDevAlso() string {
	if len(s.InsecureDevAlso) == 0 {
		return ""
	}
	return " " + strings.Join(s.InsecureDevAlso, " ")
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler
	if cfg.LogJSON {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(telemetry.NewLogHandler(h))
}

// process is one running service. start builds it up; shutdown tears down
// whatever start got to, in reverse.
type process struct {
	cfg  Config
	svc  Service
	log  *slog.Logger
	base *slog.Logger // without the service attribute, for Service.New

	nc      *nats.Conn
	js      jetstream.JetStream
	db      *projection.DB
	router  *message.Router
	grpc    *grpc.Server
	health  interface{ Shutdown() }
	lis     net.Listener
	runners []*projection.Runner
	// lagMetrics reports the runners' lag to OpenTelemetry.
	lagMetrics metric.Registration
	ops        *opsServer
	// ready is what /readyz reports: set once gRPC serves, cleared when
	// shutdown begins.
	ready atomic.Bool

	// denied is the first NATS permission violation, if any: at start a
	// process gives up at once rather than wait for replies that the
	// server will never let it receive.
	denied atomic.Pointer[error]

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   chan error
}

func (p *process) start(ctx context.Context) error {
	cfg, log := p.cfg, p.log
	startCtx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()

	// Certificates first: a bad file is found before waiting on anything.
	var tlsCfg *tls.Config
	if cfg.TLS() {
		var err error
		if tlsCfg, err = ServerTLS(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA, log); err != nil {
			return err
		}
	}
	var err error
	if p.nc, err = connectNATS(cfg, p.svc, log, &p.denied); err != nil {
		return err
	}
	if p.js, err = jetstream.New(p.nc); err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	spec := p.svc.Stream(cfg.StreamReplicas)
	if err := p.retry(startCtx, "verify stream "+spec.Name, func(ctx context.Context) error {
		return eventstore.VerifyStream(ctx, p.js, spec.Config())
	}); err != nil {
		return err
	}
	// The service's request ids, beyond the stream's de-duplication
	// window (pkg/requests).
	var registry *requests.Registry
	if err := p.retry(startCtx, "bind request registry "+requests.Bucket(spec.Name), func(ctx context.Context) error {
		r, err := requests.Bind(ctx, p.js, spec.Name)
		registry = r
		return err
	}); err != nil {
		return err
	}
	if err := p.retry(startCtx, "open PostgreSQL", func(ctx context.Context) error {
		db, err := projection.OpenPostgres(ctx, cfg.PostgresDSN)
		if err == nil {
			p.db = db
		}
		return err
	}); err != nil {
		return err
	}
	if strings.Contains(cfg.PostgresDSN, "sslmode=disable") {
		log.Warn("PostgreSQL without TLS (sslmode=disable): use sslmode=verify-full in production")
	}
	dlq := wmjs.DeadLetterConfig{JS: p.js, Subject: "deadletter." + p.svc.Short, Replicas: cfg.StreamReplicas, Provisioned: true}
	if err := p.retry(startCtx, "verify dead-letter stream", func(ctx context.Context) error {
		r, err := wmjs.NewRouter(log, dlq)
		if err == nil {
			p.router = r
		}
		return err
	}); err != nil {
		return err
	}

	wired, err := p.svc.New(Deps{JS: p.js, DB: p.db, Router: p.router, Log: p.base, Requests: registry})
	if err != nil {
		return err
	}
	p.runners = wired.Projections()

	var opts []grpc.ServerOption
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)),
			grpc.ChainUnaryInterceptor(UnaryAuth()), grpc.ChainStreamInterceptor(StreamAuth()))
	}
	// Filled below, once the service has registered, before any call.
	registries := map[string]*requests.Registry{}
	opts = append(opts, grpc.ChainUnaryInterceptor(requests.UnaryServerInterceptor(log, registries)))
	srv, hs := grpcx.NewServer(log, cfg.Limits(), opts...)
	p.grpc, p.health = srv, hs
	adm, err := admin.New(p.js, log)
	if err != nil {
		return err
	}
	if err := adm.AddProjections(p.svc.Name, p.runners...); err != nil {
		return err
	}
	adm.SetHandlers(p.router.Handlers())
	adminv1.RegisterAdminServiceServer(srv, adm)
	wired.Register(srv)
	for name := range srv.GetServiceInfo() {
		if strings.HasPrefix(name, "furrow.") && name != adminv1.AdminService_ServiceDesc.ServiceName {
			registries[name] = registry
		}
	}

	if p.lis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return fmt.Errorf("gRPC listen on %s: %w", cfg.GRPCAddr, err)
	}

	// Handlers' durable consumers live on the upstream streams, which must
	// keep events as this service's own stream does.
	for _, name := range p.svc.Upstream {
		want := eventstore.StreamSpec{Name: name, Replicas: cfg.StreamReplicas}.Config()
		if err := p.retry(startCtx, "verify upstream stream "+name, func(ctx context.Context) error {
			return eventstore.VerifyStream(ctx, p.js, want)
		}); err != nil {
			return err
		}
	}
	for _, c := range p.svc.Consumers {
		if err := p.retry(startCtx, "verify consumer "+c.Stream+"/"+c.Durable, func(ctx context.Context) error {
			_, err := wmjs.VerifyConsumer(ctx, p.js, c)
			return err
		}); err != nil {
			return err
		}
	}

	// Projection and dead-letter gauges, read when /metrics is scraped
	// (or OTLP collects).
	if reg, err := lifecycle.ObserveGauges(p.js, p.runners); err == nil {
		p.lagMetrics = reg
	} else {
		p.log.Warn("projection and dead-letter metrics unavailable", "error", err)
	}
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancelRun
	for _, r := range p.runners {
		p.goRun("projection "+r.Name(), func() error { return r.Run(runCtx) })
	}
	p.goRun("event handlers", func() error { return p.router.Run(runCtx) })
	select {
	case <-p.router.Running():
	case err := <-p.errs:
		return err
	case <-startCtx.Done():
		return fmt.Errorf("event handlers did not start within %s", cfg.StartTimeout)
	}
	p.goRun("gRPC server", func() error { return srv.Serve(p.lis) })
	grpcx.MarkServing(srv, hs)
	p.ready.Store(true)
	return nil
}

// retry calls fn until it succeeds, ctx ends or the NATS connection is
// closed for good (bad credentials), with growing pauses, and logs why it
// waits: at start a process waits for NATS and PostgreSQL rather than
// crash-looping while they come up.
func (p *process) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := fn(actx)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, projection.ErrInvalidConfig) {
			return fmt.Errorf("%s: %w", what, err) // waiting will not fix a bad DSN
		}
		if errors.Is(err, eventstore.ErrDrift) {
			return fmt.Errorf("refusing to start: %s: %w", what, err) // nor a drifted stream: an admin must
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) {
			err = fmt.Errorf("%w (has `furrow admin streams apply` run?)", err)
		}
		if denied := p.denied.Load(); denied != nil {
			return fmt.Errorf("%s: %w (the NATS user's permissions in deploy/nats/accounts.conf do not fit this service)", what, *denied)
		}
		if p.nc != nil && p.nc.IsClosed() {
			if last := p.nc.LastError(); last != nil {
				err = last
			}
			return fmt.Errorf("%s: NATS connection closed: %w", what, err)
		}
		if p.nc != nil && !p.nc.IsConnected() {
			// Requests wait for a connection rather than fail: say why.
			err = fmt.Errorf("%w (NATS %s, servers %s)", err, strings.ToLower(p.nc.Status().String()), strings.Join(p.cfg.NATSURLs, ","))
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: gave up after %d attempts: %w", what, attempt, err)
		}
		p.log.Warn("waiting at start", "step", what, "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up after %d attempts: %w", what, attempt, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// connectNATS connects to the cluster. The connection reconnects forever:
// a service outlives a NATS node's restart (a rolling upgrade of the
// cluster), and retries its first connection too.
func connectNATS(cfg Config, svc Service, log *slog.Logger, denied *atomic.Pointer[error]) (*nats.Conn, error) {
	host, _ := os.Hostname()
	opts := []nats.Option{
		nats.Name(svc.Name + "@" + host),
		nats.MaxReconnects(-1),
		// Aggregate loads subscribe per request; the default 64k-message
		// queue costs a 512 KiB allocation each time.
		nats.SyncQueueLen(eventstore.SyncQueueLen),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
		nats.CustomInboxPrefix("_INBOX_" + svc.Short),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{"error", err}
			if sub != nil {
				attrs = append(attrs, "subject", sub.Subject)
			}
			// Permission violations arrive here: a NATS user whose
			// permissions miss a subject the service needs.
			log.Error("NATS asynchronous error", attrs...)
			if errors.Is(err, nats.ErrPermissionViolation) {
				denied.CompareAndSwap(nil, &err)
			}
		}),
	}
	switch {
	case cfg.NATSCreds != "":
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	case cfg.NATSUser != "":
		opts = append(opts, nats.UserInfo(cfg.NATSUser, cfg.NATSPassword))
	}
	if cfg.NATSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.NATSCA))
	}
	if cfg.NATSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.NATSCert, cfg.NATSKey))
	}
	if cfg.NATSCA == "" && !strings.Contains(strings.Join(cfg.NATSURLs, ","), "tls://") {
		log.Warn("NATS without TLS: credentials and events cross the network in clear; see deploy/README.md")
	}
	nc, err := nats.Connect(strings.Join(cfg.NATSURLs, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	return nc, nil
}

// goRun runs fn in a goroutine shutdown waits for; an early error is
// reported on p.errs.
func (p *process) goRun(what string, fn func() error) {
	p.wg.Go(func() {
		if err := fn(); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			select {
			case p.errs <- fmt.Errorf("%s: %w", what, err):
			default:
			}
		}
	})
}

// shutdown stops taking requests, lets in-flight requests and handler
// messages finish (bounded by ShutdownTimeout), then stops projections and
// drains NATS. Nothing acknowledged is lost: events are on a quorum's disks
// before they are acknowledged, handlers ack only after success, and
// projections resume from their checkpoints.
func (p *process) shutdown() {
	p.ready.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ShutdownTimeout)
	defer cancel()
	parts := lifecycle.Parts{
		Health: p.health, GRPC: p.grpc, LagMetrics: p.lagMetrics, Router: p.router, NATS: p.nc,
		StopWorkers: func() {
			if p.cancel != nil {
				p.cancel()
			}
			p.wg.Wait()
		},
	}
	if p.db != nil { // a nil pointer in an interface field would not be nil
		parts.DB = p.db
	}
	lifecycle.Stop(ctx, parts)
	if p.ops != nil {
		p.ops.close(ctx)
	}
}
