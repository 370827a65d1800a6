// Package natsembed runs a JetStream-enabled NATS server inside the process,
// for `furrow dev` and for component tests.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options configure the embedded server.
type Options struct {
	// StoreDir holds JetStream's files.
	StoreDir string
	// ListenAddr is host:port for outside clients (the nats CLI);
	// empty means no listener: in-process connections only.
	ListenAddr string
	// LazySync turns off fsync on every write. Only benchmarks that measure
	// the difference should set it: acknowledged writes may then be lost.
	LazySync bool
	// ServerName names the server in logs and cluster views.
	ServerName string
}

// Server is a running embedded NATS server.
type Server struct {
	ns *server.Server
}

// Start starts the server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("natsembed: a store directory is required")
	}
	opts := &server.Options{
		ServerName:         o.ServerName,
		JetStream:          true,
		StoreDir:           o.StoreDir,
		NoSigs:             true, // the process owns SIGINT/SIGTERM, not the server
		SyncAlways:         !o.LazySync,
		JetStreamMaxMemory: 256 << 20,
		NoLog:              true,
	}
	if o.ListenAddr == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(o.ListenAddr)
		if err != nil {
			return nil, fmt.Errorf("natsembed: listen address %q: %w", o.ListenAddr, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("natsembed: listen port %q: %w", port, err)
		}
		opts.Host, opts.Port = host, p
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("natsembed: server not ready after 30s (is the port in use?)")
	}
	return &Server{ns: ns}, nil
}

// Connect opens an in-process client connection. Its sync subscriptions
// queue at most 1,024 messages (eventstore.SyncQueueLen), not nats.go's
// 65,536: every event-store load subscribes afresh, and the default makes
// each one allocate a 512 KiB channel. opts may override it.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.ns), nats.MaxReconnects(-1), nats.SyncQueueLen(1024)}, opts...)
	return nats.Connect("", opts...)
}

// ClientURL is the URL outside clients use, or "" without a listener.
func (s *Server) ClientURL() string {
	if s.ns.Addr() == nil {
		return ""
	}
	return s.ns.ClientURL()
}

// Shutdown stops the server and waits until it has flushed its stores.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}
