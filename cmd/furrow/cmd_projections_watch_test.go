package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
)

// syncBuffer is a bytes.Buffer a command may write while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A rebuild followed through the watch stream, output not a terminal:
// progress lines, then the caught-up line; with -o json, the statuses as
// JSON lines, the last with the shadow caught up.
func TestRebuildFollowsTheWatchStream(t *testing.T) {
	t.Parallel()
	s := startOpStack(t)
	for i := range 30 {
		s.register(t, fmt.Sprintf("F-%04d", i))
	}
	out := s.mustCLI(t, "projections", "rebuild", "ledger_balances", "--every", "50ms")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 3 || lines[0] != "rebuilding ledger_balances into shadow copy v2 (live copy v1 keeps serving)" ||
		lines[len(lines)-1] != "shadow copy v2 has caught up. Next: furrow projections diff ledger_balances" {
		t.Fatalf("rebuild output:\n%s", out)
	}
	for _, l := range lines[1 : len(lines)-1] {
		if !strings.HasPrefix(l, "  v2: ") || !strings.Contains(l, "/30 events (") {
			t.Errorf("not a progress line: %q\n%s", l, out)
		}
	}
	if l := lines[len(lines)-2]; !strings.HasPrefix(l, "  v2: 30/30 events (100%)") || !strings.Contains(l, "caught up") {
		t.Errorf("last progress line %q, want 30/30 caught up", l)
	}

	s.mustCLI(t, "projections", "drop", "ledger_balances", "--version", "2")
	out = s.mustCLI(t, "projections", "rebuild", "ledger_balances", "-o", "json")
	var last adminv1.WatchProjectionResponse
	jsonLines := strings.Split(strings.TrimSpace(out), "\n")
	for i, l := range jsonLines {
		if err := protojson.Unmarshal([]byte(l), &last); err != nil {
			t.Fatalf("line %d is not a WatchProjectionResponse: %v\n%s", i+1, err, out)
		}
	}
	var shadow *adminv1.ProjectionCopy
	for _, c := range last.GetProjection().GetCopies() {
		if c.GetRole() == "shadow" {
			shadow = c
		}
	}
	if !shadow.GetCaughtUp() || shadow.GetApplied() != 30 {
		t.Errorf("last JSON line's shadow copy = %v, want it caught up with 30 events\n%s", shadow, out)
	}
}

// projections watch: a line per status, JSON lines with -o json, ends
// with nil on Ctrl-C (the context) and with --until-caught-up by itself;
// an unknown projection exits 4, a bad --every 2.
func TestProjectionsWatch(t *testing.T) {
	t.Parallel()
	s := startOpStack(t)
	s.register(t, "F-1001")
	s.waitApplied(t, "ledger_balances", 1)

	out := s.mustCLI(t, "projections", "watch", "ledger_balances", "--until-caught-up")
	if want := "ledger_balances: live v1 idle at 1 of 1, lag 0 events\n"; out != want {
		t.Errorf("watch --until-caught-up = %q, want %q", out, want)
	}
	var res adminv1.WatchProjectionResponse
	if err := protojson.Unmarshal([]byte(s.mustCLI(t, "projections", "watch", "ledger_balances", "--until-caught-up", "-o", "json")), &res); err != nil ||
		res.GetProjection().GetCheckpoint() != 1 {
		t.Errorf("watch -o json = %v, %v", res.GetProjection(), err)
	}

	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"projections", "watch", "nope"}, exitNotFound},
		{[]string{"projections", "watch", "nope", "-o", "json"}, exitNotFound},
		{[]string{"projections", "watch", "ledger_balances", "--every", "1ms"}, exitUsage},
		{[]string{"projections", "watch"}, exitUsage},
	} {
		out, err := s.cli(t, tc.args...)
		if got := exitCode(err); got != tc.code {
			t.Errorf("furrow %s: exit %d (%v), want %d\n%s", strings.Join(tc.args, " "), got, err, tc.code, out)
		}
	}

	// Until Ctrl-C: a line for the status now, one for the registration.
	var stdout, stderr syncBuffer
	getenv := func(k string) string {
		if k == "FURROW_ADDR" {
			return s.st.GRPCAddr()
		}
		return ""
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended := make(chan error, 1)
	go func() {
		ended <- run(ctx, []string{"projections", "watch", "ledger_balances", "--every", "50ms"}, &stdout, &stderr, getenv)
	}()
	waitOutput(t, &stdout, "at 1 of 1")
	s.register(t, "F-1002")
	waitOutput(t, &stdout, "ledger_balances: live v1 idle at 2 of 2, lag 0 events\n")
	cancel()
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("watch ended by Ctrl-C: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end 10 s after Ctrl-C")
	}
}

// waitApplied waits until projection name has applied the stream up to seq.
func (s *opStack) waitApplied(t *testing.T, name string, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, r := range s.st.Projections() {
		if r.Name() == name {
			if err := r.WaitFor(ctx, seq); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no projection %s", name)
}

// waitOutput waits until b holds want.
func waitOutput(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output lacks %q:\n%s", want, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The terminal display: a bar, and a block redrawn in place.
func TestProgressDisplay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		done, total uint64
		want        string
	}{
		{0, 100, "[>         ]"},
		{45, 100, "[====>     ]"},
		{99, 100, "[=========>]"},
		{100, 100, "[==========]"},
		{0, 0, "[==========]"},
	} {
		if got := bar(tc.done, tc.total, 10); got != tc.want {
			t.Errorf("bar(%d, %d) = %q, want %q", tc.done, tc.total, got, tc.want)
		}
	}
	var b bytes.Buffer
	l := &liveLines{w: &b}
	l.draw("a", "b")
	l.draw("c")
	if want := "a\nb\n\x1b[2F\x1b[Jc\n"; b.String() != want {
		t.Errorf("redraw = %q, want %q", b.String(), want)
	}
}
