//go:build !windows

package slots

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/google/renameio/v2"

	"github.com/switchback-ota/switchback/internal/durable"
)

// swapControl is the BootControl and StartCounter of the built-in file and
// directory slots, which share it. It manages two slots, "a" and "b",
// stored in a state directory beside the path applications use:
//
//	<dir>/<base>                        symlink to .<base>.switchback/a or /b
//	<dir>/.<base>.switchback/a, b       the slots' versions (file or unpacked tree)
//	<dir>/.<base>.switchback/state.json the sidecar state (swapState)
//	<dir>/.<base>.switchback/lock       serialises processes (flock)
//
// The sidecar is the source of truth and the symlink follows it. Every
// change writes the sidecar first (temp file, fsync, rename, fsync of the
// directory) and moves the symlink second (atomic rename of a new symlink,
// fsync of the directory). A power cut between the two leaves the old
// symlink, pointing at a version that was starting already; CountStart,
// which runs before every start of the application, moves the symlink to
// where the sidecar says it belongs, so the next start finishes the step.
// A slot's new version is made complete and durable (Arm's prepare step)
// before the sidecar names it, so the symlink never points at a partial
// version.
type swapControl struct {
	mu    sync.Mutex
	kind  string // "file" or "directory", for messages
	path  string // absolute path applications use
	dir   string // state directory
	rel   string // symlink target prefix, relative to path's directory
	names []string

	// prepare makes slot's staged image the complete, durable version the
	// symlink will point to. It is idempotent: Arm may be retried after a
	// cut at any point of it.
	prepare func(ctx context.Context, slot string) error
	// hook, when set (by tests), runs between the steps of a change; an
	// error stops the change there, as a power cut would.
	hook func(step string) error
}

func newSwapControl(kind, path string) (*swapControl, error) {
	if path == "" {
		return nil, fmt.Errorf("slots: %s slot: empty path", kind)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("slots: %s slot %s: %w", kind, path, err)
	}
	base := filepath.Base(abs)
	if base == "/" || base == "." {
		return nil, fmt.Errorf("slots: %s slot: %q names no file", kind, path)
	}
	rel := "." + base + ".switchback"
	return &swapControl{
		kind:  kind,
		path:  abs,
		dir:   filepath.Join(filepath.Dir(abs), rel),
		rel:   rel,
		names: swapSlotNames,
	}, nil
}

func (c *swapControl) step(name string) error {
	if c.hook == nil {
		return nil
	}
	return c.hook(name)
}

func (c *swapControl) slotPath(slot string) string   { return filepath.Join(c.dir, slot) }
func (c *swapControl) linkTarget(slot string) string { return filepath.Join(c.rel, slot) }
func (c *swapControl) statePath() string             { return filepath.Join(c.dir, "state.json") }

func (c *swapControl) known(slot string) error {
	if !slices.Contains(c.names, slot) {
		return fmt.Errorf("slots: %s slot %s: slot %q: %w", c.kind, c.path, slot, ErrUnknownSlot)
	}
	return nil
}

