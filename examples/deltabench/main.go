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
//   - switchback adaptive deltas in each chunking delta.ChooseChunking
//     tries (fixed 4 KiB blocks, CDC with averages of 4 and 16 KiB), from
//     a chunk pack (bytes asked for and read) and, with -sources, a chunk
//     store and byte ranges of the raw image (index bytes included,
//     zstd-compressed); and the publisher's chunking: the one
//     delta.ChooseChunking picks from the base;
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
//	go run ./examples/deltabench [-pairs ext4,squashfs,ext4-adds,exec] [-methods adaptive,static,peers] [-sources store,range]
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
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
	var ex execPair
	flag.StringVar(&ex.revs, "exec-revs", "98008e7,53af689", "the two commits of this repository the exec pair builds -exec-pkg at")
	flag.StringVar(&ex.pkg, "exec-pkg", "./cmd/switchback", "the program of this repository the exec pair builds (use another -work for another program)")
	skipPeers := flag.Bool("skip-peers", false, "measure switchback only (as -methods adaptive,static)")
	ms := flag.String("methods", "adaptive,static,peers", "what to measure: adaptive (switchback adaptive deltas), static (switchback static patches), peers")
	sources := flag.String("sources", "store,range", "adaptive delta sources measured beside the chunk pack: store, range (empty: none)")
	all := flag.Bool("all-chunkings", true, "measure every chunking delta.ChooseChunking tries, not only the one it picks")
	flag.Parse()
	m := methods{sources: strings.FieldsFunc(*sources, func(r rune) bool { return r == ',' }), allChunkings: *all}
	for _, name := range strings.Split(*ms, ",") {
		switch name {
		case "adaptive":
			m.adaptive = true
		case "static":
			m.static = true
		case "peers":
			m.peers = !*skipPeers
		default:
			fmt.Fprintf(os.Stderr, "deltabench: -methods: unknown %q\n", name)
			os.Exit(2)
		}
	}
	if err := run(*cache, *work, strings.Split(*pairs, ","), ex, m); err != nil {
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

// methods say what to measure.
type methods struct {
	adaptive, static, peers bool
	sources                 []string // of adaptive deltas, beside the chunk pack
	allChunkings            bool     // measure every candidate chunking
}

func run(cache, work string, pairs []string, ex execPair, m methods) error {
	for _, s := range m.sources {
		if !slices.Contains([]string{"store", "range"}, s) {
			return fmt.Errorf("-sources: unknown %q (store, range)", s)
		}
	}
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
		base, cur, err := pairFiles(kind, cache, work, ex)
		if err != nil {
			return err
		}
		fmt.Printf("== %s pair: %s (%d bytes) -> %s (%d bytes)\n", kind, base, size(base), cur, size(cur))
		rs, err := measureOurs(kind, work, base, cur, m)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
		if m.peers {
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
