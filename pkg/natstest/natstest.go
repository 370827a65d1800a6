// Package natstest starts real NATS servers for tests: embedded in the test
// process, or the standalone nats-server binary built from its Go module (the
// version pkg/go.mod pins), alone or as a three-node JetStream cluster. One
// contract suite can then run against every deployment shape.
package natstest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/natsembed"
)

// Server is a NATS deployment under test.
type Server struct {
	// Name says which shape it is: "embedded", "standalone" or "cluster".
	Name string
	// Replicas is the replication factor streams should use on it.
	Replicas int
	// URLs are the client URLs of the standalone or cluster nodes, for
	// processes under test (empty for an embedded server).
	URLs    []string
	connect func() (*nats.Conn, error)
}

// Options customise the nats-server processes of StandaloneWith and
// ClusterWith.
type Options struct {
	// Config is appended to every node's configuration file, e.g. an
	// accounts block or "include ./accounts.conf".
	Config string
	// Files are written next to every node's configuration file, so that
	// Config can include them.
	Files map[string][]byte
	// Env is added to the processes' environment: the values of variables
	// ($NAME) the configuration refers to.
	Env []string
	// ConnectOptions are used by Connect and to check the nodes are up
	// (credentials, when Config requires them).
	ConnectOptions []nats.Option
	// Network, when set, runs node i in its network namespace: clients
	// reach it at Network.ClientHost(i), its peers over the cluster
	// network, which Network.Cut can partition.
	Network *Network
}

// Connect opens a client connection (and closes it when the test ends).
func (s *Server) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := s.connect()
	if err != nil {
		t.Fatalf("connect to %s NATS: %v", s.Name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a fresh connection.
func (s *Server) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(s.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// Embedded starts an in-process server with sync always.
func Embedded(t testing.TB) *Server {
	t.Helper()
	srv, err := natsembed.Start(natsembed.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return &Server{Name: "embedded", Replicas: 1, connect: func() (*nats.Conn, error) { return srv.Connect() }}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds the nats-server binary once per test process and returns
// its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "natstest-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "nats-server")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/nats-io/nats-server/v2")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build nats-server: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Standalone starts one nats-server process with JetStream and sync always.
func Standalone(t testing.TB) *Server {
	t.Helper()
	return StandaloneWith(t, Options{})
}

// StandaloneWith starts one nats-server process configured by o.
func StandaloneWith(t testing.TB, o Options) *Server {
	t.Helper()
	urls := startProcesses(t, 1, o)
	s := &Server{Name: "standalone", Replicas: 1, URLs: urls, connect: func() (*nats.Conn, error) {
		return nats.Connect(urls[0], o.ConnectOptions...)
	}}
	if o.Config != "" {
		waitForMetaLeader(t, s) // JetStream may be enabled per account only now
	}
	return s
}

// Cluster starts a three-node JetStream cluster of nats-server processes
// and waits until it has a meta leader. Streams on it use three replicas.
func Cluster(t testing.TB) *Server {
	t.Helper()
	return ClusterWith(t, Options{})
}

// ClusterWith starts a three-node cluster configured by o.
func ClusterWith(t testing.TB, o Options) *Server {
	t.Helper()
	urls := startProcesses(t, 3, o)
	s := &Server{Name: "cluster", Replicas: 3, URLs: urls, connect: func() (*nats.Conn, error) {
		return nats.Connect(strings.Join(urls, ","), append([]nats.Option{nats.MaxReconnects(-1)}, o.ConnectOptions...)...)
	}}
	waitForMetaLeader(t, s)
	return s
}

func startProcesses(t testing.TB, n int, o Options) []string {
	t.Helper()
	bin := Binary(t)
	clientAddrs := make([]string, n)
	routeAddrs := make([]string, n)
	for i := range n {
		if o.Network != nil {
			clientAddrs[i] = net.JoinHostPort(o.Network.ClientHost(i), strconv.Itoa(NetworkClientPort))
			routeAddrs[i] = net.JoinHostPort(o.Network.ClusterHost(i), strconv.Itoa(NetworkClusterPort))
			continue
		}
		clientAddrs[i] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		routeAddrs[i] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	}
	var routes []string
	for _, a := range routeAddrs {
		routes = append(routes, "nats-route://"+a)
	}
	urls := make([]string, n)
	for i := range n {
		dir := t.TempDir()
		conf := fmt.Sprintf(`server_name: n%d
listen: %s
jetstream {
  store_dir: %q
  sync_interval: always
}
`, i, clientAddrs[i], filepath.Join(dir, "js"))
		if n > 1 {
			conf += fmt.Sprintf(`cluster {
  name: furrow-test
  listen: %s
  routes: [%s]
}
`, routeAddrs[i], strings.Join(routes, ", "))
		}
		conf += o.Config + "\n"
		for name, data := range o.Files {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", path)
		if o.Network != nil {
			cmd = o.Network.Command(i, bin, "-c", path)
		}
		cmd.Env = append(os.Environ(), o.Env...)
		var logs strings.Builder
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
			}
			if t.Failed() {
				t.Logf("nats-server n%d log:\n%s", i, logs.String())
			}
		})
		urls[i] = "nats://" + clientAddrs[i]
	}
	for _, u := range urls {
		deadline := time.Now().Add(20 * time.Second)
		for {
			nc, err := nats.Connect(u, o.ConnectOptions...)
			if err == nil {
				nc.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nats-server at %s not reachable: %v", u, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return urls
}

func waitForMetaLeader(t testing.TB, s *Server) {
	t.Helper()
	js := s.JetStream(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster has no JetStream meta leader: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
