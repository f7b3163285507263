package sdboot

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
	"github.com/switchback-ota/switchback/slots"
)

func lookFile(t *testing.T, p, pkg string) string {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		ci.Skipf(t, "%s missing (install %s)", p, pkg)
	}
	return p
}

var failedEntry = regexp.MustCompile(`Failed to execute Switchback (\S+) `)

// Real systemd-boot (under OVMF in QEMU) boots the entries switchback
// arranged: the armed trial while it has tries, counting them down by
// renaming its entry, then the primary. The entries' "kernels" are the
// bare EFI stub, which fails at once; systemd-boot then reports the entry
// it ran, and the UEFI shell's startup.nsh starts systemd-boot twice more
// and powers off: three boots in one run (about a minute under TCG).
func TestRealSystemdBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots OVMF and systemd-boot in QEMU (about a minute); skipped with -short")
	}
	qemu := ci.LookPath(t, "qemu-system-x86_64", "qemu-system-x86")
	mkfs := ci.LookPath(t, "mkfs.fat", "dosfstools")
	mcopy := ci.LookPath(t, "mcopy", "mtools")
	mmd := ci.LookPath(t, "mmd", "mtools")
	mdir := ci.LookPath(t, "mdir", "mtools")
	sfdisk := ci.LookPath(t, "sfdisk", "fdisk")
	code := lookFile(t, "/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf")
	varsTmpl := lookFile(t, "/usr/share/OVMF/OVMF_VARS_4M.fd", "ovmf")
	sdboot := lookFile(t, "/usr/lib/systemd/boot/efi/systemd-bootx64.efi", "systemd-boot-efi")
	stub := lookFile(t, "/usr/lib/systemd/boot/efi/linuxx64.efi.stub", "systemd-boot-efi")
	ctx := context.Background()

	c := newTestControl(t)
	// Entries whose kernel exists (systemd-boot skips entries whose
	// kernel is missing).
	for _, s := range []string{"a", "b"} {
		p := filepath.Join(c.entriesDir(), "switchback-"+s+".conf")
		b := bytes.Replace(mustReadFile(p), []byte("linux /"+s+"/vmlinuz"), []byte("linux /slot-"+s+"/vmlinuz"), 1)
		b = bytes.Replace(b, []byte("initrd /"+s+"/initrd.img\n"), nil, 1)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(c.entriesDir(), "zz-rescue.conf"))
	if err := c.Arm(ctx, "b", 2); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %q: %v: %s", filepath.Base(name), args, err, out)
		}
	}
	esp := filepath.Join(dir, "esp.img")
	run(mkfs, "-C", esp, "16384")
	run(mmd, "-i", esp, "::EFI", "::EFI/BOOT", "::slot-a", "::slot-b")
	run(mcopy, "-i", esp, sdboot, "::EFI/BOOT/BOOTX64.EFI")
	run(mcopy, "-i", esp, stub, "::slot-a/vmlinuz")
	run(mcopy, "-i", esp, stub, "::slot-b/vmlinuz")
	run(mcopy, "-s", "-i", esp, filepath.Join(c.cfg.ESP, "loader"), "::")
	nsh := filepath.Join(dir, "startup.nsh")
	if err := os.WriteFile(nsh, []byte("FS0:\r\n\\EFI\\BOOT\\BOOTX64.EFI\r\n\\EFI\\BOOT\\BOOTX64.EFI\r\nreset -s\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(mcopy, "-i", esp, nsh, "::startup.nsh")
	disk := filepath.Join(dir, "disk.img")
	espBytes, err := os.ReadFile(esp)
	if err != nil {
		t.Fatal(err)
	}
	img := append(make([]byte, 1<<20), espBytes...)
	img = append(img, make([]byte, 1<<20)...)
	if err := os.WriteFile(disk, img, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sfdisk, "-q", disk)
	cmd.Stdin = strings.NewReader("start=2048, size=32768, type=ef\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v: %s", err, out)
	}
	vars := filepath.Join(dir, "vars.fd")
	if err := os.WriteFile(vars, mustReadFile(varsTmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	q := exec.CommandContext(qctx, qemu, "-M", "q35", "-m", "256", "-nographic", "-accel", "tcg",
		"-drive", "if=pflash,format=raw,readonly=on,file="+code,
		"-drive", "if=pflash,format=raw,file="+vars,
		"-drive", "file="+disk+",format=raw,if=virtio", "-nic", "none", "-no-reboot")
	q.Stdin = bytes.NewReader(nil)
	out, err := q.CombinedOutput()
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, out)
	}
	var booted []string
	for _, m := range failedEntry.FindAllSubmatch(out, -1) {
		booted = append(booted, string(m[1]))
	}
	if want := []string{"b", "b", "a"}; !slices.Equal(booted, want) {
		t.Fatalf("systemd-boot ran %q, want %q (trial twice, then the primary)\n%s", booted, want, printable(out))
	}
	// Its renames, as it left them on the ESP.
	lst, err := exec.Command(mdir, "-b", "-i", disk+"@@1M", "::loader/entries").CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v: %s", err, lst)
	}
	var names []string
	for _, l := range strings.Fields(string(lst)) {
		if n, ok := strings.CutPrefix(l, "::/loader/entries/"); ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	if want := []string{"switchback-a.conf", "switchback-b+0-2.conf"}; !slices.Equal(names, want) {
		t.Fatalf("entries after three boots: %q, want %q", names, want)
	}
	// Bring the host tree to the same state and read it as userspace.
	if err := os.Rename(filepath.Join(c.entriesDir(), "switchback-b+2-0.conf"), filepath.Join(c.entriesDir(), "switchback-b+0-2.conf")); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (slots.BootStatus{Booted: "a", Primary: "a", Trial: "b", TriesLeft: 0}); !reflect.DeepEqual(st, want) {
		t.Errorf("Status after systemd-boot fell back: %+v, want %+v", st, want)
	}
}

// printable strips terminal escapes from console output for a message.
func printable(b []byte) string {
	s := regexp.MustCompile("\x1b\\[[0-9;=?]*[a-zA-Z]").ReplaceAllString(string(b), "")
	return strings.ReplaceAll(s, "\r", "")
}
