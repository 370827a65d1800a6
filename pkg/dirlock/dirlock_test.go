package dirlock_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/furrow/furrow/pkg/dirlock"
)

const helperEnv = "DIRLOCK_TEST_HOLD"

// TestHelperHoldLock is not a test: run by holder with helperEnv set, it
// is another process that takes the lock and holds it until its stdin
// closes.
func TestHelperHoldLock(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process of the tests below")
	}
	l, err := dirlock.Acquire(path)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = l.Release()
	os.Exit(0)
}

// holder starts another process that holds the lock on path.
func holder(t *testing.T, path string) (cmd *exec.Cmd, stdin io.Closer) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "-test.run=^TestHelperHoldLock$")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("holder process: %q, %v", line, err)
	}
	return cmd, in
}

func wantLockedBy(t *testing.T, err error, path string, pid int) {
	t.Helper()
	var le *dirlock.LockedError
	if !errors.As(err, &le) || !errors.Is(err, dirlock.ErrLocked) {
		t.Fatalf("error = %v, want a *LockedError", err)
	}
	if le.Path != path || le.PID != pid {
		t.Errorf("LockedError{Path: %q, PID: %d}, want {%q, %d}", le.Path, le.PID, path, pid)
	}
	if want := "(pid " + strconv.Itoa(pid) + ")"; !strings.Contains(err.Error(), want) {
		t.Errorf("message %q does not name %s", err, want)
	}
}

func TestAcquireRefusesAnotherProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "LOCK")
	cmd, stdin := holder(t, path)

	_, err := dirlock.Acquire(path)
	wantLockedBy(t, err, path, cmd.Process.Pid)
	_, err = dirlock.Share(path)
	wantLockedBy(t, err, path, cmd.Process.Pid)

	// Once the holder released it, the lock is free and names this process.
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	l, err := dirlock.Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(b)), strconv.Itoa(os.Getpid()); got != want {
		t.Errorf("lock file holds %q, want pid %s", got, want)
	}
}

// A holder killed with SIGKILL leaves its pid in the file but no lock: the
// next process starts.
func TestAcquireAfterHolderWasKilled(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "LOCK")
	cmd, _ := holder(t, path)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	l, err := dirlock.Acquire(path)
	if err != nil {
		t.Fatalf("Acquire after the holder was killed: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
}

func TestAcquireTwiceInOneProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "LOCK")
	l, err := dirlock.Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = dirlock.Acquire(path)
	wantLockedBy(t, err, path, os.Getpid())
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	l, err = dirlock.Acquire(path)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l.Release()
}

func TestShareCountsHoldersInOneProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "LOCK")
	a, err := dirlock.Share(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dirlock.Share(path)
	if err != nil {
		t.Fatalf("second Share in the same process: %v", err)
	}
	// An exclusive owner is still refused, and so is another process.
	_, err = dirlock.Acquire(path)
	wantLockedBy(t, err, path, os.Getpid())
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	// Releasing one handle twice does not release the other's share.
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	_, err = dirlock.Acquire(path)
	wantLockedBy(t, err, path, os.Getpid())
	if err := b.Release(); err != nil {
		t.Fatal(err)
	}
	l, err := dirlock.Acquire(path)
	if err != nil {
		t.Fatalf("Acquire after every holder released: %v", err)
	}
	l.Release()
}

func TestAcquireUnwritableDirectory(t *testing.T) {
	t.Parallel()
	// A path under a regular file fails for root as for anyone.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := dirlock.Acquire(filepath.Join(file, "LOCK"))
	if err == nil || errors.Is(err, dirlock.ErrLocked) || !strings.Contains(err.Error(), file) {
		t.Fatalf("Acquire under a file: %v, want an error naming the path", err)
	}
}
