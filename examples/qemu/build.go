package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

//go:embed files
var files embed.FS

// Disk layout (MBR, 512-byte sectors). GRUB's core image lives in the gap
// before the first partition; the partition numbers are part of grub.cfg
// and of the agent's configuration (/dev/vda1..4).
const (
	sector      = 512
	bootStart   = 2048              // p1: FAT boot partition: grub.cfg, switchback.cfg, grubenv
	bootSize    = 8 << 20 / sector  // 8 MiB
	slotSize    = 64 << 20 / sector // p2, p3: root slots A and B, 64 MiB each
	dataSize    = 32 << 20 / sector // p4: data partition, survives every update
	slotAStart  = bootStart + bootSize
	slotBStart  = slotAStart + slotSize
	dataStart   = slotBStart + slotSize
	diskSectors = dataStart + dataSize

	// rootfsBytes is the size of a root slot image: the ext4 file system
	// a release ships. It is smaller than the partition so that releases
	// download faster; the partition slot writes it at offset 0.
	rootfsBytes = 40 << 20

	diskLabelID = "0x5b0c0a11"
	// hardwareID is the hardware id the example's releases are built for.
	hardwareID = "qemu-x86_64"
	// sourceEpoch is the timestamp given to every file put in an image,
	// so that file system contents do not depend on when they were built.
	sourceEpoch = 1767225600 // 2026-01-01T00:00:00Z
)

// initramfsModules are the modules the Debian cloud kernel needs to reach a
// virtio root disk, a virtio NIC and the FAT boot partition, in insmod
// order (the unpacked package has no modules.dep).
var initramfsModules = []string{
	"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
	"virtio_pci", "virtio_blk", "failover", "net_failover", "virtio_net",
	"fat", "vfat", "nls_cp437", "nls_ascii",
}

// grubModules are built into core.img, so that GRUB needs no module
// directory on the boot partition.
var grubModules = []string{
	"biosdisk", "part_msdos", "fat", "ext2", "normal", "configfile",
	"loadenv", "linux", "test", "echo", "eval", "serial", "terminal", "reboot",
	"halt", "sleep", "boot",
}

// assets are the Debian-provided parts every image is made of, unpacked in
// the cache.
type assets struct {
	ABI       string // kernel ABI, e.g. 6.1.0-56-cloud-amd64
	Kernel    string // vmlinuz
	ModuleDir string // lib/modules/<abi>/kernel
	Busybox   string // static busybox binary
	Initrd    string // initramfs built from the above (gzip newc cpio)
	// HostBusybox lists the applets when Busybox does not run on the host
	// (arm64); "" means Busybox.
	HostBusybox string
	// Modules are the initramfs's modules in insmod order; nil means
	// initramfsModules.
	Modules []string
	// E2fsck is a static e2fsck (e2fsck-static): the root slots' init
	// checks the data partition with it before mounting it.
	E2fsck string
}

// builder makes images. Its methods shell out to Debian tools (apt-get,
// dpkg-deb, cpio, mkfs.ext4, mkfs.fat, mtools, sfdisk, grub-mkimage,
// qemu-img); none needs root, a loop device or a mount.
type builder struct {
	CacheDir string    // downloaded .debs and unpacked assets
	Checkout string    // the switchback checkout, for slots/grub/switchback.cfg
	Log      io.Writer // progress, one line per step
}

func (b *builder) logf(format string, a ...any) {
	if b.Log != nil {
		fmt.Fprintf(b.Log, "%s build: %s\n", time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, a...))
	}
}

