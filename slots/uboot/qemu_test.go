package uboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
	"github.com/switchback-ota/switchback/slots"
)

// ubootVM runs boot.cmd in Debian's U-Boot for qemu_arm64 under QEMU (no
// kernel: the script runs, prints its choice and powers off). The
// environment blob lives in a FAT partition, as in the file mode of
// boot.cmd.
type ubootVM struct {
	qemu, firmware, mcopy, dir, disk string
	files                            []string // the environment copies on the FAT partition
}

const vmEnvSize = 0x4000

// newUbootVM prepares the disk; with redundant, boot.cmd keeps a pair of
// environment files (sb_envfile2).
func newUbootVM(t *testing.T, redundant bool) *ubootVM {
	t.Helper()
	vm := &ubootVM{
		files:    []string{"switchback.env"},
		qemu:     ci.LookPath(t, "qemu-system-aarch64", "qemu-system-arm"),
		firmware: "/usr/lib/u-boot/qemu_arm64/u-boot.bin",
		mcopy:    ci.LookPath(t, "mcopy", "mtools"),
		dir:      t.TempDir(),
	}
	if _, err := os.Stat(vm.firmware); err != nil {
		ci.Skipf(t, "U-Boot for qemu_arm64 missing (install u-boot-qemu)")
	}
	mkimage := ci.LookPath(t, "mkimage", "u-boot-tools")
	mkfs := ci.LookPath(t, "mkfs.fat", "dosfstools")
	sfdisk := ci.LookPath(t, "sfdisk", "fdisk")
	script, err := os.ReadFile("boot.cmd")
	if err != nil {
		t.Fatal(err)
	}
	envfile2 := ""
	if redundant {
		vm.files = append(vm.files, "switchback-redund.env")
		envfile2 = "setenv sb_envfile2 " + vm.files[1]
	}
	// boot.scr sets the integrator's variables, then runs boot.cmd
	// (sb.scr) three times, as three consecutive boots would.
	pre := fmt.Sprintf(`setenv sb_slots "a b"
setenv sb_root_a PARTLABEL=rootfs_a
setenv sb_root_b PARTLABEL=rootfs_b
setenv sb_envdev "virtio 0:1"
setenv sb_envfile switchback.env
setenv sb_envaddr 0x48000000
setenv sb_envsize %#x
%s
for sb_boot_n in 1 2 3; do
  setenv bootargs console=ttyAMA0
  load virtio 0:1 0x50000000 sb.scr
  source 0x50000000
  echo "SBBOOT=${sb_boot} SBARGS=${bootargs} SBEND"
done
poweroff
`, vmEnvSize, envfile2)
	files := map[string][]byte{"boot.cmd": []byte(pre), "sb.cmd": script}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(vm.dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		scr := strings.TrimSuffix(name, ".cmd") + ".scr"
		if out, err := exec.Command(mkimage, "-A", "arm64", "-T", "script", "-C", "none", "-n", "switchback", "-d",
			filepath.Join(vm.dir, name), filepath.Join(vm.dir, scr)).CombinedOutput(); err != nil {
			t.Fatalf("mkimage: %v: %s", err, out)
		}
	}
	fat := filepath.Join(vm.dir, "fat.img")
	if out, err := exec.Command(mkfs, "-C", fat, "7168").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.fat: %v: %s", err, out)
	}
	if out, err := exec.Command(vm.mcopy, "-i", fat, filepath.Join(vm.dir, "boot.scr"), filepath.Join(vm.dir, "sb.scr"), "::").CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v: %s", err, out)
	}
	vm.disk = filepath.Join(vm.dir, "disk.img")
	img := make([]byte, 1<<20)
	fb, err := os.ReadFile(fat)
	if err != nil {
		t.Fatal(err)
	}
	img = append(img, fb...)
	if err := os.WriteFile(vm.disk, img, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sfdisk, "-q", vm.disk)
	cmd.Stdin = strings.NewReader("start=2048, type=c\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v: %s", err, out)
	}
	return vm
}

var vmBoot = regexp.MustCompile(`SBBOOT=(\S*) SBARGS=(.*?) SBEND`)

