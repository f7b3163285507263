package grub

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/internal/abenv"
	"github.com/switchback-ota/switchback/slots/slotstest"
)

// grubEmu runs the real switchback.cfg in grub-emu (GRUB built as a Linux
// program, package grub-emu): the grubenv lives in a FAT image mapped as
// (hd0), so that load_env and save_env work as on a disk.
type grubEmu struct {
	emu, mcopy, dir, disk string
}

func newGrubEmu(t *testing.T) *grubEmu {
	t.Helper()
	e := &grubEmu{
		emu:   ci.LookPath(t, "grub-emu", "grub-emu"),
		mcopy: ci.LookPath(t, "mcopy", "mtools"),
		dir:   t.TempDir(),
	}
	mkfs := ci.LookPath(t, "mkfs.fat", "dosfstools")
	mods := "/usr/lib/grub/x86_64-emu"
	if _, err := os.Stat(filepath.Join(mods, "normal.mod")); err != nil {
		ci.Skipf(t, "grub-emu modules missing in %s", mods)
	}
	// grub-emu loads modules and grub.cfg from one directory.
	if out, err := exec.Command("cp", "-r", mods, e.dir).CombinedOutput(); err != nil {
		t.Fatalf("copy modules: %v: %s", err, out)
	}
	e.disk = filepath.Join(e.dir, "disk.img")
	if out, err := exec.Command(mkfs, "-C", e.disk, "1024").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.fat: %v: %s", err, out)
	}
	cfg, err := filepath.Abs("switchback.cfg")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"device.map": fmt.Sprintf("(hd0) %s\n", e.disk),
		"grub.cfg": fmt.Sprintf(`set sb_slots="a b"
set sb_root_a="PARTLABEL=rootfs_a"
set sb_root_b="PARTLABEL=rootfs_b"
set sb_env="(hd0)/grubenv"
source "(host)%s"
echo "SBBOOT=${sb_boot}"
echo "SBROOT=${sb_root}"
echo "SBCANARY=${sb_canary}"
reboot
`, cfg),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(e.dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

var emuOut = regexp.MustCompile(`SB(BOOT|ROOT|CANARY)=([A-Za-z0-9_=-]*)`)

// boot runs GRUB over env: it returns the slot switchback.cfg chose, the
// canary it passed, and the block after GRUB's save_env.
func (e *grubEmu) boot(t *testing.T, env []byte) (slot, canary string, after []byte) {
	t.Helper()
	src := filepath.Join(e.dir, "grubenv.in")
	if err := os.WriteFile(src, env, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(e.mcopy, "-o", "-i", e.disk, src, "::grubenv").CombinedOutput(); err != nil {
		t.Fatalf("mcopy in: %v: %s", err, out)
	}
	cmd := exec.Command(e.emu, "-d", e.dir, "-m", filepath.Join(e.dir, "device.map"))
	cmd.Stdin = bytes.NewReader(nil)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("grub-emu: %v: %q", err, out)
	}
	got := map[string]string{}
	for _, m := range emuOut.FindAllSubmatch(out, -1) {
		got[string(m[1])] = string(m[2])
	}
	if _, ok := got["BOOT"]; !ok {
		t.Fatalf("grub-emu printed no choice: %q", out)
	}
	if want := "PARTLABEL=rootfs_" + got["BOOT"]; got["ROOT"] != want {
		t.Errorf("GRUB set sb_root=%q, want %q", got["ROOT"], want)
	}
	dst := filepath.Join(e.dir, "grubenv.out")
	if out, err := exec.Command(e.mcopy, "-o", "-n", "-i", e.disk, "::grubenv", dst).CombinedOutput(); err != nil {
		t.Fatalf("mcopy out: %v: %s", err, out)
	}
	after, err = os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return got["BOOT"], got["CANARY"], after
}

// realBoot is a Control whose Reboot runs the real GRUB script.
type realBoot struct {
	*Control
	t   *testing.T
	emu *grubEmu
}

func (r realBoot) Reboot() error {
	env, err := os.ReadFile(r.path)
	if err != nil {
		return err
	}
	slot, canary, after := r.emu.boot(r.t, env)
	if err := writeFileInPlace(r.path, after); err != nil {
		return err
	}
	if err := os.RemoveAll(r.runtimeDir); err != nil {
		return err
	}
	return writeCmdline(r.cmdline, slot, canary)
}

// The conformance suite with the real switchback.cfg counting the tries.
func TestBootControlRealGrub(t *testing.T) {
	emu := newGrubEmu(t)
	slotstest.TestBootControl(t, func(t *testing.T) (slots.BootControl, []string) {
		return realBoot{Control: newTestControl(t).Control, t: t, emu: emu}, []string{"a", "b"}
	})
}

// The real script and the Go model behind the tests agree on every state
// the steps produce and on blocks torn by a power cut within those steps.
func TestRealGrubMatchesModel(t *testing.T) {
	emu := newGrubEmu(t)
	ctx := context.Background()
	var blocks [][]byte
	c := newTestControl(t)
	add := func() { blocks = append(blocks, mustRead(t, c.path)) }
	add()
	steps := []func() error{
		func() error { return c.Arm(ctx, "b", 2) },
		func() error { return c.MarkBad(ctx, "b") },
		func() error { return c.Arm(ctx, "b", 9) },
		func() error { return c.Commit(ctx, "a") },
	}
	for _, step := range steps {
		before := mustRead(t, c.path)
		if err := step(); err != nil {
			t.Fatal(err)
		}
		after := mustRead(t, c.path)
		add()
		// Torn versions of this write, every fifth byte of the change.
		first, last := 0, len(after)
		for first < last && before[first] == after[first] {
			first++
		}
		for last > first && before[last-1] == after[last-1] {
			last--
		}
		for k := first + 1; k < last; k += 5 {
			torn := append(bytes.Clone(after[:k]), before[k:]...)
			blocks = append(blocks, torn)
		}
	}
	// Hand-made states the steps do not produce.
	for _, vars := range []string{
		"sb_primary=zz\n",                                  // unknown primary: first slot
		"sb_primary=b\nsb_tries=0\nsb_trial=a\n",           // exhausted trial
		"sb_primary=a\nsb_tries=x\nsb_trial=b\n",           // garbage count
		"sb_primary=a\nsb_bad=b\nsb_tries=3\nsb_trial=b\n", // bad trial
		"sb_tries=1\nsb_trial=b\n",
	} {
		b := []byte(Header + vars)
		b = append(b, bytes.Repeat([]byte{'#'}, BlockSize-len(b))...)
		blocks = append(blocks, b)
	}
	for i, b := range blocks {
		e, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		st := abenv.ReadState(e.Get, []string{"a", "b"})
		wantSlot, wantSt := abenv.BootDecision(st)
		slot, canary, after := emu.boot(t, b)
		if slot != wantSlot {
			t.Errorf("block %d: GRUB boots %q, the model %q\n%q", i, slot, wantSlot, b[:200])
			continue
		}
		if wantCanary, _ := e.Get(VarCanary); canary != wantCanary {
			t.Errorf("block %d: GRUB passed canary %q, want %q", i, canary, wantCanary)
		}
		ae, err := Parse(after)
		if err != nil {
			t.Fatalf("block %d: GRUB left a block we cannot parse: %v", i, err)
		}
		if got := abenv.ReadState(ae.Get, []string{"a", "b"}); got.Tries != wantSt.Tries || got.Trial != wantSt.Trial || got.Primary != wantSt.Primary {
			t.Errorf("block %d: after GRUB: %+v, model %+v", i, got, wantSt)
		}
	}
	t.Logf("%d blocks booted by grub-emu", len(blocks))
}
