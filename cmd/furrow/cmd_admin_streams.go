package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/cmd/furrow/internal/provision"
)

const adminUsage = `Usage: furrow admin <group> <command> [flags]

Administration of the event log itself, as the NATS admin user rather than
through a service: the steps operators (or an init job) run before the
services start.

Commands:
  streams apply   create or update every stream, bucket and durable consumer
  backup          snapshot every stream into a directory
  restore         restore a backup into a server without those streams

Run 'furrow admin <command> -h' for its flags.
`

// runAdmin is `furrow admin …`.
func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	switch {
	case len(args) >= 2 && args[0] == "streams" && args[1] == "apply":
		return runStreamsApply(ctx, args[2:], stdout, stderr, getenv)
	case len(args) >= 1 && (args[0] == "backup" || args[0] == "restore"):
		return runAdminBackup(ctx, args[0] == "restore", args[1:], stdout, stderr, getenv)
	case len(args) == 1 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help"):
		fmt.Fprint(stdout, adminUsage)
		return nil
	}
	fmt.Fprint(stderr, adminUsage)
	return usagef("furrow admin: unknown command %q", strings.Join(args, " "))
}

const streamsApplyUsage = `Usage: furrow admin streams apply [flags]

Creates every Furrow stream (PROCUREMENT, BRAND, LEDGER, DEADLETTER), the
key-value buckets (the ledger's data keys, each service's request ids, the
ledger's and procurement's aggregate snapshots) and every handler's durable
consumer, or brings existing ones to their configuration: file storage,
--replicas replicas; for the streams, deletes and purges denied, no limit,
TTL or rollup that could drop an event. It prints what it
created, updated (each setting it changed) or left unchanged; a second run
changes nothing. Run it as the NATS admin user before the services start:
they only verify what it made and refuse to start on drift.

It refuses to lower an existing stream's replicas or to drop its subjects
unless told (--allow-replicas-decrease, --allow-subject-removal), and to
touch a stream whose storage, seal, message TTLs or mirror the server
cannot change in place. Before changing anything it reads /varz of every
node (--monitor-url) and refuses a cluster that does not fsync every write
(sync_interval: always): NATS clients, the services included, cannot see
that setting.

Flags:
`

