package systemtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
)

// exited is a finished furrow process.
type exited struct {
	err     error
	out     string
	elapsed time.Duration
}

// runUntilExit runs the binary with args and returns once it exited, or
// fails the test after limit. signal, when not nil, is called with the
// started process.
func runUntilExit(t *testing.T, limit time.Duration, signal func(*os.Process), cmd *exec.Cmd) exited {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if signal != nil {
		signal(cmd.Process)
	}
	select {
	case err := <-done:
		return exited{err: err, out: out.String(), elapsed: time.Since(start)}
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not exit within %s; output:\n%s", cmd.Args, limit, out.String())
		return exited{}
	}
}

func dev(args ...string) *exec.Cmd {
	return exec.Command(furrowBin, append([]string{"dev"}, args...)...)
}

// takenAddr listens on a free port for the test's duration.
func takenAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

// Issue 9, defect 1: a second `furrow dev` on the same data directory ran
// normally and both appended at the same positions; after a restart one
// farmer's events were gone. It must refuse to start, naming the first.
func TestSecondDevOnOneDataDirectoryIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	t.Parallel()
	dir := t.TempDir()
	first := startDev(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := first.ledger().RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{RequestId: "r1", FarmerId: "F1", Name: "Li Wei", County: "Qinglong"}); err != nil {
		t.Fatal(err)
	}

	second := runUntilExit(t, 15*time.Second, nil, dev("--data-dir", dir, "--grpc-addr", freeAddr(t), "--nats-addr", freeAddr(t)))
	if second.err == nil {
		t.Fatalf("second furrow dev on %s exited 0:\n%s", dir, second.out)
	}
	if want := fmt.Sprintf("pid %d", first.cmd.Process.Pid); !strings.Contains(second.out, want) {
		t.Errorf("second furrow dev's output does not name the first (%s):\n%s", want, second.out)
	}

	// The first keeps working, and everything it acknowledged survives a restart.
	if _, err := first.ledger().RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{RequestId: "r2", FarmerId: "F2", Name: "Wang Fang", County: "Xunwu"}); err != nil {
		t.Fatalf("first furrow dev after the refused second: %v", err)
	}
	_ = first.cmd.Process.Signal(syscall.SIGINT)
	if err := first.wait(t); err != nil {
		t.Fatalf("exit after SIGINT: %v\n%s", err, first.out.String())
	}
	again := startDev(t, dir)
	for _, id := range []string{"F1", "F2"} {
		if _, err := again.ledger().GetFarmer(ctx, &ledgerv1.GetFarmerRequest{FarmerId: id}); err != nil {
			t.Errorf("GetFarmer(%s) after restart: %v", id, err)
		}
	}
	_ = again.cmd.Process.Signal(syscall.SIGINT)
	_ = again.wait(t)
}

// Issue 9, defect 4: a port in use made furrow dev hang 30 s with "is the
// port in use?". It must exit at once naming the address and the cause.
func TestDevAddressInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	t.Parallel()
	for _, flag := range []string{"--nats-addr", "--grpc-addr"} {
		t.Run(flag, func(t *testing.T) {
			t.Parallel()
			taken := takenAddr(t)
			args := []string{"--data-dir", t.TempDir(), "--grpc-addr", freeAddr(t), "--nats-addr", freeAddr(t), flag, taken}
			res := runUntilExit(t, 10*time.Second, nil, dev(args...))
			if res.err == nil {
				t.Fatalf("furrow dev with %s %s taken exited 0:\n%s", flag, taken, res.out)
			}
			if !strings.Contains(res.out, "address already in use") || !strings.Contains(res.out, taken) {
				t.Errorf("output does not say \"address already in use\" for %s:\n%s", taken, res.out)
			}
			if res.elapsed > 5*time.Second {
				t.Errorf("exited after %s, want at once", res.elapsed)
			}
		})
	}
}

