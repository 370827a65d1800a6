package stack

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/furrow/furrow/pkg/httpapi"

	"github.com/furrow/furrow/cmd/furrow/internal/console"
)

// httpPart is the stack's HTTP listener: the console and the HTTP/JSON API.
type httpPart struct {
	srv  *http.Server
	lis  net.Listener
	conn *grpc.ClientConn
}

// CheckLoopback refuses an HTTP address that is not on the loopback
// interface: `furrow dev` has no login, so whoever reaches its console or
// HTTP API may do everything.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("HTTP address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("HTTP address %q is not a loopback address: furrow dev's console and HTTP API have no login, "+
		"so anyone who reaches them may do everything; use 127.0.0.1, or pass --http-allow-remote on a network you trust "+
		"(production: furrow console with OIDC, deploy/README.md)", addr)
}

// startHTTP serves the console and the HTTP/JSON API on cfg.HTTPAddr. The
// API transcodes into the stack's own gRPC server, so its interceptors
// (validation errors, status mapping) apply as to any gRPC client; the
// console calls the services through a loopback gRPC connection.
func (s *Stack) startHTTP() error {
	if s.cfg.HTTPAddr == "" {
		return nil
	}
	api, err := httpapi.New(func(string) http.Handler { return s.grpc })
	if err != nil {
		return err
	}
	h := &httpPart{}
	s.http = h
	if h.conn, err = grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return fmt.Errorf("stack: console connection: %w", err)
	}
	con, err := console.New(console.Config{Backends: console.SingleConn(h.conn), Log: s.cfg.Log, Dev: true})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	httpapi.Routes(mux, noSimpleForms(api))
	mux.Handle("/", con)
	if h.lis, err = net.Listen("tcp", s.cfg.HTTPAddr); err != nil {
		return fmt.Errorf("stack: HTTP listen on %s: %w", s.cfg.HTTPAddr, err)
	}
	h.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.goRun("HTTP server", func() error {
		if err := h.srv.Serve(h.lis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	return nil
}

// noSimpleForms refuses state-changing API requests whose body a web page
// on another site could send without asking (an HTML form's content
// types): in dev nothing else stops a page in the developer's browser from
// posting to 127.0.0.1. JSON needs a CORS preflight, which is never
// granted.
func noSimpleForms(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			switch mt {
			case "", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain":
				if r.Method != http.MethodDelete || mt != "" {
					http.Error(w, "send JSON (Content-Type: application/json)", http.StatusUnsupportedMediaType)
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// HTTPAddr is the address the console and HTTP API listen on ("" when
// they are off).
func (s *Stack) HTTPAddr() string {
	if s.http == nil || s.http.lis == nil {
		return ""
	}
	return s.http.lis.Addr().String()
}

// stopHTTP lets in-flight HTTP requests finish (bounded by ctx) before
// gRPC stops under them.
func (s *Stack) stopHTTP(ctx context.Context) {
	if s.http == nil {
		return
	}
	if s.http.srv != nil {
		_ = s.http.srv.Shutdown(ctx)
	}
	if s.http.conn != nil {
		_ = s.http.conn.Close()
	}
}
