// Package dirlock keeps one process per data directory. Two processes
// writing the same JetStream store or SQLite file do not fail loudly: each
// believes it appended at the same position, and after a restart one of
// them has lost acknowledged writes. Whatever owns files therefore takes an
// exclusive lock first and refuses to start while another process holds it.
//
// The lock is an advisory flock(2) on a small file that also records the
// holder's pid, so the refusal can name it. The kernel drops the lock when
// the holder exits, however it exits (SIGKILL included): a stale lock file
// never blocks a restart, and the file itself is never removed (removing it
// would let two processes lock two different files of the same name).
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// ErrLocked is what a lock that another holder has makes Acquire and Share
// return (as a *LockedError, which says who holds it).
var ErrLocked = errors.New("locked")

// LockedError says which lock file is held and by which process.
type LockedError struct {
	// Path is the lock file.
	Path string
	// PID is the holder's process id as it wrote it, 0 when it could not
	// be read (the holder may not have written it yet).
	PID int
}

func (e *LockedError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("%s is locked by a running process (pid unknown)", e.Path)
	}
	return fmt.Sprintf("%s is locked by a running process (pid %d)", e.Path, e.PID)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Lock is a held lock. Release it once; the process's exit releases it too.
type Lock struct {
	f    *os.File
	path string
	// share, for a lock taken by Share, is its entry in the process's
	// table; Release then only drops one reference.
	share *shared
}

// Acquire takes the exclusive lock on the file at path, creating the file
// (not its directory) if needed, and writes this process's pid into it.
// It does not wait: a lock held elsewhere gives a *LockedError at once.
// Even in one process, a second Acquire of the same path fails: Acquire is
// for an owner that must be alone, such as a server's store.
func Acquire(path string) (*Lock, error) {
	// Errors are *os.PathError: they name the path and the cause
	// ("open /data/furrow.lock: permission denied").
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := flock(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, &LockedError{Path: path, PID: readPID(path)}
		}
		return nil, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	// Only the holder writes, so the pid is never torn by another writer.
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, err
	}
	return &Lock{f: f, path: path}, nil
}

// Path is the lock file.
func (l *Lock) Path() string { return l.path }

// Release gives the lock up; calling it again does nothing, and so does
// calling it on a nil Lock. It is not safe for concurrent use.
func (l *Lock) Release() error {
	if l == nil {
		return nil
	}
	if s := l.share; s != nil {
		l.share = nil
		return s.release()
	}
	return l.release()
}

func (l *Lock) release() error {
	if l.f == nil {
		return nil
	}
	// Leave no pid behind that could be mistaken for a live holder.
	err := l.f.Truncate(0)
	// Unlock explicitly: closing is not enough while a child being forked
	// at this moment holds a copy of the descriptor until it execs.
	err = errors.Join(err, funlock(l.f), l.f.Close())
	l.f = nil
	return err
}

// readPID reads the holder's pid from the lock file, 0 if unreadable.
func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// shares holds the locks taken with Share, by absolute path. Its mutex
// guards the map and every entry's reference count.
var shares = struct {
	sync.Mutex
	m map[string]*shared
}{m: map[string]*shared{}}

type shared struct {
	key  string
	lock *Lock
	refs int
}

// Share takes the lock on path for this process, like Acquire, unless this
// process already holds it through Share: then it counts one more holder.
// The file stays locked until every holder released it. It is for files
// that several handles in one process may use safely together (a SQLite
// database: SQLite serialises its writers) but another process must not.
func Share(path string) (*Lock, error) {
	key, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	shares.Lock()
	defer shares.Unlock()
	if s, ok := shares.m[key]; ok {
		s.refs++
		return &Lock{path: path, share: s}, nil
	}
	l, err := Acquire(path)
	if err != nil {
		return nil, err
	}
	s := &shared{key: key, lock: l, refs: 1}
	shares.m[key] = s
	return &Lock{path: path, share: s}, nil
}

func (s *shared) release() error {
	shares.Lock()
	defer shares.Unlock()
	if s.refs == 0 {
		return nil
	}
	s.refs--
	if s.refs > 0 {
		return nil
	}
	delete(shares.m, s.key)
	return s.lock.release()
}
