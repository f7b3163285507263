// Command deltabench measures switchback's delta paths against their
// peers on pairs of images it makes itself.
//
// It builds (once; cached) a Debian bookworm minbase root file system
// with debootstrap, and "the next release" of it: security and point
// upgrades applied, two small packages installed (nano, less), a few files
// changed. Each is made into a 512 MiB ext4 image (mkfs.ext4 -d) and a
// squashfs image (mksquashfs): pairs ext4 and squashfs. Pair ext4-adds is
// that next release and the same with the files of 31 more Debian packages
// (apt-get download, dpkg-deb -x: python3.11, curl, iproute2, vim-tiny…)
// as ext4 images; pair exec is cmd/switchback of this repository built at
// two commits (-exec-revs; git archive, go build -trimpath). For each pair
// it then prints bytes transferred, requests, time and apply-side peak RSS
// for:
//
//   - switchback adaptive deltas: fixed 4 KiB blocks and CDC (avg 4 KiB),
//     each from a chunk store, a chunk pack (bytes asked for and read) and
//     byte ranges of the raw image (index bytes included, zstd-compressed);
//   - the switchback static patch (delta.Diff / delta.ApplyPatch, with a
//     checkpoint after every frame as the updater makes);
//   - what the updater would fetch (its choice by expected bytes);
//   - casync (avg 16 KiB and 64 KiB; caibx included), missing 4 KiB
//     blocks compressed together with zstd -19, xdelta3 -9, bsdiff
//     (images up to 128 MiB), zstd -19 --long=31 --patch-from, and the
//     full image with zstd -19.
//
// It needs root (debootstrap, chroot) and the Debian packages debootstrap,
// e2fsprogs, squashfs-tools, casync, xdelta3, bsdiff and zstd (and git and
// go for the exec pair); it says which are missing and skips what it
// cannot run. The root file systems and downloads are cached under -cache
// (default /var/cache/switchback-deltabench) and the images and artefacts
// under -work (default /tmp/deltabench): a rerun only measures.
//
//	go run ./examples/deltabench [-pairs ext4,squashfs,ext4-adds,exec] [-skip-peers]
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/switchback-ota/switchback/delta"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "-rss" {
		// Trampoline for external tools: a child's ru_maxrss counts the
		// memory of the process it was forked from, so fork tools from
		// this small process, not from the benchmark holding images.
		cmd := exec.Command("sh", "-ec", os.Args[2])
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "deltabench:", err)
			os.Exit(1)
		}
		fmt.Println(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "-device" {
		if err := device(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "deltabench device:", err)
			os.Exit(1)
		}
		return
	}
	cache := flag.String("cache", "/var/cache/switchback-deltabench", "where the root file systems are cached")
	work := flag.String("work", "/tmp/deltabench", "where images and artefacts go (about 3 GiB)")
	pairs := flag.String("pairs", "ext4,squashfs,ext4-adds,exec", "pairs to measure: ext4, squashfs, ext4-adds, exec")
	execRevs := flag.String("exec-revs", "98008e7,53af689", "the two commits of this repository the exec pair builds cmd/switchback at")
	skipPeers := flag.Bool("skip-peers", false, "measure switchback only")
	flag.Parse()
	if err := run(*cache, *work, strings.Split(*pairs, ","), *execRevs, *skipPeers); err != nil {
		fmt.Fprintln(os.Stderr, "deltabench:", err)
		os.Exit(1)
	}
}

// row is one line of the result table.
type row struct {
	pair, method    string
	bytes, requests int64
	produce, apply  time.Duration
	rssKiB          int64
	note            string
}

var tools = map[string]string{
	"debootstrap": "debootstrap", "mkfs.ext4": "e2fsprogs", "mksquashfs": "squashfs-tools",
	"casync": "casync", "xdelta3": "xdelta3", "bsdiff": "bsdiff", "bspatch": "bsdiff", "zstd": "zstd",
}

func have(tool string) bool { _, err := exec.LookPath(tool); return err == nil }

