package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/furrow/furrow/pkg/serve"
)

// opsPart is furrow dev's ops listener: the production binaries' pages
// (serve.OpsHandler), so `curl <ops>/metrics` shows the same series.
type opsPart struct {
	srv *http.Server
	lis net.Listener
}

// startOps listens on cfg.OpsAddr ("" for none).
func (s *Stack) startOps() error {
	if s.cfg.OpsAddr == "" {
		return nil
	}
	lis, err := net.Listen("tcp", s.cfg.OpsAddr)
	if err != nil {
		return fmt.Errorf("stack: ops listen on %s: %w", s.cfg.OpsAddr, err)
	}
	ready := func() error {
		if !s.nc.IsConnected() {
			return errors.New("NATS not connected")
		}
		return nil
	}
	s.ops = &opsPart{lis: lis, srv: &http.Server{Handler: serve.OpsHandler(ready), ReadHeaderTimeout: 5 * time.Second}}
	go func() {
		if err := s.ops.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Log.Error("ops listener failed", "error", err)
		}
	}()
	return nil
}

// OpsAddr is the address of /healthz, /readyz and /metrics ("" for none).
func (s *Stack) OpsAddr() string {
	if s.ops == nil {
		return ""
	}
	return s.ops.lis.Addr().String()
}

func (s *Stack) stopOps(ctx context.Context) {
	if s.ops != nil {
		_ = s.ops.srv.Shutdown(ctx)
	}
}
