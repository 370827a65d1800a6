package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Why the sync setting is checked here: a NATS client cannot see it. The
// client protocol and the JetStream API ($JS.API.INFO) show account
// limits, not the server's fsync policy; the server's configuration is
// visible only to the system account ($SYS.REQ.SERVER.PING.VARZ) and on
// the monitoring endpoint (/varz, jetstream.config.sync_always). Services
// hold neither (monitoring belongs on a private network, the system
// account to operators), so the migration step that runs before them
// checks every node's /varz and refuses to provision a cluster that would
// acknowledge events before they are on disk.

// ErrLazySync means a node does not fsync every write.
var ErrLazySync = errors.New("a NATS node does not sync every write")

// NodeSync is one node's fsync setting, as its /varz reports it.
type NodeSync struct {
	URL    string
	Server string
	// Always is sync_always: every write is fsynced before it is
	// acknowledged (`sync_interval: always`).
	Always bool
	// Interval is sync_interval, the background fsync period otherwise.
	Interval time.Duration
}

// String is how `furrow admin streams apply` prints n.
func (n NodeSync) String() string {
	if n.Always {
		return fmt.Sprintf("sync %s (%s): sync_interval always", n.Server, n.URL)
	}
	return fmt.Sprintf("sync %s (%s): fsync every %s, NOT on every write", n.Server, n.URL, n.Interval)
}

// CheckSync reads /varz of every node's monitoring endpoint (base URLs
// such as http://nats-1:8222) and returns what each reports; the error is
// ErrLazySync naming the nodes that do not sync every write, or why a node
// could not be read.
func CheckSync(ctx context.Context, client *http.Client, monitors []string) ([]NodeSync, error) {
	if client == nil {
		client = http.DefaultClient
	}
	var (
		out  []NodeSync
		lazy []string
	)
	for _, base := range monitors {
		n, err := nodeSync(ctx, client, strings.TrimRight(base, "/"))
		if err != nil {
			return out, err
		}
		out = append(out, n)
		if !n.Always {
			lazy = append(lazy, fmt.Sprintf("%s (%s) fsyncs every %s", n.Server, n.URL, n.Interval))
		}
	}
	if len(lazy) > 0 {
		return out, fmt.Errorf("%w: %s; set `sync_interval: always` in its jetstream block (deploy/nats/nats-N.conf)",
			ErrLazySync, strings.Join(lazy, "; "))
	}
	return out, nil
}

func nodeSync(ctx context.Context, client *http.Client, base string) (NodeSync, error) {
	n := NodeSync{URL: base}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/varz", nil)
	if err != nil {
		return n, fmt.Errorf("monitoring URL %q: %w", base, err)
	}
	res, err := client.Do(req)
	if err != nil {
		return n, fmt.Errorf("read %s/varz: %w", base, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return n, fmt.Errorf("read %s/varz: %s", base, res.Status)
	}
	var varz struct {
		ServerName string `json:"server_name"`
		JetStream  struct {
			Config *struct {
				SyncInterval time.Duration `json:"sync_interval"`
				SyncAlways   bool          `json:"sync_always"`
			} `json:"config"`
		} `json:"jetstream"`
	}
	if err := json.NewDecoder(res.Body).Decode(&varz); err != nil {
		return n, fmt.Errorf("read %s/varz: %w", base, err)
	}
	if varz.JetStream.Config == nil {
		return n, fmt.Errorf("%s/varz: JetStream is not enabled on %s", base, varz.ServerName)
	}
	n.Server = varz.ServerName
	n.Always = varz.JetStream.Config.SyncAlways
	n.Interval = varz.JetStream.Config.SyncInterval
	if !n.Always && n.Interval == 0 {
		n.Interval = 2 * time.Minute // the server's default
	}
	return n, nil
}
