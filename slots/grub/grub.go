package grub

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/internal/abenv"
)

// Control is a [slots.BootControl] and [slots.CanaryChecker] over a GRUB
// environment block whose variables switchback.cfg reads. See the package
// documentation for the variables and the boot flow.
//
// A Control is safe for concurrent use; concurrent processes are
// serialized with flock(2) on the environment file.
type Control struct {
	path       string
	names      []string
	cmdline    string
	runtimeDir string
	rand       io.Reader

	mu sync.Mutex
	// writeAt writes the new block; tests replace it to tear writes.
	writeAt func(f *os.File, b []byte) error
}

var (
	_ slots.BootControl   = (*Control)(nil)
	_ slots.CanaryChecker = (*Control)(nil)
)

// Option configures a Control.
type Option func(*Control)

// WithCmdline sets the kernel command line file read for
// switchback.slot= and switchback.canary= (default /proc/cmdline).
func WithCmdline(path string) Option { return func(c *Control) { c.cmdline = path } }

// WithRuntimeDir sets the directory, emptied at every boot, where the
// control remembers this boot's canary (default /run/switchback). Empty
// disables the memory: CheckCanary then fails after an Arm or Commit in
// the same boot.
func WithRuntimeDir(dir string) Option { return func(c *Control) { c.runtimeDir = dir } }

// WithRand sets the source of canary values (default crypto/rand).
func WithRand(r io.Reader) Option { return func(c *Control) { c.rand = r } }