// runStreamsApply is `furrow admin streams apply`.
func runStreamsApply(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlagSet("furrow admin streams apply", streamsApplyUsage, stderr)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	url := fs.String("nats-url", env("FURROW_NATS_URL", "nats://127.0.0.1:4222"), "NATS URLs, comma-separated [FURROW_NATS_URL]")
	user := fs.String("nats-user", getenv("FURROW_NATS_USER"), "the NATS admin user (accounts.conf: admin) [FURROW_NATS_USER]; its password comes from FURROW_NATS_PASSWORD")
	passwordFile := fs.String("nats-password-file", getenv("FURROW_NATS_PASSWORD_FILE"), "file holding the admin user's password [FURROW_NATS_PASSWORD_FILE]")
	creds := fs.String("nats-creds", getenv("FURROW_NATS_CREDS"), "NATS JWT credentials file instead of a user [FURROW_NATS_CREDS]")
	ca := fs.String("nats-ca", getenv("FURROW_NATS_CA"), "CA that verifies the NATS servers (TLS) [FURROW_NATS_CA]")
	cert := fs.String("nats-cert", getenv("FURROW_NATS_CERT"), "client certificate for NATS [FURROW_NATS_CERT]")
	key := fs.String("nats-key", getenv("FURROW_NATS_KEY"), "its key [FURROW_NATS_KEY]")
	replicasFlag := fs.String("replicas", env("FURROW_STREAM_REPLICAS", "3"), "replicas of every stream: 3 on a 3-node cluster [FURROW_STREAM_REPLICAS]")
	monitors := fs.String("monitor-url", getenv("FURROW_NATS_MONITOR_URL"),
		"every node's monitoring endpoint, comma-separated (http://nats-1:8222,…): its /varz says whether it syncs every write [FURROW_NATS_MONITOR_URL]")
	skipSync := fs.Bool("skip-sync-check", false, "do not check the nodes' sync setting (no monitoring endpoint reachable); says so in the output")
	var opts provision.Options
	fs.BoolVar(&opts.AllowReplicaDecrease, "allow-replicas-decrease", false, "allow lowering an existing stream's replicas")
	fs.BoolVar(&opts.AllowSubjectRemoval, "allow-subject-removal", false, "allow dropping subjects from an existing stream")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for the cluster to answer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	replicas, err := strconv.Atoi(*replicasFlag)
	if err != nil || replicas < 1 || replicas > 5 {
		return fmt.Errorf("--replicas %q: want 1 to 5", *replicasFlag)
	}
	opts.Replicas = replicas
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	// The nodes' fsync policy first: provisioning a cluster that loses
	// acknowledged events would only hide the problem.
	switch {
	case *skipSync:
		fmt.Fprintln(stdout, "sync: NOT CHECKED (--skip-sync-check): make sure every node has sync_interval: always")
	case *monitors == "":
		return errors.New("--monitor-url: give every node's monitoring endpoint (its /varz says whether it syncs every write), or --skip-sync-check")
	default:
		nodes, err := checkSyncUntilUp(ctx, splitList(*monitors), stderr)
		for _, n := range nodes {
			fmt.Fprintln(stdout, n)
		}
		if err != nil {
			return fmt.Errorf("refusing to provision: %w", err)
		}
	}

	password := getenv("FURROW_NATS_PASSWORD")
	if *passwordFile != "" {
		b, err := os.ReadFile(*passwordFile)
		if err != nil {
			return fmt.Errorf("--nats-password-file: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	nopts := []nats.Option{nats.Name("furrow admin streams apply"), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}
	switch {
	case *creds != "":
		nopts = append(nopts, nats.UserCredentials(*creds))
	case *user != "":
		nopts = append(nopts, nats.UserInfo(*user, password))
	}
	if *ca != "" {
		nopts = append(nopts, nats.RootCAs(*ca))
	}
	if *cert != "" {
		nopts = append(nopts, nats.ClientCert(*cert, *key))
	}
	nc, err := nats.Connect(*url, nopts...)
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	results, err := applyUntilSettled(ctx, js, opts, stderr)
	for _, r := range results {
		fmt.Fprintln(stdout, r)
	}
	if errors.Is(err, eventstore.ErrRefused) {
		err = fmt.Errorf("%w\n(--allow-replicas-decrease or --allow-subject-removal permit what is refused for those reasons; the rest needs a new stream restored from a backup)", err)
	}
	return err
}

// checkSyncUntilUp reads every node's sync setting, retrying while a
// monitoring endpoint does not answer yet (an init job starts with the
// nodes); a node that answers with lazy sync is refused at once.
func checkSyncUntilUp(ctx context.Context, monitors []string, stderr io.Writer) ([]provision.NodeSync, error) {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		nodes, err := provision.CheckSync(actx, nil, monitors)
		cancel()
		if err == nil || errors.Is(err, provision.ErrLazySync) || ctx.Err() != nil {
			return nodes, err
		}
		fmt.Fprintf(stderr, "furrow admin streams apply: waiting for NATS monitoring (attempt %d): %v\n", attempt, err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// applyUntilSettled applies, and applies again while the cluster is not
// ready (no JetStream answer, no meta leader or peers yet: an init job
// starts with the nodes). It returns the first run's change for each
// stream and consumer, so a stream created on an attempt that failed
// later still reads "created".
func applyUntilSettled(ctx context.Context, js jetstream.JetStream, opts provision.Options, stderr io.Writer) ([]provision.Result, error) {
	seen := map[string]provision.Result{}
	var order []string
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		results, err := provision.Apply(actx, js, opts)
		cancel()
		for _, r := range results {
			key := r.Kind + " " + r.Name
			if prev, ok := seen[key]; !ok {
				order = append(order, key)
				seen[key] = r
			} else if r.Change != eventstore.Unchanged || prev.Change == eventstore.Unchanged {
				seen[key] = r
			}
		}
		if err == nil || errors.Is(err, eventstore.ErrRefused) || errors.Is(err, eventstore.ErrDrift) || ctx.Err() != nil {
			out := make([]provision.Result, 0, len(order))
			for _, k := range order {
				out = append(out, seen[k])
			}
			return out, err
		}
		fmt.Fprintf(stderr, "furrow admin streams apply: waiting for the cluster (attempt %d): %v\n", attempt, err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// splitList splits a comma-separated flag value.
func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
