//go:build !windows

package slots

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/switchback-ota/switchback/internal/durable"
)

// Dir is the built-in slot for a directory tree, such as an application's
// release directory. The image written to a slot is a release archive:
// tar, tar.gz or tar.zst (detected by magic bytes). The path applications
// use becomes a symlink to one of two unpacked trees kept beside it:
//
//	/opt/gw/current -> .current.switchback/a
//	/opt/gw/.current.switchback/a                the running tree
//	/opt/gw/.current.switchback/b                the other one (previous or next)
//	/opt/gw/.current.switchback/b.archive        slot b's archive, as written
//	/opt/gw/.current.switchback/b.archive.part   an archive being written to slot b
//	/opt/gw/.current.switchback/state.json       trial, tries and bad slots
//
// A slot's Writer and Reader see the archive bytes. Arm unpacks the
// slot's archive into a fresh temporary directory beside the trees,
// fsyncs every file and directory, renames it into place, and only then
// records the trial and swaps the symlink, as [File] does; Dir has the
// same [BootControl] and [StartCounter] semantics and crash safety (see
// File). An archive that breaks the unpacking rules is refused with an
// error wrapping [ErrUnsafeArchive], and nothing is activated: paths that
// escape the directory (absolute, ".."), entries written through a symlink
// of the archive, device nodes, fifos and other special files, duplicate
// entries, and more entries or bytes than the [UnpackLimits]. Hard links
// to regular files earlier in the archive are supported. Symlinks may
// point anywhere (a release may link to /etc), but nothing is written
// through them. Permission bits are kept without setuid, setgid and sticky
// bits; owners and times are not restored.
//
// The path must be on a local file system that renames atomically (not
// NFS). A Dir is safe for concurrent use; across processes its changes are
// serialised with a lock file.
type Dir struct {
	c      *swapControl
	limits UnpackLimits
	slots  []*swapSlot
}

// DirOption configures a [Dir].
type DirOption func(*Dir)

// WithUnpackLimits sets the limits an archive must keep to; zero fields
// keep their defaults.
func WithUnpackLimits(l UnpackLimits) DirOption {
	return func(d *Dir) { d.limits = l }
}

// NewDir manages path as a directory slot. The path must exist: a
// directory (the factory-installed version, which becomes slot "a") or a
// symlink NewDir made before. Moving a directory into slot "a" is
// crash-safe and copies no data: the tree is rebuilt in the state
// directory with hard links, the state file is written, and the directory
// at path is exchanged atomically with a symlink (renameat2
// RENAME_EXCHANGE, Linux only). Slot "a" then has no archive: its Reader
// fails with [ErrEmpty] until an update is written to it.
func NewDir(path string, opts ...DirOption) (*Dir, error) {
	c, err := newSwapControl("directory", path)
	if err != nil {
		return nil, err
	}
	d := &Dir{c: c}
	for _, o := range opts {
		o(d)
	}
	d.limits = d.limits.withDefaults()
	for _, n := range c.names {
		d.slots = append(d.slots, &swapSlot{c: c, name: n, image: c.slotPath(n) + ".archive"})
	}
	c.prepare = d.prepare
	if err := d.cleanMigration(); err != nil {
		return nil, err
	}
	if err := c.open(func(fi fs.FileInfo) bool { return fi.IsDir() }, d.migrate, d.replace); err != nil {
		return nil, err
	}
	return d, nil
}

// oldTree is where the factory directory lands when it is exchanged with
// the symlink, until it is removed.
func (d *Dir) oldTree() string {
	return filepath.Join(filepath.Dir(d.c.path), d.c.rel+".old")
}

// cleanMigration removes the factory tree a cut left behind after the
// exchange.
func (d *Dir) cleanMigration() error {
	if _, err := os.Lstat(d.oldTree()); err == nil {
		if fi, err := os.Lstat(d.c.path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			if err := os.RemoveAll(d.oldTree()); err != nil {
				return fmt.Errorf("slots: directory slot %s: removing the migrated factory tree: %w", d.c.path, err)
			}
		}
	}
	return nil
}

