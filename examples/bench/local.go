package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// The local-file case (a USB stick): one image published raw and
// zstd-compressed in a repository read through file:// URLs, installed with
// updater.InstallFile into a file slot, against dd conv=fsync of the same
// image and zstd -dc | dd conv=fsync of the same compressed file, into a new
// file in the same directory as the slot.

// zstdVersion is the version of the compressed release of the local image.
const zstdVersion = "1.1.1"

// localRepo is the published image and its two target files.
type localRepo struct {
	dir, root   string
	raw, zst    string // target files, with their published names
	rawT, zstdT repository.Target
	size        int64
}

// newLocalRepo publishes a compressible image of size bytes, raw and
// compressed, in a repository under dir.
func newLocalRepo(ctx context.Context, dir string, size int64) (*localRepo, error) {
	r, err := repository.Init(ctx, repository.Config{Dir: filepath.Join(dir, "stick")},
		repository.InitOptions{KeysDir: filepath.Join(dir, "keys")})
	if err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	// The same image as two releases: one version is published once.
	custom := verify.Custom{Component: "app", Version: version, Hardware: []string{hardware}}
	raw, err := r.AddTarget(ctx, "app/image-"+version+".img", fsLike(size), custom, repository.AddOptions{})
	if err != nil {
		return nil, fmt.Errorf("add raw target: %w", err)
	}
	custom.Version = zstdVersion
	zst, err := r.AddTarget(ctx, "app/image-"+zstdVersion+".img.zst", fsLike(size), custom, repository.AddOptions{Zstd: true})
	if err != nil {
		return nil, fmt.Errorf("add zstd target: %w", err)
	}
	if err := r.Publish(ctx); err != nil {
		return nil, err
	}
	return &localRepo{dir: r.Dir(), root: filepath.Join(r.MetadataDir(), "1.root.json"),
		raw: filepath.Join(r.TargetsDir(), raw.File), zst: filepath.Join(r.TargetsDir(), zst.File),
		rawT: raw, zstdT: zst, size: size}, nil
}

// fsLike returns size bytes that compress about as a root file system
// does: 4 KiB blocks, some empty, some random (binaries, compressed
// files), some text.
func fsLike(size int64) io.Reader {
	return &fsReader{left: size, rng: rand.New(rand.NewPCG(1, uint64(size)))}
}

type fsReader struct {
	left  int64
	rng   *rand.Rand
	block []byte
}

var words = []string{"config", "usr", "lib", "the", "device", "update", "error", "return", "0x00", "static", "func", "\n", "  ", "value", "struct", "=", ";", "#include"}

