package natsembed_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/dirlock"
	"github.com/furrow/furrow/pkg/natsembed"
)

func start(t *testing.T, o natsembed.Options) *natsembed.Server {
	t.Helper()
	s, err := natsembed.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestStartRefusesAStoreDirectoryInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start(t, natsembed.Options{StoreDir: dir})
	_, err := natsembed.Start(natsembed.Options{StoreDir: dir})
	if !errors.Is(err, dirlock.ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second server on %s: %v, want dirlock.ErrLocked naming it", dir, err)
	}
}

func TestShutdownFreesTheStoreDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := natsembed.Start(natsembed.Options{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	start(t, natsembed.Options{StoreDir: dir})
}

func TestStartAddressInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = natsembed.Start(natsembed.Options{StoreDir: t.TempDir(), ListenAddr: l.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Fatalf("Start on a taken address: %v", err)
	}
}

func TestStartContextCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := natsembed.StartContext(ctx, natsembed.Options{StoreDir: t.TempDir()}); !errors.Is(err, context.Canceled) {
		t.Fatalf("StartContext with a cancelled context: %v", err)
	}
}

// The outside listener: without credentials a client reads and changes
// nothing; the admin user may do anything; in-process connections keep
// every right.
func TestListenerIsReadOnlyWithoutCredentials(t *testing.T) {
	t.Parallel()
	s := start(t, natsembed.Options{StoreDir: t.TempDir(), ListenAddr: "127.0.0.1:0", AdminPassword: "s3cret"})
	if strings.HasSuffix(s.ClientURL(), ":4222") {
		t.Errorf("ListenAddr port 0 listens on %s, want a free port", s.ClientURL())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		t.Cleanup(cancel)
		return c
	}

	in, err := s.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	ijs, _ := jetstream.New(in)
	stream, err := ijs.CreateStream(ctx, jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev.>"}})
	if err != nil {
		t.Fatalf("in-process create stream: %v", err)
	}
	if _, err := ijs.Publish(ctx, "ev.a.created", []byte("one")); err != nil {
		t.Fatalf("in-process publish: %v", err)
	}

	quiet := nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
	nc, err := nats.Connect(s.ClientURL(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ev, err := js.Stream(ctx, "EV")
	if err != nil {
		t.Fatalf("stream info without credentials: %v", err)
	}
	if m, err := ev.GetMsg(ctx, 1); err != nil || string(m.Data) != "one" {
		t.Fatalf("get message without credentials: %v, %v", m, err)
	}
	if _, err := js.Publish(short(), "ev.b.created", []byte("junk")); err == nil {
		t.Error("published into ev.> without credentials")
	}
	if err := js.DeleteStream(short(), "EV"); err == nil {
		t.Error("deleted the stream without credentials")
	}
	if err := ev.Purge(short()); err == nil {
		t.Error("purged the stream without credentials")
	}
	if _, err := js.UpdateStream(short(), jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev.>", "other.>"}}); err == nil {
		t.Error("updated the stream without credentials")
	}
	if info, err := stream.Info(ctx); err != nil || info.State.Msgs != 1 || len(info.Config.Subjects) != 1 {
		t.Fatalf("stream after the refused changes: %+v, %v", info, err)
	}

	anc, err := nats.Connect(s.ClientURL(), nats.UserInfo(natsembed.AdminUser, "s3cret"))
	if err != nil {
		t.Fatalf("connect as admin: %v", err)
	}
	defer anc.Close()
	if got, want := s.AdminURL(), strings.Replace(s.ClientURL(), "nats://", "nats://admin:s3cret@", 1); got != want {
		t.Errorf("AdminURL() = %q, want %q", got, want)
	}
	ajs, _ := jetstream.New(anc)
	if _, err := ajs.Publish(ctx, "ev.c.created", []byte("admin")); err != nil {
		t.Errorf("admin publish: %v", err)
	}
	if err := ajs.DeleteStream(ctx, "EV"); err != nil {
		t.Errorf("admin delete: %v", err)
	}
}

func TestListenerWithoutAdminPassword(t *testing.T) {
	t.Parallel()
	s := start(t, natsembed.Options{StoreDir: t.TempDir(), ListenAddr: "127.0.0.1:0"})
	if _, err := nats.Connect(s.ClientURL(), nats.UserInfo(natsembed.AdminUser, "")); err == nil {
		t.Error("connected as admin on a server without an admin password")
	}
	if s.AdminURL() != "" {
		t.Errorf("AdminURL() = %q without an admin password", s.AdminURL())
	}
}
