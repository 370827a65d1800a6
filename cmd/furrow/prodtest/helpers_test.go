// Package prodtest runs Furrow in its production shape and talks to it over
// gRPC: the three service binaries (built here with go build), a 3-node
// nats-server cluster or a server configured with deploy/nats/accounts.conf,
// and PostgreSQL. It proves the binaries' flags, the replicated streams,
// replicas sharing one database, the NATS users' permissions and mTLS roles
// work together, which unit tests of each piece cannot.
//
// The tests need PostgreSQL: FURROW_TEST_POSTGRES_DSN (make test starts a
// server and sets it). Without it they skip, except under CI=true where
// they fail. They are skipped under -short.
package prodtest

import (
	"bufio"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to make and drop test schemas
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/furrow/furrow/pkg/projection/projectiontest"

	"github.com/furrow/furrow/cmd/furrow/internal/provision"
)

// binaries are the built service binaries, by name.
var binaries = map[string]string{}

// servicePackages are the binaries the tests build.
var servicePackages = []string{
	"github.com/furrow/furrow/services/procurement/cmd/procurement",
	"github.com/furrow/furrow/services/brand-incubation/cmd/brand-incubation",
	"github.com/furrow/furrow/services/farmer-ledger/cmd/farmer-ledger",
	"github.com/furrow/furrow/cmd/furrow", // the admin step: furrow admin streams apply
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() || (os.Getenv(postgresEnv) == "" && os.Getenv("CI") != "true") {
			return m.Run() // every test skips: build nothing
		}
		dir, err := os.MkdirTemp("", "furrow-prodtest")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		build := exec.Command("go", append([]string{"build", "-o", dir + string(filepath.Separator)}, servicePackages...)...)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build the service binaries:", err)
			return 1
		}
		for _, p := range servicePackages {
			binaries[filepath.Base(p)] = filepath.Join(dir, filepath.Base(p))
		}
		return m.Run()
	}()
	os.Exit(code)
}

// needs skips t under -short and without PostgreSQL (failing under CI).
func needs(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("production-shape system test: starts NATS and the service binaries")
	}
	if os.Getenv(postgresEnv) == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL: %s is not set; under CI the production-shape tests must run (make test sets it)", postgresEnv)
		}
		t.Skipf("PostgreSQL: %s is not set; skipping the production-shape tests (make test starts a server and sets it)", postgresEnv)
	}
}

// postgresEnv names the DSN of the PostgreSQL server tests use.
const postgresEnv = "FURROW_TEST_POSTGRES_DSN"

// postgresSchema creates a schema of its own for the test, dropped at the
// end, and returns a DSN whose search_path puts the projections there:
// every replica of the test shares it, as production replicas share a
// database.
func postgresSchema(t *testing.T) (dsn string, db *sql.DB) {
	t.Helper()
	dsn = projectiontest.PostgresSchemaDSN(t, "the production-shape tests")
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return dsn, db
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a running service binary.
type proc struct {
	name     string
	grpcAddr string
	opsAddr  string
	cmd      *exec.Cmd
	done     chan error
	mu       sync.Mutex
	out      strings.Builder
}

// output is what the process logged so far.
func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// start runs binary with args and env (added to a minimal environment),
// its own gRPC and ops addresses, and waits until /readyz says it serves.
func start(t *testing.T, name, binary string, env []string, args ...string) *proc {
	t.Helper()
	return startAt(t, name, binary, freeAddr(t), freeAddr(t), env, args...)
}

// startAt is start on given gRPC and ops addresses: a replica restarted
// where it ran before, so its clients reconnect to it.
func startAt(t *testing.T, name, binary, grpcAddr, opsAddr string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, grpcAddr: grpcAddr, opsAddr: opsAddr, done: make(chan error, 1)}
	args = append([]string{"--grpc-addr", p.grpcAddr, "--ops-addr", p.opsAddr, "--log-format", "text",
		"--shutdown-timeout", "10s", "--start-timeout", "60s"}, args...)
	p.cmd = exec.Command(binary, args...)
	// Not the test's environment: the binaries must get everything from
	// the flags and variables given here.
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() {
		err := p.cmd.Wait()
		pw.Close()
		p.done <- err
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.output())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get("http://" + p.opsAddr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("%s exited before it was ready: %v\n%s", name, err, p.output())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 60s\n%s", name, p.output())
		}
	}
}

// stop sends SIGTERM and returns the exit error once the process ended.
func (p *proc) stop(t *testing.T) error {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop within 30s of SIGTERM\n%s", p.name, p.output())
		return nil
	}
}

// dial connects to p over plain gRPC (--insecure-dev).
func (p *proc) dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	return dialWith(t, p.grpcAddr, insecure.NewCredentials())
}

func dialWith(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// provisionLog creates every stream and durable consumer with replicas
// replicas, as `furrow admin streams apply` does before the services start
// (js must hold the admin's rights), retrying each attempt on its own
// deadline: right after a cluster elects its meta leader, a stream request
// can go unanswered, and one request must not wait out the whole test.
func provisionLog(ctx context.Context, t *testing.T, js jetstream.JetStream, replicas int) {
	t.Helper()
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := provision.Apply(actx, js, provision.Options{Replicas: replicas})
		cancel()
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("provision the streams with %d replicas: %v", replicas, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// furrowCLI runs the built furrow binary with args and env (added to a
// minimal environment) and returns what it printed and how it exited.
func furrowCLI(t *testing.T, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(binaries["furrow"], args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// startFailing runs binary with args and env, expects it to exit with an
// error before it is ready, and returns what it logged.
func startFailing(t *testing.T, name, binary string, env []string, args ...string) string {
	t.Helper()
	args = append([]string{"--grpc-addr", freeAddr(t), "--ops-addr", freeAddr(t), "--log-format", "text", "--start-timeout", "30s"}, args...)
	cmd := exec.CommandContext(t.Context(), binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("%s exited cleanly; want a refusal to start:\n%s", name, out)
	}
	return string(out)
}
