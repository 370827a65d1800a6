// Package stack runs the whole of Furrow in one process: an embedded
// JetStream server, the three services, their projections and handlers, and
// one gRPC server. `furrow dev` runs it; component tests and benchmarks start
// it in-process.
package stack

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/admin"
	"github.com/furrow/furrow/pkg/dirlock"
	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/lifecycle"
	"github.com/furrow/furrow/pkg/natsembed"
	"github.com/furrow/furrow/pkg/projection"
	"github.com/furrow/furrow/pkg/requests"
	"github.com/furrow/furrow/pkg/wmjs"

	"github.com/furrow/furrow/cmd/furrow/internal/provision"

	brand "github.com/furrow/furrow/services/brand-incubation/service"
	ledgerdomain "github.com/furrow/furrow/services/farmer-ledger/domain"
	ledger "github.com/furrow/furrow/services/farmer-ledger/service"
	procurement "github.com/furrow/furrow/services/procurement/service"
)

// Config says where the stack keeps its data and listens.
type Config struct {
	// DataDir holds JetStream's store and the SQLite read models.
	DataDir string
	// GRPCAddr is the gRPC listen address; port 0 picks a free port.
	GRPCAddr string
	// NATSAddr is where outside NATS clients connect; empty: no listener.
	NATSAddr string
	// LazySync turns off fsync-per-write (benchmarks comparing only).
	LazySync bool
	// HTTPAddr serves the console and the HTTP/JSON API (http.go); empty:
	// none. It must be a loopback address (CheckLoopback) unless the
	// caller allowed otherwise.
	HTTPAddr string
	// OpsAddr serves /healthz, /readyz and /metrics as the production
	// binaries' ops listener does (ops.go); empty: none.
	OpsAddr string
	Log     *slog.Logger
	// PayoutControls are the ledger's cooling-off and four-eyes rules; the
	// zero value has neither.
	PayoutControls ledgerdomain.PayoutControls
}

// Stack is a running Furrow.
type Stack struct {
	cfg    Config
	nats   *natsembed.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	db     *projection.DB
	router *message.Router
	grpc   *grpc.Server
	health *health.Server
	lis    net.Listener
	// lock is the data directory's (LockFile), released last on shutdown.
	lock    *dirlock.Lock
	runners []*projection.Runner
	// routerDone is made when the router's Run is called and closed when
	// it returns: closing a router that never ran waits for its close
	// timeout.
	routerDone chan struct{}
	http       *httpPart
	ops        *opsPart
	// lagMetrics reports the runners' lag while metrics are on.
	lagMetrics metric.Registration

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   chan error
}

// LockFile is the lock a running stack holds in its data directory: one
// process per data directory (two would both append at the same positions
// and lose acknowledged writes).
const LockFile = "furrow.lock"

// NATSAdminPasswordFile, in the data directory, holds the password of the
// NATS admin user (natsembed.AdminUser) on the outside listener. Start
// makes it once, mode 0600, and keeps it across restarts.
const NATSAdminPasswordFile = "nats-admin-password"