// migrate rebuilds the factory directory as slot a with hard links.
func (d *Dir) migrate() error {
	tmp, err := d.freshTemp("a")
	if err != nil {
		return err
	}
	if err := linkTree(d.c.path, tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	return d.install("a", tmp)
}

// replace exchanges the factory directory with a symlink to slot a, then
// removes it.
func (d *Dir) replace() error {
	if err := exchangeWithSymlink(d.c.path, d.c.linkTarget("a"), d.oldTree()); err != nil {
		return err
	}
	if err := durable.SyncDir(filepath.Dir(d.c.path)); err != nil {
		return err
	}
	if err := d.c.step("migrate:exchanged"); err != nil {
		return err
	}
	return os.RemoveAll(d.oldTree())
}

// freshTemp removes what an interrupted unpack of slot left and makes a new
// temporary directory for it, beside the trees (same file system, so it
// can be renamed into place).
func (d *Dir) freshTemp(slot string) (string, error) {
	stale, err := filepath.Glob(filepath.Join(d.c.dir, "."+slot+".unpack-*"))
	if err != nil {
		return "", err
	}
	for _, s := range stale {
		if err := os.RemoveAll(s); err != nil {
			return "", err
		}
	}
	tmp, err := os.MkdirTemp(d.c.dir, "."+slot+".unpack-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return tmp, nil
}

// install replaces slot's tree with tmp, a complete and fsynced tree.
func (d *Dir) install(slot, tmp string) error {
	tree := d.c.slotPath(slot)
	if err := durable.SyncDir(tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.RemoveAll(tree); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := d.c.step("dir:old-removed"); err != nil {
		return err
	}
	if err := os.Rename(tmp, tree); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	return durable.SyncDir(d.c.dir)
}

// prepare makes slot's staged archive its archive and unpacks it into the
// slot's tree.
func (d *Dir) prepare(ctx context.Context, slot string) error {
	s := d.slot(slot)
	if err := s.finishPart(0o600); err != nil {
		return err
	}
	if err := d.c.step("dir:archive"); err != nil {
		return err
	}
	tmp, err := d.freshTemp(slot)
	if err != nil {
		return err
	}
	f, err := os.Open(s.image)
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	err = unpack(ctx, f, tmp, d.limits)
	f.Close()
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("unpacking %s: %w", s.image, err)
	}
	if err := d.c.step("dir:unpacked"); err != nil {
		return err
	}
	return d.install(slot, tmp)
}

func (d *Dir) slot(name string) *swapSlot {
	for _, s := range d.slots {
		if s.name == name {
			return s
		}
	}
	return nil
}

// Path returns the absolute path applications use.
func (d *Dir) Path() string { return d.c.path }

// Slots returns the two slots, "a" and "b". Their images are release
// archives.
func (d *Dir) Slots() []Slot { return []Slot{d.slots[0], d.slots[1]} }

// Slot returns the slot named name, or an error wrapping [ErrUnknownSlot].
func (d *Dir) Slot(name string) (Slot, error) {
	if s := d.slot(name); s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("slots: directory slot %s: slot %q: %w", d.c.path, name, ErrUnknownSlot)
}

// Status reports the slot the symlink points to (Booted) and the state.
func (d *Dir) Status(ctx context.Context) (BootStatus, error) { return d.c.Status(ctx) }

// Arm unpacks slot's archive into its tree, records a trial of tries
// starts, and swaps the symlink to it. The booted and the primary slot are
// refused with [ErrSlotActive], a slot with no archive with [ErrEmpty], an
// unsafe archive with [ErrUnsafeArchive]; on any error the symlink and the
// state are unchanged.
func (d *Dir) Arm(ctx context.Context, slot string, tries int) error {
	return d.c.Arm(ctx, slot, tries)
}

// Commit makes slot, which the symlink must point to, the primary slot.
func (d *Dir) Commit(ctx context.Context, slot string) error { return d.c.Commit(ctx, slot) }

// MarkBad records slot as bad, ends its trial, and swaps the symlink back
// to the primary if it pointed at slot.
func (d *Dir) MarkBad(ctx context.Context, slot string) error { return d.c.MarkBad(ctx, slot) }

// CountStart is called once before each start of the application; see
// [File.CountStart].
func (d *Dir) CountStart(ctx context.Context) (BootStatus, error) { return d.c.CountStart(ctx) }

// linkTree rebuilds the tree at src in dst (an existing empty directory)
// with hard links to src's files, copying no data, and fsyncs its
// directories (the files' data is the factory's, durable already).
func linkTree(src, dst string) error {
	var dirs []string
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		info, err := e.Info()
		if err != nil {
			return err
		}
		switch t := info.Mode().Type(); {
		case t == 0:
			return os.Link(p, out)
		case t == fs.ModeDir:
			dirs = append(dirs, out)
			if rel != "." {
				if err := os.Mkdir(out, info.Mode().Perm()|0o700); err != nil {
					return err
				}
			}
			return nil
		case t == fs.ModeSymlink:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, out)
		default:
			return fmt.Errorf("%s is a %v: only files, directories and symlinks can be migrated", p, t)
		}
	})
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if err := durable.SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

var (
	_ BootControl  = (*Dir)(nil)
	_ StartCounter = (*Dir)(nil)
)