// New returns a Control over the environment block at path (for example
// /boot/grub/grubenv, or /boot/efi/EFI/debian/grubenv: the file GRUB's
// load_env reads) for the given slots. The first slot is the default
// primary, used until a Commit records one; it must be the sb_default of
// grub.cfg. The file must exist (create it with "grub-editenv PATH
// create" or [NewEnv]); New does not touch it.
func New(path string, slotNames []string, opts ...Option) (*Control, error) {
	if err := abenv.CheckSlotNames(slotNames); err != nil {
		return nil, fmt.Errorf("grub: %w", err)
	}
	c := &Control{
		path:       path,
		names:      append([]string(nil), slotNames...),
		cmdline:    "/proc/cmdline",
		runtimeDir: "/run/switchback",
		rand:       rand.Reader,
		writeAt:    writeInPlace,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// CreateEnv creates an empty environment block of [BlockSize] bytes at
// path, as "grub-editenv PATH create" does, durably (fsync of the file and
// its directory). It fails if path exists.
func CreateEnv(path string) error {
	e, err := NewEnv(BlockSize)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("grub: %w", err)
	}
	if _, err := f.Write(e.Encode()); err != nil {
		f.Close()
		return fmt.Errorf("grub: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("grub: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("grub: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("grub: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("grub: sync directory of %s: %w", path, err)
	}
	return nil
}

// writeInPlace rewrites the block over its own bytes and fsyncs: GRUB's
// save_env writes the file's existing sectors through a block list, so the
// file must never be replaced by a rename (the new inode's sectors would
// be elsewhere) or change size.
func writeInPlace(f *os.File, b []byte) error {
	if _, err := f.WriteAt(b, 0); err != nil {
		return err
	}
	return f.Sync()
}

func (c *Control) memo() abenv.CanaryMemo {
	sum := sha256.Sum256([]byte(c.path))
	return abenv.CanaryMemo{Dir: c.runtimeDir, Key: "grub-" + hex.EncodeToString(sum[:8])}
}

// open opens and locks the environment file and reads it.
func (c *Control) open(write bool) (*os.File, *Env, error) {
	flag, how := os.O_RDONLY, unix.LOCK_SH
	if write {
		flag, how = os.O_RDWR, unix.LOCK_EX
	}
	f, err := os.OpenFile(c.path, flag, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("grub: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("grub: lock %s: %w", c.path, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxBlock+1))
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("grub: read %s: %w", c.path, err)
	}
	e, err := Parse(b)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("grub: %s: %w", c.path, err)
	}
	return f, e, nil
}

// Env returns the variables of the environment block, as GRUB sees them.
func (c *Control) Env(ctx context.Context) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, e, err := c.open(false)
	if err != nil {
		return nil, err
	}
	f.Close()
	return e.Map(), nil
}

// SetEnv changes variables in one write: each is set to its value, or
// removed when the value is empty. Use it for integrator variables; the
// sb_* variables belong to Arm, Commit and MarkBad.
func (c *Control) SetEnv(ctx context.Context, vars map[string]string) error {
	return c.update(ctx, func(e *Env) error {
		for k, v := range vars {
			var err error
			if v == "" {
				err = e.Unset(k)
			} else {
				err = e.Set(k, v)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// update is one locked read-modify-write of the block, in place.
func (c *Control) update(ctx context.Context, change func(*Env) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f, e, err := c.open(true)
	if err != nil {
		return err
	}
	defer f.Close()
	old := e.Encode()
	if err := e.Repair(); err != nil {
		return fmt.Errorf("grub: %s: %w", c.path, err)
	}
	if err := change(e); err != nil {
		return fmt.Errorf("grub: %s: %w", c.path, err)
	}
	b := e.Encode()
	if len(b) != len(old) {
		return fmt.Errorf("grub: %s: block size changed from %d to %d", c.path, len(old), len(b))
	}
	if string(b) == string(old) {
		return nil
	}
	if err := c.writeAt(f, b); err != nil {
		return fmt.Errorf("grub: write %s: %w", c.path, err)
	}
	return nil
}

// bootedHint is what to check when the kernel command line names no slot.
const bootedHint = "is switchback.cfg sourced by grub.cfg, and $sb_args on the linux line?"

// booting is where the control learns which slot booted.
func (c *Control) booting() abenv.Booting {
	return abenv.Booting{Backend: "grub", Cmdline: c.cmdline, Names: c.names, Hint: bootedHint}
}

// Status reports the booted slot (switchback.slot= on the kernel command
// line), the primary, the trial and the slots marked bad.
func (c *Control) Status(ctx context.Context) (slots.BootStatus, error) {
	bi, err := c.booting().Booted(ctx)
	if err != nil {
		return slots.BootStatus{}, err
	}
	f, e, err := c.open(false)
	if err != nil {
		return slots.BootStatus{}, err
	}
	f.Close()
	return abenv.ReadState(e.Get, c.names).Status(bi.Slot), nil
}

// step applies one A/B transition in one write of the block.
func (c *Control) step(ctx context.Context, renew bool, apply func(st *abenv.State, booted string) error) error {
	s, err := c.booting().NewStep(ctx, renew, c.rand)
	if err != nil {
		return err
	}
	return c.update(ctx, func(e *Env) error {
		vars, err := s.Vars(e.Get, c.memo(), apply)
		if err != nil {
			return err
		}
		for _, kv := range vars {
			if err := e.Set(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

// Arm makes slot the trial for the next tries (1 to 9) boots, in one
// write: sb_trial=slot, sb_tries=tries, slot removed from sb_bad, a new
// sb_canary. The booted slot cannot be armed ([slots.ErrSlotActive]).
func (c *Control) Arm(ctx context.Context, slot string, tries int) error {
	return c.step(ctx, true, func(st *abenv.State, booted string) error {
		return st.Arm(slot, tries, booted)
	})
}

// Commit makes the running slot the primary and ends its trial, in one
// write: sb_primary=slot, sb_trial and sb_tries emptied, slot removed
// from sb_bad, a new sb_canary. A slot that is not running fails with
// [slots.ErrNotRunning].
func (c *Control) Commit(ctx context.Context, slot string) error {
	return c.step(ctx, true, func(st *abenv.State, booted string) error {
		return st.Commit(slot, booted)
	})
}

// MarkBad records that slot failed, in one write: it is added to sb_bad,
// its trial (if armed) ends, and if it was the primary, the first other
// slot not marked bad becomes primary. The canary is kept.
func (c *Control) MarkBad(ctx context.Context, slot string) error {
	return c.step(ctx, false, func(st *abenv.State, _ string) error {
		return st.MarkBad(slot)
	})
}

// CheckCanary checks that the switchback.canary= the boot script passed
// equals sb_canary in the block: that GRUB loaded the environment this
// Control writes. It fails with an error wrapping [slots.ErrMismatch]
// that says what to check. Before the first Arm or Commit both are empty,
// and the check only proves that the boot script ran.
func (c *Control) CheckCanary(ctx context.Context) error {
	bi, err := abenv.ReadBootInfo(ctx, c.cmdline)
	if err != nil {
		return fmt.Errorf("grub: %w", err)
	}
	f, e, err := c.open(false)
	if err != nil {
		return err
	}
	f.Close()
	envCanary, _ := e.Get(VarCanary)
	if err := c.memo().Check(bi, envCanary, c.path, "switchback.cfg"); err != nil {
		return fmt.Errorf("grub: %w", err)
	}
	return nil
}