// Start starts everything and returns once the gRPC server is serving. It
// fails at once with the cause when the data directory is in use by another
// process or cannot be written, or a listen address is in use; when ctx is
// done first (Ctrl-C) it stops what it started and returns ctx's error.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("stack: a data directory is required")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("stack: start interrupted: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("stack: data directory: %w", err)
	}
	s := &Stack{cfg: cfg, errs: make(chan error, 8)}
	s.lock, err = dirlock.Acquire(filepath.Join(cfg.DataDir, LockFile))
	if errors.Is(err, dirlock.ErrLocked) {
		return nil, fmt.Errorf("stack: data directory %s is in use: %w", cfg.DataDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("stack: data directory: %w", err)
	}
	defer func() {
		if err != nil {
			s.Shutdown(context.Background())
			if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("stack: start interrupted: %w (%w)", ctx.Err(), err)
			}
		}
	}()
	// Listen first: a taken address fails before anything else started.
	if s.lis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("stack: gRPC address: %w", err)
	}
	var adminPassword string
	if cfg.NATSAddr != "" {
		if adminPassword, err = natsAdminPassword(filepath.Join(cfg.DataDir, NATSAdminPasswordFile)); err != nil {
			return nil, err
		}
	}

	s.nats, err = natsembed.StartContext(ctx, natsembed.Options{
		StoreDir: filepath.Join(cfg.DataDir, "jetstream"), ListenAddr: cfg.NATSAddr,
		AdminPassword: adminPassword, LazySync: cfg.LazySync, ServerName: "furrow-dev",
	})
	if err != nil {
		return nil, err
	}
	if s.nc, err = s.nats.Connect(nats.Name("furrow-dev")); err != nil {
		return nil, fmt.Errorf("stack: connect to NATS: %w", err)
	}
	if s.js, err = jetstream.New(s.nc); err != nil {
		return nil, fmt.Errorf("stack: JetStream: %w", err)
	}
	// furrow dev is the admin of its embedded server: it provisions the
	// streams, buckets (request ids, aggregate snapshots) and durable
	// consumers the way `furrow admin streams apply` does in production.
	if _, err := provision.Apply(ctx, s.js, provision.Options{Replicas: 1}); err != nil {
		return nil, fmt.Errorf("stack: provision streams: %w", err)
	}
	// The ledger's key store (farmers' data keys: personal data is sealed
	// under them), with the development key-encryption key kept in its
	// bucket.
	ledgerKeys, err := ledger.KeyStore(ctx, s.js, "", cfg.Log)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.db, err = projection.OpenSQLite(filepath.Join(cfg.DataDir, "projections.db")); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.router, err = wmjs.NewRouter(cfg.Log, wmjs.DeadLetterConfig{JS: s.js, Subject: "deadletter.handlers"}); err != nil {
		return nil, err
	}

	// Request ids, remembered beyond the streams' de-duplication window
	// (pkg/requests): one bucket per service, which provision.Apply made.
	registries := map[string]*requests.Registry{}
	for _, svc := range []struct{ service, stream string }{
		{procurementv1.ProcurementService_ServiceDesc.ServiceName, procurement.Stream(1).Name},
		{ledgerv1.LedgerService_ServiceDesc.ServiceName, ledger.Stream(1).Name},
		{brandv1.BrandService_ServiceDesc.ServiceName, brand.Stream(1).Name},
	} {
		reg, err := requests.Bind(ctx, s.js, svc.stream)
		if err != nil {
			return nil, err
		}
		registries[svc.service] = reg
	}

	proc, err := procurement.New(procurement.Deps{JS: s.js, DB: s.db, Log: cfg.Log,
		Requests: registries[procurementv1.ProcurementService_ServiceDesc.ServiceName]})
	if err != nil {
		return nil, err
	}
	s.runners = append(s.runners, proc.Projections()...)
	led, err := ledger.New(ledger.Deps{JS: s.js, DB: s.db, Router: s.router, Log: cfg.Log, DataDir: cfg.DataDir, Keys: ledgerKeys,
		PayoutControls: cfg.PayoutControls})
	if err != nil {
		return nil, err
	}
	br, err := brand.New(brand.Deps{JS: s.js, DB: s.db, Router: s.router, Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	s.runners = append(s.runners, br.Projections()...)
	s.runners = append(s.runners, led.Projections()...)

	// The production limits, but no rate limit: furrow dev serves one
	// local user, and the demo loader and benchmarks call as fast as
	// they can from one address.
	lim := grpcx.DefaultLimits()
	lim.Rate = 0
	s.grpc, s.health = grpcx.NewServer(cfg.Log, lim, grpc.ChainUnaryInterceptor(requests.UnaryServerInterceptor(cfg.Log, registries)))
	// Operators' API: projections and handlers of this process, streams.
	if err := registerAdmin(s.grpc, s.js, s.router, cfg.Log, map[string][]*projection.Runner{
		procurement.Name: proc.Projections(), ledger.Name: led.Projections(), brand.Name: br.Projections(),
	}); err != nil {
		return nil, err
	}
	proc.Register(s.grpc)
	led.Register(s.grpc)
	br.Register(s.grpc)

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	if s.lagMetrics, err = lifecycle.ObserveGauges(s.js, s.runners); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	for _, r := range s.runners {
		s.goRun("projection "+r.Name(), func() error { return r.Run(runCtx) })
	}
	s.routerDone = make(chan struct{})
	s.goRun("event handlers", func() error {
		defer close(s.routerDone)
		return s.router.Run(runCtx)
	})
	select {
	case <-s.router.Running():
	case err := <-s.errs:
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		return nil, errors.New("stack: event handlers did not start within 30s")
	}
	s.goRun("gRPC server", func() error { return s.grpc.Serve(s.lis) })
	grpcx.MarkServing(s.grpc, s.health)
	if err := s.startHTTP(); err != nil {
		return nil, err
	}
	if err := s.startOps(); err != nil {
		return nil, err
	}
	return s, nil
}

// natsAdminPassword reads the NATS admin password from path, making it
// (0600) the first time.
func natsAdminPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		pw := rand.Text()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", fmt.Errorf("stack: NATS admin password: %w", err)
		}
		_, err = f.WriteString(pw + "\n")
		if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
			return "", fmt.Errorf("stack: NATS admin password: %w", err)
		}
		return pw, nil
	}
	if err != nil {
		return "", fmt.Errorf("stack: NATS admin password: %w", err)
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" {
		return "", fmt.Errorf("stack: NATS admin password: %s is empty (delete it and a new one is made)", path)
	}
	return pw, nil
}

