package uboot

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/internal/abenv"
)

// Control is a [slots.BootControl] and [slots.CanaryChecker] over a U-Boot
// environment, single or redundant, in files or block devices. See the
// package documentation for the variables and the boot flow.
//
// A Control is safe for concurrent use; processes are serialized with
// flock(2) on the first device, and on libubootenv's lock file when it
// exists.
type Control struct {
	devs       []Device
	names      []string
	cmdline    string
	runtimeDir string
	lockFile   string
	rand       io.Reader

	mu sync.Mutex
	// writeCopy writes one copy; tests replace it to tear writes.
	writeCopy func(f *os.File, b []byte, off int64) error
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
// control remembers this boot's canary (default /run/switchback).
func WithRuntimeDir(dir string) Option { return func(c *Control) { c.runtimeDir = dir } }

// WithRand sets the source of canary values (default crypto/rand).
func WithRand(r io.Reader) Option { return func(c *Control) { c.rand = r } }

// WithLockFile sets the lock file shared with fw_setenv (default
// /var/lock/fw_printenv.lock, used only if its directory exists; empty
// disables it).
func WithLockFile(path string) Option { return func(c *Control) { c.lockFile = path } }

// New returns a Control over the environment copies devs (one, or two
// for a redundant environment of equal sizes; see [LoadFwEnvConfig]) for
// the given slots. The first slot is the default primary, used until a
// Commit records one. New does not touch the devices.
func New(devs []Device, slotNames []string, opts ...Option) (*Control, error) {
	if err := abenv.CheckSlotNames(slotNames); err != nil {
		return nil, fmt.Errorf("uboot: %w", err)
	}
	if len(devs) < 1 || len(devs) > 2 {
		return nil, fmt.Errorf("uboot: %d environment copies, want 1 or 2", len(devs))
	}
	for _, d := range devs {
		if d.EnvSize < 16 || d.Offset < 0 {
			return nil, fmt.Errorf("uboot: %s: environment size %d at offset %d", d.Path, d.EnvSize, d.Offset)
		}
		if base := d.Path[strings.LastIndexByte(d.Path, '/')+1:]; strings.HasPrefix(base, "mtd") || strings.HasPrefix(base, "ubi") {
			return nil, fmt.Errorf("uboot: %s: MTD and UBI devices need erase handling this package does not do; use a file or block device", d.Path)
		}
	}
	if len(devs) == 2 && devs[0].EnvSize != devs[1].EnvSize {
		return nil, errors.New("uboot: the two environment copies differ in size")
	}
	c := &Control{
		devs:       append([]Device(nil), devs...),
		names:      append([]string(nil), slotNames...),
		cmdline:    "/proc/cmdline",
		runtimeDir: "/run/switchback",
		lockFile:   "/var/lock/fw_printenv.lock",
		rand:       rand.Reader,
		writeCopy:  writeAtSync,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// LoadFwEnvConfig reads an fw_env.config file (see [ParseFwEnvConfig]).
func LoadFwEnvConfig(path string) ([]Device, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("uboot: %w", err)
	}
	return ParseFwEnvConfig(string(b))
}

func writeAtSync(f *os.File, b []byte, off int64) error {
	if _, err := f.WriteAt(b, off); err != nil {
		return err
	}
	return f.Sync()
}

func (c *Control) redundant() bool { return len(c.devs) == 2 }

func (c *Control) memo() abenv.CanaryMemo {
	sum := sha256.Sum256([]byte(fmt.Sprint(c.devs)))
	return abenv.CanaryMemo{Dir: c.runtimeDir, Key: "uboot-" + hex.EncodeToString(sum[:8])}
}

// lock takes an exclusive or shared lock for the whole operation.
func (c *Control) lock(exclusive bool) (func(), error) {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	var files []*os.File
	release := func() {
		for _, f := range files {
			f.Close() // drops the flock
		}
	}
	if c.lockFile != "" {
		if st, err := os.Stat(dirOf(c.lockFile)); err == nil && st.IsDir() {
			f, err := os.OpenFile(c.lockFile, os.O_WRONLY|os.O_CREATE, 0o666)
			if err == nil {
				files = append(files, f)
				if err := unix.Flock(int(f.Fd()), how); err != nil {
					release()
					return nil, fmt.Errorf("uboot: lock %s: %w", c.lockFile, err)
				}
			}
		}
	}
	f, err := os.Open(c.devs[0].Path)
	if err != nil {
		release()
		return nil, fmt.Errorf("uboot: %w", err)
	}
	files = append(files, f)
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		release()
		return nil, fmt.Errorf("uboot: lock %s: %w", c.devs[0].Path, err)
	}
	return release, nil
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "."
}

// loaded is what read found: the current copy's variables and where the
// next write goes.
type loaded struct {
	vars    []Var
	current int  // index of the copy read
	flags   byte // its flags
}

func (c *Control) readCopy(i int) ([]byte, error) {
	d := c.devs[i]
	f, err := os.Open(d.Path)
	if err != nil {
		return nil, fmt.Errorf("uboot: %w", err)
	}
	defer f.Close()
	b := make([]byte, d.EnvSize)
	if _, err := f.ReadAt(b, d.Offset); err != nil {
		return nil, fmt.Errorf("uboot: read %s at %#x: %w", d.Path, d.Offset, err)
	}
	return b, nil
}

// read loads the environment: the only copy, or the current one of two.
func (c *Control) read() (loaded, error) { return c.decode(c.readCopy) }

// decode chooses and decodes the current copy, read with readCopy.
func (c *Control) decode(readCopy func(i int) ([]byte, error)) (loaded, error) {
	if !c.redundant() {
		b, err := readCopy(0)
		if err != nil {
			return loaded{}, err
		}
		img, err := ParseImage(b, false)
		if err != nil {
			return loaded{}, fmt.Errorf("uboot: %s: %w (%w)", c.devs[0].Path, err, ErrNoValidEnv)
		}
		return loaded{vars: img.Vars}, nil
	}
	var imgs [2]Image
	var valid [2]bool
	var flags [2]byte
	var errs [2]error
	for i := range 2 {
		b, err := readCopy(i)
		if err != nil {
			return loaded{}, err
		}
		imgs[i], errs[i] = ParseImage(b, true)
		valid[i] = errs[i] == nil
		flags[i] = b[4]
	}
	cur, ok := pickCopy(valid, flags)
	if !ok {
		return loaded{}, fmt.Errorf("uboot: %s: %v; %s: %v: %w", c.devs[0].Path, errs[0], c.devs[1].Path, errs[1], ErrNoValidEnv)
	}
	return loaded{vars: imgs[cur].Vars, current: cur, flags: flags[cur]}, nil
}

// write stores vars: over the single copy, or into the copy that is not
// current with the next flags value, so that a torn write leaves the
// current copy to U-Boot.
func (c *Control) write(l loaded, vars []Var) error {
	target, flags := 0, byte(0)
	if c.redundant() {
		target, flags = 1-l.current, l.flags+1
	}
	d := c.devs[target]
	// libubootenv writes its ".flags" variable after all others.
	vars = append(slices.DeleteFunc(slices.Clone(vars), func(v Var) bool { return v.Name == ".flags" }),
		slices.DeleteFunc(slices.Clone(vars), func(v Var) bool { return v.Name != ".flags" })...)
	b, err := EncodeImage(vars, d.EnvSize, c.redundant(), flags, 0)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(d.Path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("uboot: %w", err)
	}
	defer f.Close()
	if err := c.writeCopy(f, b, d.Offset); err != nil {
		return fmt.Errorf("uboot: write %s at %#x: %w", d.Path, d.Offset, err)
	}
	return nil
}

// Init writes an empty environment over every copy whose CRC is not
// valid (a never-written file or partition). It refuses to touch an
// environment that has a valid copy.
func (c *Control) Init(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	unlock, err := c.lock(true)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := c.read(); err == nil {
		return errors.New("uboot: Init: the environment already has a valid copy")
	} else if !errors.Is(err, ErrNoValidEnv) {
		return err
	}
	for i := range c.devs {
		if err := c.write(loaded{current: 1 - i}, nil); err != nil {
			return err
		}
	}
	return nil
}

// Env returns the variables of the current copy.
func (c *Control) Env(ctx context.Context) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	unlock, err := c.lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	l, err := c.read()
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(l.vars))
	for _, v := range l.vars {
		m[v.Name] = v.Value
	}
	return m, nil
}