func run(cache, work string, pairs []string, execRevs string, skipPeers bool) error {
	var missing []string
	for t, pkg := range tools {
		if !have(t) {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", t, pkg))
		}
	}
	if len(missing) > 0 {
		fmt.Printf("missing tools, their figures are skipped: %s\n", strings.Join(missing, ", "))
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	var rows []row
	for _, kind := range pairs {
		base, cur, err := pairFiles(kind, cache, work, execRevs)
		if err != nil {
			return err
		}
		fmt.Printf("== %s pair: %s (%d bytes) -> %s (%d bytes)\n", kind, base, size(base), cur, size(cur))
		rs, err := measureOurs(kind, work, base, cur)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
		if !skipPeers {
			rows = append(rows, measurePeers(kind, work, base, cur)...)
			rows = append(rows, chosen(kind, rows))
		}
	}
	printTable(rows)
	return nil
}

func size(name string) int64 {
	fi, err := os.Stat(name)
	if err != nil {
		return -1
	}
	return fi.Size()
}

func sh(script string) error {
	cmd := exec.Command("sh", "-ec", script)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// buildRootfs makes the two root file systems under cache, once.
func buildRootfs(cache string) error {
	base, cur := filepath.Join(cache, "rootfs-base"), filepath.Join(cache, "rootfs-new")
	if _, err := os.Stat(cur); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("building the root file systems needs root (debootstrap, chroot)")
	}
	if !have("debootstrap") {
		return errors.New("debootstrap is missing: apt-get install debootstrap")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(base); err != nil {
		fmt.Println("debootstrap bookworm minbase (a few minutes)...")
		err := sh(fmt.Sprintf(`rm -rf %[1]s.tmp
debootstrap --variant=minbase bookworm %[1]s.tmp http://deb.debian.org/debian
rm -rf %[1]s.tmp/var/cache/apt/archives/*.deb %[1]s.tmp/var/lib/apt/lists/*
mv %[1]s.tmp %[1]s`, base))
		if err != nil {
			return fmt.Errorf("debootstrap: %w", err)
		}
	}
	fmt.Println("making the next release: upgrades, nano and less, changed files...")
	err := sh(fmt.Sprintf(`R=%[2]s.tmp
rm -rf $R
cp -a %[1]s $R
printf 'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' > $R/etc/apt/sources.list
cp /etc/resolv.conf $R/etc/resolv.conf
mount -t proc proc $R/proc
trap 'umount $R/proc || true' EXIT
chroot $R sh -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get -y -q upgrade && apt-get -y -q install --no-install-recommends nano less && apt-get clean && rm -rf /var/lib/apt/lists/*'
umount $R/proc
trap - EXIT
echo "switchback release 2" > $R/etc/motd
echo "device-2" > $R/etc/hostname
mv $R %[2]s`, base, cur))
	if err != nil {
		return fmt.Errorf("making the new release: %w", err)
	}
	return nil
}

func buildImage(kind, dir, img string) error {
	if _, err := os.Stat(img); err == nil {
		return nil
	}
	var script string
	switch kind {
	case "ext4":
		if !have("mkfs.ext4") {
			return errors.New("mkfs.ext4 is missing: apt-get install e2fsprogs")
		}
		script = fmt.Sprintf("rm -f %[1]s.tmp; truncate -s 512M %[1]s.tmp; mkfs.ext4 -q -F -d %[2]s %[1]s.tmp; mv %[1]s.tmp %[1]s", img, dir)
	case "squashfs":
		if !have("mksquashfs") {
			return errors.New("mksquashfs is missing: apt-get install squashfs-tools")
		}
		script = fmt.Sprintf("mksquashfs %[2]s %[1]s.tmp -noappend -quiet -no-progress >/dev/null; mv %[1]s.tmp %[1]s", img, dir)
	default:
		return fmt.Errorf("unknown pair %q (ext4, squashfs)", kind)
	}
	return sh(script)
}

// measureOurs runs the publisher side here and the device side in a child
// process, for its peak RSS.
func measureOurs(kind, work, base, cur string) ([]row, error) {
	var rows []row
	variants := []struct {
		name string
		o    delta.IndexOptions
	}{
		{"fixed4k", delta.IndexOptions{}},
		{"cdc4k", delta.IndexOptions{Chunking: delta.ChunkCDC}},
	}
	for _, v := range variants {
		t0 := time.Now()
		ni, err := indexFile(cur, v.o)
		if err != nil {
			return nil, err
		}
		bi, err := indexFile(base, ni.Options())
		if err != nil {
			return nil, err
		}
		indexTime := time.Since(t0)
		prefix := filepath.Join(work, kind+"."+v.name)
		nb, _ := ni.MarshalBinary()
		bb, _ := bi.MarshalBinary()
		if err := os.WriteFile(prefix+".index", nb, 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(prefix+".base-index", bb, 0o644); err != nil {
			return nil, err
		}
		indexZ := int64(len(zstdBytes(nb)))
		store := prefix + ".store"
		t0 = time.Now()
		f, err := os.Open(cur)
		if err != nil {
			return nil, err
		}
		st, err := delta.WriteChunkStore(store, ni, f)
		f.Close()
		if err != nil {
			return nil, err
		}
		storeTime := time.Since(t0)
		t0 = time.Now()
		pf, err := os.Create(prefix + ".pack")
		if err != nil {
			return nil, err
		}
		f, err = os.Open(cur)
		if err != nil {
			return nil, err
		}
		tab, pst, err := delta.WritePack(pf, ni, f)
		f.Close()
		if err == nil {
			err = pf.Close()
		}
		if err != nil {
			return nil, err
		}
		tb, _ := tab.MarshalBinary()
		if err := os.WriteFile(prefix+".tab", tb, 0o644); err != nil {
			return nil, err
		}
		packTime := time.Since(t0)
		for _, src := range []string{"store", "pack", "range"} {
			from := store
			if src == "pack" {
				from = prefix
			}
			res, rss, err := runDevice(deviceJob{Mode: "adaptive-" + src, Index: prefix + ".index", BaseIndex: prefix + ".base-index",
				Base: base, New: cur, Store: from, Want: fileSHA(cur)})
			if err != nil {
				return nil, err
			}
			produce := indexTime
			if src == "store" {
				produce += storeTime
			}
			note := fmt.Sprintf("index %d B zst; %d chunks, %d fetched; store %d B", indexZ, len(ni.Chunks()), res.Fetched, st.Bytes)
			if src == "pack" {
				produce += packTime
				// The table is read whole, as asked.
				asked, read := res.Bytes-int64(len(tb)), res.Read
				note = fmt.Sprintf("index %d B zst; %d chunks, %d fetched; pack %d B, table %d B; pack bytes asked %d, read %d (%.3f)",
					indexZ, len(ni.Chunks()), res.Fetched, pst.Bytes, len(tb), asked, read, float64(asked)/float64(max(read, 1)))
			}
			rows = append(rows, row{pair: kind, method: fmt.Sprintf("switchback adaptive %s %s", v.name, src),
				bytes: res.Bytes + indexZ, requests: res.Requests + 1, produce: produce, apply: res.Elapsed, rssKiB: rss,
				note: note})
		}
	}
	// Static patch: the pure-Go encoder, and the zstd program's on the
	// sections (what the repository tool uses when it is installed).
	for _, cli := range []bool{false, true} {
		if cli && !have("zstd") {
			continue
		}
		method, patch := "switchback static patch", filepath.Join(work, kind+".sbpatch")
		if cli {
			method, patch = "switchback static patch, zstd -19 program", filepath.Join(work, kind+".cli.sbpatch")
		}
		t0 := time.Now()
		dres, _, err := runDevice(deviceJob{Mode: "diff", Base: base, New: cur, Patch: patch, ZstdCLI: cli})
		if err != nil {
			return nil, err
		}
		rss := dres.PeakKiB
		produce := time.Since(t0)
		res, arss, err := runDevice(deviceJob{Mode: "patch", Base: base, Patch: patch, Want: fileSHA(cur)})
		if err != nil {
			return nil, err
		}
		rows = append(rows, row{pair: kind, method: method, bytes: size(patch), requests: 1,
			produce: produce, apply: res.Elapsed, rssKiB: arss, note: fmt.Sprintf("diff peak RSS %d MiB; %d frames", rss>>10, res.Frames)})
	}
	return rows, nil
}

func indexFile(name string, o delta.IndexOptions) (*delta.Index, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return delta.BuildIndex(f, o)
}

func zstdBytes(b []byte) []byte {
	e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	defer e.Close()
	return e.EncodeAll(b, nil)
}

func fileSHA(name string) string {
	f, err := os.Open(name)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return fmt.Sprintf("%x", h.Sum(nil))
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// deviceJob is what the child process does.
type deviceJob struct {
	Mode                               string
	Index, BaseIndex, Base, New, Store string
	Patch, Want                        string
	ZstdCLI                            bool // diff: sections by the zstd program too
}

// deviceResult is what it reports on stdout.
type deviceResult struct {
	// Bytes are the bytes asked for; Read those read from the responses
	// (range responses are read to their end unless Apply fails).
	Bytes, Read, Requests int64
	Fetched               int
	Frames                int // of a static patch
	Elapsed               time.Duration
	// PeakKiB is VmHWM of the device process: its peak RSS since exec.
	PeakKiB int64
}

func runDevice(j deviceJob) (deviceResult, int64, error) {
	var res deviceResult
	out, err := runChildOutput(os.Args[0], "-device", mustJSON(j))
	if err != nil {
		return res, 0, fmt.Errorf("%s: %w", j.Mode, err)
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return res, 0, fmt.Errorf("%s: %w", j.Mode, err)
	}
	return res, res.PeakKiB, nil
}

// device runs one device-side (or diff) job in this process.
func device(arg string) error {
	var j deviceJob
	if err := json.Unmarshal([]byte(arg), &j); err != nil {
		return err
	}
	ctx := context.Background()
	if j.Mode == "diff" {
		b, err := os.Open(j.Base)
		if err != nil {
			return err
		}
		defer b.Close()
		fi, _ := b.Stat()
		n, err := os.Open(j.New)
		if err != nil {
			return err
		}
		defer n.Close()
		out, err := os.Create(j.Patch)
		if err != nil {
			return err
		}
		var opts delta.DiffOptions
		if j.ZstdCLI {
			if opts.Compress, err = delta.ZstdCommand(19); err != nil {
				return err
			}
		}
		if err := delta.Diff(b, fi.Size(), n, out, opts); err != nil {
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(deviceResult{PeakKiB: peakKiB()})
	}
	base, err := os.Open(j.Base)
	if err != nil {
		return err
	}
	defer base.Close()
	h := sha256.New()
	var res deviceResult
	t0 := time.Now()
	switch j.Mode {
	case "patch":
		p, err := os.Open(j.Patch)
		if err != nil {
			return err
		}
		defer p.Close()
		// As the updater applies it: a checkpoint after every frame.
		ck := func(c delta.PatchCheckpoint) error {
			res.Frames++
			_, err := c.MarshalBinary()
			return err
		}
		if err := delta.ApplyPatch(base, p, h, delta.PatchOptions{Checkpoint: ck}); err != nil {
			return err
		}
	case "adaptive-store", "adaptive-range", "adaptive-pack":
		// The target index is downloaded (counted by the caller); the
		// base index was persisted when the slot was written.
		nb, err := os.ReadFile(j.Index)
		if err != nil {
			return err
		}
		ni, err := delta.ParseIndex(nb)
		if err != nil {
			return err
		}
		bb, err := os.ReadFile(j.BaseIndex)
		if err != nil {
			return err
		}
		bi, err := delta.ParseIndex(bb)
		if err != nil {
			return err
		}
		plan, err := delta.NewPlan(ni, []delta.Base{{Index: bi}}, delta.PlanOptions{})
		if err != nil {
			return err
		}
		res.Fetched = plan.Stats().Fetched
		var nbytes, nread, nreq atomic.Int64
		var src delta.Source
		var out io.Writer = h
		if j.Mode == "adaptive-store" {
			src.Store = func(ctx context.Context, name string) (io.ReadCloser, error) {
				f, err := os.Open(filepath.Join(j.Store, name))
				if err != nil {
					return nil, err
				}
				fi, _ := f.Stat()
				nreq.Add(1)
				nbytes.Add(fi.Size())
				return f, nil
			}
		} else if j.Mode == "adaptive-pack" {
			// The table is fetched whole (one request), then byte ranges
			// of the pack.
			tb, err := os.ReadFile(j.Store + ".tab")
			if err != nil {
				return err
			}
			nreq.Add(1)
			nbytes.Add(int64(len(tb)))
			tab, err := delta.ParsePackTable(tb)
			if err != nil {
				return err
			}
			pack, err := os.Open(j.Store + ".pack")
			if err != nil {
				return err
			}
			defer pack.Close()
			src.Pack = &delta.PackSource{Table: tab, Range: func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
				nreq.Add(1)
				nbytes.Add(n)
				return io.NopCloser(countingReader{io.NewSectionReader(pack, off, n), &nread}), nil
			}}
			// As the updater does: repeated chunks are read back from
			// the slot being written.
			slot, err := os.Create(j.Store + ".slot")
			if err != nil {
				return err
			}
			defer os.Remove(slot.Name())
			defer slot.Close()
			src.Written, out = slot, io.MultiWriter(h, slot)
		} else {
			img, err := os.Open(j.New)
			if err != nil {
				return err
			}
			defer img.Close()
			src.Range = func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
				nreq.Add(1)
				nbytes.Add(n)
				return io.NopCloser(io.NewSectionReader(img, off, n)), nil
			}
		}
		if err := delta.Apply(ctx, plan, []io.ReaderAt{base}, src, out); err != nil {
			return err
		}
		res.Bytes, res.Read, res.Requests = nbytes.Load(), nread.Load(), nreq.Load()
	default:
		return fmt.Errorf("unknown mode %q", j.Mode)
	}
	res.Elapsed = time.Since(t0)
	res.PeakKiB = peakKiB()
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != j.Want {
		return fmt.Errorf("output sha256 %s, want %s", got, j.Want)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// chosen returns the row of what the updater would fetch for the pair
// (updater transferBest): the static patch when it costs less than the
// full image, else the adaptive delta when it does, else the full image;
// "full" is the smallest full image row (zstd -19).
func chosen(kind string, rows []row) row {
	var patch, adaptive, full int64 = -1, -1, -1
	for _, r := range rows {
		switch {
		case r.pair != kind || r.bytes < 0:
		case strings.HasPrefix(r.method, "switchback static patch"):
			if patch < 0 || r.bytes < patch {
				patch = r.bytes
			}
		case strings.HasPrefix(r.method, "switchback adaptive") && strings.HasSuffix(r.method, " pack"):
			if adaptive < 0 || r.bytes < adaptive {
				adaptive = r.bytes
			}
		case r.method == "full image zstd -19":
			full = r.bytes
		}
	}
	c := row{pair: kind, method: "switchback, as the updater chooses", bytes: full, requests: 1, note: "full image"}
	switch {
	case full < 0:
		c.bytes, c.note = -1, "no full image row"
	case patch >= 0 && patch < full:
		c.bytes, c.note = patch, "static patch"
	case adaptive >= 0 && adaptive < full:
		c.bytes, c.note = adaptive, "adaptive, chunk pack"
	}
	if c.bytes >= 0 {
		c.note += fmt.Sprintf("; %.3f x the full image (%d B)", float64(c.bytes)/float64(full), full)
	}
	return c
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// peakKiB returns this process's peak RSS since exec (VmHWM).
func peakKiB() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var n int64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &n)
			return n
		}
	}
	return 0
}

func runChildOutput(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out.Bytes(), nil
}

// timed runs a shell script through the -rss trampoline and returns its
// time and peak RSS in KiB (that of the largest process of the script).
func timed(script string) (time.Duration, int64, error) {
	t0 := time.Now()
	out, err := runChildOutput(os.Args[0], "-rss", script)
	d := time.Since(t0)
	if err != nil {
		return d, 0, err
	}
	var rss int64
	fmt.Sscan(string(out), &rss)
	return d, rss, nil
}

func measurePeers(kind, work, base, cur string) []row {
	var rows []row
	p := func(s string) string { return filepath.Join(work, kind+"."+s) }
	skip := func(method, tool string) {
		rows = append(rows, row{pair: kind, method: method, bytes: -1, note: tool + " missing: skipped"})
	}
	fail := func(method string, err error) {
		rows = append(rows, row{pair: kind, method: method, bytes: -1, note: "failed: " + err.Error()})
	}
	verify := func(out string) error {
		defer os.Remove(out)
		if fileSHA(out) != fileSHA(cur) {
			return errors.New("output differs from the new image")
		}
		return nil
	}
	if have("zstd") {
		d, _, err := timed(fmt.Sprintf("zstd -q -f -19 -T1 %s -o %s", cur, p("full.zst")))
		if err != nil {
			fail("full image zstd -19", err)
		} else {
			a, rss, err := timed(fmt.Sprintf("zstd -q -d -f %s -o %s", p("full.zst"), p("out")))
			if err == nil {
				err = verify(p("out"))
			}
			if err != nil {
				fail("full image zstd -19", err)
			} else {
				rows = append(rows, row{pair: kind, method: "full image zstd -19", bytes: size(p("full.zst")), requests: 1, produce: d, apply: a, rssKiB: rss})
			}
		}
		d, _, err = timed(fmt.Sprintf("zstd -q -f -19 -T1 --long=31 --patch-from=%s %s -o %s", base, cur, p("patch-from.zst")))
		if err != nil {
			fail("zstd -19 --long=31 --patch-from", err)
		} else {
			a, rss, err := timed(fmt.Sprintf("zstd -q -d -f --long=31 --patch-from=%s %s -o %s", base, p("patch-from.zst"), p("out")))
			if err == nil {
				err = verify(p("out"))
			}
			if err != nil {
				fail("zstd -19 --long=31 --patch-from", err)
			} else {
				rows = append(rows, row{pair: kind, method: "zstd -19 --long=31 --patch-from", bytes: size(p("patch-from.zst")), requests: 1, produce: d, apply: a, rssKiB: rss})
			}
		}
		// Missing 4 KiB blocks (not found anywhere in the base, block
		// aligned), concatenated and compressed together.
		if n, err := missingBlocks(base, cur, p("missing4k")); err != nil {
			fail("missing 4 KiB blocks, zstd -19", err)
		} else {
			d, _, err := timed(fmt.Sprintf("zstd -q -f -19 -T1 %s -o %s", p("missing4k"), p("missing4k.zst")))
			if err != nil {
				fail("missing 4 KiB blocks, zstd -19", err)
			} else {
				rows = append(rows, row{pair: kind, method: "missing 4 KiB blocks, zstd -19", bytes: size(p("missing4k.zst")), requests: 1, produce: d,
					note: fmt.Sprintf("%d blocks; a per-pair blob, no apply tool", n)})
			}
		}
	} else {
		skip("zstd peers", "zstd")
	}
	if have("xdelta3") {
		d, _, err := timed(fmt.Sprintf("xdelta3 -9 -e -f -s %s %s %s", base, cur, p("xdelta3")))
		if err == nil {
			var a time.Duration
			var rss int64
			a, rss, err = timed(fmt.Sprintf("xdelta3 -d -f -s %s %s %s", base, p("xdelta3"), p("out")))
			if err == nil {
				err = verify(p("out"))
			}
			if err == nil {
				rows = append(rows, row{pair: kind, method: "xdelta3 -9", bytes: size(p("xdelta3")), requests: 1, produce: d, apply: a, rssKiB: rss})
			}
		}
		if err != nil {
			fail("xdelta3 -9", err)
		}
	} else {
		skip("xdelta3 -9", "xdelta3")
	}
	// bsdiff needs about 9x the images in memory and hours for the
	// 512 MiB ext4 pairs (3.4 GiB for a 384 MiB pair): run it where it
	// finishes in 10 minutes.
	if size(cur) > 128<<20 {
		rows = append(rows, row{pair: kind, method: "bsdiff", bytes: -1, note: "skipped: images over 128 MiB (bsdiff would not finish in 10 minutes)"})
	} else {
		if have("bsdiff") && have("bspatch") {
			d, _, err := timed(fmt.Sprintf("timeout 600 bsdiff %s %s %s", base, cur, p("bsdiff")))
			if err == nil {
				var a time.Duration
				var rss int64
				a, rss, err = timed(fmt.Sprintf("bspatch %s %s %s", base, p("out"), p("bsdiff")))
				if err == nil {
					err = verify(p("out"))
				}
				if err == nil {
					rows = append(rows, row{pair: kind, method: "bsdiff", bytes: size(p("bsdiff")), requests: 1, produce: d, apply: a, rssKiB: rss})
				}
			}
			if err != nil {
				fail("bsdiff", err)
			}
		} else {
			skip("bsdiff", "bsdiff")
		}
	}
	if have("casync") {
		for _, avg := range []string{"16K", "64K"} {
			method := "casync avg " + avg
			r, err := casync(kind, work, base, cur, avg)
			if err == nil {
				err = verify(p("out"))
			}
			if err != nil {
				fail(method, err)
				continue
			}
			r.method = method
			rows = append(rows, r)
		}
	} else {
		skip("casync", "casync")
	}
	return rows
}

// casync makes stores for both images; the device downloads the caibx
// and the new image's chunks the base does not hold.
func casync(kind, work, base, cur, avg string) (row, error) {
	p := func(s string) string { return filepath.Join(work, kind+".casync"+avg+"."+s) }
	os.RemoveAll(p("store"))
	os.RemoveAll(p("basestore"))
	d, _, err := timed(fmt.Sprintf("casync make --chunk-size=%s --store=%s %s %s", avg, p("store"), p("caibx"), cur))
	if err != nil {
		return row{}, err
	}
	if _, _, err := timed(fmt.Sprintf("casync make --chunk-size=%s --store=%s %s %s", avg, p("basestore"), p("base.caibx"), base)); err != nil {
		return row{}, err
	}
	have := map[string]bool{}
	filepath.WalkDir(p("basestore"), func(path string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			have[e.Name()] = true
		}
		return nil
	})
	var bytes, reqs int64
	filepath.WalkDir(p("store"), func(path string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && !have[e.Name()] {
			if fi, err := e.Info(); err == nil {
				bytes += fi.Size()
				reqs++
			}
		}
		return nil
	})
	// Extract from the new store with the base as seed: the peak RSS of
	// the device side.
	out := filepath.Join(work, kind+".out")
	a, rss, err := timed(fmt.Sprintf("casync extract --seed=%s --store=%s %s %s", base, p("store"), p("caibx"), out))
	if err != nil {
		return row{}, err
	}
	return row{pair: kind, bytes: bytes + size(p("caibx")), requests: reqs + 1, produce: d, apply: a, rssKiB: rss,
		note: fmt.Sprintf("caibx %d B", size(p("caibx")))}, nil
}

// missingBlocks writes the 4 KiB blocks of cur found nowhere block aligned
// in base to out, and returns how many there are.
func missingBlocks(base, cur, out string) (int, error) {
	set := map[[32]byte]bool{}
	b, err := os.ReadFile(base)
	if err != nil {
		return 0, err
	}
	for i := 0; i < len(b); i += 4096 {
		set[sha256.Sum256(b[i:min(i+4096, len(b))])] = true
	}
	c, err := os.ReadFile(cur)
	if err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	n := 0
	for i := 0; i < len(c); i += 4096 {
		blk := c[i:min(i+4096, len(c))]
		if !set[sha256.Sum256(blk)] {
			buf.Write(blk)
			n++
		}
	}
	return n, os.WriteFile(out, buf.Bytes(), 0o644)
}

func printTable(rows []row) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "pair\tmethod\tbytes\trequests\tproduce\tapply\tapply peak RSS\t\tnote")
	for _, r := range rows {
		b, req, rss := fmt.Sprint(r.bytes), fmt.Sprint(r.requests), fmt.Sprintf("%d MiB", r.rssKiB>>10)
		if r.bytes < 0 {
			b, req, rss = "-", "-", "-"
		}
		if r.rssKiB == 0 {
			rss = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\t%s\n", r.pair, r.method, b, req,
			r.produce.Round(100*time.Millisecond), r.apply.Round(100*time.Millisecond), rss, r.note)
	}
	tw.Flush()
}