// run copies the environment copies into the FAT partition (as
// vm.files), runs the three boots and returns what each chose (slot and
// kernel arguments) and the copies U-Boot left.
func (vm *ubootVM) run(t *testing.T, envs ...[]byte) (boots [][2]string, after [][]byte) {
	t.Helper()
	part := vm.disk + "@@1M"
	for i, env := range envs {
		src := filepath.Join(vm.dir, "env.in")
		if err := os.WriteFile(src, env, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(vm.mcopy, "-o", "-i", part, src, "::"+vm.files[i]).CombinedOutput(); err != nil {
			t.Fatalf("mcopy in: %v: %s", err, out)
		}
	}
	cmd := exec.Command(vm.qemu, "-M", "virt", "-cpu", "cortex-a57", "-m", "512", "-nographic", "-accel", "tcg",
		"-bios", vm.firmware, "-drive", "if=none,file="+vm.disk+",format=raw,id=d0",
		"-device", "virtio-blk-device,drive=d0", "-nic", "none", "-no-reboot")
	cmd.Stdin = bytes.NewReader(nil)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("qemu: %v: %s", err, out)
	}
	for _, m := range vmBoot.FindAllSubmatch(out, -1) {
		boots = append(boots, [2]string{string(m[1]), string(m[2])})
	}
	if len(boots) != 3 {
		t.Fatalf("U-Boot printed %d choices, want 3:\n%s", len(boots), out)
	}
	for _, name := range vm.files[:len(envs)] {
		dst := filepath.Join(vm.dir, "env.out")
		if out, err := exec.Command(vm.mcopy, "-o", "-n", "-i", part, "::"+name, dst).CombinedOutput(); err != nil {
			t.Fatalf("mcopy out: %v: %s", err, out)
		}
		b, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		after = append(after, b)
	}
	return boots, after
}

// boot.cmd in real U-Boot: the armed trial boots while it has tries (the
// count saved with env export -c and fatwrite, read back by us), then the
// primary; a slot marked bad is not tried; a torn blob boots the first
// slot. About 5 s per QEMU run.
func TestBootCmdInUBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots U-Boot in QEMU three times (about 15 s); skipped with -short")
	}
	vm := newUbootVM(t, false)
	ctx := context.Background()
	dir := t.TempDir()
	envPath := filepath.Join(dir, "switchback.env")
	blank, err := EncodeImage(nil, vmEnvSize, false, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(envPath, blank, 0o644); err != nil {
		t.Fatal(err)
	}
	cmdline := filepath.Join(dir, "cmdline")
	if err := writeCmdline(cmdline, "a", ""); err != nil {
		t.Fatal(err)
	}
	c, err := New([]Device{{Path: envPath, EnvSize: vmEnvSize}}, []string{"a", "b"},
		WithCmdline(cmdline), WithRuntimeDir(filepath.Join(dir, "run")), WithLockFile(""))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Arm(ctx, "b", 2); err != nil {
		t.Fatal(err)
	}
	env, _ := c.Env(ctx)
	canary := env[VarCanary]
	boots, afters := vm.run(t, mustReadFile(t, envPath))
	wantArgs := func(slot string) string {
		return fmt.Sprintf("console=ttyAMA0 root=PARTLABEL=rootfs_%s switchback.slot=%s switchback.canary=%s", slot, slot, canary)
	}
	if want := [][2]string{{"b", wantArgs("b")}, {"b", wantArgs("b")}, {"a", wantArgs("a")}}; !reflect.DeepEqual(boots, want) {
		t.Errorf("three boots after Arm(b, 2): %q, want %q", boots, want)
	}
	// What U-Boot wrote, we read: the trial used up its tries.
	checkExhaustedTrial(t, c, []string{envPath}, afters, cmdline, boots[2][1])
	if err := c.CheckCanary(ctx); err != nil {
		t.Errorf("CheckCanary with U-Boot's arguments: %v", err)
	}
	// Marked bad and re-armed, then marked bad again: never tried.
	if err := c.Arm(ctx, "b", 3); err != nil {
		t.Fatal(err)
	}
	if err := c.SetEnv(ctx, map[string]string{VarBad: "b"}); err != nil {
		t.Fatal(err)
	}
	boots, _ = vm.run(t, mustReadFile(t, envPath))
	for i, b := range boots {
		if b[0] != "a" {
			t.Errorf("boot %d with b armed but listed bad: %q, want a", i+1, b[0])
		}
	}
	// A torn blob (bad CRC): U-Boot cannot import it, boot.cmd boots the
	// first slot.
	torn := mustReadFile(t, envPath)
	if err := c.SetEnv(ctx, map[string]string{VarBad: "", VarPrimary: "b"}); err != nil {
		t.Fatal(err)
	}
	full := mustReadFile(t, envPath)
	copy(torn, full[:20])
	if _, err := ParseImage(torn, false); !errors.Is(err, ErrBadCRC) {
		t.Fatalf("torn blob: ParseImage = %v, want ErrBadCRC", err)
	}
	boots, _ = vm.run(t, torn)
	for i, b := range boots {
		if b[0] != "a" {
			t.Errorf("boot %d from a torn blob: %q, want the first slot a", i+1, b[0])
		}
	}
}

