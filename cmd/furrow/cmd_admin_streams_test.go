package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/aggregate"
	"github.com/furrow/furrow/pkg/eventstore"

	ledger "github.com/furrow/furrow/services/farmer-ledger/service"
	procurement "github.com/furrow/furrow/services/procurement/service"
)

// startMonitoredNATS starts a JetStream server in the test process with a
// client and a monitoring listener, fsyncing every write or not, and
// returns its client URL and monitoring base URL.
func startMonitoredNATS(t *testing.T, syncAlways bool) (clientURL, monitorURL string) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		ServerName: "sync-test", Host: "127.0.0.1", Port: -1, HTTPHost: "127.0.0.1", HTTPPort: -1,
		JetStream: true, StoreDir: t.TempDir(), SyncAlways: syncAlways, NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown)
	return ns.ClientURL(), "http://" + ns.MonitorAddr().String()
}

// apply runs `furrow admin streams apply` with args against url.
func apply(t *testing.T, url string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"admin", "streams", "apply", "--nats-url", url, "--timeout", "20s"}, args...)
	err := run(context.Background(), args, &out, &errOut, func(string) string { return "" })
	return out.String(), errOut.String(), err
}

// TestAdminStreamsApply checks the migration step against a real server:
// the first run creates every stream and durable, the second changes
// nothing, a drifted stream is repaired setting by setting, and a server
// that does not fsync every write is refused before anything is created.
func TestAdminStreamsApply(t *testing.T) {
	t.Parallel()
	url, monitor := startMonitoredNATS(t, true)
	out, errOut, err := apply(t, url, "--replicas", "1", "--monitor-url", monitor)
	if err != nil {
		t.Fatalf("first apply: %v\n%s", err, errOut)
	}
	wantFirst := "sync sync-test (" + monitor + "): sync_interval always\n" +
		"stream PROCUREMENT: created\n" +
		"stream BRAND: created\n" +
		"stream LEDGER: created\n" +
		"stream DEADLETTER: created\n" +
		"key bucket LEDGER_KEYS: created\n" +
		"bucket KV_PROCUREMENT_REQUESTS: created\n" +
		"bucket KV_BRAND_REQUESTS: created\n" +
		"bucket KV_LEDGER_REQUESTS: created\n" +
		"bucket KV_PROCUREMENT_SNAPSHOTS: created\n" +
		"bucket KV_LEDGER_SNAPSHOTS: created\n" +
		"consumer PROCUREMENT/ledger-post-entries-procurement: created\n" +
		"consumer BRAND/ledger-post-entries-brand: created\n" +
		"consumer LEDGER/ledger-send-payouts: created\n" +
		"consumer LEDGER/ledger-notify-account-changes: created\n" +
		"consumer BRAND/brand-rerate-on-premium-rule-revised: created\n" +
		"consumer BRAND/brand-rerate-on-sales-reported: created\n" +
		"consumer BRAND/brand-rerate-on-premium-rule-ended: created\n"
	if out != wantFirst {
		t.Errorf("first apply printed:\n%s\nwant:\n%s", out, wantFirst)
	}
	out, _, err = apply(t, url, "--replicas", "1", "--monitor-url", monitor)
	if err != nil || strings.Count(out, ": unchanged\n") != 17 {
		t.Errorf("second apply = %v; want all 17 unchanged:\n%s", err, out)
	}

	// Someone with stream rights (before this step existed, every service
	// user) let DEADLETTER be purged and capped BRAND.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := js.DeleteStream(ctx, "DEADLETTER"); err != nil { // no user of deploy/ may: this is a test's shortcut
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "DEADLETTER", Subjects: []string{"deadletter.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "BRAND")
	if err != nil {
		t.Fatal(err)
	}
	capped := st.CachedInfo().Config
	capped.MaxMsgs, capped.Discard = 2, jetstream.DiscardOld
	if _, err := js.UpdateStream(ctx, capped); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = apply(t, url, "--replicas", "1", "--skip-sync-check")
	if err != nil {
		t.Fatalf("apply to the drifted streams: %v\n%s", err, errOut)
	}
	for _, want := range []string{
		"sync: NOT CHECKED (--skip-sync-check)",
		"stream BRAND: updated\n  discard: \"old\" → \"new\"\n  max_msgs: 2 → -1\n",
		"stream DEADLETTER: updated\n",
		"  deny_delete: false → true\n  deny_purge: false → true\n",
		"stream PROCUREMENT: unchanged\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("apply to the drifted streams lacks %q:\n%s", want, out)
		}
	}
	for _, name := range []string{"BRAND", "DEADLETTER"} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if problems := eventstore.CheckStream(st.CachedInfo().Config, jetstream.StreamConfig{
			Name: name, Storage: jetstream.FileStorage, DenyDelete: true, DenyPurge: true, Discard: jetstream.DiscardNew,
		}); len(problems) > 0 {
			t.Errorf("%s after apply: %v", name, problems)
		}
	}
}

