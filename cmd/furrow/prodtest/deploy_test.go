package prodtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/natstest"
)

// deployDir holds the production configuration files under test.
var deployDir = filepath.Join("..", "..", "..", "deploy")

// natsEnv is what docker-compose.yml gives the NATS nodes: passwords and
// route URLs carrying the cluster password. routes are the route
// addresses by node.
func natsEnv(routes [3]string) []string {
	env := []string{"NATS_CLUSTER_PASSWORD=pw-cluster"}
	for user, pw := range natsPasswords {
		env = append(env, "NATS_"+strings.ToUpper(user)+"_PASSWORD="+pw)
	}
	for i, r := range routes {
		env = append(env, fmt.Sprintf("NATS_ROUTE_%d=nats-route://route:pw-cluster@%s", i+1, r))
	}
	return env
}

// TestDeployNATSConfigs checks deploy/nats: nats-server accepts the three
// files as they are, and three nodes started from them (only addresses and
// the store directory moved to this machine) form a JetStream cluster that
// holds a replicated stream the admin user created and a service user
// writes. Docker is not
// needed: the nats-server is the one the Go module pins, as in the image.
func TestDeployNATSConfigs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nats-server processes")
	}
	t.Parallel()
	bin := natstest.Binary(t)
	composeRoutes := [3]string{"nats-1:6222", "nats-2:6222", "nats-3:6222"}
	for i := 1; i <= 3; i++ {
		cmd := exec.Command(bin, "-t", "-c", filepath.Join(deployDir, "nats", fmt.Sprintf("nats-%d.conf", i)))
		cmd.Env = natsEnv(composeRoutes)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("nats-server -t nats-%d.conf: %v\n%s", i, err, out)
		}
	}

	cluster := startDeployCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	provisionLog(ctx, t, cluster.jetStream(t, "admin"), 3)
	js := cluster.jetStream(t, "ledger")
	if _, err := js.Publish(ctx, "ledger.farmer.F1.farmer_registered", []byte("x")); err != nil {
		t.Fatalf("publish as the ledger user: %v", err)
	}
	for {
		st, err := js.Stream(ctx, "LEDGER")
		if err != nil {
			t.Fatal(err)
		}
		info := st.CachedInfo()
		current := 0
		if info.Cluster != nil {
			for _, r := range info.Cluster.Replicas {
				if r.Current {
					current++
				}
			}
		}
		if info.State.Msgs == 1 && current == 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("LEDGER: %d messages, cluster %+v; want 1 message on a leader and 2 current replicas", info.State.Msgs, info.Cluster)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deployCluster is three nodes started from deploy/nats on this machine:
// the files as they are, with only the addresses and the store directory
// moved.
type deployCluster struct {
	// urls are the client URLs, comma-separated.
	urls string
	// monitors are the nodes' monitoring endpoints (http://host:port).
	monitors []string
}

// startDeployCluster starts the three nodes and stops them when t ends.
func startDeployCluster(t *testing.T) *deployCluster {
	t.Helper()
	return startDeployClusterWith(t, nil)
}

// startDeployClusterWith is startDeployCluster with each node's
// configuration passed through edit (if not nil) after its addresses moved:
// a step of deploy/README.md applied to the files.
func startDeployClusterWith(t *testing.T, edit func(conf string) string) *deployCluster {
	t.Helper()
	bin := natstest.Binary(t)
	var client, route, monitor [3]string
	for i := range 3 {
		client[i], route[i], monitor[i] = freeAddr(t), freeAddr(t), freeAddr(t)
	}
	accounts, err := os.ReadFile(filepath.Join(deployDir, "nats", "accounts.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		conf, err := os.ReadFile(filepath.Join(deployDir, "nats", fmt.Sprintf("nats-%d.conf", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		moved := strings.NewReplacer(
			"listen: 0.0.0.0:4222", "listen: "+client[i],
			"listen: 0.0.0.0:6222", "listen: "+route[i],
			"http: 0.0.0.0:8222", "http: "+monitor[i],
			"store_dir: /data/jetstream", "store_dir: "+filepath.Join(dir, "js"),
		).Replace(string(conf))
		if moved == string(conf) || strings.Contains(moved, "0.0.0.0") || strings.Contains(moved, "/data/") {
			t.Fatalf("nats-%d.conf no longer has the addresses this test moves:\n%s", i+1, conf)
		}
		if edit != nil {
			moved = edit(moved)
		}
		path := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(path, []byte(moved), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "accounts.conf"), accounts, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", path)
		cmd.Env = natsEnv(route)
		var logs strings.Builder
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("nats-%d log:\n%s", i+1, logs.String())
			}
		})
	}
	c := &deployCluster{urls: "nats://" + strings.Join(client[:], ",nats://")}
	for _, m := range monitor {
		c.monitors = append(c.monitors, "http://"+m)
	}
	return c
}

// connect connects as user of accounts.conf, with the inbox prefix the
// user may receive replies on, once the cluster accepts the connection.
func (c *deployCluster) connect(t *testing.T, user string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.UserInfo(user, natsPasswords[user]), nats.MaxReconnects(-1)}, opts...)
	if inbox := inboxPrefix(user); inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		nc, err := nats.Connect(c.urls, opts...)
		if err == nil {
			t.Cleanup(nc.Close)
			return nc
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect as %s: %v", user, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// jetStream is a JetStream context connected as user.
func (c *deployCluster) jetStream(t *testing.T, user string) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(c.connect(t, user))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// inboxPrefix is where accounts.conf lets user receive replies: a
// service user only on its own prefix; empty means the default _INBOX.
func inboxPrefix(user string) string {
	switch user {
	case "procurement", "brand", "ledger":
		return "_INBOX_" + user
	}
	return ""
}