// checkExhaustedTrial gives c what U-Boot left, the environment copies
// after at paths and the last boot's kernel arguments as its command
// line, and checks that it sees trial b's tries used up and a booted.
func checkExhaustedTrial(t *testing.T, c *Control, paths []string, after [][]byte, cmdline, lastArgs string) {
	t.Helper()
	for i, p := range paths {
		if err := os.WriteFile(p, after[i], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(cmdline, []byte(lastArgs), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := (slots.BootStatus{Booted: "a", Primary: "a", Trial: "b", TriesLeft: 0}); !reflect.DeepEqual(st, want) {
		t.Errorf("Status after U-Boot's boots: %+v, want %+v", st, want)
	}
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// boot.cmd with a redundant pair of environment files (sb_envfile2) in
// real U-Boot: it reads the copy written last (flags, with 0 after 255),
// writes each count-down into the other copy with the next flags, as we
// read it back; a torn newer copy leaves the older one current, and
// nothing of the older copy leaks in. Seven QEMU runs, about 5 s each.
func TestBootCmdRedundantInUBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots U-Boot in QEMU seven times (about 35 s); skipped with -short")
	}
	vm := newUbootVM(t, true)
	ctx := context.Background()
	dir := t.TempDir()
	devs := []Device{{Path: filepath.Join(dir, vm.files[0]), EnvSize: vmEnvSize}, {Path: filepath.Join(dir, vm.files[1]), EnvSize: vmEnvSize}}
	blank, err := EncodeImage(nil, vmEnvSize, true, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		if err := os.WriteFile(d.Path, blank, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmdline := filepath.Join(dir, "cmdline")
	if err := writeCmdline(cmdline, "a", ""); err != nil {
		t.Fatal(err)
	}
	c, err := New(devs, []string{"a", "b"}, WithCmdline(cmdline), WithRuntimeDir(filepath.Join(dir, "run")), WithLockFile(""))
	if err != nil {
		t.Fatal(err)
	}
	copies := func() [][]byte { return [][]byte{mustReadFile(t, devs[0].Path), mustReadFile(t, devs[1].Path)} }
	slotsOf := func(boots [][2]string) []string {
		var s []string
		for _, b := range boots {
			s = append(s, b[0])
		}
		return s
	}

	// Armed (written into copy 2, flags 1): b, b, then a, each count
	// written into the copy that was not current.
	if err := c.Arm(ctx, "b", 2); err != nil {
		t.Fatal(err)
	}
	boots, after := vm.run(t, copies()...)
	if got, want := slotsOf(boots), []string{"b", "b", "a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("three boots after Arm(b, 2): %q, want %q", got, want)
	}
	if got, want := []byte{after[0][4], after[1][4]}, []byte{2, 3}; !bytes.Equal(got, want) {
		t.Errorf("flags after two count-downs: %v, want %v (each write into the other copy, flags+1)", got, want)
	}
	checkExhaustedTrial(t, c, []string{devs[0].Path, devs[1].Path}, after, cmdline, boots[2][1])

	// Committed b (into copy 1, flags 4), then that write torn: copy 2
	// (flags 3, trial b with no tries) stays current, a boots.
	if err := writeCmdline(cmdline, "b", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	cs := copies()
	if cs[0][4] != 4 {
		t.Fatalf("Commit wrote flags %d into copy 1, want 4", cs[0][4])
	}
	boots, _ = vm.run(t, cs...)
	if got, want := slotsOf(boots), []string{"b", "b", "b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("boots after Commit(b): %q, want %q", got, want)
	}
	cs[0][100] ^= 0xff
	boots, _ = vm.run(t, cs...)
	if got, want := slotsOf(boots), []string{"a", "a", "a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("boots with the newer copy torn: %q, want the older copy's %q", got, want)
	}

	// Flags wrap (0 follows 255); nothing of the older copy leaks into
	// the newer (copy 1 alone arms a trial of a).
	copy1 := []Var{{Name: VarPrimary, Value: "b"}, {Name: VarTrial, Value: "a"}, {Name: VarTries, Value: "3"}}
	copy2 := []Var{{Name: VarPrimary, Value: "b"}}
	for _, tc := range []struct {
		flags [2]byte
		want  string
	}{{[2]byte{0xff, 0}, "b"}, {[2]byte{0, 0xff}, "a"}, {[2]byte{7, 7}, "a"}, {[2]byte{7, 8}, "b"}} {
		var in [][]byte
		for i, vars := range [][]Var{copy1, copy2} {
			b, err := EncodeImage(vars, vmEnvSize, true, tc.flags[i], 0)
			if err != nil {
				t.Fatal(err)
			}
			in = append(in, b)
		}
		boots, _ = vm.run(t, in...)
		if got := boots[0][0]; got != tc.want {
			t.Errorf("copy 1 (trial a) with flags %d, copy 2 (primary b, no trial) with flags %d: booted %s, want %s", tc.flags[0], tc.flags[1], got, tc.want)
		}
	}
}
