package uboot

// This file holds the A/B semantics shared by the GRUB and U-Boot
// backends (slots/grub has the same file): which variables mean what, and
// what one Arm, Commit or MarkBad writes. Both bootloaders' scripts
// implement the same decision (see slots/grub/switchback.cfg and boot.cmd).

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

// varOrder is the order every write sets the variables in. The first write
// creates them in this order, and later writes change them in place, so
// the file keeps it: sb_tries before sb_trial, so that a write torn
// between them arms nothing (the trial is recorded last), and a cleared
// trial has its tries cleared first.
var varOrder = []string{VarPrimary, VarBad, VarCanary, VarTries, VarTrial}

// MaxTries is the most tries Arm accepts: the boot scripts count down
// with an if-chain from 9.
const MaxTries = 9

// Kernel command line parameters the boot script sets.
const (
	ParamSlot   = "switchback.slot"
	ParamCanary = "switchback.canary"
)

var slotName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

func checkSlotNames(names []string) error {
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

// abState is what the variables say, interpreted as the boot script
// interprets them.
type abState struct {
	names   []string
	primary string // effective: sb_primary if a known slot, else names[0]
	trial   string // sb_trial if a known slot
	tries   int
	bad     []string
	canary  string
}

func readState(get func(string) (string, bool), names []string) abState {
	st := abState{names: names, primary: names[0]}
	if p, _ := get(VarPrimary); slices.Contains(names, p) {
		st.primary = p
	}
	if t, _ := get(VarTrial); slices.Contains(names, t) {
		st.trial = t
	}
	if n, _ := get(VarTries); len(n) == 1 && n[0] >= '0' && n[0] <= '9' {
		st.tries, _ = strconv.Atoi(n)
	}
	if st.trial == "" {
		st.tries = 0
	}
	b, _ := get(VarBad)
	for _, s := range strings.Fields(b) {
		if !slices.Contains(st.bad, s) {
			st.bad = append(st.bad, s)
		}
	}
	st.canary, _ = get(VarCanary)
	return st
}

// vars returns the variables of the state, in varOrder.
func (st abState) vars() [][2]string {
	tries := ""
	if st.trial != "" {
		tries = strconv.Itoa(st.tries)
	}
	return [][2]string{
		{VarPrimary, st.primary},
		{VarBad, strings.Join(st.bad, " ")},
		{VarCanary, st.canary},
		{VarTries, tries},
		{VarTrial, st.trial},
	}
}

func (st abState) status(booted string) slots.BootStatus {
	return slots.BootStatus{
		Booted:    booted,
		Primary:   st.primary,
		Trial:     st.trial,
		TriesLeft: st.tries,
		Bad:       slices.Clone(st.bad),
	}
}

// bootDecision is the boot script's choice, in Go: the trial while it has
// tries left and is not marked bad (consuming one try), else the primary.
// It returns the slot booted and the state the script saves.
func bootDecision(st abState) (string, abState) {
	if st.trial != "" && st.tries > 0 && !slices.Contains(st.bad, st.trial) {
		st.tries--
		return st.trial, st
	}
	return st.primary, st
}

func (st *abState) known(slot string) error {
	if !slices.Contains(st.names, slot) {
		return fmt.Errorf("slot %q (known: %s): %w", slot, strings.Join(st.names, ", "), slots.ErrUnknownSlot)
	}
	return nil
}

func (st *abState) arm(slot string, tries int, booted string) error {
	if err := st.known(slot); err != nil {
		return err
	}
	if slot == booted {
		return fmt.Errorf("arm %s: %w", slot, slots.ErrSlotActive)
	}
	if tries < 1 || tries > MaxTries {
		return fmt.Errorf("arm %s: %d tries, want 1 to %d", slot, tries, MaxTries)
	}
	st.trial, st.tries = slot, tries
	st.bad = slices.DeleteFunc(st.bad, func(s string) bool { return s == slot })
	return nil
}

func (st *abState) commit(slot, booted string) error {
	if err := st.known(slot); err != nil {
		return err
	}
	if slot != booted {
		return fmt.Errorf("commit %s while %s runs: %w", slot, booted, slots.ErrNotRunning)
	}
	st.primary, st.trial, st.tries = slot, "", 0
	st.bad = slices.DeleteFunc(st.bad, func(s string) bool { return s == slot })
	return nil
}

func (st *abState) markBad(slot string) error {
	if err := st.known(slot); err != nil {
		return err
	}
	if st.trial == slot {
		st.trial, st.tries = "", 0
	}
	if !slices.Contains(st.bad, slot) {
		st.bad = append(st.bad, slot)
	}
	if st.primary == slot {
		for _, n := range st.names {
			if n != slot && !slices.Contains(st.bad, n) {
				st.primary = n
				break
			}
		}
	}
	return nil
}

func newCanary(r io.Reader) (string, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("canary: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// bootInfo is what the kernel command line says about this boot.
type bootInfo struct {
	slot, canary       string
	hasSlot, hasCanary bool
}

func readBootInfo(ctx context.Context, path string) (bootInfo, error) {
	if err := ctx.Err(); err != nil {
		return bootInfo{}, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return bootInfo{}, fmt.Errorf("kernel command line: %w", err)
	}
	cl, err := partition.ParseCmdline(string(data))
	if err != nil {
		return bootInfo{}, err
	}
	var bi bootInfo
	bi.slot, bi.hasSlot = cl.Get(ParamSlot)
	bi.canary, bi.hasCanary = cl.Get(ParamCanary)
	return bi, nil
}

// canaryMemo remembers, for the length of one boot (in a runtime
// directory such as /run, emptied at boot), the canary the bootloader
// passed, once userspace has seen it match the environment. Userspace
// writes a new canary at Arm and Commit; without the memo, a check later
// in the same boot would see the new value and fail.
type canaryMemo struct{ dir, key string }

func (m canaryMemo) path() string { return filepath.Join(m.dir, m.key+".canary") }

// load returns the remembered canary and whether there is one (an empty
// canary, before the first Arm, is remembered too).
func (m canaryMemo) load() (string, bool) {
	if m.dir == "" {
		return "", false
	}
	b, err := os.ReadFile(m.path())
	if err != nil {
		return "", false
	}
	v, ok := strings.CutPrefix(strings.TrimSuffix(string(b), "\n"), "canary=")
	return v, ok
}

// remember records the boot canary if the environment's canary still equals the boot
// canary (only then has this boot's bootloader provably read this
// environment).
func (m canaryMemo) remember(bi bootInfo, envCanary string) error {
	if m.dir == "" || !bi.hasCanary || bi.canary != envCanary {
		return nil
	}
	if v, ok := m.load(); ok && v == bi.canary {
		return nil
	}
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(m.path(), []byte("canary="+bi.canary+"\n"), 0o644)
}

// checkCanary compares the canary the boot script passed with the one in
// the environment userspace reads. what names the environment in errors.
func (m canaryMemo) check(bi bootInfo, envCanary, what, script string) error {
	if !bi.hasCanary {
		return fmt.Errorf("the kernel command line has no %s=: the boot script (%s) did not run, or its kernel arguments are not passed: %w", ParamCanary, script, slots.ErrMismatch)
	}
	if bi.canary == envCanary {
		return nil
	}
	if v, ok := m.load(); ok && v == bi.canary {
		return nil // seen matching earlier this boot, changed since by us
	}
	return fmt.Errorf("the bootloader passed %s=%q but %s holds %s=%q: userspace and the bootloader use different environments (check the path given to switchback against the one %s loads): %w",
		ParamCanary, bi.canary, what, VarCanary, envCanary, script, slots.ErrMismatch)
}

var errNoBootedSlot = errors.New("no " + ParamSlot + "= on the kernel command line")
