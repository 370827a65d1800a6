package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/furrow/furrow/cmd/furrow/internal/backup"
)

const adminBackupUsage = `Usage: furrow admin backup --dir D [flags]

Snapshots every JetStream stream (PROCUREMENT, BRAND, LEDGER, DEADLETTER)
into the empty directory D, as the NATS admin user: the server's own stream
snapshot, with every message's sequence, subject, headers, data and stored
time, and every durable consumer's position. D/manifest.json is written
last; a directory without it is an unfinished backup. Writers may go on
meanwhile: each stream is copied as it was when its snapshot began.

PostgreSQL needs no backup: every read model is derived from the streams
and is rebuilt from them after a restore.

Flags:
`

const adminRestoreUsage = `Usage: furrow admin restore --dir D [flags]

Restores every stream of the backup in D into a NATS server or cluster
that has none of them (it refuses to restore over an existing stream), as
the NATS admin user: same messages at the same sequences and times, same
durable consumers at the same positions. Then start the services on a
fresh PostgreSQL database (or rebuild every projection): the read models
are rebuilt from the restored streams.

Flags:
`

// adminConn is the NATS connection flags of the admin commands.
type adminConn struct {
	url, user, passwordFile, creds, ca, cert, key *string
}

func adminConnFlags(fs *flag.FlagSet, getenv func(string) string) adminConn {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	return adminConn{
		url:          fs.String("nats-url", env("FURROW_NATS_URL", "nats://127.0.0.1:4222"), "NATS URLs, comma-separated [FURROW_NATS_URL]"),
		user:         fs.String("nats-user", getenv("FURROW_NATS_USER"), "the NATS admin user (accounts.conf: admin) [FURROW_NATS_USER]; its password comes from FURROW_NATS_PASSWORD"),
		passwordFile: fs.String("nats-password-file", getenv("FURROW_NATS_PASSWORD_FILE"), "file holding the admin user's password [FURROW_NATS_PASSWORD_FILE]"),
		creds:        fs.String("nats-creds", getenv("FURROW_NATS_CREDS"), "NATS JWT credentials file instead of a user [FURROW_NATS_CREDS]"),
		ca:           fs.String("nats-ca", getenv("FURROW_NATS_CA"), "CA that verifies the NATS servers (TLS) [FURROW_NATS_CA]"),
		cert:         fs.String("nats-cert", getenv("FURROW_NATS_CERT"), "client certificate for NATS [FURROW_NATS_CERT]"),
		key:          fs.String("nats-key", getenv("FURROW_NATS_KEY"), "its key [FURROW_NATS_KEY]"),
	}
}

// connect connects as the admin user. A permission violation (a user
// other than admin) calls denied at once: requests the server refuses are
// otherwise only timed out.
func (a adminConn) connect(name string, getenv func(string) string, denied func(error)) (*nats.Conn, error) {
	password := getenv("FURROW_NATS_PASSWORD")
	if *a.passwordFile != "" {
		b, err := os.ReadFile(*a.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--nats-password-file: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	opts := []nats.Option{nats.Name(name), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			denied(err)
		}
	})}
	switch {
	case *a.creds != "":
		opts = append(opts, nats.UserCredentials(*a.creds))
	case *a.user != "":
		opts = append(opts, nats.UserInfo(*a.user, password))
	}
	if *a.ca != "" {
		opts = append(opts, nats.RootCAs(*a.ca))
	}
	if *a.cert != "" {
		opts = append(opts, nats.ClientCert(*a.cert, *a.key))
	}
	nc, err := nats.Connect(*a.url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	return nc, nil
}

// runAdminBackup is `furrow admin backup` (restore false) or `furrow admin
// restore` (restore true).
func runAdminBackup(ctx context.Context, restore bool, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	name, usage := "furrow admin backup", adminBackupUsage
	if restore {
		name, usage = "furrow admin restore", adminRestoreUsage
	}
	fs := newFlagSet(name, usage, stderr)
	conn := adminConnFlags(fs, getenv)
	dir := fs.String("dir", "", "the backup directory (required)")
	var replicas *int
	if restore {
		replicas = fs.Int("replicas", 0, "replicas of the restored streams; 0: as backed up (3 on a 3-node cluster)")
	}
	timeout := fs.Duration("timeout", 30*time.Minute, "how long the whole backup or restore may take")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usagef("%s: --dir is required", name)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	ctx, deny := context.WithCancelCause(ctx)
	defer deny(nil)
	nc, err := conn.connect(name, getenv, func(err error) {
		deny(fmt.Errorf("%w (only the NATS admin user may back up or restore)", err))
	})
	if err != nil {
		return err
	}
	defer nc.Close()
	var results []backup.Result
	verb := "backed up"
	if restore {
		verb = "restored"
		results, err = backup.Restore(ctx, nc, *dir, backup.RestoreOptions{Replicas: *replicas})
	} else {
		results, err = backup.Backup(ctx, nc, *dir)
	}
	for _, r := range results {
		fmt.Fprintln(stdout, verb, r)
	}
	if cause := context.Cause(ctx); err != nil && cause != nil && errors.Is(cause, nats.ErrPermissionViolation) {
		return cause
	}
	return err
}
