//go:build !windows

package slots

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/switchback-ota/switchback/internal/durable"
)

// File is the built-in slot for one file, such as an application binary
// or a configuration bundle. The path applications use becomes a symlink
// to one of two versions kept beside it:
//
//	/opt/gw/bin/gateway -> .gateway.switchback/a
//	/opt/gw/bin/.gateway.switchback/a          the running version
//	/opt/gw/bin/.gateway.switchback/b          the other one (previous or next)
//	/opt/gw/bin/.gateway.switchback/b.part     an image being written to slot b
//	/opt/gw/bin/.gateway.switchback/state.json trial, tries and bad slots
//
// [File.Slots] returns the two slots, "a" and "b". Writing a slot stages
// the image in its .part file, so the slot's previous version stays whole
// and an interrupted write resumes after a restart. File itself is the
// [BootControl] and [StartCounter] of the pair: Arm makes the staged image
// the slot's version and swaps the symlink to it atomically; CountStart,
// run before each start of the application, counts the trial's tries and
// swaps back to the primary when they run out; MarkBad swaps back at once.
//
// Each change writes the state file first and swaps the symlink second, so
// that a power cut between the two leaves the symlink at a version that was
// starting already; the next CountStart finishes the change. Run CountStart
// before every start of the application (for example from a systemd
// ExecStartPre= guard): a cut during a rollback can leave the symlink at
// the bad version until it runs.
//
// The path must be on a local file system that renames atomically (not
// NFS). A File is safe for concurrent use; across processes its changes
// are serialised with a lock file.
type File struct {
	c     *swapControl
	mode  fs.FileMode
	slots []*swapSlot
}

// FileOption configures a [File].
type FileOption func(*File)

// WithFileMode sets the permission bits of each new version, for example
// 0o755 for a binary. By default a new version gets the permission bits of
// the running one.
func WithFileMode(mode fs.FileMode) FileOption {
	return func(f *File) { f.mode = mode.Perm() }
}

// NewFile manages path as a file slot. The path must exist: a regular
// file (the factory-installed version, which becomes slot "a") or a
// symlink NewFile made before. Moving a regular file into slot "a" is
// crash-safe: it is hard-linked into the state directory, the state file
// is written, and the path is atomically replaced by a symlink.
func NewFile(path string, opts ...FileOption) (*File, error) {
	c, err := newSwapControl("file", path)
	if err != nil {
		return nil, err
	}
	f := &File{c: c}
	for _, o := range opts {
		o(f)
	}
	for _, n := range c.names {
		f.slots = append(f.slots, &swapSlot{c: c, name: n, image: c.slotPath(n)})
	}
	c.prepare = f.prepare
	err = c.open(func(fi fs.FileInfo) bool { return fi.Mode().IsRegular() }, f.migrate, func() error { return c.swapLink("a") })
	if err != nil {
		return nil, err
	}
	return f, nil
}

// migrate hard-links the factory file into slot a. The link is made under
// a temporary name and renamed, so it replaces a stale slot a left by an
// earlier install.
func (f *File) migrate() error {
	if fa, err := os.Lstat(f.c.slotPath("a")); err == nil {
		if fp, err := os.Lstat(f.c.path); err == nil && os.SameFile(fa, fp) {
			// Linked by an earlier, interrupted migration. (Renaming a
			// link over another link to the same file would do nothing
			// and leave the temporary name behind.)
			return durable.SyncDir(f.c.dir)
		}
	}
	tmp := filepath.Join(f.c.dir, ".a.migrate")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Link(f.c.path, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, f.c.slotPath("a")); err != nil {
		return err
	}
	return durable.SyncDir(f.c.dir)
}

// prepare renames slot's staged image into place with the file mode.
func (f *File) prepare(ctx context.Context, slot string) error {
	mode := f.mode
	if mode == 0 {
		mode = 0o644
		if booted, err := f.c.booted(); err == nil {
			if fi, err := os.Stat(f.c.slotPath(booted)); err == nil {
				mode = fi.Mode().Perm()
			}
		}
	}
	return f.slot(slot).finishPart(mode)
}

func (f *File) slot(name string) *swapSlot {
	for _, s := range f.slots {
		if s.name == name {
			return s
		}
	}
	return nil
}

// Path returns the absolute path applications use.
func (f *File) Path() string { return f.c.path }

// Slots returns the two slots, "a" and "b".
func (f *File) Slots() []Slot { return []Slot{f.slots[0], f.slots[1]} }

// Slot returns the slot named name, or an error wrapping [ErrUnknownSlot].
func (f *File) Slot(name string) (Slot, error) {
	if s := f.slot(name); s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("slots: file slot %s: slot %q: %w", f.c.path, name, ErrUnknownSlot)
}

// Status reports the slot the symlink points to (Booted) and the state.
func (f *File) Status(ctx context.Context) (BootStatus, error) { return f.c.Status(ctx) }

// Arm makes slot's staged image its version, records a trial of tries
// starts, and swaps the symlink to it. The booted and the primary slot are
// refused with [ErrSlotActive]; a slot with no image with [ErrEmpty].
func (f *File) Arm(ctx context.Context, slot string, tries int) error {
	return f.c.Arm(ctx, slot, tries)
}

// Commit makes slot, which the symlink must point to, the primary slot.
func (f *File) Commit(ctx context.Context, slot string) error { return f.c.Commit(ctx, slot) }

// MarkBad records slot as bad, ends its trial, and swaps the symlink back
// to the primary if it pointed at slot.
func (f *File) MarkBad(ctx context.Context, slot string) error { return f.c.MarkBad(ctx, slot) }

// CountStart is called once before each start of the application. It
// consumes one try of an armed trial; when none is left it marks the
// trial bad and swaps the symlink back to the primary. It also finishes a
// change a power cut interrupted. It returns the status the application
// starts with.
func (f *File) CountStart(ctx context.Context) (BootStatus, error) { return f.c.CountStart(ctx) }

var (
	_ BootControl  = (*File)(nil)
	_ StartCounter = (*File)(nil)
)
