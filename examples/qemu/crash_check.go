package main

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"os/exec"
	"strings"

	"github.com/switchback-ota/switchback/updater"
)

// bootCheck is what the boot partition of a state says.
type bootCheck struct {
	env map[string]string
	err error
}

// checkBoot reads grubenv from the boot partition (mtools, no mount),
// parses it with our parser and has grub-editenv list it, and checks the
// variables are ones the design allows.
func (r *replay) checkBoot(ctx context.Context) bootCheck {
	return memoized(r.seed, r.bootRes, r.part(bootStart, bootSize), func(p []byte) bootCheck { return r.readBoot(ctx, p) })
}

// memoized returns read(p), computed once for each content of p: states
// often leave a partition as an earlier state did.
func memoized[T any](seed maphash.Seed, results map[uint64]T, p []byte, read func(p []byte) T) T {
	key := maphash.Bytes(seed, p)
	if v, ok := results[key]; ok {
		return v
	}
	v := read(p)
	results[key] = v
	return v
}

func (r *replay) readBoot(ctx context.Context, p []byte) bootCheck {
	fat, err := r.scratch("boot.fat", p)
	if err != nil {
		return bootCheck{err: err}
	}
	raw, err := exec.CommandContext(ctx, "mtype", "-i", fat, "::/grub/grubenv").Output()
	if err != nil {
		return bootCheck{err: fmt.Errorf("boot partition: grubenv unreadable: %v", err)}
	}
	if len(raw) != 1024 {
		return bootCheck{err: fmt.Errorf("grubenv is %d bytes, want 1024", len(raw))}
	}
	env, err := parseGrubenv(raw)
	if err != nil {
		return bootCheck{err: err}
	}
	envFile, err := r.scratch("grubenv", raw)
	if err != nil {
		return bootCheck{err: err}
	}
	if out, err := exec.CommandContext(ctx, "grub-editenv", envFile, "list").CombinedOutput(); err != nil {
		return bootCheck{err: fmt.Errorf("grub-editenv list: %v: %s", err, out)}
	}
	return bootCheck{env: env, err: allowedEnv(env)}
}

// allowedEnv: primary a or b, trial empty or the other slot, tries a
// small count.
func allowedEnv(env map[string]string) error {
	p, t, n := env["sb_primary"], env["sb_trial"], env["sb_tries"]
	switch {
	case p != "a" && p != "b":
		return fmt.Errorf("grubenv sb_primary=%q", p)
	case t != "" && (t == p || t != "a" && t != "b"):
		return fmt.Errorf("grubenv sb_trial=%q with sb_primary=%q", t, p)
	case n != "" && (len(n) != 1 || n[0] < '0' || n[0] > '3'):
		return fmt.Errorf("grubenv sb_tries=%q", n)
	}
	return nil
}

// dataCheck is what the data partition of a state holds after the fsck a
// boot would run.
type dataCheck struct {
	marker string
	state  *updater.StateSummary // nil when no state file exists yet
	fsck   int                   // e2fsck's exit status
	err    error
}

func (d dataCheck) summary() string {
	if d.state == nil {
		return "none"
	}
	s := "installed " + d.state.Installed["rootfs"]
	if p := d.state.Pending["rootfs"]; p != "" {
		s += ", pending " + strings.Fields(p)[0]
	}
	return s
}

// checkData runs e2fsck -fp on a copy of the data partition — the
// preening the root slots' init runs before mounting it (there without -f,
// so only when the journal or an error flag asks), forced here on every
// state: exit 0-2 is consistent or repaired; 4 and above would leave the
// device's data read-only until someone repaired it, and fails. It then
// reads the marker and the state file with debugfs; the state file must
// decode as the updater decodes it.
func (r *replay) checkData(ctx context.Context) dataCheck {
	return memoized(r.seed, r.dataRes, r.part(dataStart, dataSize), func(p []byte) dataCheck { return r.readData(ctx, p) })
}

func (r *replay) readData(ctx context.Context, p []byte) dataCheck {
	img, err := r.scratch("data.ext4", p)
	if err != nil {
		return dataCheck{err: err}
	}
	var d dataCheck
	out, err := exec.CommandContext(ctx, "e2fsck", "-fp", img).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		d.fsck = ee.ExitCode()
	} else if err != nil {
		return dataCheck{err: err}
	}
	if d.fsck&^3 != 0 {
		return dataCheck{err: fmt.Errorf("data partition: e2fsck -p (the boot's) exit %d: %s", d.fsck, lastLines(out, 3))}
	}
	d.marker = strings.TrimSpace(debugfsCat(ctx, img, "/marker"))
	raw := debugfsCat(ctx, img, "/switchback/state.json")
	if raw == "" {
		return d
	}
	s, err := updater.CheckStateFile([]byte(raw))
	if err != nil {
		return dataCheck{err: fmt.Errorf("state file: %v", err)}
	}
	d.state = &s
	return d
}

// debugfsCat is a file's content in an ext4 image, "" when it is absent.
func debugfsCat(ctx context.Context, img, path string) string {
	out, err := exec.CommandContext(ctx, "debugfs", "-R", "cat "+path, img).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}
