package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/switchback-ota/switchback/slots/uboot"
)

// The arm64 machine: qemu-system-aarch64 -M virt with Debian's U-Boot
// (u-boot-qemu, its qemu_arm64 build), which runs boot.scr from the FAT
// boot partition. The disk has the x86_64 layout without GRUB: p1 FAT
// boot (boot.scr, switchback.scr, the environment), p2/p3 root slots,
// p4 data.
const (
	archAMD64 = "amd64"
	archARM64 = "arm64"

	// hardwareARM64 is the hardware id of the arm64 example's releases.
	hardwareARM64 = "qemu-arm64"
	// ubootFirmware is Debian's U-Boot for QEMU's virt board (u-boot-qemu).
	ubootFirmware = "/usr/lib/u-boot/qemu_arm64/u-boot.bin"
	// ubootEnvSize is the size of each copy of the environment file (as in
	// fwEnvConfigARM64 and boot-arm64.cmd's sb_envsize).
	ubootEnvSize = 0x4000
	// ubootEnvFile and ubootEnvFile2 are the redundant pair of
	// environment files on the boot partition, as boot-arm64.cmd names
	// them; fwEnvConfigARM64 gives them to userspace.
	ubootEnvFile     = "switchback.env"
	ubootEnvFile2    = "switchback-redund.env"
	fwEnvConfigARM64 = "/mnt/boot/" + ubootEnvFile + " 0x0 0x4000\n/mnt/boot/" + ubootEnvFile2 + " 0x0 0x4000\n"
	// agentArgsARM64 makes the agent drive U-Boot's environment through
	// the image's /etc/fw_env.config (its default -fw-env-config).
	agentArgsARM64 = agentArgs + " -bootloader uboot"
)

// initramfsModulesARM64 are the modules Debian's cloud-arm64 kernel needs
// for virtio-mmio disk and NIC and the FAT boot partition, in insmod order.
var initramfsModulesARM64 = []string{
	"virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "failover", "net_failover",
	"virtio_net", "fat", "vfat", "nls_cp437", "nls_ascii",
}

// requiredToolsARM64 are the host programs the arm64 machine needs, with
// the Debian package that provides each.
var requiredToolsARM64 = slices.Concat(commonTools, [][2]string{
	{"mkimage", "u-boot-tools"}, {"qemu-system-aarch64", "qemu-system-arm"},
	{"busybox", "busybox-static"},
})

// missingToolsARM64 is missingTools for the arm64 machine.
func missingToolsARM64() []string {
	missing := missingFrom(requiredToolsARM64)
	if _, err := os.Stat(ubootFirmware); err != nil {
		missing = append(missing, ubootFirmware+" (Debian package u-boot-qemu)")
	}
	return missing
}

// aptARM64 runs apt-get or apt-cache for arm64 packages against a private
// apt state in the cache: the host's sources and keyrings, arm64 only, no
// dpkg --add-architecture and no change to the host's package lists.
func (b *builder) aptARM64(ctx context.Context, dir, prog string, args ...string) ([]byte, error) {
	state := filepath.Join(b.CacheDir, "apt-arm64")
	for _, d := range []string{"lists/partial", "archives/partial"} {
		if err := os.MkdirAll(filepath.Join(state, d), 0o755); err != nil {
			return nil, err
		}
	}
	opts := []string{
		"-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64",
		"-o", "Dir::State=" + state, "-o", "Dir::State::Lists=" + filepath.Join(state, "lists"),
		"-o", "Dir::State::status=/dev/null", "-o", "Dir::Cache=" + state,
		"-o", "Dir::Cache::Archives=" + filepath.Join(state, "archives"), "-o", "Debug::NoLocking=1",
	}
	return run(ctx, dir, nil, prog, append(opts, args...)...)
}

