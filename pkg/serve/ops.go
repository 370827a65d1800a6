package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/furrow/furrow/pkg/grpcx"
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
	mux := http.NewServeMux()
	// Liveness: the process runs. Restarting it would not help anything
	// /readyz reports.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	// Readiness: gRPC serves and NATS is connected; a load balancer sends
	// calls only then.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		// ready is stored after start set every field, so reading p.nc
		// after it is race-free; shutdown clears it first.
		switch {
		case !p.ready.Load():
			http.Error(w, "not serving", http.StatusServiceUnavailable)
		case !p.nc.IsConnected():
			http.Error(w, "NATS not connected", http.StatusServiceUnavailable)
		default:
			_, _ = io.WriteString(w, "ready\n")
		}
	})
	mux.HandleFunc("GET /metrics", p.serveMetrics)
	p.ops = &opsServer{lis: lis, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go func() {
		if err := p.ops.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("ops listener failed", "error", err)
		}
	}()
	return nil
}

func (p *process) opsAddr() string {
	if p.ops == nil {
		return ""
	}
	return p.ops.lis.Addr().String()
}

func (o *opsServer) close(ctx context.Context) { _ = o.srv.Shutdown(ctx) }

// metrics counts gRPC calls and handler failures; projection lag and NATS
// state are read when scraped.
//
// Concurrency: mu guards the maps; interceptors and middleware run on many
// goroutines.
type metrics struct {
	service string

	mu       sync.Mutex
	calls    map[[2]string]uint64 // method, code
	failures map[string]uint64    // handler
}

func newMetrics(service string) *metrics {
	return &metrics{service: service, calls: map[[2]string]uint64{}, failures: map[string]uint64{}}
}

// discard classifies errors without logging them twice.
var discard = slog.New(slog.DiscardHandler)

func (m *metrics) count(ctx context.Context, method string, err error) {
	code := status.Code(grpcx.Status(ctx, discard, err)).String()
	m.mu.Lock()
	m.calls[[2]string{method, code}]++
	m.mu.Unlock()
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	m.count(ctx, info.FullMethod, err)
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	m.count(ss.Context(), info.FullMethod, err)
	return err
}

// handlerMiddleware counts failed handler attempts (each retry counts).
func (m *metrics) handlerMiddleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err != nil {
			name := message.HandlerNameFromCtx(msg.Context())
			m.mu.Lock()
			m.failures[name]++
			m.mu.Unlock()
		}
		return out, err
	}
}

// write writes the counters to b; counter writes a series' header.
func (m *metrics) write(b *strings.Builder, counter func(name, help string)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	calls := make([][2]string, 0, len(m.calls))
	for k := range m.calls {
		calls = append(calls, k)
	}
	slices.SortFunc(calls, func(a, b [2]string) int { return strings.Compare(a[0]+" "+a[1], b[0]+" "+b[1]) })
	counter("furrow_grpc_calls_total", "gRPC calls by method and status code.")
	for _, k := range calls {
		fmt.Fprintf(b, "furrow_grpc_calls_total{service=%q,method=%q,code=%q} %d\n", m.service, k[0], k[1], m.calls[k])
	}
	names := make([]string, 0, len(m.failures))
	for n := range m.failures {
		names = append(names, n)
	}
	slices.Sort(names)
	counter("furrow_handler_failures_total", "Failed event handler attempts (each retry counts).")
	for _, n := range names {
		fmt.Fprintf(b, "furrow_handler_failures_total{service=%q,handler=%q} %d\n", m.service, n, m.failures[n])
	}
}

// serveMetrics writes the Prometheus text format by hand: a handful of
// series do not justify a client library.
func (p *process) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	var b strings.Builder
	svc := p.svc.Name
	gauge := func(name, help string) { fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name) }
	counter := func(name, help string) { fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name) }

	gauge("furrow_ready", "1 while the service serves gRPC and is connected to NATS.")
	// Until ready the fields below may still be being set by start.
	if !p.ready.Load() {
		fmt.Fprintf(&b, "furrow_ready{service=%q} 0\n", svc)
		_, _ = io.WriteString(w, b.String())
		return
	}
	fmt.Fprintf(&b, "furrow_ready{service=%q} %d\n", svc, btoi(p.nc.IsConnected()))
	counter("furrow_nats_reconnects_total", "Reconnections to NATS.")
	fmt.Fprintf(&b, "furrow_nats_reconnects_total{service=%q} %d\n", svc, p.nc.Stats().Reconnects)

	p.metrics.write(&b, counter)

	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	gauge("furrow_projection_lag_events", "Events on the projection's subjects not applied yet.")
	var lag, seconds, checkpoint, healthy strings.Builder
	for _, run := range p.runners {
		st, err := run.Status(ctx)
		if err != nil {
			continue // a scrape must not fail because one status read did
		}
		labels := fmt.Sprintf("service=%q,projection=%q,stream=%q", svc, st.Name, st.Stream)
		fmt.Fprintf(&lag, "furrow_projection_lag_events{%s} %d\n", labels, st.LagEvents)
		fmt.Fprintf(&seconds, "furrow_projection_lag_seconds{%s} %g\n", labels, st.LagTime.Seconds())
		fmt.Fprintf(&checkpoint, "furrow_projection_checkpoint{%s} %d\n", labels, st.Checkpoint)
		fmt.Fprintf(&healthy, "furrow_projection_healthy{%s} %d\n", labels, btoi(st.State.Healthy()))
	}
	b.WriteString(lag.String())
	gauge("furrow_projection_lag_seconds", "Age of the oldest event the projection has not applied.")
	b.WriteString(seconds.String())
	gauge("furrow_projection_checkpoint", "Stream sequence of the last event applied.")
	b.WriteString(checkpoint.String())
	gauge("furrow_projection_healthy", "1 when the live copy is idle or catching up.")
	b.WriteString(healthy.String())
	_, _ = io.WriteString(w, b.String())
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
