// Package abenv holds the A/B semantics shared by the GRUB and U-Boot
// backends: which environment variables mean what, and what one Arm,
// Commit or MarkBad writes. Both bootloaders' scripts implement the same
// decision (see slots/grub/switchback.cfg and slots/uboot/boot.cmd).
package abenv

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/partition"
)

// The environment variables switchback and the boot script share.
const (
	VarPrimary = "sb_primary" // committed slot
	VarBad     = "sb_bad"     // space-separated slots marked bad
	VarCanary  = "sb_canary"  // random value, passed as switchback.canary=
	VarTries   = "sb_tries"   // tries left for the trial, "0".."9"
	VarTrial   = "sb_trial"   // slot armed for trial, or empty
)

// VarOrder is the order every write sets the variables in. The first write
// creates them in this order, and later writes change them in place, so
// the file keeps it: sb_tries before sb_trial, so that a write torn
// between them arms nothing (the trial is recorded last), and a cleared
// trial has its tries cleared first.
var VarOrder = []string{VarPrimary, VarBad, VarCanary, VarTries, VarTrial}

// MaxTries is the most tries Arm accepts: the boot scripts count down
// with an if-chain from 9.
const MaxTries = 9

// Kernel command line parameters the boot script sets.
const (
	ParamSlot   = "switchback.slot"
	ParamCanary = "switchback.canary"
)

var slotName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// CheckSlotNames checks that names are at least two distinct slot names of
// 1 to 32 letters, digits, '_' or '-'.
func CheckSlotNames(names []string) error {
	if len(names) < 2 {
		return fmt.Errorf("need at least two slots, got %q", names)
	}
	for i, n := range names {
		if !slotName.MatchString(n) {
			return fmt.Errorf("slot name %q: want 1 to 32 letters, digits, '_' or '-'", n)
		}
		if slices.Contains(names[:i], n) {
			return fmt.Errorf("slot %q listed twice", n)
		}
	}
	return nil
}

// State is what the variables say, interpreted as the boot script
// interprets them.
type State struct {
	Names   []string
	Primary string // effective: sb_primary if a known slot, else Names[0]
	Trial   string // sb_trial if a known slot
	Tries   int
	Bad     []string
	Canary  string
}

// ReadState interprets the variables get returns as the boot script does.
func ReadState(get func(string) (string, bool), names []string) State {
	st := State{Names: names, Primary: names[0]}
	if p, _ := get(VarPrimary); slices.Contains(names, p) {
		st.Primary = p
	}
	if t, _ := get(VarTrial); slices.Contains(names, t) {
		st.Trial = t
	}
	if n, _ := get(VarTries); len(n) == 1 && n[0] >= '0' && n[0] <= '9' {
		st.Tries, _ = strconv.Atoi(n)
	}
	if st.Trial == "" {
		st.Tries = 0
	}
	b, _ := get(VarBad)
	for _, s := range strings.Fields(b) {
		if !slices.Contains(st.Bad, s) {
			st.Bad = append(st.Bad, s)
		}
	}
	st.Canary, _ = get(VarCanary)
	return st
}

// Vars returns the variables of the state, in VarOrder.
func (st State) Vars() [][2]string {
	tries := ""
	if st.Trial != "" {
		tries = strconv.Itoa(st.Tries)
	}
	return [][2]string{
		{VarPrimary, st.Primary},
		{VarBad, strings.Join(st.Bad, " ")},
		{VarCanary, st.Canary},
		{VarTries, tries},
		{VarTrial, st.Trial},
	}
}

// Status reports st as a slots.BootStatus, with booted the running slot.
func (st State) Status(booted string) slots.BootStatus {
	return slots.BootStatus{
		Booted:    booted,
		Primary:   st.Primary,
		Trial:     st.Trial,
		TriesLeft: st.Tries,
		Bad:       slices.Clone(st.Bad),
	}
}

// BootDecision is the boot script's choice, in Go: the trial while it has
// tries left and is not marked bad (consuming one try), else the primary.
// It returns the slot booted and the state the script saves.
func BootDecision(st State) (string, State) {
	if st.Trial != "" && st.Tries > 0 && !slices.Contains(st.Bad, st.Trial) {
		st.Tries--
		return st.Trial, st
	}
	return st.Primary, st
}