// run runs a command, returning its stderr in the error.
func run(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// commonTools are the host programs both machines' builders use, with
// the Debian package that provides each.
var commonTools = [][2]string{
	{"apt-get", "apt"}, {"apt-cache", "apt"}, {"dpkg-deb", "dpkg"},
	{"cpio", "cpio"}, {"mkfs.ext4", "e2fsprogs"}, {"mkfs.fat", "dosfstools"},
	{"mcopy", "mtools"}, {"sfdisk", "fdisk"}, {"qemu-img", "qemu-utils"},
}

// requiredTools lists the host programs the builder and the runner use,
// with the Debian package that provides each.
var requiredTools = slices.Concat(commonTools, [][2]string{
	{"mmd", "mtools"}, {"grub-mkimage", "grub-common"},
	{"qemu-system-x86_64", "qemu-system-x86"},
})

// missingTools reports the required host programs that are not on PATH,
// as "program (package)" strings.
func missingTools() []string {
	missing := missingFrom(requiredTools)
	if _, err := os.Stat("/usr/lib/grub/i386-pc/boot.img"); err != nil {
		missing = append(missing, "/usr/lib/grub/i386-pc (Debian package grub-pc-bin)")
	}
	return missing
}

// missingFrom lists the programs of tools (program, Debian package) that
// are not on PATH, as "program (package)" strings.
func missingFrom(tools [][2]string) []string {
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t[0]); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", t[0], t[1]))
		}
	}
	return missing
}