// SetEnv changes variables in one write: each is set, or removed when its
// value is empty (as fw_setenv does). Use it for integrator variables;
// the sb_* variables belong to Arm, Commit and MarkBad.
func (c *Control) SetEnv(ctx context.Context, vars map[string]string) error {
	return c.update(ctx, func(v []Var) ([]Var, error) {
		var err error
		for k, val := range vars {
			if v, err = Set(v, k, val); err != nil {
				return nil, err
			}
		}
		return v, nil
	})
}

func (c *Control) update(ctx context.Context, change func([]Var) ([]Var, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	unlock, err := c.lock(true)
	if err != nil {
		return err
	}
	defer unlock()
	l, err := c.read()
	if err != nil {
		return err
	}
	vars, err := change(append([]Var(nil), l.vars...))
	if err != nil {
		return err
	}
	return c.write(l, vars)
}

// bootedHint is what to check when the kernel command line names no slot.
const bootedHint = "does the boot script (boot.cmd) run, and add to bootargs?"

// booting is where the control learns which slot booted.
func (c *Control) booting() abenv.Booting {
	return abenv.Booting{Backend: "uboot", Cmdline: c.cmdline, Names: c.names, Hint: bootedHint}
}

// Status reports the booted slot (switchback.slot= on the kernel command
// line), the primary, the trial and the slots marked bad. With no valid
// copy it fails with [ErrNoValidEnv]: U-Boot then boots with its default
// environment, and the boot script with the first slot.
func (c *Control) Status(ctx context.Context) (slots.BootStatus, error) {
	bi, err := c.booting().Booted(ctx)
	if err != nil {
		return slots.BootStatus{}, err
	}
	unlock, err := c.lock(false)
	if err != nil {
		return slots.BootStatus{}, err
	}
	defer unlock()
	l, err := c.read()
	if err != nil {
		return slots.BootStatus{}, err
	}
	return abenv.ReadState(func(n string) (string, bool) { return get(l.vars, n) }, c.names).Status(bi.Slot), nil
}

// step applies one A/B transition in one write of the environment.
func (c *Control) step(ctx context.Context, renew bool, apply func(st *abenv.State, booted string) error) error {
	s, err := c.booting().NewStep(ctx, renew, c.rand)
	if err != nil {
		return err
	}
	return c.update(ctx, func(vars []Var) ([]Var, error) {
		sets, err := s.Vars(func(n string) (string, bool) { return get(vars, n) }, c.memo(), apply)
		if err != nil {
			return nil, fmt.Errorf("uboot: %w", err)
		}
		for _, kv := range sets {
			if vars, err = Set(vars, kv[0], kv[1]); err != nil {
				return nil, err
			}
		}
		return vars, nil
	})
}

// Arm makes slot the trial for the next tries (1 to 9) boots, in one
// write: sb_trial=slot, sb_tries=tries, slot removed from sb_bad, a new
// sb_canary. The booted slot cannot be armed ([slots.ErrSlotActive]).
func (c *Control) Arm(ctx context.Context, slot string, tries int) error {
	return c.step(ctx, true, func(st *abenv.State, booted string) error { return st.Arm(slot, tries, booted) })
}

// Commit makes the running slot the primary and ends its trial, in one
// write: sb_primary=slot, sb_trial and sb_tries removed, slot removed
// from sb_bad, a new sb_canary. A slot not running fails with
// [slots.ErrNotRunning].
func (c *Control) Commit(ctx context.Context, slot string) error {
	return c.step(ctx, true, func(st *abenv.State, booted string) error { return st.Commit(slot, booted) })
}

// MarkBad records that slot failed, in one write: it is added to sb_bad,
// its trial (if armed) ends, and if it was the primary the first other
// slot not marked bad becomes primary. The canary is kept.
func (c *Control) MarkBad(ctx context.Context, slot string) error {
	return c.step(ctx, false, func(st *abenv.State, _ string) error { return st.MarkBad(slot) })
}

// CheckCanary checks that the switchback.canary= the boot script passed
// equals sb_canary in the environment: that U-Boot imported the
// environment this Control writes. It fails with an error wrapping
// [slots.ErrMismatch] that says what to check.
func (c *Control) CheckCanary(ctx context.Context) error {
	bi, err := abenv.ReadBootInfo(ctx, c.cmdline)
	if err != nil {
		return fmt.Errorf("uboot: %w", err)
	}
	env, err := c.Env(ctx)
	if err != nil {
		return err
	}
	var where []string
	for _, d := range c.devs {
		where = append(where, fmt.Sprintf("%s@%#x", d.Path, d.Offset))
	}
	if err := c.memo().Check(bi, env[VarCanary], strings.Join(where, " and "), "boot.cmd"); err != nil {
		return fmt.Errorf("uboot: %w", err)
	}
	return nil
}