func (f *fsReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && f.left > 0 {
		if len(f.block) == 0 {
			f.block = f.next()
		}
		k := copy(p[n:], f.block[:min(int64(len(f.block)), f.left)])
		f.block, f.left, n = f.block[k:], f.left-int64(k), n+k
	}
	if n == 0 && f.left == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// next makes a 4 KiB block: 35 % zeros, 30 % random, 35 % text.
func (f *fsReader) next() []byte {
	b := make([]byte, 4096)
	switch r := f.rng.IntN(100); {
	case r < 35:
	case r < 65:
		for i := range b {
			b[i] = byte(f.rng.Uint32())
		}
	default:
		t := b[:0]
		for len(t) < len(b) {
			t = append(t, words[f.rng.IntN(len(words))]...)
		}
		copy(b, t)
	}
	return b
}

// localFigures measures the local-file installs against dd, interleaved,
// and prints medians, ranges and ratios.
func localFigures(ctx context.Context, out io.Writer, work string, sizeMiB int64, runs int, profile string) error {
	lr, err := newLocalRepo(ctx, filepath.Join(work, "local"), sizeMiB<<20)
	if err != nil {
		return err
	}
	defer os.RemoveAll(lr.dir)
	lrs := localRuns{haveZstd: tool("zstd")}
	rb, raucErr := newRAUC(work, lr.raw)
	if rb != nil {
		defer rb.close()
	}
	for i := 0; i < runs; i++ {
		prof := ""
		if profile != "" && i == runs-1 {
			prof = profile + ".local-"
		}
		if err := lrs.measure(lr, work, rb, prof); err != nil {
			return err
		}
	}
	lrs.print(out, lr, rb != nil, raucErr)
	return nil
}

// localRuns holds the seconds of each run of the local-file figures.
type localRuns struct {
	haveZstd                bool
	dd, zdd, raw, zst, rauc []float64
	hwm                     []int64
}

// measure runs dd, zstd -dc | dd, RAUC (when rb is set) and the two
// InstallFile installs once each; profile, if set, prefixes the installs'
// CPU profiles.
func (l *localRuns) measure(lr *localRepo, work string, rb *raucBench, profile string) error {
	slotDir := filepath.Join(work, "device", "app")
	if err := os.MkdirAll(slotDir, 0o755); err != nil {
		return err
	}
	s, err := timeShell(fmt.Sprintf("dd if=%s of=%s bs=1M conv=fsync status=none", lr.raw, filepath.Join(slotDir, "dd.img")))
	if err != nil {
		return fmt.Errorf("dd: %w", err)
	}
	l.dd = append(l.dd, s)
	if l.haveZstd {
		s, err := timeShell(fmt.Sprintf("zstd -dc %s | dd of=%s bs=1M conv=fsync status=none", lr.zst, filepath.Join(slotDir, "dd.img")))
		if err != nil {
			return fmt.Errorf("zstd | dd: %w", err)
		}
		l.zdd = append(l.zdd, s)
	}
	os.RemoveAll(filepath.Join(work, "device"))
	if rb != nil {
		s, err := rb.run()
		if err != nil {
			return err
		}
		l.rauc = append(l.rauc, s)
	}
	for _, c := range []struct {
		file string
		xs   *[]float64
		name string
	}{{lr.raw, &l.raw, "raw"}, {lr.zst, &l.zst, "zstd"}} {
		dev, prof := filepath.Join(work, "device"), ""
		if profile != "" {
			prof = profile + c.name
		}
		r, err := runRole("installfile", map[string]string{"BENCH_DEVICE": dev, "BENCH_ROOT": lr.root, "BENCH_STICK": lr.dir, "BENCH_FILE": c.file, "BENCH_CPUPROFILE": prof})
		os.RemoveAll(dev)
		if err != nil {
			return fmt.Errorf("install -file %s: %w", c.name, err)
		}
		*c.xs = append(*c.xs, r.Seconds)
		l.hwm = append(l.hwm, r.HWMKiB)
	}
	return nil
}

// print prints the local-file figures; raucErr says why RAUC was
// skipped when haveRAUC is false.
func (l *localRuns) print(out io.Writer, lr *localRepo, haveRAUC bool, raucErr error) {
	img := human(lr.size)
	fmt.Fprintf(out, "local file, %s fs-like image (zstd target %s), into a new file with fsync:\n", img, human(lr.zstdT.Length))
	fmt.Fprintf(out, "  dd conv=fsync: %s\n", spread(l.dd))
	fmt.Fprintf(out, "  updater.InstallFile raw: %s; ratio to dd %.2f (goal ≤ 2.0)\n", spread(l.raw), median(l.raw)/median(l.dd))
	if l.haveZstd {
		fmt.Fprintf(out, "  zstd -dc | dd conv=fsync: %s\n", spread(l.zdd))
		fmt.Fprintf(out, "  updater.InstallFile zstd: %s; ratio to zstd -dc | dd %.2f (goal ≤ 1.2)\n", spread(l.zst), median(l.zst)/median(l.zdd))
	} else {
		fmt.Fprintf(out, "  updater.InstallFile zstd: %s; zstd -dc | dd skipped: no zstd command\n", spread(l.zst))
	}
	if haveRAUC {
		fmt.Fprintf(out, "  RAUC plain bundle (uncompressed squashfs, bootloader=noop), rauc install: %s; InstallFile raw/RAUC %.2f, zstd/RAUC %.2f\n",
			spread(l.rauc), median(l.raw)/median(l.rauc), median(l.zst)/median(l.rauc))
	} else {
		fmt.Fprintf(out, "  RAUC: skipped: %v\n", raucErr)
	}
	fmt.Fprintf(out, "  peak RSS (VmHWM) of InstallFile, %s image: %.1f MiB (goal ≤ 48 MiB)\n", img, float64(medianInt(l.hwm))/1024)
}

// timeShell runs a shell pipeline and returns its wall time in seconds.
func timeShell(script string) (float64, error) {
	cmd := exec.Command("sh", "-c", "set -e; "+script)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childAttr()
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, err
	}
	return time.Since(start).Seconds(), nil
}

func tool(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// installFile is one device installing a file from a stick holding the
// repository. It prints a report on stdout.
func installFile(device, stick, rootFile, file, profile string) error {
	ctx := context.Background()
	if profile != "" {
		stop, err := startProfile(profile)
		if err != nil {
			return err
		}
		defer stop()
	}
	root, err := os.ReadFile(rootFile)
	if err != nil {
		return err
	}
	slot, err := factorySlot(device, "1.0.0")
	if err != nil {
		return err
	}
	start := time.Now()
	u, err := updater.New(updater.Config{
		Hardware:    hardware,
		StateDir:    filepath.Join(device, "state"),
		TrustedRoot: root,
		MetadataURL: "file://" + filepath.Join(stick, "metadata") + "/",
		TargetsURL:  "file://" + filepath.Join(stick, "targets") + "/",
		Components: []updater.Component{{
			Name: "app", Slots: slot.Slots(), Boot: slot, FactoryVersion: "1.0.0",
		}},
		SkipServerCheck: true,
		Restart:         func(context.Context, string) error { return nil },
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	if err := u.InstallFile(ctx, file); err != nil {
		return fmt.Errorf("install file: %w", err)
	}
	return json.NewEncoder(os.Stdout).Encode(report{Seconds: time.Since(start).Seconds(), HWMKiB: vmHWM()})
}

// factorySlot makes the file slot of a device that runs version factory.
func factorySlot(device, factory string) (*slots.File, error) {
	appPath := filepath.Join(device, "app", "image")
	if _, err := os.Stat(appPath); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(appPath), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(appPath, []byte("factory image "+factory+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	return slots.NewFile(appPath)
}

// startProfile writes a CPU profile to path until the returned func runs.
func startProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