var dependsRE = regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*-cloud-amd64)`)

// kernelPackage resolves the current cloud kernel package name.
func kernelPackage(ctx context.Context) (string, error) {
	out, err := run(ctx, "", nil, "apt-cache", "depends", "linux-image-cloud-amd64")
	if err != nil {
		return "", err
	}
	m := dependsRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("apt-cache depends linux-image-cloud-amd64: no versioned kernel package in %q", out)
	}
	return string(m[1]), nil
}

// fetchDebArch returns the path of pkg's .deb in the cache, downloading
// it with apt-get download when it is not there yet. arch is "" for the
// host's packages, archARM64 for arm64 ones, which come through the
// private arm64 apt state (aptARM64) into a directory of their own.
func (b *builder) fetchDebArch(ctx context.Context, pkg, arch string) (string, error) {
	dir, glob, name := filepath.Join(b.CacheDir, "debs"), pkg+"_*.deb", pkg
	download := func() error { _, err := run(ctx, dir, nil, "apt-get", "download", name); return err }
	if arch == archARM64 {
		dir, glob, name = filepath.Join(b.CacheDir, "debs-arm64"), pkg+"_*_arm64.deb", pkg+":arm64"
		download = func() error { _, err := b.aptARM64(ctx, dir, "apt-get", "download", name); return err }
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	find := func() string {
		m, _ := filepath.Glob(filepath.Join(dir, glob))
		sort.Strings(m)
		if len(m) == 0 {
			return ""
		}
		return m[len(m)-1]
	}
	if p := find(); p != "" {
		return p, nil
	}
	b.logf("apt-get download %s", name)
	if err := download(); err != nil {
		return "", err
	}
	if p := find(); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("apt-get download %s left no %s in %s", name, glob, dir)
}

// unpack extracts a .deb into the cache once and returns the directory.
func (b *builder) unpack(ctx context.Context, deb string) (string, error) {
	dir := filepath.Join(b.CacheDir, "unpacked", strings.TrimSuffix(filepath.Base(deb), ".deb"))
	done := filepath.Join(dir, ".complete")
	if _, err := os.Stat(done); err == nil {
		return dir, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if _, err := run(ctx, "", nil, "dpkg-deb", "-x", deb, dir); err != nil {
		return "", err
	}
	return dir, os.WriteFile(done, nil, 0o644)
}

// prepare downloads (or finds in the cache) the kernel and busybox, and
// builds the initramfs.
func (b *builder) prepare(ctx context.Context) (*assets, error) {
	if missing := missingTools(); len(missing) > 0 {
		return nil, fmt.Errorf("missing host tools: %s", strings.Join(missing, ", "))
	}
	kpkg, err := kernelPackage(ctx)
	if err != nil {
		// No apt lists (a fresh container): use a kernel already in the
		// cache, else say what to do.
		if kpkg = b.cachedKernel(archAMD64); kpkg == "" {
			return nil, fmt.Errorf("%w (run apt-get update first)", err)
		}
		b.logf("apt-cache failed (%v); using the cached %s", err, kpkg)
	}
	dirs, err := b.unpackDebs(ctx, "", kpkg, "busybox-static", "e2fsck-static")
	if err != nil {
		return nil, err
	}
	abi := strings.TrimPrefix(kpkg, "linux-image-")
	a := &assets{
		ABI:       abi,
		Kernel:    filepath.Join(dirs[kpkg], "boot", "vmlinuz-"+abi),
		ModuleDir: filepath.Join(dirs[kpkg], "lib", "modules", abi, "kernel"),
		Busybox:   filepath.Join(dirs["busybox-static"], "bin", "busybox"),
		E2fsck:    filepath.Join(dirs["e2fsck-static"], "sbin", "e2fsck.static"),
		Initrd:    filepath.Join(b.CacheDir, "initrd-"+abi+".img"),
	}
	if err := requireUnpacked(a.Kernel, a.ModuleDir, a.Busybox, a.E2fsck); err != nil {
		return nil, err
	}
	if err := b.initramfsOnce(ctx, a); err != nil {
		return nil, err
	}
	return a, nil
}

// cachedKernel names the newest cloud kernel package of arch (archAMD64
// or archARM64) already in the cache, "" when there is none: for hosts
// whose apt cannot resolve one (no lists, no network).
func (b *builder) cachedKernel(arch string) string {
	dir := "debs"
	if arch == archARM64 {
		dir = "debs-arm64"
	}
	m, _ := filepath.Glob(filepath.Join(b.CacheDir, dir, "linux-image-*-cloud-"+arch+"_*.deb"))
	if len(m) == 0 {
		return ""
	}
	sort.Strings(m)
	return strings.SplitN(filepath.Base(m[len(m)-1]), "_", 2)[0]
}

// unpackDebs fetches (fetchDebArch) and unpacks the packages pkgs of
// arch; it returns the directory of each, by package.
func (b *builder) unpackDebs(ctx context.Context, arch string, pkgs ...string) (map[string]string, error) {
	dirs := map[string]string{}
	for _, pkg := range pkgs {
		deb, err := b.fetchDebArch(ctx, pkg, arch)
		if err != nil {
			return nil, err
		}
		if dirs[pkg], err = b.unpack(ctx, deb); err != nil {
			return nil, err
		}
	}
	return dirs, nil
}

// requireUnpacked checks that the paths the assets need exist.
func requireUnpacked(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("unpacked packages lack %s: %w", p, err)
		}
	}
	return nil
}

// initramfsOnce builds the initramfs a.Initrd unless the cache has it.
func (b *builder) initramfsOnce(ctx context.Context, a *assets) error {
	if _, err := os.Stat(a.Initrd); err == nil {
		return nil
	}
	b.logf("initramfs for %s", a.ABI)
	return b.makeInitramfs(ctx, a)
}

// findModule returns the path of name.ko under the kernel's module tree.
func findModule(root, name string) (string, error) {
	var found string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == name+".ko" {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	if err == nil && found == "" {
		err = fmt.Errorf("module %s.ko not found under %s", name, root)
	}
	return found, err
}

func copyFile(dst, src string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// fixTimes gives every file under dir the same timestamp.
func fixTimes(ctx context.Context, dir string) error {
	_, err := run(ctx, "", nil, "find", dir, "-exec", "touch", "-h", "-d", fmt.Sprintf("@%d", sourceEpoch), "{}", "+")
	return err
}

// makeInitramfs builds a gzip newc cpio holding busybox, the modules and
// the initramfs /init.
func (b *builder) makeInitramfs(ctx context.Context, a *assets) error {
	stage, err := os.MkdirTemp(b.CacheDir, "initramfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	for _, d := range []string{"bin", "dev", "proc", "sys", "newroot", "lib/modules"} {
		if err := os.MkdirAll(filepath.Join(stage, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(filepath.Join(stage, "bin", "busybox"), a.Busybox, 0o755); err != nil {
		return err
	}
	if err := os.Symlink("busybox", filepath.Join(stage, "bin", "sh")); err != nil {
		return err
	}
	modules := a.Modules
	if modules == nil {
		modules = initramfsModules
	}
	for _, m := range modules {
		p, err := findModule(a.ModuleDir, m)
		if err != nil {
			return err
		}
		if err := copyFile(filepath.Join(stage, "lib", "modules", m+".ko"), p, 0o644); err != nil {
			return err
		}
	}
	init, err := files.ReadFile("files/initramfs-init")
	if err != nil {
		return err
	}
	init = bytes.ReplaceAll(init, []byte("@MODULES@"), []byte(strings.Join(modules, " ")))
	if err := os.WriteFile(filepath.Join(stage, "init"), init, 0o755); err != nil {
		return err
	}
	if err := fixTimes(ctx, stage); err != nil {
		return err
	}
	list, err := run(ctx, stage, nil, "find", ".", "-mindepth", "1")
	if err != nil {
		return err
	}
	names := strings.Split(strings.TrimSpace(string(list)), "\n")
	sort.Strings(names)
	cmd := exec.CommandContext(ctx, "cpio", "--quiet", "-o", "-H", "newc", "--reproducible", "-R", "0:0")
	cmd.Dir = stage
	cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
	var archive, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &archive, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cpio: %w: %s", err, stderr.String())
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if _, err := zw.Write(archive.Bytes()); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return writeFileAtomic(a.Initrd, gz.Bytes())
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// release describes what one root slot image holds.
type release struct {
	Version string // semantic version, written to /etc/switchback/version
	// Flavor selects how the release behaves: flavorGood; flavorNoHealth
	// (boots, but its application is missing, so the health check fails);
	// flavorPanic (its /sbin/init is not a program: the kernel panics
	// before userspace).
	Flavor    string
	Agent     string // path of the static agent binary (built with CGO_ENABLED=0)
	AgentArgs string // command-line arguments for the agent, as shell words
	RootJSON  []byte // the TUF trusted root the agent starts from (may be nil)
	Hardware  string // /etc/switchback/hardware; "" means hardwareID
	// Files are extra files of the image, by path (e.g. etc/fw_env.config).
	Files map[string][]byte
}

// Release flavors.
const (
	flavorGood     = "good"
	flavorNoHealth = "no-health"
	flavorPanic    = "panic"
)

// slotImage builds the ext4 image of one root slot at out: busybox, the
// kernel and initramfs under /boot, the init, the application and the
// agent. The image is rootfsBytes long.
func (b *builder) slotImage(ctx context.Context, a *assets, r release, out string) error {
	stage, err := os.MkdirTemp(filepath.Dir(out), "rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	for _, d := range rootfsDirs {
		if err := os.MkdirAll(filepath.Join(stage, d), 0o755); err != nil {
			return err
		}
	}
	if err := installSystem(ctx, a, stage); err != nil {
		return err
	}
	if err := installRelease(r, stage); err != nil {
		return err
	}
	if err := fixTimes(ctx, stage); err != nil {
		return err
	}
	return mkext4(ctx, stage, out, rootfsBytes, "rootfs", uuidFor("rootfs "+r.Version+" "+r.Flavor), false)
}

// rootfsDirs are the directories of a root slot image.
var rootfsDirs = []string{"bin", "sbin", "usr/bin", "usr/sbin", "boot", "dev", "proc", "sys", "tmp", "run", "data", "mnt/boot", "etc/switchback", "srv/www", "root"}

// installSystem puts in stage what every release shares: busybox,
// e2fsck, the kernel and the initramfs.
func installSystem(ctx context.Context, a *assets, stage string) error {
	if err := installBusybox(ctx, a, stage); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(stage, "sbin", "e2fsck"), a.E2fsck, 0o755); err != nil {
		return err
	}
	// e2fsck refuses to run without a mount table to check.
	if err := os.Symlink("../proc/mounts", filepath.Join(stage, "etc", "mtab")); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(stage, "boot", "vmlinuz"), a.Kernel, 0o644); err != nil {
		return err
	}
	return copyFile(filepath.Join(stage, "boot", "initrd.img"), a.Initrd, 0o644)
}

// installRelease puts in stage what makes release r: its files
// (releaseFiles) and the agent binary.
func installRelease(r release, stage string) error {
	list, err := releaseFiles(r)
	if err != nil {
		return err
	}
	for _, f := range list {
		if err := os.WriteFile(filepath.Join(stage, f.path), f.data, f.mode); err != nil {
			return err
		}
	}
	if r.Agent == "" {
		return nil
	}
	return copyFile(filepath.Join(stage, "usr", "bin", "switchback-agent"), r.Agent, 0o755)
}

// stagedFile is a file of an image being staged, by slash path.
type stagedFile struct {
	path string
	data []byte
	mode os.FileMode
}

// releaseFiles lists the files of release r, in the order they are
// written (a later one wins): its init, the application unless the
// flavor lacks it, the health page, version and hardware id, r.Files, the
// trusted root and the host name.
func releaseFiles(r release) ([]stagedFile, error) {
	init, err := rootfsInit(r)
	if err != nil {
		return nil, err
	}
	list := []stagedFile{{"sbin/init", init, 0o755}}
	if r.Flavor != flavorNoHealth {
		app, err := files.ReadFile("files/app")
		if err != nil {
			return nil, err
		}
		list = append(list, stagedFile{"etc/switchback/app", app, 0o755})
	}
	hw := r.Hardware
	if hw == "" {
		hw = hardwareID
	}
	list = append(list,
		stagedFile{"srv/www/healthz", []byte("ok " + r.Version + "\n"), 0o644},
		stagedFile{"etc/switchback/version", []byte(r.Version + "\n"), 0o644},
		stagedFile{"etc/switchback/hardware", []byte(hw + "\n"), 0o644})
	for p, data := range r.Files {
		list = append(list, stagedFile{p, data, 0o644})
	}
	if r.RootJSON != nil {
		list = append(list, stagedFile{"etc/switchback/root.json", r.RootJSON, 0o644})
	}
	return append(list, stagedFile{"etc/hostname", []byte("switchback-qemu\n"), 0o644}), nil
}

// rootfsInit is the /sbin/init of release r: files/rootfs-init starting
// the agent with r.AgentArgs, or, for flavorPanic, not a program at all.
func rootfsInit(r release) ([]byte, error) {
	if r.Flavor == flavorPanic {
		// A broken build: /sbin/init is not an executable format, so the
		// initramfs's switch_root fails, pid 1 exits and the kernel panics.
		return []byte("this release's init was truncated by a broken build\n"), nil
	}
	init, err := files.ReadFile("files/rootfs-init")
	if err != nil {
		return nil, err
	}
	return bytes.ReplaceAll(init, []byte("@AGENT_ARGS@"), []byte(r.AgentArgs)), nil
}

// installBusybox puts the image's busybox in stage/bin with a link for
// each applet but init (the image's init is a script).
func installBusybox(ctx context.Context, a *assets, stage string) error {
	if err := copyFile(filepath.Join(stage, "bin", "busybox"), a.Busybox, 0o755); err != nil {
		return err
	}
	// The applet list comes from a busybox that runs here (the same
	// version as the image's).
	applets, err := run(ctx, "", nil, a.hostBusybox(), "--list-full")
	if err != nil {
		return err
	}
	for _, p := range strings.Fields(string(applets)) {
		if p == "bin/busybox" || p == "sbin/init" || p == "linuxrc" {
			continue
		}
		dst := filepath.Join(stage, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		rel, _ := filepath.Rel(filepath.Dir(dst), filepath.Join(stage, "bin", "busybox"))
		if err := os.Symlink(rel, dst); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return nil
}

// uuidFor derives a fixed UUID from a string, so that rebuilding an image
// gives it the same identity.
func uuidFor(s string) string {
	h := sha256.Sum256([]byte(s))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-4" + x[13:16] + "-8" + x[17:20] + "-" + x[20:32]
}

// mkext4 makes an ext4 file system of size bytes at out, populated from
// dir (empty when dir is ""). Root slots have no journal: they are mounted
// read-only, so that their bytes stay exactly what was verified.
func mkext4(ctx context.Context, dir, out string, size int64, label, uuid string, journal bool) error {
	if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	features := "^has_journal,^metadata_csum_seed"
	if journal {
		features = "has_journal"
	}
	args := []string{"-q", "-F", "-t", "ext4", "-b", "4096", "-L", label, "-U", uuid,
		"-E", "hash_seed=" + uuid + ",root_owner=0:0,lazy_itable_init=0", "-O", features, "-m", "0"}
	if dir != "" {
		args = append(args, "-d", dir)
	}
	args = append(args, out, fmt.Sprintf("%dk", size/1024))
	_, err := run(ctx, "", []string{"E2FSPROGS_FAKE_TIME=" + fmt.Sprint(sourceEpoch), "SOURCE_DATE_EPOCH=" + fmt.Sprint(sourceEpoch)}, "mkfs.ext4", args...)
	return err
}

// bootCfg returns the library's boot-count fragment,
// slots/grub/switchback.cfg from the checkout.
func (b *builder) bootCfg() ([]byte, string, error) {
	p := filepath.Join(b.Checkout, "slots", "grub", "switchback.cfg")
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, "", fmt.Errorf("the library's GRUB fragment: %w", err)
	}
	return data, p, nil
}

// grubenvBlock encodes a GRUB environment block of exactly 1024 bytes.
func grubenvBlock(vars [][2]string) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# GRUB Environment Block\n")
	for _, kv := range vars {
		if strings.ContainsAny(kv[0], "=\n\\") || strings.ContainsAny(kv[1], "\n\\") {
			return nil, fmt.Errorf("grubenv variable %q=%q needs escaping", kv[0], kv[1])
		}
		fmt.Fprintf(&buf, "%s=%s\n", kv[0], kv[1])
	}
	if buf.Len() > 1024 {
		return nil, fmt.Errorf("grubenv: %d bytes of variables do not fit 1024", buf.Len())
	}
	buf.Write(bytes.Repeat([]byte("#"), 1024-buf.Len()))
	return buf.Bytes(), nil
}

// factoryEnv is the grubenv a new device ships with: slot A committed, no
// trial, and a canary the agent compares with the kernel command line.
func factoryEnv() ([]byte, error) {
	return grubenvBlock([][2]string{
		{"sb_primary", "a"}, {"sb_bad", ""}, {"sb_canary", "qemu-factory"}, {"sb_tries", ""}, {"sb_trial", ""},
	})
}

// bootImage builds the FAT boot partition image: grub.cfg, the boot-count
// fragment and grubenv under /grub.
func (b *builder) bootImage(ctx context.Context, env []byte, out string) error {
	dir, err := os.MkdirTemp(filepath.Dir(out), "boot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg, err := files.ReadFile("files/grub.cfg")
	if err != nil {
		return err
	}
	frag, src, err := b.bootCfg()
	if err != nil {
		return err
	}
	b.logf("boot-count fragment from %s", src)
	for name, data := range map[string][]byte{"grub.cfg": cfg, "switchback.cfg": frag, "grubenv": env} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	os.Remove(out)
	epoch := []string{fmt.Sprintf("SOURCE_DATE_EPOCH=%d", sourceEpoch)}
	if _, err := run(ctx, "", epoch, "mkfs.fat", "-C", "--invariant", "-i", "5b0c0a11", "-n", "SBBOOT", out, fmt.Sprint(bootSize*sector/1024)); err != nil {
		return err
	}
	if _, err := run(ctx, "", epoch, "mmd", "-i", out, "::/grub"); err != nil {
		return err
	}
	for _, name := range []string{"grub.cfg", "switchback.cfg", "grubenv"} {
		if _, err := run(ctx, "", epoch, "mcopy", "-i", out, filepath.Join(dir, name), "::/grub/"+name); err != nil {
			return err
		}
	}
	return nil
}

// coreImage builds GRUB's i386-pc core image with every module it needs and
// an early configuration that points it at the boot partition.
func (b *builder) coreImage(ctx context.Context, out string) error {
	early := out + ".early.cfg"
	if err := os.WriteFile(early, []byte("set root=(hd0,msdos1)\nset prefix=(hd0,msdos1)/grub\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(early)
	args := append([]string{"-O", "i386-pc", "-o", out, "-p", "(hd0,msdos1)/grub", "-c", early}, grubModules...)
	if _, err := run(ctx, "", nil, "grub-mkimage", args...); err != nil {
		return err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	if fi.Size() > (bootStart-1)*sector {
		return fmt.Errorf("GRUB core image is %d bytes, more than the %d before the first partition", fi.Size(), (bootStart-1)*sector)
	}
	return nil
}

// writeAt copies the file src into dst at byte offset off.
func writeAt(dst *os.File, src string, off int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = io.Copy(io.NewOffsetWriter(dst, off), in)
	return err
}

// diskSpec says what goes on a disk.
type diskSpec struct {
	SlotA string // ext4 image for slot A (required)
	SlotB string // ext4 image for slot B, or "" for an empty slot
	Env   []byte // grubenv, 1024 bytes; nil for factoryEnv
}

// disk assembles a raw disk image at out: MBR with GRUB's boot code,
// core.img in the gap, the boot partition, the two root slots and a fresh
// data partition.
func (b *builder) disk(ctx context.Context, d diskSpec, out string) error {
	env := d.Env
	if env == nil {
		var err error
		if env, err = factoryEnv(); err != nil {
			return err
		}
	}
	if len(env) != 1024 {
		return fmt.Errorf("grubenv is %d bytes, want 1024", len(env))
	}
	slots := map[int64]string{slotAStart: d.SlotA}
	if d.SlotB != "" {
		slots[slotBStart] = d.SlotB
	}
	return assembleDisk(ctx, out, slots, func(f *os.File, work string) (string, error) {
		if err := b.writeGRUBBoot(ctx, f, work); err != nil {
			return "", err
		}
		bootFS := filepath.Join(work, "boot.fat")
		return bootFS, b.bootImage(ctx, env, bootFS)
	})
}

// writeGRUBBoot writes GRUB's boot code into the MBR of the disk f and
// core.img (built in work) into the gap before the first partition.
func (b *builder) writeGRUBBoot(ctx context.Context, f *os.File, work string) error {
	bootImg, err := os.ReadFile("/usr/lib/grub/i386-pc/boot.img")
	if err != nil {
		return err
	}
	if len(bootImg) != sector {
		return fmt.Errorf("boot.img is %d bytes, want %d", len(bootImg), sector)
	}
	// Only the boot code: the partition table sfdisk wrote stays.
	if _, err := f.WriteAt(bootImg[:440], 0); err != nil {
		return err
	}
	core := filepath.Join(work, "core.img")
	if err := b.coreImage(ctx, core); err != nil {
		return err
	}
	return writeAt(f, core, sector)
}

// assembleDisk writes the raw disk at out (newPartitionedDisk): boot
// builds the boot partition's image in the scratch directory work and
// returns its path (it may also write outside the partitions, as GRUB's
// boot code); then the boot partition, a fresh data partition and the
// root slot images of slots, by start sector, are written in place.
func assembleDisk(ctx context.Context, out string, slots map[int64]string, boot func(f *os.File, work string) (string, error)) error {
	work, err := os.MkdirTemp(filepath.Dir(out), "disk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	f, err := newPartitionedDisk(ctx, out)
	if err != nil {
		return err
	}
	defer f.Close()
	bootFS, err := boot(f, work)
	if err != nil {
		return err
	}
	dataFS := filepath.Join(work, "data.ext4")
	if err := mkext4(ctx, "", dataFS, dataSize*sector, "data", uuidFor("data"), true); err != nil {
		return err
	}
	parts := map[int64]string{bootStart: bootFS, dataStart: dataFS}
	maps.Copy(parts, slots)
	for start, src := range parts {
		if err := writeAt(f, src, start*sector); err != nil {
			return err
		}
	}
	return f.Close()
}

// newPartitionedDisk creates the raw disk file out, diskSectors long,
// with the MBR partition table of the layout above (p1 bootable), and
// returns it open for writing.
func newPartitionedDisk(ctx context.Context, out string) (*os.File, error) {
	os.Remove(out)
	f, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(diskSectors * sector); err != nil {
		f.Close()
		return nil, err
	}
	layout := fmt.Sprintf("label: dos\nlabel-id: %s\nunit: sectors\n\n"+
		"start=%d, size=%d, type=c, bootable\nstart=%d, size=%d, type=83\nstart=%d, size=%d, type=83\nstart=%d, size=%d, type=83\n",
		diskLabelID, bootStart, bootSize, slotAStart, slotSize, slotBStart, slotSize, dataStart, dataSize)
	cmd := exec.CommandContext(ctx, "sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", out)
	cmd.Stdin = strings.NewReader(layout)
	if msg, err := cmd.CombinedOutput(); err != nil {
		f.Close()
		return nil, fmt.Errorf("sfdisk: %w: %s", err, msg)
	}
	return f, nil
}

// toQcow2 converts a raw disk into a (pristine) qcow2 image.
func toQcow2(ctx context.Context, raw, out string) error {
	os.Remove(out)
	_, err := run(ctx, "", nil, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out)
	return err
}

// overlay makes a throwaway copy-on-write overlay of a pristine qcow2
// image: a run writes only to the overlay.
func overlay(ctx context.Context, base, out string) error {
	os.Remove(out)
	abs, err := filepath.Abs(base)
	if err != nil {
		return err
	}
	_, err = run(ctx, "", nil, "qemu-img", "create", "-q", "-f", "qcow2", "-b", abs, "-F", "qcow2", out)
	return err
}

// bootFATSpec is how mtools addresses the boot partition inside a raw disk.
func bootFATSpec(raw string) string { return fmt.Sprintf("%s@@%d", raw, bootStart*sector) }

// readDiskEnv reads grubenv from the boot partition of a raw disk.
func readDiskEnv(ctx context.Context, raw string) (map[string]string, error) {
	out, err := run(ctx, "", nil, "mtype", "-i", bootFATSpec(raw), "::/grub/grubenv")
	if err != nil {
		return nil, err
	}
	return parseGrubenv(out)
}

// writeDiskEnv replaces grubenv on the boot partition of a raw disk.
func writeDiskEnv(ctx context.Context, raw string, env []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(raw), "grubenv-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(env); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	_, err = run(ctx, "", []string{fmt.Sprintf("SOURCE_DATE_EPOCH=%d", sourceEpoch)}, "mcopy", "-o", "-i", bootFATSpec(raw), tmp.Name(), "::/grub/grubenv")
	return err
}

// writeDiskSlot writes a slot image into a raw disk's partition for slot
// "a" or "b".
func writeDiskSlot(raw, slot, image string) error {
	off := int64(slotAStart)
	if slot == "b" {
		off = slotBStart
	}
	f, err := os.OpenFile(raw, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := writeAt(f, image, off*sector); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// parseGrubenv decodes a GRUB environment block: a header line, name=value
// lines, '#' padding. Escapes (backslash before a backslash or newline) are
// undone.
func parseGrubenv(data []byte) (map[string]string, error) {
	const header = "# GRUB Environment Block\n"
	if !bytes.HasPrefix(data, []byte(header)) {
		return nil, fmt.Errorf("grubenv: missing %q header", strings.TrimSpace(header))
	}
	vars := map[string]string{}
	s := string(data[len(header):])
	for len(s) > 0 {
		if s[0] == '#' {
			// Padding (or a comment) runs to the end of the line.
			i := strings.IndexByte(s, '\n')
			if i < 0 {
				break
			}
			s = s[i+1:]
			continue
		}
		var line strings.Builder
		i := 0
		for ; i < len(s) && s[i] != '\n'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			line.WriteByte(s[i])
		}
		if i == len(s) {
			return nil, fmt.Errorf("grubenv: unterminated line %q", line.String())
		}
		s = s[i+1:]
		k, v, ok := strings.Cut(line.String(), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("grubenv: line %q is not name=value", line.String())
		}
		vars[k] = v
	}
	return vars, nil
}
