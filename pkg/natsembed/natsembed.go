// Package natsembed runs a JetStream-enabled NATS server inside the process,
// for `furrow dev` and for component tests.
//
// The server owns its store directory: Start takes an exclusive lock there
// (package dirlock) and refuses a directory another server uses. With a
// listener for outside clients, the listener is authenticated: a client that
// gives no credentials may only read (list and inspect streams and
// consumers, read messages, subscribe), the "admin" user may do anything,
// and the process's own in-process connections have every right.
package natsembed

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/furrow/furrow/pkg/dirlock"
)

// Options configure the embedded server.
type Options struct {
	// StoreDir holds JetStream's files.
	StoreDir string
	// ListenAddr is host:port for outside clients (the nats CLI); port 0
	// picks a free port; empty means no listener: in-process connections
	// only. The listener is authenticated (see the package comment).
	ListenAddr string
	// AdminPassword is the password of the outside user AdminUser, who may
	// do anything (delete streams, publish events). Empty: there is no
	// such user and outside clients can only read.
	AdminPassword string
	// LazySync turns off fsync on every write. Only benchmarks that measure
	// the difference should set it: acknowledged writes may then be lost.
	LazySync bool
	// ServerName names the server in logs and cluster views.
	ServerName string
}

// AdminUser is the outside user that may do anything (Options.AdminPassword).
const AdminUser = "admin"

// Users of an authenticated server. readOnlyUser is who a client that gives
// no credentials is (no_auth_user); internalUser is the in-process
// connections', whose password is made afresh by each Start and never
// leaves the process.
const (
	readOnlyUser = "viewer"
	internalUser = "furrow"
)

// LockFile is the lock Start holds in the store directory.
const LockFile = "natsembed.lock"

// readOnly are the permissions of a client without credentials: it may ask
// JetStream's API only what reads, and publish nothing else, so it can
// neither change the log (delete, purge or update a stream, delete a
// message, publish into an event subject) nor create or change consumers
// (a consumer create naming an existing consumer updates it, which could
// change a handler's or a projection's filter). It may subscribe to
// anything: that only reads, and it cannot answer anyone's request (replies
// go to inboxes, which it may not publish to).
var readOnly = &server.Permissions{
	Publish: &server.SubjectPermission{Allow: []string{
		"$JS.API.INFO",
		"$JS.API.STREAM.NAMES",
		"$JS.API.STREAM.LIST",
		"$JS.API.STREAM.INFO.*",
		"$JS.API.STREAM.MSG.GET.*",
		"$JS.API.DIRECT.GET.>",
		"$JS.API.CONSUMER.NAMES.*",
		"$JS.API.CONSUMER.LIST.*",
		"$JS.API.CONSUMER.INFO.*.*",
		"$SYS.REQ.USER.INFO", // who am I (nats account info)
	}},
}

// Server is a running embedded NATS server.
type Server struct {
	ns   *server.Server
	lock *dirlock.Lock
	// internalPassword is set when the server authenticates (it listens).
	internalPassword string
	adminPassword    string
}

// readyTimeout bounds how long Start waits for a server that reported no
// failure; a failure is reported at once.
const readyTimeout = 30 * time.Second

// Start starts the server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	return StartContext(context.Background(), o)
}

