package projection_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/furrow/furrow/pkg/dirlock"
	"github.com/furrow/furrow/pkg/projection"
)

const sqliteHolderEnv = "PROJECTION_TEST_HOLD_SQLITE"

// TestHelperHoldSQLite is not a test: started by holdSQLite with
// sqliteHolderEnv set, it is another process that opens the database and
// keeps it open until its stdin closes.
func TestHelperHoldSQLite(t *testing.T) {
	path := os.Getenv(sqliteHolderEnv)
	if path == "" {
		t.Skip("helper process of TestOpenSQLiteRefusesAnotherProcess")
	}
	db, err := projection.OpenSQLite(path)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	fmt.Println("open")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = db.Close()
	os.Exit(0)
}

func holdSQLite(t *testing.T, path string) (*exec.Cmd, io.Closer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldSQLite$")
	cmd.Env = append(os.Environ(), sqliteHolderEnv+"="+path)
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
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "open\n" {
		t.Fatalf("holder process: %q, %v", line, err)
	}
	return cmd, in
}

// Issue 9, defect 1: every process that owns a data directory locks it;
// for a SQLite read model that is its file. A second process running the
// same projections into it would apply every event twice.
func TestOpenSQLiteRefusesAnotherProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "read.db")
	cmd, stdin := holdSQLite(t, path)

	db, err := projection.OpenSQLite(path)
	if err == nil {
		db.Close()
		t.Fatalf("opened %s while process %d has it open", path, cmd.Process.Pid)
	}
	var le *dirlock.LockedError
	if !errors.As(err, &le) || le.PID != cmd.Process.Pid {
		t.Fatalf("error = %v, want a *dirlock.LockedError naming pid %d", err, cmd.Process.Pid)
	}
	if want := fmt.Sprintf("pid %d", cmd.Process.Pid); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s and %s", err, path, want)
	}

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	db, err = projection.OpenSQLite(path)
	if err != nil {
		t.Fatalf("open after the other process closed it: %v", err)
	}
	db.Close()
}

// Handles in one process share the file; once all are closed another
// process may open it.
func TestOpenSQLiteTwiceInOneProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "read.db")
	a, err := projection.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := projection.OpenSQLite(path)
	if err != nil {
		t.Fatalf("second handle in the same process: %v", err)
	}
	if _, err := a.Exec(`CREATE TABLE t (x BIGINT)`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(`INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	cmd, stdin := holdSQLite(t, path)
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("another process after both handles closed: %v", err)
	}
}