// TestAdminStreamsApplyTurnsSnapshotsOn checks that the admin step makes
// the aggregate snapshot buckets the services bind (a service may not
// create one): after it, a service that binds its bucket the way the
// procurement and ledger services do finds it, with the replicas asked
// for, and its snapshots are on.
func TestAdminStreamsApplyTurnsSnapshotsOn(t *testing.T) {
	t.Parallel()
	url, monitor := startMonitoredNATS(t, true)
	if _, errOut, err := apply(t, url, "--replicas", "1", "--monitor-url", monitor); err != nil {
		t.Fatalf("apply: %v\n%s", err, errOut)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, bucket := range []string{procurement.SnapshotBucket, ledger.SnapshotBucket} {
		var logged bytes.Buffer
		snaps := aggregate.BindSnapshots(js, bucket, slog.New(slog.NewTextHandler(&logged, nil)))
		if snaps == nil || strings.Contains(logged.String(), "aggregate snapshots off") {
			t.Errorf("%s after furrow admin streams apply: snapshots off:\n%s", bucket, logged.String())
			continue
		}
		if err := snaps.PutSnapshot(ctx, "farmer.F1", []byte("state")); err != nil {
			t.Errorf("%s: put a snapshot: %v", bucket, err)
		} else if got, err := snaps.GetSnapshot(ctx, "farmer.F1"); err != nil || string(got) != "state" {
			t.Errorf("%s: get the snapshot = %q, %v; want what was put", bucket, got, err)
		}
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cfg := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config; cfg.Replicas != 1 || cfg.Storage != jetstream.FileStorage || cfg.MaxMsgsPerSubject != 1 {
			t.Errorf("%s: replicas %d, storage %v, history %d; want 1, file, 1", bucket, cfg.Replicas, cfg.Storage, cfg.MaxMsgsPerSubject)
		}
	}
}

// TestAdminStreamsApplyRefusesLazySync checks that a server acknowledging
// writes before they are on disk is refused before anything is created,
// and that the check is not silently skipped.
func TestAdminStreamsApplyRefusesLazySync(t *testing.T) {
	t.Parallel()
	url, monitor := startMonitoredNATS(t, false)
	out, _, err := apply(t, url, "--replicas", "1", "--monitor-url", monitor)
	if err == nil || !strings.Contains(err.Error(), "refusing to provision") || !strings.Contains(err.Error(), "sync_interval: always") {
		t.Errorf("apply on a lazily syncing server = %v; want a refusal naming sync_interval", err)
	}
	if !strings.Contains(out, "fsync every 2m0s, NOT on every write") {
		t.Errorf("apply printed:\n%s\nwant the node's sync setting", out)
	}
	if _, _, err := apply(t, url, "--replicas", "1"); err == nil || !strings.Contains(err.Error(), "--monitor-url") {
		t.Errorf("apply without --monitor-url = %v; want it asked for (or --skip-sync-check)", err)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	names := js.StreamNames(context.Background())
	for n := range names.Name() {
		t.Errorf("stream %s created on a refused server", n)
	}
}