// StartContext starts the server and waits until it accepts connections,
// until the server reports why it cannot (a listen address in use, a store
// it cannot write), or until ctx is done: then it returns ctx's error
// promptly and the server is shut down.
func StartContext(ctx context.Context, o Options) (_ *Server, err error) {
	if o.StoreDir == "" {
		return nil, errors.New("natsembed: a store directory is required")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	// Create the directory here rather than in the server, whose failure
	// would only be a log line: the error names the path and the cause.
	if err := os.MkdirAll(o.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("natsembed: store directory: %w", err)
	}
	lock, err := dirlock.Acquire(filepath.Join(o.StoreDir, LockFile))
	if errors.Is(err, dirlock.ErrLocked) {
		return nil, fmt.Errorf("natsembed: store directory %s is in use: %w", o.StoreDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("natsembed: store directory: %w", err)
	}
	defer func() {
		if err != nil && lock != nil {
			_ = lock.Release()
		}
	}()
	s := &Server{lock: lock, adminPassword: o.AdminPassword}
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
		if opts.Host, opts.Port, err = listenAddr(o.ListenAddr); err != nil {
			return nil, err
		}
		s.internalPassword = randomPassword()
		opts.Users = users(s.internalPassword, o.AdminPassword)
		opts.NoAuthUser = readOnlyUser
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	// The server reports why it cannot start only by logging Fatalf (its
	// own logger would then exit the process); catch that instead.
	fatal := make(chan string, 1)
	ns.SetLogger(fatalLogger(fatal), false, false)
	started := make(chan struct{})
	go func() {
		defer close(started)
		ns.Start()
	}()
	stop := func() {
		select {
		case <-started:
			ns.Shutdown()
			ns.WaitForShutdown()
		case <-time.After(time.Second):
			// Start is still busy (recovering a large store, say): do not
			// keep the caller waiting; the store stays locked until the
			// server is down.
			l := lock
			lock = nil
			go func() {
				<-started
				ns.Shutdown()
				ns.WaitForShutdown()
				_ = l.Release()
			}()
		}
	}
	deadline := time.After(readyTimeout)
	for !ns.ReadyForConnections(25 * time.Millisecond) {
		select {
		case <-ctx.Done():
			stop()
			return nil, fmt.Errorf("natsembed: start interrupted: %w", ctx.Err())
		case msg := <-fatal:
			stop()
			return nil, fmt.Errorf("natsembed: %s", msg)
		case <-deadline:
			stop()
			return nil, fmt.Errorf("natsembed: server not ready after %s", readyTimeout)
		default:
		}
	}
	select {
	case msg := <-fatal:
		stop()
		return nil, fmt.Errorf("natsembed: %s", msg)
	default:
	}
	s.ns = ns
	return s, nil
}

// listenAddr splits and checks addr, and binds it once so that an address
// in use is reported with its cause at once (the server, failing later,
// catches one taken in between).
func listenAddr(addr string) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("natsembed: listen address %q: %w", addr, err)
	}
	port, err = strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("natsembed: listen port %q: %w", p, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", 0, fmt.Errorf("natsembed: NATS address: %w", err)
	}
	_ = l.Close()
	if port == 0 {
		port = server.RANDOM_PORT // the server's port 0 means 4222
	}
	return host, port, nil
}

// users are an authenticated server's users: the in-process connections',
// the read-only default and, with a password, the admin.
func users(internalPassword, adminPassword string) []*server.User {
	u := []*server.User{
		{
			Username: internalUser, Password: internalPassword,
			// jwt.ConnectionTypeInProcess: no outside client can be it.
			AllowedConnectionTypes: map[string]struct{}{"IN_PROCESS": {}},
		},
		// Its password is never used: clients without credentials are it.
		{Username: readOnlyUser, Password: randomPassword(), Permissions: readOnly},
	}
	if adminPassword != "" {
		u = append(u, &server.User{Username: AdminUser, Password: adminPassword})
	}
	return u
}

// randomPassword returns 128 random bits as text that is safe in a URL.
func randomPassword() string { return rand.Text() }

// Connect opens an in-process client connection with every right. Its sync
// subscriptions queue at most 1,024 messages (eventstore.SyncQueueLen), not
// nats.go's 65,536: every event-store load subscribes afresh, and the
// default makes each one allocate a 512 KiB channel. opts may override it.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{nats.InProcessServer(s.ns), nats.MaxReconnects(-1), nats.SyncQueueLen(1024)}
	if s.internalPassword != "" {
		base = append(base, nats.UserInfo(internalUser, s.internalPassword))
	}
	return nats.Connect("", append(base, opts...)...)
}

// ClientURL is the URL outside clients use, or "" without a listener.
// Without credentials it only reads.
func (s *Server) ClientURL() string {
	if s.ns.Addr() == nil {
		return ""
	}
	return s.ns.ClientURL()
}

// AdminURL is ClientURL with the admin user's credentials in it, or ""
// without a listener or an admin password.
func (s *Server) AdminURL() string {
	raw := s.ClientURL()
	if raw == "" || s.adminPassword == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.User = url.UserPassword(AdminUser, s.adminPassword)
	return u.String()
}

// Shutdown stops the server, waits until it has flushed its stores, and
// gives the store directory up.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	_ = s.lock.Release()
}

// fatalLogger hands the server's first Fatalf message to its channel and
// drops every other log line (the server ran with NoLog before).
type fatalLogger chan<- string

var _ server.Logger = fatalLogger(nil)

func (l fatalLogger) Fatalf(format string, v ...any) {
	select {
	case l <- fmt.Sprintf(format, v...):
	default:
	}
}
func (fatalLogger) Noticef(string, ...any) {}
func (fatalLogger) Warnf(string, ...any)   {}
func (fatalLogger) Errorf(string, ...any)  {}
func (fatalLogger) Debugf(string, ...any)  {}
func (fatalLogger) Tracef(string, ...any)  {}