// Known reports an error wrapping slots.ErrUnknownSlot for a slot not
// configured.
func (st *State) Known(slot string) error {
	if !slices.Contains(st.Names, slot) {
		return fmt.Errorf("slot %q (known: %s): %w", slot, strings.Join(st.Names, ", "), slots.ErrUnknownSlot)
	}
	return nil
}

// Arm makes slot the trial with tries tries; the booted slot is refused.
func (st *State) Arm(slot string, tries int, booted string) error {
	if err := st.Known(slot); err != nil {
		return err
	}
	if slot == booted {
		return fmt.Errorf("arm %s: %w", slot, slots.ErrSlotActive)
	}
	if tries < 1 || tries > MaxTries {
		return fmt.Errorf("arm %s: %d tries, want 1 to %d", slot, tries, MaxTries)
	}
	st.Trial, st.Tries = slot, tries
	st.Bad = slices.DeleteFunc(st.Bad, func(s string) bool { return s == slot })
	return nil
}

// Commit makes slot, which must be booted, the primary and ends its trial.
func (st *State) Commit(slot, booted string) error {
	if err := st.Known(slot); err != nil {
		return err
	}
	if slot != booted {
		return fmt.Errorf("commit %s while %s runs: %w", slot, booted, slots.ErrNotRunning)
	}
	st.Primary, st.Trial, st.Tries = slot, "", 0
	st.Bad = slices.DeleteFunc(st.Bad, func(s string) bool { return s == slot })
	return nil
}

// MarkBad ends slot's trial, lists it bad, and moves the primary off it.
func (st *State) MarkBad(slot string) error {
	if err := st.Known(slot); err != nil {
		return err
	}
	if st.Trial == slot {
		st.Trial, st.Tries = "", 0
	}
	if !slices.Contains(st.Bad, slot) {
		st.Bad = append(st.Bad, slot)
	}
	if st.Primary == slot {
		for _, n := range st.Names {
			if n != slot && !slices.Contains(st.Bad, n) {
				st.Primary = n
				break
			}
		}
	}
	return nil
}

