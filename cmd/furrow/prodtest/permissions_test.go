package prodtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/aggregate"
	"github.com/furrow/furrow/pkg/deadletter"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"

	"github.com/furrow/furrow/cmd/furrow/internal/provision"

	brand "github.com/furrow/furrow/services/brand-incubation/service"
	ledger "github.com/furrow/furrow/services/farmer-ledger/service"
	procurement "github.com/furrow/furrow/services/procurement/service"
)

// identity is one NATS user of accounts.conf, connected for probing.
type identity struct {
	user string
	nc   *nats.Conn

	// violations receives the permission violations the server reports
	// to this connection.
	violations chan string
}

func connectIdentity(t *testing.T, c *deployCluster, user string) *identity {
	t.Helper()
	id := &identity{user: user, violations: make(chan string, 64)}
	id.nc = c.connect(t, user, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			id.violations <- err.Error()
		}
	}))
	return id
}

// outcome is how the cluster answered one attempt.
type outcome struct {
	refused bool
	// how is the refusal seen (or what answered when it was not refused).
	how string
}

// try sends body to subject as a request and reports whether the server's
// permissions refused it, JetStream refused it with an error, or it was
// answered. An attempt nothing answers within the timeout and no
// violation names is not counted as refused.
func (id *identity) try(subject string, body []byte) outcome {
	for len(id.violations) > 0 { // stale reports of earlier attempts
		<-id.violations
	}
	type answer struct {
		msg *nats.Msg
		err error
	}
	done := make(chan answer, 1)
	go func() {
		m, err := id.nc.Request(subject, body, 3*time.Second)
		done <- answer{m, err}
	}()
	for {
		select {
		case v := <-id.violations:
			if strings.Contains(v, subject) {
				return outcome{refused: true, how: "permissions violation"} // the request itself times out unanswered
			}
		case a := <-done:
			select { // the violation may race the request's own failure
			case v := <-id.violations:
				if strings.Contains(v, subject) {
					return outcome{refused: true, how: "permissions violation"}
				}
			case <-time.After(50 * time.Millisecond):
			}
			if a.err != nil {
				return outcome{how: "no refusal seen: " + a.err.Error()}
			}
			var resp struct {
				Error *struct {
					Code        int    `json:"code"`
					ErrCode     int    `json:"err_code"`
					Description string `json:"description"`
				} `json:"error"`
			}
			if json.Unmarshal(a.msg.Data, &resp) == nil && resp.Error != nil {
				return outcome{refused: true, how: fmt.Sprintf("JetStream error %d: %s", resp.Error.ErrCode, resp.Error.Description)}
			}
			if status := a.msg.Header.Get("Status"); status != "" {
				return outcome{how: "ALLOWED: status " + status + " " + a.msg.Header.Get("Description")}
			}
			return outcome{how: "ALLOWED: " + truncate(string(a.msg.Data), 120)}
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// durableUnderTest is a handler's durable consumer in the event log.
type durableUnderTest struct {
	stream, name string
	// owner is the NATS user of the service whose handler consumes it.
	owner   string
	filters []string
}

// serviceUsers are the services' NATS users, and the stream each owns.
var serviceUsers = map[string]string{"procurement": "PROCUREMENT", "brand": "BRAND", "ledger": "LEDGER"}

// eventStreams are the services' streams.
var eventStreams = []string{"PROCUREMENT", "BRAND", "LEDGER"}

// logState is what the probes must leave untouched: every stream's
// configuration and messages, every consumer's configuration and progress,
// and which streams and consumers exist.
type logState map[string]string

func snapshot(ctx context.Context, t *testing.T, js jetstream.JetStream) logState {
	t.Helper()
	state := logState{}
	names := js.StreamNames(ctx)
	var streams []string
	for n := range names.Name() {
		streams = append(streams, n)
	}
	if err := names.Err(); err != nil {
		t.Fatalf("stream names: %v", err)
	}
	sort.Strings(streams)
	state["streams"] = strings.Join(streams, ",")
	for _, name := range streams {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info := st.CachedInfo()
		cfg := info.Config
		cfg.Metadata = nil
		b, _ := json.Marshal(cfg)
		state["stream "+name+" config"] = string(b)
		state["stream "+name+" state"] = fmt.Sprintf("messages %d, first %d, last %d", info.State.Msgs, info.State.FirstSeq, info.State.LastSeq)
		// Names come from the meta layer; infos from a listing, which a
		// cluster gathers from every consumer's leader and which may, while
		// a leader moves, name one twice and miss another: list again
		// until it holds every name.
		var consumers []string
		lister := st.ConsumerNames(ctx)
		for n := range lister.Name() {
			consumers = append(consumers, n)
		}
		if err := lister.Err(); err != nil {
			t.Fatalf("consumers of %s: %v", name, err)
		}
		infos := map[string]*jetstream.ConsumerInfo{}
		for attempt := 0; len(infos) < len(consumers); attempt++ {
			if attempt == 10 {
				t.Fatalf("consumers of %s: the listing holds %d of %v after %d tries", name, len(infos), consumers, attempt)
			}
			if attempt > 0 {
				time.Sleep(200 * time.Millisecond)
			}
			clear(infos)
			for ci := range st.ListConsumers(ctx).Info() {
				infos[ci.Name] = ci
			}
		}
		for _, cname := range consumers {
			ci := infos[cname]
			if ci == nil {
				t.Fatalf("consumer %s/%s is named but not listed", name, cname)
			}
			ccfg := ci.Config
			ccfg.Metadata = nil
			b, _ := json.Marshal(ccfg)
			state["consumer "+name+"/"+ci.Name+" config"] = string(b)
			state["consumer "+name+"/"+ci.Name+" state"] = fmt.Sprintf("delivered %d, ack floor %d, ack pending %d, pending %d, paused %v",
				ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumAckPending, ci.NumPending, ci.Paused)
		}
		sort.Strings(consumers)
		state["consumers of "+name] = strings.Join(consumers, ",")
	}
	return state
}

// changes lists what differs between two snapshots.
func (s logState) changes(after logState) []string {
	var out []string
	for k, v := range s {
		if after[k] != v {
			out = append(out, fmt.Sprintf("%s: %s → %s", k, v, after[k]))
		}
	}
	for k, v := range after {
		if _, ok := s[k]; !ok {
			out = append(out, fmt.Sprintf("%s: (none) → %s", k, v))
		}
	}
	sort.Strings(out)
	return out
}

// probe is one forbidden action, tried by every identity in who.
type probe struct {
	action  string
	who     []string
	subject func(user string) string
	body    func(user string) []byte
}

// matrix collects the outcome of every probe by action and identity.
type matrix struct {
	mu      sync.Mutex
	actions []string
	cells   map[string]map[string]string
}

func (m *matrix) set(action, user, cell string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cells == nil {
		m.cells = map[string]map[string]string{}
	}
	if _, ok := m.cells[action]; !ok {
		m.actions = append(m.actions, action)
		m.cells[action] = map[string]string{}
	}
	m.cells[action][user] = cell
}

func (m *matrix) String(users []string) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "action\t%s\n", strings.Join(users, "\t"))
	for _, a := range m.actions {
		row := []string{a}
		for _, u := range users {
			cell := m.cells[a][u]
			if cell == "" {
				cell = "-"
			}
			row = append(row, cell)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	_ = tw.Flush()
	return b.String()
}

// count is how many attempts the matrix holds.
func (m *matrix) count() int {
	n := 0
	for _, row := range m.cells {
		n += len(row)
	}
	return n
}

// short names a refusal in a matrix cell.
func (o outcome) short() string {
	switch {
	case !o.refused:
		return "ALLOWED"
	case o.how == "permissions violation":
		return "denied (perm)"
	default:
		return "refused (" + strings.TrimPrefix(strings.SplitN(o.how, ":", 2)[0], "JetStream ") + ")"
	}
}

// TestEventLog runs the production event log: the three nodes of
// deploy/nats with the users of accounts.conf.
//
//   - `furrow admin streams apply`, as the admin user, creates every
//     stream and durable after checking each node syncs every write;
//   - apply again: a second run changes nothing; lowering replicas is
//     refused.
//   - permissions: every action that could destroy, rewrite or steal from
//     the log, tried as every other identity (each service's user and the
//     operator user), must be refused and change nothing. It logs the
//     matrix of action × identity → refusal seen.
//   - reflection: what permissions cannot stop (a reply subject inside
//     another service's stream) does not read as that service's event;
//   - drift: a service binary refuses to start on a stream that lost a
//     guarantee (deletes allowed, fewer replicas), naming the setting.
func TestEventLog(t *testing.T) {
	needs(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cluster := startDeployCluster(t)
	admin := cluster.jetStream(t, "admin")
	applyEnv := []string{"FURROW_NATS_URL=" + cluster.urls, "FURROW_NATS_USER=admin", "FURROW_NATS_PASSWORD=" + natsPasswords["admin"],
		"FURROW_NATS_MONITOR_URL=" + strings.Join(cluster.monitors, ",")}
	var durables []durableUnderTest
	for _, c := range provision.Consumers() {
		durables = append(durables, durableUnderTest{stream: c.Stream, name: c.Durable, owner: c.Service, filters: c.FilterSubjects})
	}

	// The admin step every subtest builds on.
	out, errOut, err := furrowCLI(t, applyEnv, "admin", "streams", "apply", "--replicas", "3")
	if err != nil {
		t.Fatalf("furrow admin streams apply: %v\n%s%s", err, out, errOut)
	}
	t.Logf("furrow admin streams apply:\n%s", out)
	want := []string{"stream PROCUREMENT: created", "stream BRAND: created", "stream LEDGER: created", "stream DEADLETTER: created"}
	for _, b := range append(provision.Buckets(3), provision.SnapshotBuckets(3)...) {
		want = append(want, "bucket KV_"+b.Bucket+": created")
	}
	for _, d := range durables {
		want = append(want, "consumer "+d.stream+"/"+d.name+": created")
	}
	for i, m := range cluster.monitors {
		want = append(want, fmt.Sprintf("sync nats-%d (%s): sync_interval always", i+1, m))
	}
	for _, w := range want {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("furrow admin streams apply: the output lacks %q", w)
		}
	}

	t.Run("apply again", func(t *testing.T) {
		before := snapshot(ctx, t, admin)
		out, errOut, err := furrowCLI(t, applyEnv, "admin", "streams", "apply", "--replicas", "3")
		if err != nil {
			t.Fatalf("second furrow admin streams apply: %v\n%s%s", err, out, errOut)
		}
		// 4 streams, the ledger's key bucket, the request-id and snapshot buckets, the durables.
		if n := strings.Count(out, ": unchanged\n"); n != 4+1+len(provision.Buckets(3))+len(provision.SnapshotBuckets(3))+len(durables) || strings.Contains(out, "created") || strings.Contains(out, "updated") {
			t.Errorf("second run: want every stream, bucket and consumer unchanged, got:\n%s", out)
		}
		out, errOut, err = furrowCLI(t, applyEnv, "admin", "streams", "apply", "--replicas", "1")
		if err == nil || !strings.Contains(errOut, "num_replicas: would lower 3 → 1") {
			t.Errorf("apply --replicas 1 on R3 streams: %v; want a refusal naming num_replicas\n%s%s", err, out, errOut)
		}
		t.Logf("apply --replicas 1: %v\n%s", err, errOut)
		if ch := before.changes(snapshot(ctx, t, admin)); len(ch) > 0 {
			t.Errorf("the second run or the refused one changed the log:\n\t%s", strings.Join(ch, "\n\t"))
		}
	})

	t.Run("snapshots", func(t *testing.T) { snapshotsOn(ctx, t, cluster) })

	t.Run("permissions", func(t *testing.T) { probeLog(ctx, t, cluster, admin, durables) })

	t.Run("reflection", func(t *testing.T) { reflectIntoLedger(ctx, t, cluster, admin) })

	t.Run("drift", func(t *testing.T) {
		env := func(user string) []string {
			return []string{"FURROW_NATS_USER=" + user, "FURROW_NATS_PASSWORD=" + natsPasswords[user], "FURROW_POSTGRES_DSN=postgres://unused"}
		}
		common := []string{"--nats-url", cluster.urls, "--stream-replicas", "3", "--allow-plaintext-grpc"}
		// BRAND recreated by hand without deny_purge.
		if err := admin.DeleteStream(ctx, "BRAND"); err != nil {
			t.Fatal(err)
		}
		drifted := brand.Stream(3).Config()
		drifted.DenyPurge = false
		if _, err := admin.CreateStream(ctx, drifted); err != nil {
			t.Fatal(err)
		}
		out := startFailing(t, "brand-incubation", binaries["brand-incubation"], env("brand"), common...)
		if !strings.Contains(out, "refusing to start") || !strings.Contains(out, "deny_purge is false, want true") {
			t.Errorf("brand-incubation on a BRAND stream without deny_purge: want a refusal naming deny_purge, got:\n%s", out)
		}
		t.Logf("brand-incubation on BRAND without deny_purge:\n%s", lastLines(out, 2))

		// Every stream lowered to one replica, on purpose.
		if out, errOut, err := furrowCLI(t, applyEnv, "admin", "streams", "apply", "--replicas", "1", "--allow-replicas-decrease"); err != nil {
			t.Fatalf("apply --replicas 1 --allow-replicas-decrease: %v\n%s%s", err, out, errOut)
		} else if !strings.Contains(out, "num_replicas: 3 → 1") || !strings.Contains(out, "deny_purge: false → true") {
			t.Errorf("apply --replicas 1 --allow-replicas-decrease: want the replicas lowered and BRAND's deny_purge restored, got:\n%s", out)
		}
		out = startFailing(t, "procurement", binaries["procurement"], env("procurement"), common...)
		if !strings.Contains(out, "refusing to start") || !strings.Contains(out, "num_replicas is 1, want at least 3") {
			t.Errorf("procurement with --stream-replicas 3 on an R1 stream: want a refusal naming num_replicas, got:\n%s", out)
		}
		t.Logf("procurement with --stream-replicas 3 on R1 streams:\n%s", lastLines(out, 2))
		st, err := admin.Stream(ctx, "PROCUREMENT")
		if err != nil {
			t.Fatal(err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 1 {
			t.Errorf("PROCUREMENT has %d replicas after the refused start; the service must not change it", r)
		}
	})

	t.Run("backup and restore", func(t *testing.T) { backupAndRestore(ctx, t, cluster, admin, applyEnv) })
}

// backupAndRestore backs the cluster's log up as the admin user, restores
// it into an empty server with the same users, and compares every stream
// and consumer: configuration (but replicas), messages, sequences,
// positions. A service user may not take a backup, and nobody may restore
// over an existing stream.
func backupAndRestore(ctx context.Context, t *testing.T, cluster *deployCluster, admin jetstream.JetStream, applyEnv []string) {
	dir := filepath.Join(t.TempDir(), "backup")
	serviceEnv := []string{"FURROW_NATS_URL=" + cluster.urls, "FURROW_NATS_USER=procurement", "FURROW_NATS_PASSWORD=" + natsPasswords["procurement"]}
	if out, errOut, err := furrowCLI(t, serviceEnv, "admin", "backup", "--dir", filepath.Join(t.TempDir(), "stolen"), "--timeout", "20s"); err == nil ||
		!strings.Contains(strings.ToLower(errOut), "permissions violation") {
		t.Errorf("furrow admin backup as the procurement user: %v; want a permissions violation:\n%s%s", err, out, errOut)
	} else {
		t.Logf("backup as procurement: %v\n%s", err, lastLines(errOut, 1))
	}
	out, errOut, err := furrowCLI(t, applyEnv, "admin", "backup", "--dir", dir)
	if err != nil {
		t.Fatalf("furrow admin backup: %v\n%s%s", err, out, errOut)
	}
	t.Logf("furrow admin backup:\n%s", out)
	if out, errOut, err := furrowCLI(t, applyEnv, "admin", "restore", "--dir", dir); err == nil || !strings.Contains(errOut, "exists") {
		t.Errorf("furrow admin restore over the live streams: %v; want a refusal\n%s%s", err, out, errOut)
	}

	accounts, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "nats", "accounts.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var serverEnv []string
	for user, pw := range natsPasswords {
		serverEnv = append(serverEnv, "NATS_"+strings.ToUpper(user)+"_PASSWORD="+pw)
	}
	empty := natstest.StandaloneWith(t, natstest.Options{
		Config: "include ./accounts.conf", Files: map[string][]byte{"accounts.conf": accounts}, Env: serverEnv,
		ConnectOptions: []nats.Option{nats.UserInfo("admin", natsPasswords["admin"])},
	})
	restoreEnv := []string{"FURROW_NATS_URL=" + empty.URLs[0], "FURROW_NATS_USER=admin", "FURROW_NATS_PASSWORD=" + natsPasswords["admin"]}
	out, errOut, err = furrowCLI(t, restoreEnv, "admin", "restore", "--dir", dir, "--replicas", "1")
	if err != nil {
		t.Fatalf("furrow admin restore: %v\n%s%s", err, out, errOut)
	}
	t.Logf("furrow admin restore:\n%s", out)
	restoredNC, err := nats.Connect(empty.URLs[0], nats.UserInfo("admin", natsPasswords["admin"]))
	if err != nil {
		t.Fatal(err)
	}
	defer restoredNC.Close()
	restored, err := jetstream.New(restoredNC)
	if err != nil {
		t.Fatal(err)
	}
	withoutReplicas := func(s logState) logState {
		for k, v := range s {
			if strings.HasSuffix(k, " config") {
				var m map[string]any
				if json.Unmarshal([]byte(v), &m) == nil {
					delete(m, "num_replicas")
					delete(m, "placement")
					b, _ := json.Marshal(m)
					s[k] = string(b)
				}
			}
		}
		return s
	}
	// A restore keeps each durable's acknowledgement floor; what it had
	// delivered but not seen acknowledged is pending again (delivered
	// anew), and an empty stream's first sequence reads 1, not 0.
	positions := func(s logState) logState {
		for k, v := range s {
			var delivered, floor, ackPending, pending uint64
			var paused bool
			if _, err := fmt.Sscanf(v, "delivered %d, ack floor %d, ack pending %d, pending %d, paused %v", &delivered, &floor, &ackPending, &pending, &paused); err == nil {
				s[k] = fmt.Sprintf("ack floor %d, to process %d, paused %v", floor, ackPending+pending, paused)
			}
			if strings.HasPrefix(v, "messages 0, first ") {
				s[k] = "empty"
			}
		}
		return s
	}
	before, after := positions(withoutReplicas(snapshot(ctx, t, admin))), positions(withoutReplicas(snapshot(ctx, t, restored)))
	if ch := before.changes(after); len(ch) > 0 {
		t.Errorf("the restored log differs from the backed-up one:\n\t%s", strings.Join(ch, "\n\t"))
	}
	for _, name := range []string{"PROCUREMENT", "BRAND", "LEDGER", "DEADLETTER"} {
		if before["stream "+name+" state"] == "" {
			t.Errorf("stream %s missing from the comparison", name)
		}
		t.Logf("%s: %s; consumers %s", name, after["stream "+name+" state"], after["consumers of "+name])
	}
}

// reflectIntoLedger shows what subject permissions cannot stop and checks
// the ledger's reads refuse it. A request's reply subject is not subject
// to permissions, and the server stores its answer in any stream whose
// subjects match: the brand user crafts a PayoutAccountUpdated for farmer
// F7 in its own stream and asks for a direct get of it with a reply
// subject in LEDGER. The stored answer keeps the crafted envelope; loading
// the farmer must fail (eventstore.ErrNotAnEvent), not return the forgery.
func reflectIntoLedger(ctx context.Context, t *testing.T, cluster *deployCluster, admin jetstream.JetStream) {
	brandNC := cluster.connect(t, "brand")
	brandJS, err := jetstream.New(brandNC)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := proto.Marshal(&ledgerevents.PayoutAccountUpdated{FarmerId: "F7", PayoutAccount: "6222-ATTACKER"})
	if err != nil {
		t.Fatal(err)
	}
	forged := nats.NewMsg("brand.forgery.F7.crafted")
	forged.Data = payload
	forged.Header.Set(eventstore.HeaderEventType, "furrow.ledger.events.v1.PayoutAccountUpdated")
	forged.Header.Set(eventstore.HeaderSchemaVersion, "1")
	forged.Header.Set(eventstore.HeaderEventID, "forged-F7")
	ack, err := brandJS.PublishMsg(ctx, forged)
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := admin.Stream(ctx, "LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	const into = "ledger.farmer.F7.payout_account_updated"
	for attempt := 1; ; attempt++ {
		if err := brandNC.PublishRequest("$JS.API.DIRECT.GET.BRAND", into, []byte(fmt.Sprintf(`{"seq":%d}`, ack.Sequence))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if _, err := ledger.GetLastMsgForSubject(ctx, into); err == nil {
			t.Logf("the brand user's reflected direct get is stored in LEDGER on %s (attempt %d): permissions cannot refuse a reply subject", into, attempt)
			break
		}
		if attempt == 50 {
			t.Logf("the cluster never stored the reflected answer; the read check below is moot")
			break
		}
	}
	evs, err := eventstore.New(admin).Load(ctx, "LEDGER", "ledger.farmer.F7.>", 0)
	if !errors.Is(err, eventstore.ErrNotAnEvent) {
		t.Errorf("loading farmer F7 = %d events, %v; want ErrNotAnEvent: the reflected forgery must not read as the ledger's event", len(evs), err)
	} else {
		t.Logf("loading farmer F7: %v", err)
	}
}

// snapshotsOn binds each service's aggregate snapshot bucket as that
// service's NATS user, the way the service does at start: after the admin
// step the bucket is there (a service may not create it), so snapshots are
// on, and the service can write and read a snapshot larger than a message
// (split into parts).
func snapshotsOn(ctx context.Context, t *testing.T, cluster *deployCluster) {
	for user, bucket := range map[string]string{"procurement": procurement.SnapshotBucket, "ledger": ledger.SnapshotBucket} {
		var logged strings.Builder
		snaps := aggregate.BindSnapshots(cluster.jetStream(t, user), bucket, slog.New(slog.NewTextHandler(&logged, nil)))
		if snaps == nil || strings.Contains(logged.String(), "aggregate snapshots off") {
			t.Errorf("%s binding %s after furrow admin streams apply: snapshots off:\n%s", user, bucket, logged.String())
			continue
		}
		big := []byte(strings.Repeat("snapshot ", 300_000)) // beyond the 1 MiB message limit
		if err := snaps.PutSnapshot(ctx, "probe.S1", big); err != nil {
			t.Errorf("%s writes a snapshot into %s: %v", user, bucket, err)
			continue
		}
		// A read is a direct get any replica may answer, and a follower
		// may not hold the write yet (a load then replays instead): read
		// until one that does answers.
		var (
			got []byte
			err error
		)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if got, err = snaps.GetSnapshot(ctx, "probe.S1"); err == nil && string(got) == string(big) {
				break
			}
		}
		if err != nil || string(got) != string(big) {
			t.Errorf("%s reads its snapshot from %s: %d bytes, %v; want the %d it wrote", user, bucket, len(got), err, len(big))
		}
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// probeLog tries every forbidden action as every identity (see TestEventLog).
func probeLog(ctx context.Context, t *testing.T, cluster *deployCluster, admin jetstream.JetStream, durables []durableUnderTest) {
	users := []string{"procurement", "brand", "ledger", "operator"}
	ids := map[string]*identity{}
	for _, u := range users {
		ids[u] = connectIdentity(t, cluster, u)
	}

	// Events for the probes to aim at: one on every durable's filter, and
	// registrations and a payout account change in the ledger.
	seed := map[string][]string{
		"procurement": {"procurement.P1.D1.delivery_recorded"},
		"brand":       {"brand.report.R1.premium_earned", "brand.rule.R1.premium_rule_revised", "brand.report.R2.sales_reported", "brand.rules.R1.premium_rule_ended"},
		"ledger": {"ledger.farmer.F1.farmer_registered", "ledger.farmer.F1.payout_account_updated", "ledger.farmer.F1.payout_requested",
			"$KV.LEDGER_KEYS.farmer.F1"},
	}
	for user, subjects := range seed {
		js, err := jetstream.New(ids[user].nc)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range subjects {
			if _, err := js.Publish(ctx, s, []byte("seed")); err != nil {
				t.Fatalf("%s publishes its own event %s: %v", user, s, err)
			}
		}
	}

	streamConfig := func(name string) jetstream.StreamConfig {
		st, err := admin.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	except := func(owner string) func(string) bool { return func(u string) bool { return u != owner } }
	whoOf := func(keep func(string) bool) []string {
		var out []string
		for _, u := range users {
			if keep(u) {
				out = append(out, u)
			}
		}
		return out
	}
	fixed := func(s string) func(string) string { return func(string) string { return s } }
	raw := func(b []byte) func(string) []byte { return func(string) []byte { return b } }

	var probes []probe
	for _, name := range eventStreams {
		updated := func(change func(*jetstream.StreamConfig)) func(string) []byte {
			cfg := streamConfig(name)
			change(&cfg)
			return raw(mustJSON(cfg))
		}
		update := fixed("$JS.API.STREAM.UPDATE." + name)
		probes = append(probes,
			probe{"update " + name + " max_msgs=2 discard=old", users, update, updated(func(c *jetstream.StreamConfig) {
				c.MaxMsgs, c.Discard = 2, jetstream.DiscardOld
			})},
			probe{"seal " + name, users, update, updated(func(c *jetstream.StreamConfig) { c.Sealed = true })},
			probe{"allow_msg_ttl on " + name, users, update, updated(func(c *jetstream.StreamConfig) { c.AllowMsgTTL = true })},
			probe{"replicas 3→1 on " + name, users, update, updated(func(c *jetstream.StreamConfig) { c.Replicas = 1 })},
			probe{"allow_rollup_hdrs on " + name, users, update, updated(func(c *jetstream.StreamConfig) { c.AllowRollup = true })},
			probe{"delete stream " + name, users, fixed("$JS.API.STREAM.DELETE." + name), raw(nil)},
			probe{"purge " + name, users, fixed("$JS.API.STREAM.PURGE." + name), raw([]byte(`{}`))},
			probe{"delete message " + name + ":1", users, fixed("$JS.API.STREAM.MSG.DELETE." + name), raw([]byte(`{"seq":1}`))},
		)
	}
	dl := streamConfig(deadletter.Stream)
	narrowed := dl
	narrowed.Subjects = []string{"deadletter.brand"}
	probes = append(probes,
		probe{"narrow DEADLETTER subjects", users, fixed("$JS.API.STREAM.UPDATE.DEADLETTER"), raw(mustJSON(narrowed))},
		probe{"delete stream DEADLETTER", users, fixed("$JS.API.STREAM.DELETE.DEADLETTER"), raw(nil)},
		probe{"purge DEADLETTER", users, fixed("$JS.API.STREAM.PURGE.DEADLETTER"), raw([]byte(`{}`))},
		probe{"delete message DEADLETTER:1", users, fixed("$JS.API.STREAM.MSG.DELETE.DEADLETTER"), raw([]byte(`{"seq":1}`))},
		probe{"create stream EVIL sourcing LEDGER", users, fixed("$JS.API.STREAM.CREATE.EVIL"),
			raw(mustJSON(jetstream.StreamConfig{Name: "EVIL", Storage: jetstream.FileStorage, Sources: []*jetstream.StreamSource{{Name: "LEDGER"}}}))},
	)

	// Consumers: every durable, tried by everyone but its owner (pull,
	// ack) and by everyone (change, delete, pause).
	filterFor := func(user, stream string) string {
		switch {
		case user == "procurement" && stream == "LEDGER":
			return "ledger.farmer.*.farmer_registered" // what its farmers projection may create
		case user == "brand" && stream == "PROCUREMENT":
			return "procurement.*.*.delivery_recorded" // what its deliveries projection may create
		}
		return strings.ToLower(stream) + ".>"
	}
	for _, d := range durables {
		cons, err := admin.Consumer(ctx, d.stream, d.name)
		if err != nil {
			t.Fatal(err)
		}
		base := cons.CachedInfo().Config
		id := d.stream + "/" + d.name
		probes = append(probes,
			probe{"pull " + id, whoOf(except(d.owner)), fixed("$JS.API.CONSUMER.MSG.NEXT." + d.stream + "." + d.name),
				raw([]byte(`{"batch":1,"expires":200000000}`))},
			probe{"change filter of " + id, users, func(u string) string {
				return "$JS.API.CONSUMER.CREATE." + d.stream + "." + d.name + "." + filterFor(u, d.stream)
			}, func(u string) []byte {
				cfg := base
				cfg.FilterSubjects, cfg.FilterSubject = nil, filterFor(u, d.stream)
				return mustJSON(map[string]any{"stream_name": d.stream, "config": cfg})
			}},
			probe{"recreate " + id + " (legacy durable API)", users, fixed("$JS.API.CONSUMER.DURABLE.CREATE." + d.stream + "." + d.name),
				raw(mustJSON(map[string]any{"stream_name": d.stream, "config": base}))},
			probe{"delete durable " + id, users, fixed("$JS.API.CONSUMER.DELETE." + d.stream + "." + d.name), raw(nil)},
			probe{"pause " + id, users, fixed("$JS.API.CONSUMER.PAUSE." + d.stream + "." + d.name),
				raw([]byte(`{"pause_until":"2099-01-01T00:00:00Z"}`))},
		)
	}
	notOwner := func(u string) bool { return u != "ledger" && u != "operator" }
	probes = append(probes,
		probe{"direct get LEDGER:1", whoOf(func(u string) bool { return u == "brand" }), fixed("$JS.API.DIRECT.GET.LEDGER"), raw([]byte(`{"seq":1}`))},
		probe{"direct get LEDGER last payout_account_updated", whoOf(notOwner),
			fixed("$JS.API.DIRECT.GET.LEDGER.ledger.farmer.F1.payout_account_updated"), raw(nil)},
		probe{"get message LEDGER:1 (STREAM.MSG.GET)", whoOf(notOwner), fixed("$JS.API.STREAM.MSG.GET.LEDGER"), raw([]byte(`{"seq":1}`))},
		probe{"consumer on LEDGER, filter ledger.>", whoOf(notOwner), fixed("$JS.API.CONSUMER.CREATE.LEDGER.probe.ledger.>"),
			raw(mustJSON(map[string]any{"stream_name": "LEDGER", "config": jetstream.ConsumerConfig{
				Name: "probe", FilterSubject: "ledger.>", AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute}}))},
		probe{"consumer on LEDGER, filter in body", whoOf(notOwner), fixed("$JS.API.CONSUMER.CREATE.LEDGER.probe"),
			raw(mustJSON(map[string]any{"stream_name": "LEDGER", "config": jetstream.ConsumerConfig{
				Name: "probe", FilterSubjects: []string{"ledger.farmer.*.payout_account_updated"}, AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute}}))},
	)
	// The ledger's key bucket (farmers' data keys, wrapped): only the
	// ledger reads or writes its keys; nobody deletes or purges it.
	notLedger := func(u string) bool { return u != "ledger" }
	probes = append(probes,
		probe{"read a data key (direct get KV_LEDGER_KEYS)", whoOf(notLedger),
			fixed("$JS.API.DIRECT.GET.KV_LEDGER_KEYS.$KV.LEDGER_KEYS.farmer.F1"), raw(nil)},
		probe{"get message KV_LEDGER_KEYS:1 (STREAM.MSG.GET)", whoOf(notLedger), fixed("$JS.API.STREAM.MSG.GET.KV_LEDGER_KEYS"), raw([]byte(`{"seq":1}`))},
		probe{"consumer on KV_LEDGER_KEYS", whoOf(notLedger), fixed("$JS.API.CONSUMER.CREATE.KV_LEDGER_KEYS.probe"),
			raw(mustJSON(map[string]any{"stream_name": "KV_LEDGER_KEYS", "config": jetstream.ConsumerConfig{
				Name: "probe", AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute}}))},
		probe{"write a data key ($KV.LEDGER_KEYS.farmer.F9)", whoOf(notLedger), fixed("$KV.LEDGER_KEYS.farmer.F9"), raw([]byte("forged"))},
		probe{"delete stream KV_LEDGER_KEYS", users, fixed("$JS.API.STREAM.DELETE.KV_LEDGER_KEYS"), raw(nil)},
		probe{"purge KV_LEDGER_KEYS", users, fixed("$JS.API.STREAM.PURGE.KV_LEDGER_KEYS"), raw([]byte(`{}`))},
	)
	// Aggregate snapshots (derived data, but a forged one would be loaded
	// if its checksum held): each bucket is read and written by its owner
	// only (the operator may read it, as it reads the events); nobody
	// changes, deletes or purges it.
	for owner, bucket := range map[string]string{"procurement": procurement.SnapshotBucket, "ledger": ledger.SnapshotBucket} {
		stream := "KV_" + bucket
		cfg := streamConfig(stream)
		cfg.Replicas = 1
		probes = append(probes,
			probe{"write a snapshot ($KV." + bucket + ".probe.S9)", whoOf(except(owner)), fixed("$KV." + bucket + ".probe.S9"), raw([]byte("forged"))},
			probe{"read a snapshot (direct get " + stream + ")", whoOf(func(u string) bool { return u != owner && u != "operator" }),
				fixed("$JS.API.DIRECT.GET." + stream + ".$KV." + bucket + ".probe.S1"), raw(nil)},
			probe{"replicas 3→1 on " + stream, users, fixed("$JS.API.STREAM.UPDATE." + stream), raw(mustJSON(cfg))},
			probe{"delete stream " + stream, users, fixed("$JS.API.STREAM.DELETE." + stream), raw(nil)},
			probe{"purge " + stream, users, fixed("$JS.API.STREAM.PURGE." + stream), raw([]byte(`{}`))},
		)
	}
	for owner, stream := range map[string]string{"procurement": "PROCUREMENT", "brand": "BRAND", "ledger": "LEDGER"} {
		subject := map[string]string{
			"procurement": "procurement.P1.D9.delivery_recorded",
			"brand":       "brand.report.R9.premium_earned",
			"ledger":      "ledger.farmer.F1.payout_account_updated",
		}[owner]
		probes = append(probes,
			probe{"publish " + subject + " (into " + stream + ")", whoOf(except(owner)), fixed(subject), raw([]byte("forged"))},
			probe{"publish deadletter." + owner, whoOf(except(owner)), fixed("deadletter." + owner), raw([]byte("forged"))},
		)
	}

	var m matrix
	defer func() {
		t.Logf("permission matrix (action × identity → refusal seen; \"denied (perm)\": the server's permissions refused it; "+
			"\"allowed ✓\": a control the design allows; -: not tried, the identity owns it):\n%s", m.String(users))
	}()
	before := snapshot(ctx, t, admin)
	for _, p := range probes {
		for _, u := range p.who {
			o := ids[u].try(p.subject(u), p.body(u))
			m.set(p.action, u, o.short())
			if !o.refused {
				t.Errorf("%s: %s: %s", u, p.action, o.how)
			}
			after := snapshot(ctx, t, admin)
			if ch := before.changes(after); len(ch) > 0 {
				t.Errorf("%s: %s changed the log:\n\t%s", u, p.action, strings.Join(ch, "\n\t"))
				before = after
			}
		}
	}

	// Acks: the admin takes one message of every durable without acking
	// it; nobody but the durable's owner may ack it for the owner.
	for _, d := range durables {
		cons, err := admin.Consumer(ctx, d.stream, d.name)
		if err != nil {
			t.Fatal(err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var reply string
		for msg := range batch.Messages() {
			reply = msg.Reply()
		}
		if reply == "" {
			t.Fatalf("durable %s/%s: nothing to deliver (the seed events do not match its filter?)", d.stream, d.name)
		}
		before = snapshot(ctx, t, admin)
		for _, u := range whoOf(except(d.owner)) {
			action := "ack " + d.stream + "/" + d.name
			o := ids[u].try(reply, nil)
			m.set(action, u, o.short())
			if !o.refused {
				t.Errorf("%s: %s: %s", u, action, o.how)
			}
			if ch := before.changes(snapshot(ctx, t, admin)); len(ch) > 0 {
				t.Errorf("%s: %s changed the log:\n\t%s", u, action, strings.Join(ch, "\n\t"))
			}
		}
	}

	// Controls: what the design allows still works through the same
	// harness, so a refusal above is the permissions' doing, not the
	// probe's.
	controls := []struct {
		action, user, subject string
		body                  []byte
	}{
		{"pull PROCUREMENT/ledger-post-entries-procurement", "ledger", "$JS.API.CONSUMER.MSG.NEXT.PROCUREMENT.ledger-post-entries-procurement",
			[]byte(`{"batch":1,"expires":200000000}`)},
		{"pull BRAND/brand-rerate-on-sales-reported", "brand", "$JS.API.CONSUMER.MSG.NEXT.BRAND.brand-rerate-on-sales-reported",
			[]byte(`{"batch":1,"expires":200000000}`)},
		{"direct get LEDGER last farmer_registered", "brand", "$JS.API.DIRECT.GET.LEDGER.ledger.farmer.F1.farmer_registered", nil},
		{"direct get LEDGER:1", "procurement", "$JS.API.DIRECT.GET.LEDGER", []byte(`{"seq":1}`)},
		{"direct get LEDGER:1", "ledger", "$JS.API.DIRECT.GET.LEDGER", []byte(`{"seq":1}`)},
		{"direct get LEDGER:1", "operator", "$JS.API.DIRECT.GET.LEDGER", []byte(`{"seq":1}`)},
		{"read a data key (direct get KV_LEDGER_KEYS)", "ledger", "$JS.API.DIRECT.GET.KV_LEDGER_KEYS.$KV.LEDGER_KEYS.farmer.F1", nil},
		{"read a snapshot (direct get KV_LEDGER_SNAPSHOTS)", "ledger", "$JS.API.DIRECT.GET.KV_LEDGER_SNAPSHOTS.$KV.LEDGER_SNAPSHOTS.probe.S1", nil},
		{"read a snapshot (direct get KV_PROCUREMENT_SNAPSHOTS)", "procurement", "$JS.API.DIRECT.GET.KV_PROCUREMENT_SNAPSHOTS.$KV.PROCUREMENT_SNAPSHOTS.probe.S1", nil},
		{"read a snapshot (direct get KV_LEDGER_SNAPSHOTS)", "operator", "$JS.API.DIRECT.GET.KV_LEDGER_SNAPSHOTS.$KV.LEDGER_SNAPSHOTS.probe.S1", nil},
		{"consumer on LEDGER, filter farmer_registered", "procurement", "$JS.API.CONSUMER.CREATE.LEDGER.control.ledger.farmer.*.farmer_registered",
			mustJSON(map[string]any{"stream_name": "LEDGER", "config": jetstream.ConsumerConfig{
				Name: "control", FilterSubject: "ledger.farmer.*.farmer_registered", AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute}})},
	}
	for _, c := range controls {
		o := ids[c.user].try(c.subject, c.body)
		cell := "allowed ✓"
		if o.refused {
			cell = o.short() + " ✗"
			t.Errorf("%s: %s: refused (%s), but the design allows it", c.user, c.action, o.how)
		}
		m.set(c.action, c.user, cell)
	}

	if attempts := m.count(); attempts < 200 {
		t.Errorf("only %d attempts made; the matrix lost probes", attempts)
	}
}