var dependsARM64RE = regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*-cloud-arm64)`)

// kernelPackageARM64 resolves the current cloud-arm64 kernel package,
// updating the private arm64 package lists the first time.
func (b *builder) kernelPackageARM64(ctx context.Context) (string, error) {
	out, err := b.aptARM64(ctx, "", "apt-cache", "depends", "linux-image-cloud-arm64")
	if err != nil || !dependsARM64RE.Match(out) {
		b.logf("apt-get update (arm64 package lists, kept in the cache)")
		if _, err := b.aptARM64(ctx, "", "apt-get", "-q", "update"); err != nil {
			return "", err
		}
		if out, err = b.aptARM64(ctx, "", "apt-cache", "depends", "linux-image-cloud-arm64"); err != nil {
			return "", err
		}
	}
	m := dependsARM64RE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("apt-cache depends linux-image-cloud-arm64: no versioned kernel package in %q", out)
	}
	return string(m[1]), nil
}

// prepareARM64 is prepare for the arm64 machine: Debian's cloud-arm64
// kernel and arm64 busybox-static, unpacked from their .debs (nothing
// installed), the kernel Image gzip-compressed for U-Boot's unzip, and
// the initramfs.
func (b *builder) prepareARM64(ctx context.Context) (*assets, error) {
	if missing := missingToolsARM64(); len(missing) > 0 {
		return nil, fmt.Errorf("missing host tools: %s", strings.Join(missing, ", "))
	}
	kpkg, err := b.kernelPackageARM64(ctx)
	if err != nil {
		if kpkg = b.cachedKernel(archARM64); kpkg == "" {
			return nil, err
		}
		b.logf("apt failed (%v); using the cached %s", err, kpkg)
	}
	dirs, err := b.unpackDebs(ctx, archARM64, kpkg, "busybox-static", "e2fsck-static")
	if err != nil {
		return nil, err
	}
	hostBusybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, err
	}
	abi := strings.TrimPrefix(kpkg, "linux-image-")
	a := &assets{
		ABI:         abi,
		Kernel:      filepath.Join(b.CacheDir, "vmlinuz-"+abi+".gz"),
		ModuleDir:   filepath.Join(dirs[kpkg], "lib", "modules", abi, "kernel"),
		Busybox:     filepath.Join(dirs["busybox-static"], "bin", "busybox"),
		HostBusybox: hostBusybox,
		Modules:     initramfsModulesARM64,
		E2fsck:      filepath.Join(dirs["e2fsck-static"], "sbin", "e2fsck.static"),
		Initrd:      filepath.Join(b.CacheDir, "initrd-"+abi+".img"),
	}
	image := filepath.Join(dirs[kpkg], "boot", "vmlinuz-"+abi)
	if err := requireUnpacked(image, a.ModuleDir, a.Busybox, a.E2fsck); err != nil {
		return nil, err
	}
	if err := gzipOnce(image, a.Kernel); err != nil {
		return nil, err
	}
	if err := b.initramfsOnce(ctx, a); err != nil {
		return nil, err
	}
	return a, nil
}

// gzipOnce writes a gzip copy of src at dst unless dst exists. Debian's
// arm64 vmlinuz is an uncompressed Image (27 MB); U-Boot's booti takes
// only that, so a slot's /boot/vmlinuz is the compressed copy, which
// boot.scr unzips.
func gzipOnce(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return writeFileAtomic(dst, gz.Bytes())
}

// mkimageScript compiles a U-Boot script (mkimage -T script) from src to
// out.
func mkimageScript(ctx context.Context, src, out string) error {
	_, err := run(ctx, "", nil, "mkimage", "-A", "arm64", "-T", "script", "-C", "none", "-n", "switchback", "-d", src, out)
	return err
}

// factoryEnvARM64 is a copy of the redundant environment a new arm64
// device ships with (both copies alike, flags 0): slot A committed, no
// trial, and a canary. U-Boot has no empty variables: the unset ones are
// absent.
func factoryEnvARM64() ([]byte, error) {
	return uboot.EncodeImage([]uboot.Var{
		{Name: uboot.VarCanary, Value: "qemu-factory"}, {Name: uboot.VarPrimary, Value: "a"},
	}, ubootEnvSize, true, 0, 0)
}

// bootImageARM64 builds the FAT boot partition of the arm64 disk: boot.scr
// (files/boot-arm64.cmd), switchback.scr (the library's slots/uboot/boot.cmd
// from the checkout) and the environment file.
func (b *builder) bootImageARM64(ctx context.Context, out string) error {
	dir, err := os.MkdirTemp(filepath.Dir(out), "boot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	wrapper, err := files.ReadFile("files/boot-arm64.cmd")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "boot.cmd"), wrapper, 0o644); err != nil {
		return err
	}
	shipped := filepath.Join(b.Checkout, "slots", "uboot", "boot.cmd")
	b.logf("boot-count script from %s", shipped)
	for src, scr := range map[string]string{filepath.Join(dir, "boot.cmd"): "boot.scr", shipped: "switchback.scr"} {
		if err := mkimageScript(ctx, src, filepath.Join(dir, scr)); err != nil {
			return err
		}
	}
	env, err := factoryEnvARM64()
	if err != nil {
		return err
	}
	for _, name := range []string{ubootEnvFile, ubootEnvFile2} {
		if err := os.WriteFile(filepath.Join(dir, name), env, 0o644); err != nil {
			return err
		}
	}
	os.Remove(out)
	epoch := []string{fmt.Sprintf("SOURCE_DATE_EPOCH=%d", sourceEpoch)}
	if _, err := run(ctx, "", epoch, "mkfs.fat", "-C", "--invariant", "-i", "5b0c0a11", "-n", "SBBOOT", out, fmt.Sprint(bootSize*sector/1024)); err != nil {
		return err
	}
	for _, name := range []string{"boot.scr", "switchback.scr", ubootEnvFile, ubootEnvFile2} {
		if _, err := run(ctx, "", epoch, "mcopy", "-i", out, filepath.Join(dir, name), "::/"+name); err != nil {
			return err
		}
	}
	return nil
}

// diskARM64 assembles the raw arm64 disk at out: the partition table, the
// boot partition, slot A and a fresh data partition. U-Boot needs nothing
// outside the partitions.
func (b *builder) diskARM64(ctx context.Context, slotA, out string) error {
	return assembleDisk(ctx, out, map[int64]string{slotAStart: slotA}, func(_ *os.File, work string) (string, error) {
		bootFS := filepath.Join(work, "boot.fat")
		return bootFS, b.bootImageARM64(ctx, bootFS)
	})
}

// readDiskEnvARM64 reads the current copy of the redundant U-Boot
// environment from the boot partition of a raw disk, as the agent reads
// it (slots/uboot).
func readDiskEnvARM64(ctx context.Context, raw string) (map[string]string, error) {
	dir, err := os.MkdirTemp(filepath.Dir(raw), "env-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var devs []uboot.Device
	for _, name := range []string{ubootEnvFile, ubootEnvFile2} {
		dst := filepath.Join(dir, name)
		if _, err := run(ctx, "", nil, "mcopy", "-n", "-i", bootFATSpec(raw), "::/"+name, dst); err != nil {
			return nil, err
		}
		devs = append(devs, uboot.Device{Path: dst, EnvSize: ubootEnvSize})
	}
	c, err := uboot.New(devs, []string{"a", "b"}, uboot.WithLockFile(""))
	if err != nil {
		return nil, err
	}
	return c.Env(ctx)
}

// The env methods below are where the two machines differ in building.

// hardware is the hardware id of the machine's releases.
func (e *env) hardware() string {
	if e.Arch == archARM64 {
		return hardwareARM64
	}
	return hardwareID
}

// goarch is the agent's GOARCH.
func (e *env) goarch() string {
	if e.Arch == archARM64 {
		return archARM64
	}
	return archAMD64
}

// prepareAssets downloads (or finds in the cache) the machine's kernel and
// busybox and builds its initramfs.
func (e *env) prepareAssets(ctx context.Context, b *builder) (*assets, error) {
	if e.Arch == archARM64 {
		return b.prepareARM64(ctx)
	}
	return b.prepare(ctx)
}

// newRelease describes a root slot image of version for the machine.
func (e *env) newRelease(version, flavor, agent string, rootJSON []byte) release {
	r := release{Version: version, Flavor: flavor, Agent: agent, AgentArgs: agentArgs, RootJSON: rootJSON, Hardware: e.hardware()}
	if e.Arch == archARM64 {
		r.AgentArgs = agentArgsARM64
		r.Files = map[string][]byte{"etc/fw_env.config": []byte(fwEnvConfigARM64)}
	}
	return r
}

// buildDisk assembles the machine's raw factory disk with slotA in slot A.
func (e *env) buildDisk(ctx context.Context, b *builder, slotA, out string) error {
	if e.Arch == archARM64 {
		return b.diskARM64(ctx, slotA, out)
	}
	return b.disk(ctx, diskSpec{SlotA: slotA}, out)
}

// hostBusybox is a busybox that runs on the host, for the guestfwd relay
// and the applet list: the guest's own on x86_64, the host's when the
// guest's is arm64.
func (a *assets) hostBusybox() string {
	if a.HostBusybox != "" {
		return a.HostBusybox
	}
	return a.Busybox
}