// NewCanary returns 16 random hex digits read from r.
func NewCanary(r io.Reader) (string, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("canary: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// BootInfo is what the kernel command line says about this boot.
type BootInfo struct {
	Slot, Canary       string
	HasSlot, HasCanary bool
}

// ReadBootInfo reads the switchback parameters of the kernel command line
// at path.
func ReadBootInfo(ctx context.Context, path string) (BootInfo, error) {
	if err := ctx.Err(); err != nil {
		return BootInfo{}, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return BootInfo{}, fmt.Errorf("kernel command line: %w", err)
	}
	cl, err := partition.ParseCmdline(string(data))
	if err != nil {
		return BootInfo{}, err
	}
	var bi BootInfo
	bi.Slot, bi.HasSlot = cl.Get(ParamSlot)
	bi.Canary, bi.HasCanary = cl.Get(ParamCanary)
	return bi, nil
}

// CanaryMemo remembers, for the length of one boot (in a runtime
// directory such as /run, emptied at boot), the canary the bootloader
// passed, once userspace has seen it match the environment. Userspace
// writes a new canary at Arm and Commit; without the memo, a check later
// in the same boot would see the new value and fail.
type CanaryMemo struct{ Dir, Key string }

func (m CanaryMemo) path() string { return filepath.Join(m.Dir, m.Key+".canary") }

// Load returns the remembered canary and whether there is one (an empty
// canary, before the first Arm, is remembered too).
func (m CanaryMemo) Load() (string, bool) {
	if m.Dir == "" {
		return "", false
	}
	b, err := os.ReadFile(m.path())
	if err != nil {
		return "", false
	}
	v, ok := strings.CutPrefix(strings.TrimSuffix(string(b), "\n"), "canary=")
	return v, ok
}

// Remember records the boot canary if the environment's canary still equals the boot
// canary (only then has this boot's bootloader provably read this
// environment).
func (m CanaryMemo) Remember(bi BootInfo, envCanary string) error {
	if m.Dir == "" || !bi.HasCanary || bi.Canary != envCanary {
		return nil
	}
	if v, ok := m.Load(); ok && v == bi.Canary {
		return nil
	}
	if err := os.MkdirAll(m.Dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(m.path(), []byte("canary="+bi.Canary+"\n"), 0o644)
}

// Check compares the canary the boot script passed with the one in
// the environment userspace reads. what names the environment in errors.
func (m CanaryMemo) Check(bi BootInfo, envCanary, what, script string) error {
	if !bi.HasCanary {
		return fmt.Errorf("the kernel command line has no %s=: the boot script (%s) did not run, or its kernel arguments are not passed: %w", ParamCanary, script, slots.ErrMismatch)
	}
	if bi.Canary == envCanary {
		return nil
	}
	if v, ok := m.Load(); ok && v == bi.Canary {
		return nil // seen matching earlier this boot, changed since by us
	}
	return fmt.Errorf("the bootloader passed %s=%q but %s holds %s=%q: userspace and the bootloader use different environments (check the path given to switchback against the one %s loads): %w",
		ParamCanary, bi.Canary, what, VarCanary, envCanary, script, slots.ErrMismatch)
}

// ErrNoBootedSlot means the kernel command line names no booted slot.
var ErrNoBootedSlot = errors.New("no " + ParamSlot + "= on the kernel command line")

// Booting says where a backend learns which slot booted: the kernel
// command line file, the configured slots, and what to check (Hint) when
// the command line names none. Its errors start with Backend ("grub",
// "uboot").
type Booting struct {
	Backend string
	Cmdline string
	Names   []string
	Hint    string
}

// Booted reads this boot's kernel command line (ReadBootInfo) and checks
// that it names one of the configured slots.
func (b Booting) Booted(ctx context.Context) (BootInfo, error) {
	bi, err := ReadBootInfo(ctx, b.Cmdline)
	if err != nil {
		return bi, fmt.Errorf("%s: %w", b.Backend, err)
	}
	if !bi.HasSlot {
		return bi, fmt.Errorf("%s: %s: %w: %s (%w)", b.Backend, b.Cmdline, ErrNoBootedSlot, b.Hint, slots.ErrMismatch)
	}
	if !slices.Contains(b.Names, bi.Slot) {
		return bi, fmt.Errorf("%s: the kernel command line says %s=%q, not one of the configured slots %q: %w", b.Backend, ParamSlot, bi.Slot, b.Names, slots.ErrMismatch)
	}
	return bi, nil
}

// A Step is one A/B transition (Arm, Commit or MarkBad) as both backends
// write it: prepared (NewStep) before the environment is locked, then
// applied (Vars) to the variables read under the lock.
type Step struct {
	Boot   BootInfo // this boot, from the kernel command line
	Names  []string // the configured slots
	Renew  bool     // the step writes a new canary (Arm and Commit do)
	Canary string   // the new canary, when Renew
}

// NewStep prepares a step: this boot (Booted) and, when renew, a new
// canary read from r.
func (b Booting) NewStep(ctx context.Context, renew bool, r io.Reader) (Step, error) {
	bi, err := b.Booted(ctx)
	if err != nil {
		return Step{}, err
	}
	s := Step{Boot: bi, Names: b.Names, Renew: renew}
	if renew {
		if s.Canary, err = NewCanary(r); err != nil {
			return Step{}, fmt.Errorf("%s: %w", b.Backend, err)
		}
	}
	return s, nil
}

// Vars applies apply (given the running slot) to the state of the
// variables get returns and returns the variables to write, in VarOrder.
// A renewed canary replaces the old one after memo remembered it, if this
// boot's bootloader passed it.
func (s Step) Vars(get func(string) (string, bool), memo CanaryMemo, apply func(st *State, booted string) error) ([][2]string, error) {
	st := ReadState(get, s.Names)
	if err := apply(&st, s.Boot.Slot); err != nil {
		return nil, err
	}
	if s.Renew {
		if err := memo.Remember(s.Boot, st.Canary); err != nil {
			return nil, fmt.Errorf("remember this boot's canary: %w", err)
		}
		st.Canary = s.Canary
	}
	return st.Vars(), nil
}
