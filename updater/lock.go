package updater

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrStateDirLocked is wrapped by the error of New and LockStateDir when
// another process (or another Updater of this one) writes the StateDir.
var ErrStateDirLocked = errors.New("updater: state dir in use")

// ErrClosed is returned by the methods of an Updater after Close.
var ErrClosed = errors.New("updater: closed")

// lockFileName is the lock file inside a StateDir. It holds the PID of the
// process that holds the lock, for the error others get.
const lockFileName = "lock"

// lockPoll is how often a waiting LockStateDir tries again.
const lockPoll = 100 * time.Millisecond

// StateDirLock is the exclusive lock on a StateDir: one writer at a time
// (DESIGN invariant 8). Two processes writing the same state armed an image
// that matched neither of their releases. The lock is an flock(2) on
// StateDir/lock, released by Unlock or when the process ends, however it
// ends.
type StateDirLock struct {
	f *os.File
}

// LockStateDir takes the exclusive lock on dir (created if missing), for
// processes that change what dir describes without an Updater (such as
// switchback guard, which counts starts). New takes it for the Updater's
// lifetime. While another holds it, LockStateDir tries again for up to
// wait (zero: not at all) and then returns an error wrapping
// ErrStateDirLocked that names the PID of the holder.
func LockStateDir(dir string, wait time.Duration) (*StateDirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("updater: state directory: %w", err)
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("updater: lock state dir: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("updater: lock state dir %s: %w", dir, err)
		}
		if ok {
			break
		}
		if !time.Now().Before(deadline) {
			holder := lockHolder(path)
			f.Close()
			return nil, fmt.Errorf("%w: state dir %s in use by %s", ErrStateDirLocked, dir, holder)
		}
		time.Sleep(min(lockPoll, time.Until(deadline)))
	}
	// The PID is for the error message of others only: the flock decides.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &StateDirLock{f: f}, nil
}

// Unlock releases the lock. It is safe to call more than once.
func (l *StateDirLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	return f.Close() // closing the file releases the flock
}

// lockHolder describes the holder of the lock file at path: "PID n", or
// "another process" when the file names none yet.
func lockHolder(path string) string {
	b, err := os.ReadFile(path)
	if err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			return "PID " + strconv.Itoa(pid)
		}
	}
	return "another process"
}

// Close releases the StateDir lock that New took, after the method running
// (if any) returns. The Updater refuses to act afterwards (ErrClosed).
// Close is safe to call more than once.
func (u *Updater) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	return u.stateLock.Unlock()
}