// registerAdmin serves furrow.admin.v1.AdminService on srv over the given
// services' projections (by service name) and the router's handlers.
func registerAdmin(srv *grpc.Server, js jetstream.JetStream, router *message.Router, log *slog.Logger, projections map[string][]*projection.Runner) error {
	adm, err := admin.New(js, log)
	if err != nil {
		return err
	}
	for service, runners := range projections {
		if err := adm.AddProjections(service, runners...); err != nil {
			return err
		}
	}
	adm.SetHandlers(router.Handlers())
	adminv1.RegisterAdminServiceServer(srv, adm)
	return nil
}

// goRun runs fn in a goroutine the stack waits for on shutdown; an early
// error is reported on Err.
func (s *Stack) goRun(what string, fn func() error) {
	s.wg.Go(func() {
		if err := fn(); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			select {
			case s.errs <- fmt.Errorf("%s: %w", what, err):
			default:
			}
		}
	})
}

// Err delivers the first failure of a part that should run until shutdown.
func (s *Stack) Err() <-chan error { return s.errs }

// GRPCAddr is the address the gRPC server listens on.
func (s *Stack) GRPCAddr() string { return s.lis.Addr().String() }

// NATSURL is the URL outside NATS clients connect to ("" without listener);
// without credentials they can only read.
func (s *Stack) NATSURL() string { return s.nats.ClientURL() }

// NATSAdminURL is NATSURL with the admin user's credentials, who may do
// anything ("" without listener).
func (s *Stack) NATSAdminURL() string { return s.nats.AdminURL() }

// JetStream returns the stack's JetStream context.
func (s *Stack) JetStream() jetstream.JetStream { return s.js }

// Projections returns the running projection runners.
func (s *Stack) Projections() []*projection.Runner { return s.runners }

// Shutdown stops taking requests, lets in-flight requests and handlers
// finish (bounded by ctx), then stops the projections and the server.
// Nothing acknowledged is lost: events are on disk before they are
// acknowledged, and read models resume from their checkpoints.
func (s *Stack) Shutdown(ctx context.Context) {
	s.stopHTTP(ctx)
	parts := lifecycle.Parts{
		GRPC: s.grpc, LagMetrics: s.lagMetrics, NATS: s.nc,
		StopWorkers: func() {
			if s.cancel != nil {
				s.cancel()
			}
			s.wg.Wait()
		},
	}
	// A nil pointer in an interface field would not be nil.
	if s.health != nil {
		parts.Health = s.health
	}
	if s.db != nil {
		parts.DB = s.db
	}
	if s.routerDone != nil {
		// Closing a router that is still starting also waits for its close
		// timeout (Close holds a lock Run needs): let it finish starting.
		select {
		case <-s.router.Running():
		case <-s.routerDone:
		case <-time.After(5 * time.Second):
		}
		parts.Router = s.router
	}
	lifecycle.Stop(ctx, parts)
	s.stopOps(ctx)
	if s.lis != nil {
		// Closed already if the gRPC server served; not if Start failed.
		_ = s.lis.Close()
	}
	if s.nats != nil {
		s.nats.Shutdown()
	}
	_ = s.lock.Release()
}