// Issue 9, defect 4: a data directory furrow dev may not write gave the
// same misleading message after 30 s. It must say "permission denied" and
// name the path. Root ignores permission bits, so as root the binary runs
// as nobody (a real user meeting a directory it does not own).
func TestDevDataDirectoryPermissionDenied(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	t.Parallel()
	parent := t.TempDir()
	bin := furrowBin
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// nobody must be able to run the binary and enter the directories.
		binDir := t.TempDir()
		// t.TempDir's directories and their common parent are 0700.
		for _, d := range []string{filepath.Dir(binDir), binDir, parent} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		bin = filepath.Join(binDir, "furrow")
		if err := exec.Command("cp", furrowBin, bin).Run(); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	} else if err := os.Chmod(parent, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(parent, 0o755) })
	// An existing directory it may not write, and one it may not create.
	existing := filepath.Join(parent, "existing")
	if err := os.Mkdir(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{existing, filepath.Join(parent, "new")} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			cmd := exec.Command(bin, "dev", "--data-dir", dir, "--grpc-addr", freeAddr(t), "--nats-addr", freeAddr(t))
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
			cmd.Dir = "/"
			cmd.Env = append(os.Environ(), "HOME=/")
			res := runUntilExit(t, 10*time.Second, nil, cmd)
			if res.err == nil {
				t.Fatalf("furrow dev on %s exited 0:\n%s", dir, res.out)
			}
			if !strings.Contains(res.out, "permission denied") || !strings.Contains(res.out, dir) {
				t.Errorf("output does not say \"permission denied\" on %s:\n%s", dir, res.out)
			}
			if res.elapsed > 5*time.Second {
				t.Errorf("exited after %s, want at once", res.elapsed)
			}
		})
	}
}

// Issue 9, defect 4: Ctrl-C during start-up was ignored until the NATS
// wait gave up (30 s). SIGINT at any stage of start-up ends the process
// promptly, and the data directory is free for the next start.
func TestDevSIGINTDuringStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	t.Parallel()
	sigintAfter := func(d time.Duration) func(*os.Process) {
		return func(p *os.Process) {
			time.Sleep(d)
			_ = p.Signal(syscall.SIGINT)
		}
	}
	// While the NATS port is taken.
	res := runUntilExit(t, 10*time.Second, sigintAfter(500*time.Millisecond),
		dev("--data-dir", t.TempDir(), "--grpc-addr", freeAddr(t), "--nats-addr", takenAddr(t)))
	if res.elapsed > 5*time.Second {
		t.Errorf("SIGINT with the NATS port taken: exited after %s:\n%s", res.elapsed, res.out)
	}
	// At several points of an ordinary start-up.
	dir := t.TempDir()
	for _, after := range []time.Duration{10 * time.Millisecond, 30 * time.Millisecond, 60 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		res := runUntilExit(t, 10*time.Second, sigintAfter(after),
			dev("--data-dir", dir, "--grpc-addr", freeAddr(t), "--nats-addr", freeAddr(t)))
		if res.elapsed > after+5*time.Second {
			t.Errorf("SIGINT after %s: exited after %s:\n%s", after, res.elapsed, res.out)
		}
		if strings.Contains(res.out, "panic") {
			t.Errorf("SIGINT after %s:\n%s", after, res.out)
		}
	}
	p := startDev(t, dir)
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	if err := p.wait(t); err != nil {
		t.Fatalf("start after the interrupted ones: %v\n%s", err, p.out.String())
	}
}

// Issue 9, defect 10: `furrow --version` was an unknown command and
// `furrow version` printed only "furrow dev". Both print the build: module
// version, VCS revision and commit time, Go version. The revision is what
// the Go toolchain recorded in the binary (`go version -m`); a build
// without VCS facts (-buildvcs=false, a git worktree, no .git) says
// "revision unknown".
func TestVersion(t *testing.T) {
	t.Parallel()
	meta, err := exec.Command("go", "version", "-m", furrowBin).Output()
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, line := range strings.Split(string(meta), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "build" {
			if k, v, ok := strings.Cut(f[1], "="); ok {
				settings[k] = v
			}
		}
	}
	goVersion, _, _ := strings.Cut(string(meta), "\n")
	goVersion = strings.TrimSpace(goVersion[strings.LastIndex(goVersion, " ")+1:])
	want := []string{"furrow ", goVersion}
	if rev := settings["vcs.revision"]; rev != "" {
		want = append(want, "revision "+rev, "committed "+settings["vcs.time"])
	} else {
		t.Log("the binary has no VCS facts (-buildvcs=false or a git worktree)")
		want = append(want, "revision unknown")
	}
	var outs []string
	for _, arg := range []string{"--version", "version"} {
		out, err := exec.Command(furrowBin, arg).CombinedOutput()
		if err != nil {
			t.Fatalf("furrow %s: %v\n%s", arg, err, out)
		}
		for _, w := range want {
			if !strings.Contains(string(out), w) {
				t.Errorf("furrow %s does not print %q:\n%s", arg, w, out)
			}
		}
		outs = append(outs, string(out))
	}
	if outs[0] != outs[1] {
		t.Errorf("furrow --version and furrow version differ:\n%s%s", outs[0], outs[1])
	}
}