// lock serialises changes within the process (mu) and across processes
// (flock on the lock file), since the updater and the start guard may run
// in different processes.
func (c *swapControl) lock() (unlock func(), err error) {
	c.mu.Lock()
	f, err := os.OpenFile(filepath.Join(c.dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("slots: %s slot %s: %w", c.kind, c.path, err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		c.mu.Unlock()
		return nil, fmt.Errorf("slots: %s slot %s: locking: %w", c.kind, c.path, err)
	}
	return func() {
		f.Close() // releases the flock
		c.mu.Unlock()
	}, nil
}

// open prepares the control for use. A path that is already a symlink to
// one of the slots is used as it is. A path of the factory kind (a regular
// file for File, a directory for Dir) is migrated: migrate puts a copy of
// it into slot "a", the sidecar records "a" as primary, and replace swaps
// the path for a symlink to slot "a", atomically. A cut during migration
// leaves the factory version at the path, and the next open migrates
// again.
func (c *swapControl) open(factory func(fs.FileInfo) bool, migrate, replace func() error) error {
	fi, err := os.Lstat(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("slots: %s slot %s does not exist: install a first version there before switchback manages it: %w", c.kind, c.path, err)
	}
	if err != nil {
		return fmt.Errorf("slots: %s slot: %w", c.kind, err)
	}
	isLink := fi.Mode()&fs.ModeSymlink != 0
	if !isLink && !factory(fi) {
		return fmt.Errorf("slots: %s slot %s is a %v, want a %s or a symlink made by switchback", c.kind, c.path, fi.Mode().Type(), c.kind)
	}
	if isLink {
		// Refuse a symlink that is not ours before creating anything.
		if _, err := c.booted(); err != nil {
			return err
		}
	}
	if err := os.Mkdir(c.dir, 0o755); err == nil {
		if err := durable.SyncDir(filepath.Dir(c.path)); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("slots: %s slot: %w", c.kind, err)
	}
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := c.removeLeftovers(); err != nil {
		return err
	}
	if isLink {
		booted, err := c.booted()
		if err != nil {
			return err
		}
		_, err = c.load()
		if errors.Is(err, fs.ErrNotExist) {
			// Someone removed the sidecar: the running version is all we
			// can trust.
			return c.save(swapState{Version: swapStateVersion, Primary: booted})
		}
		return err
	}
	if err := migrate(); err != nil {
		return fmt.Errorf("slots: %s slot %s: moving the installed version into slot a: %w", c.kind, c.path, err)
	}
	if err := c.step("migrate:slot"); err != nil {
		return err
	}
	if err := c.save(swapState{Version: swapStateVersion, Primary: "a"}); err != nil {
		return err
	}
	if err := c.step("migrate:state"); err != nil {
		return err
	}
	return replace()
}

// removeLeftovers removes the temporary files a cut can leave: renameio's
// temporary state files, half-unpacked trees and migration links in the
// state directory (no change is under way: the caller holds the lock),
// and the temporary
// directories renameio.Symlink makes beside the path (named "."+base
// followed by digits, holding only "tmp.symlink"). Nothing else is touched.
func (c *swapControl) removeLeftovers() error {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("slots: %s slot: %w", c.kind, err)
	}
	for _, e := range ents {
		n := e.Name()
		leftover := strings.HasPrefix(n, ".state.json") || n == ".a.migrate"
		for _, slot := range c.names {
			leftover = leftover || strings.HasPrefix(n, "."+slot+".unpack-")
		}
		if leftover {
			if err := os.RemoveAll(filepath.Join(c.dir, n)); err != nil {
				return fmt.Errorf("slots: %s slot: removing a leftover: %w", c.kind, err)
			}
		}
	}
	parent := filepath.Dir(c.path)
	prefix := "." + filepath.Base(c.path)
	ents, err = os.ReadDir(parent)
	if err != nil {
		return fmt.Errorf("slots: %s slot: %w", c.kind, err)
	}
	for _, e := range ents {
		digits := strings.TrimPrefix(e.Name(), prefix)
		if !e.IsDir() || digits == e.Name() || digits == "" || strings.Trim(digits, "0123456789") != "" {
			continue
		}
		p := filepath.Join(parent, e.Name())
		inside, err := os.ReadDir(p)
		if err != nil || len(inside) != 1 || inside[0].Name() != "tmp.symlink" || inside[0].Type() != fs.ModeSymlink {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("slots: %s slot: removing a leftover: %w", c.kind, err)
		}
	}
	return nil
}

// booted returns the slot path points to.
func (c *swapControl) booted() (string, error) {
	t, err := os.Readlink(c.path)
	if err != nil {
		return "", fmt.Errorf("slots: %s slot: reading symlink: %w", c.kind, err)
	}
	for _, n := range c.names {
		if t == c.linkTarget(n) || t == c.slotPath(n) {
			return n, nil
		}
	}
	return "", fmt.Errorf("slots: %s slot %s points to %q, not to a slot in %s", c.kind, c.path, t, c.dir)
}

func (c *swapControl) load() (swapState, error) {
	data, err := os.ReadFile(c.statePath())
	if err != nil {
		return swapState{}, fmt.Errorf("slots: %s slot %s: reading state: %w", c.kind, c.path, err)
	}
	st, err := parseSwapState(data, c.names)
	if err != nil {
		return swapState{}, fmt.Errorf("slots: %s slot %s: %s: %w", c.kind, c.path, c.statePath(), err)
	}
	return st, nil
}

// save writes the sidecar durably: renameio writes a temp file in the
// same directory, fsyncs and renames it; the fsync of the directory makes
// the rename itself durable (renameio does not).
func (c *swapControl) save(st swapState) error {
	if err := st.validate(c.names); err != nil {
		return fmt.Errorf("slots: %s slot %s: refusing to write state: %w", c.kind, c.path, err)
	}
	if err := durable.WriteFile(c.statePath(), st.marshal(), 0o644); err != nil {
		return fmt.Errorf("slots: %s slot %s: writing state: %w", c.kind, c.path, err)
	}
	return nil
}

// swapLink points path at slot: a new symlink renamed over the old one,
// then an fsync of the directory to make the rename durable.
func (c *swapControl) swapLink(slot string) error {
	if err := renameio.Symlink(c.linkTarget(slot), c.path); err != nil {
		return fmt.Errorf("slots: %s slot %s: switching to slot %s: %w", c.kind, c.path, slot, err)
	}
	return durable.SyncDir(filepath.Dir(c.path))
}

// current loads the sidecar and the symlink; the caller holds the lock.
func (c *swapControl) current() (swapState, string, error) {
	st, err := c.load()
	if err != nil {
		return st, "", err
	}
	booted, err := c.booted()
	return st, booted, err
}

func (st swapState) status(booted string) BootStatus {
	bs := BootStatus{Booted: booted, Primary: st.Primary, Trial: st.Trial, Bad: slices.Clone(st.Bad)}
	if st.Trial != "" {
		bs.TriesLeft = st.TriesLeft
	}
	return bs
}

// locked runs fn with the lock held, on the sidecar state and the slot the
// symlink points to: the start of every change, so that concurrent
// processes (the agent, the guard) see each other's writes.
func (c *swapControl) locked(ctx context.Context, fn func(st swapState, booted string) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, booted, err := c.current()
	if err != nil {
		return err
	}
	return fn(st, booted)
}

// Status reports the slot the symlink points to and the sidecar state.
func (c *swapControl) Status(ctx context.Context) (BootStatus, error) {
	var bs BootStatus
	err := c.locked(ctx, func(st swapState, booted string) error {
		bs = st.status(booted)
		return nil
	})
	return bs, err
}

// Arm prepares slot's staged version, records the trial, and points the
// symlink at it.
func (c *swapControl) Arm(ctx context.Context, slot string, tries int) error {
	if err := c.known(slot); err != nil {
		return err
	}
	if tries < 1 || tries > maxTries {
		return fmt.Errorf("slots: %s slot %s: arm %s: tries must be 1 to %d, got %d", c.kind, c.path, slot, maxTries, tries)
	}
	return c.locked(ctx, func(st swapState, booted string) error {
		if slot == booted || slot == st.Primary {
			return fmt.Errorf("slots: %s slot %s: arm %s (booted %s, primary %s): %w", c.kind, c.path, slot, booted, st.Primary, ErrSlotActive)
		}
		if st.Trial == slot {
			// Armed before, but a cut stopped the switch: the trial is about to
			// be replaced, so it must not be started meanwhile.
			st.Trial, st.TriesLeft = "", 0
			if err := c.save(st); err != nil {
				return err
			}
			if err := c.step("arm:disarmed"); err != nil {
				return err
			}
		}
		if err := c.prepare(ctx, slot); err != nil {
			return fmt.Errorf("slots: %s slot %s: arm %s: %w", c.kind, c.path, slot, err)
		}
		if err := c.step("arm:prepared"); err != nil {
			return err
		}
		if err := c.save(st.arm(slot, tries)); err != nil {
			return err
		}
		if err := c.step("arm:state"); err != nil {
			return err
		}
		return c.swapLink(slot)
	})
}

// Commit makes the running slot primary. A slot the symlink points to but
// that is neither the trial nor the primary (a rollback cut short) is not
// committed: it runs only until the next CountStart.
func (c *swapControl) Commit(ctx context.Context, slot string) error {
	if err := c.known(slot); err != nil {
		return err
	}
	return c.locked(ctx, func(st swapState, booted string) error {
		if slot != booted || (slot != st.Trial && slot != st.Primary) {
			return fmt.Errorf("slots: %s slot %s: commit %s (booted %s, primary %s, trial %q): %w", c.kind, c.path, slot, booted, st.Primary, st.Trial, ErrNotRunning)
		}
		next := st.commit(slot)
		if next.equal(st) {
			return nil
		}
		return c.save(next)
	})
}

// MarkBad records slot as bad, ends its trial, and points the symlink back
// at the primary if it pointed at slot.
func (c *swapControl) MarkBad(ctx context.Context, slot string) error {
	if err := c.known(slot); err != nil {
		return err
	}
	return c.locked(ctx, func(st swapState, booted string) error {
		next := st.markBad(slot)
		if !next.equal(st) {
			if err := c.save(next); err != nil {
				return err
			}
			if err := c.step("markbad:state"); err != nil {
				return err
			}
		}
		if want := next.target(); booted != want {
			return c.swapLink(want)
		}
		return nil
	})
}

// CountStart consumes one try of an armed trial, or, when none is left,
// marks the trial bad; then it points the symlink at the slot that must
// start, repairing a change a power cut interrupted.
func (c *swapControl) CountStart(ctx context.Context) (BootStatus, error) {
	var bs BootStatus
	err := c.locked(ctx, func(st swapState, booted string) error {
		next, run := st.start()
		if !next.equal(st) {
			if err := c.save(next); err != nil {
				return err
			}
			if err := c.step("start:state"); err != nil {
				return err
			}
		}
		if booted != run {
			if err := c.swapLink(run); err != nil {
				return err
			}
		}
		bs = next.status(run)
		return nil
	})
	return bs, err
}

// swapSlot is one slot of a swap control. Its image is stored in a file:
// the version itself for File, the release archive for Dir. Writes go to a
// staging file with a stable name (image + ".part"), so an interrupted
// write resumes across restarts and the slot's previous version stays
// whole until Arm replaces it.
type swapSlot struct {
	c     *swapControl
	name  string
	image string
}

func (s *swapSlot) part() string { return s.image + ".part" }

func (s *swapSlot) Name() string { return s.name }

func (s *swapSlot) errorf(format string, args ...any) error {
	return fmt.Errorf("slots: %s slot %s: slot %s: %w", s.c.kind, s.c.path, s.name, fmt.Errorf(format, args...))
}

// Writer opens the staging file without truncating it and sizes it to
// size. The running slot and the primary are refused.
func (s *swapSlot) Writer(ctx context.Context, size int64) (Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.errorf("%w", err)
	}
	if size < 0 {
		return nil, s.errorf("negative image size %d", size)
	}
	unlock, err := s.c.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, booted, err := s.c.current()
	if err != nil {
		return nil, err
	}
	if s.name == booted || s.name == st.Primary {
		return nil, s.errorf("booted %s, primary %s: %w", booted, st.Primary, ErrSlotActive)
	}
	f, err := os.OpenFile(s.part(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, s.errorf("%w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, s.errorf("%w", err)
	}
	if need := size - fi.Size(); need > 0 {
		if avail, ok := freeSpace(s.c.dir); ok && need > avail {
			f.Close()
			return nil, s.errorf("%d bytes more needed, %d free: %w", need, avail, ErrTooLarge)
		}
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		if errors.Is(err, syscall.EFBIG) {
			return nil, s.errorf("%w: %w", err, ErrTooLarge)
		}
		return nil, s.errorf("%w", err)
	}
	return &fileWriter{f: f, size: size}, nil
}

// Reader opens the staged image if there is one, else the slot's image.
func (s *swapSlot) Reader(ctx context.Context) (Reader, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.errorf("%w", err)
	}
	for _, p := range []string{s.part(), s.image} {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, s.errorf("%w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, s.errorf("%w", err)
		}
		if !fi.Mode().IsRegular() {
			f.Close()
			return nil, s.errorf("%s is a %v, want a regular file", p, fi.Mode().Type())
		}
		return &fileReader{File: f, size: fi.Size()}, nil
	}
	return nil, s.errorf("%w", ErrEmpty)
}

// finishPart makes the staged image the slot's image: fsync, rename over
// the image, fsync of the directory. With nothing staged it checks that the
// slot has an image (a retried Arm finds it renamed already).
func (s *swapSlot) finishPart(mode fs.FileMode) error {
	f, err := os.OpenFile(s.part(), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(s.image); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("slot %s: %w", s.name, ErrEmpty)
		} else if err != nil {
			return err
		}
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := os.Rename(s.part(), s.image); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(s.image))
}

type fileWriter struct {
	f      *os.File
	size   int64
	closed bool
}

func (w *fileWriter) WriteAt(p []byte, off int64) (int, error) {
	if w.closed {
		return 0, fmt.Errorf("slots: write to a closed writer: %w", os.ErrClosed)
	}
	if off < 0 || off+int64(len(p)) > w.size {
		return 0, fmt.Errorf("slots: write of %d bytes at offset %d outside an image of %d bytes", len(p), off, w.size)
	}
	return w.f.WriteAt(p, off)
}

func (w *fileWriter) Sync() error {
	if w.closed {
		return fmt.Errorf("slots: sync of a closed writer: %w", os.ErrClosed)
	}
	return w.f.Sync()
}

// KernelBuffered implements [KernelBuffered]: WriteAt is a pwrite to the
// staging file.
func (w *fileWriter) KernelBuffered() bool { return true }

// Close is idempotent.
func (w *fileWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	return w.f.Close()
}

type fileReader struct {
	*os.File
	size int64
}

func (r *fileReader) Size() int64 { return r.size }
