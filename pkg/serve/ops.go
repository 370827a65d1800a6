package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/furrow/furrow/pkg/telemetry"
)

// opsServer is the plain-HTTP listener for probes and scrapers. It carries
// no data: health, readiness and metrics only, so it needs no TLS.
type opsServer struct {
	srv *http.Server
	lis net.Listener
}

func (p *process) startOps() error {
	lis, err := net.Listen("tcp", p.cfg.OpsAddr)
	if err != nil {
		return fmt.Errorf("ops listen on %s: %w", p.cfg.OpsAddr, err)
	}
	// Readiness: gRPC serves and NATS is connected; a load balancer sends
	// calls only then.
	ready := func() error {
		// ready is stored after start set every field, so reading p.nc
		// after it is race-free; shutdown clears it first.
		switch {
		case !p.ready.Load():
			return errors.New("not serving")
		case !p.nc.IsConnected():
			return errors.New("NATS not connected")
		}
		return nil
	}
	mux := OpsHandler(ready)
	p.ops = &opsServer{lis: lis, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go func() {
		if err := p.ops.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("ops listener failed", "error", err)
		}
	}()
	return nil
}

// OpsHandler serves the ops listener's pages, the same in `furrow dev` and
// the production binaries: /healthz (the process runs: restarting it
// would not help anything /readyz reports), /readyz (ready returns nil)
// and /metrics (every OpenTelemetry instrument of the process, through
// the OTel Prometheus exporter; see package telemetry).
func OpsHandler(ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", telemetry.MetricsHandler())
	return mux
}

func (p *process) opsAddr() string {
	if p.ops == nil {
		return ""
	}
	return p.ops.lis.Addr().String()
}

func (o *opsServer) close(ctx context.Context) { _ = o.srv.Shutdown(ctx) }
