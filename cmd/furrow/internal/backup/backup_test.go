package backup_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/furrow/furrow/pkg/natsembed"

	"github.com/furrow/furrow/cmd/furrow/internal/backup"
	"github.com/furrow/furrow/cmd/furrow/internal/demo"
	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// TestRestoreDrill is the backup and restore drill: the demo data in a
// stack, a backup of every stream, a restore into an empty server, a
// stack started on it with an empty read-model database, which rebuilds
// every projection from the restored streams: each projection's content
// hash equals the original's, every stream has the same messages at the
// same sequences with the same stored times, and no handler ran again (the
// durables kept their positions: no stream grew).
func TestRestoreDrill(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	orig, err := stack.Start(ctx, stack.Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Shutdown(context.Background())
	conn, err := grpc.NewClient(orig.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := demo.Load(ctx, conn); err != nil {
		t.Fatal(err)
	}
	heads := settle(ctx, t, orig)
	want := hashes(ctx, t, orig)

	dir := filepath.Join(t.TempDir(), "backup")
	results, err := backup.Backup(ctx, orig.JetStream().Conn(), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		t.Logf("backed up %s", r)
	}
	if len(results) < 4 {
		t.Fatalf("backed up %d streams, want PROCUREMENT, BRAND, LEDGER and DEADLETTER at least", len(results))
	}

	// An empty server, where the restored stack will find it.
	data := t.TempDir()
	srv, err := natsembed.StartContext(ctx, natsembed.Options{StoreDir: filepath.Join(data, "jetstream"), ServerName: "furrow-dev"})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Restore(ctx, nc, dir, backup.RestoreOptions{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	// A second restore onto the same server is refused: never over events.
	if _, err := backup.Restore(ctx, nc, dir, backup.RestoreOptions{Replicas: 1}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("restore over existing streams: err = %v, want a refusal", err)
	}
	nc.Close()
	srv.Shutdown()

	restored, err := stack.Start(ctx, stack.Config{DataDir: data, GRPCAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Shutdown(context.Background())
	got := hashes(ctx, t, restored)
	if again := settle(ctx, t, restored); !equal(again, heads) {
		t.Errorf("stream heads after the restored stack settled = %v, want %v (a handler ran again)", again, heads)
	}
	got = hashes(ctx, t, restored)
	if len(got) != len(want) {
		t.Fatalf("restored stack has %d projections, want %d", len(got), len(want))
	}
	for name, h := range want {
		if got[name] != h {
			t.Errorf("projection %s: content hash %s after restore and rebuild, want %s", name, got[name][:12], h[:12])
		} else {
			t.Logf("projection %s: %s… equal", name, h[:12])
		}
	}
	for _, s := range []string{"PROCUREMENT", "BRAND", "LEDGER", "DEADLETTER"} {
		a, b := messages(ctx, t, orig.JetStream(), s), messages(ctx, t, restored.JetStream(), s)
		if a != b {
			al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
			for i := range min(len(al), len(bl)) {
				if al[i] != bl[i] {
					t.Errorf("stream %s: restored message differs from the original's:\n%s\n%s", s, bl[i], al[i])
					break
				}
			}
			if len(al) != len(bl) {
				t.Errorf("stream %s: %d messages restored, want %d", s, len(bl)-1, len(al)-1)
			}
		}
	}
}

func equal(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// settle waits until every projection has applied every stream's head and
// no stream has grown for a while (handlers append in reaction to
// events), and returns the heads.
func settle(ctx context.Context, t *testing.T, st *stack.Stack) map[string]uint64 {
	t.Helper()
	var last map[string]uint64
	for still := 0; still < 3; {
		heads := map[string]uint64{}
		names := st.JetStream().StreamNames(ctx)
		for n := range names.Name() {
			s, err := st.JetStream().Stream(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			heads[n] = info.State.LastSeq
		}
		for _, r := range st.Projections() {
			if err := r.WaitFor(ctx, heads[r.Stream()]); err != nil {
				t.Fatalf("projection %s: %v", r.Name(), err)
			}
		}
		if equal(heads, last) {
			still++
		} else {
			still = 0
		}
		last = heads
		time.Sleep(200 * time.Millisecond)
	}
	return last
}

func hashes(ctx context.Context, t *testing.T, st *stack.Stack) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range st.Projections() {
		h, err := r.ContentHash(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out[r.Name()] = h
	}
	return out
}

// messages is every message of a stream: sequence, subject, stored time,
// headers and data.
func messages(ctx context.Context, t *testing.T, js jetstream.JetStream, name string) string {
	t.Helper()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("%s %d: %v", name, seq, err)
		}
		line, _ := json.Marshal([]any{m.Sequence, m.Subject, m.Time, m.Header, m.Data})
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String()
}
