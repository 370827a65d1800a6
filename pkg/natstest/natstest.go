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
	connect  func() (*nats.Conn, error)
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
	urls := startProcesses(t, 1)
	return &Server{Name: "standalone", Replicas: 1, connect: func() (*nats.Conn, error) { return nats.Connect(urls[0]) }}
}

// Cluster starts a three-node JetStream cluster of nats-server processes
// and waits until it has a meta leader. Streams on it use three replicas.
func Cluster(t testing.TB) *Server {
	t.Helper()
	urls := startProcesses(t, 3)
	s := &Server{Name: "cluster", Replicas: 3, connect: func() (*nats.Conn, error) {
		return nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1))
	}}
	waitForMetaLeader(t, s)
	return s
}

func startProcesses(t testing.TB, n int) []string {
	t.Helper()
	bin := Binary(t)
	clientPorts := make([]int, n)
	routePorts := make([]int, n)
	for i := range n {
		clientPorts[i], routePorts[i] = freePort(t), freePort(t)
	}
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	urls := make([]string, n)
	for i := range n {
		dir := t.TempDir()
		conf := fmt.Sprintf(`server_name: n%d
listen: 127.0.0.1:%d
jetstream {
  store_dir: %q
  sync_interval: always
}
`, i, clientPorts[i], filepath.Join(dir, "js"))
		if n > 1 {
			conf += fmt.Sprintf(`cluster {
  name: furrow-test
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, routePorts[i], strings.Join(routes, ", "))
		}
		path := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", path)
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
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i])
	}
	for _, u := range urls {
		deadline := time.Now().Add(20 * time.Second)
		for {
			nc, err := nats.Connect(u)
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
