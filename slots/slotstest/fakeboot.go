package slotstest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/switchback-ota/switchback/slots"
)

// FakeBoot is an in-memory A/B bootloader with a boot counter: a
// [slots.BootControl] for tests of code that arms, commits and rolls back.
//
// Its environment has the variables the shipped GRUB and U-Boot scripts
// use: primary (the committed slot), trial (the slot armed for trial, or
// empty) and tries (boots the trial has left), plus bad (slots marked bad,
// a userspace record). Each of Arm, Commit and MarkBad changes the
// environment in one atomic write. [FakeBoot.Reboot] runs the bootloader:
// if a trial has tries left it consumes one (one write) and boots the
// trial, else it boots the primary and leaves an exhausted trial in place
// (trial set, tries 0) for userspace to notice and mark bad.
//
// A FakeBoot is safe for concurrent use.
type FakeBoot struct {
	mu     sync.Mutex
	names  []string
	env    fakeEnv
	booted string
	boots  int
	writes int
	pc     *PowerCut
}

type fakeEnv struct {
	primary string
	trial   string
	tries   int
	bad     []string
}

// NewFakeBoot returns a bootloader for the named slots (at least one),
// booted from the first, which is primary.
func NewFakeBoot(names ...string) *FakeBoot {
	if len(names) == 0 {
		panic("slotstest: NewFakeBoot needs at least one slot name")
	}
	return &FakeBoot{
		names:  slices.Clone(names),
		env:    fakeEnv{primary: names[0]},
		booted: names[0],
		boots:  1,
	}
}

// SetPowerCut attaches the bootloader to a power switch: each environment
// write counts as a write operation, and power-on runs the bootloader.
func (b *FakeBoot) SetPowerCut(pc *PowerCut) {
	b.mu.Lock()
	b.pc = pc
	b.mu.Unlock()
	if pc != nil {
		pc.attach(b)
	}
}

// Reboot simulates a reboot: the bootloader consumes one try of an armed
// trial and boots it, or boots the primary when no try is left.
func (b *FakeBoot) Reboot() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.pc.check(); err != nil {
		return err
	}
	return b.boot()
}

func (b *FakeBoot) powerOn() {
	b.mu.Lock()
	defer b.mu.Unlock()
	// A cut while the bootloader decrements the counter leaves the
	// environment unchanged; the real bootloader then boots the primary
	// and the next power-on tries again.
	_ = b.boot()
}

func (b *FakeBoot) boot() error {
	b.boots++
	if b.env.trial != "" && b.env.tries > 0 {
		env := b.env
		env.tries--
		if err := b.write(env); err != nil {
			b.booted = b.env.primary
			return err
		}
		b.booted = env.trial
		return nil
	}
	b.booted = b.env.primary
	return nil
}

func (b *FakeBoot) write(env fakeEnv) error {
	if err := b.pc.write(); err != nil {
		return fmt.Errorf("slotstest: writing boot environment: %w", err)
	}
	b.env = env
	b.writes++
	return nil
}

// Booted returns the slot booted last.
func (b *FakeBoot) Booted() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.booted
}

// Boots reports how many times the fake has booted, the first boot
// included.
func (b *FakeBoot) Boots() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.boots
}

// EnvWrites reports how many atomic environment writes succeeded.
func (b *FakeBoot) EnvWrites() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.writes
}

// Env returns the environment as a bootloader stores it: primary, trial,
// tries (decimal) and bad (comma-separated).
func (b *FakeBoot) Env() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return map[string]string{
		"primary": b.env.primary,
		"trial":   b.env.trial,
		"tries":   strconv.Itoa(b.env.tries),
		"bad":     strings.Join(b.env.bad, ","),
	}
}

func (b *FakeBoot) known(ctx context.Context, slot string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.pc.check(); err != nil {
		return err
	}
	if !slices.Contains(b.names, slot) {
		return fmt.Errorf("slotstest: slot %q: %w", slot, slots.ErrUnknownSlot)
	}
	return nil
}

// Status reports the booted slot and the environment.
func (b *FakeBoot) Status(ctx context.Context) (slots.BootStatus, error) {
	if err := ctx.Err(); err != nil {
		return slots.BootStatus{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.pc.check(); err != nil {
		return slots.BootStatus{}, err
	}
	st := slots.BootStatus{
		Booted:  b.booted,
		Primary: b.env.primary,
		Trial:   b.env.trial,
		Bad:     slices.Clone(b.env.bad),
	}
	if st.Trial != "" {
		st.TriesLeft = b.env.tries
	}
	return st, nil
}

// Arm sets trial and tries in one write, and clears slot's bad mark. The
// booted slot and the primary are refused with [slots.ErrSlotActive].
func (b *FakeBoot) Arm(ctx context.Context, slot string, tries int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.known(ctx, slot); err != nil {
		return err
	}
	if slot == b.booted || slot == b.env.primary {
		return fmt.Errorf("slotstest: arm %q: %w", slot, slots.ErrSlotActive)
	}
	if tries < 1 {
		return fmt.Errorf("slotstest: arm %q: tries must be at least 1, got %d", slot, tries)
	}
	env := b.env
	env.trial, env.tries = slot, tries
	env.bad = remove(env.bad, slot)
	return b.write(env)
}

// Commit makes the booted slot primary and clears the trial, in one write.
func (b *FakeBoot) Commit(ctx context.Context, slot string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.known(ctx, slot); err != nil {
		return err
	}
	if slot != b.booted {
		return fmt.Errorf("slotstest: commit %q (booted %q): %w", slot, b.booted, slots.ErrNotRunning)
	}
	env := b.env
	env.primary, env.trial, env.tries = slot, "", 0
	env.bad = remove(env.bad, slot)
	return b.write(env)
}

// MarkBad records slot as bad and, if it is the trial, ends the trial, in
// one write. The booted slot does not change until the next Reboot.
func (b *FakeBoot) MarkBad(ctx context.Context, slot string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.known(ctx, slot); err != nil {
		return err
	}
	env := b.env
	if env.trial == slot {
		env.trial, env.tries = "", 0
	}
	if !slices.Contains(env.bad, slot) {
		env.bad = append(slices.Clone(env.bad), slot)
	}
	return b.write(env)
}

func remove(list []string, s string) []string {
	return slices.DeleteFunc(slices.Clone(list), func(x string) bool { return x == s })
}

var _ slots.BootControl = (*FakeBoot)(nil)
