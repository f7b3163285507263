package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

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

// peers measures the peer tools on one pair; every output is compared
// with the new image.
type peers struct {
	kind, work, base, cur string
	rows                  []row
}

// path returns the path of one of the pair's artefacts.
func (p *peers) path(s string) string { return filepath.Join(p.work, p.kind+"."+s) }

func (p *peers) skip(method, tool string) {
	p.rows = append(p.rows, row{pair: p.kind, method: method, bytes: -1, note: tool + " missing: skipped"})
}

func (p *peers) fail(method string, err error) {
	p.rows = append(p.rows, row{pair: p.kind, method: method, bytes: -1, note: "failed: " + err.Error()})
}

// verify checks that out, then removed, holds the new image.
func (p *peers) verify(out string) error {
	defer os.Remove(out)
	if fileSHA(out) != fileSHA(p.cur) {
		return errors.New("output differs from the new image")
	}
	return nil
}

// run makes artefact with the make script, rebuilds the new image from
// it with the apply script into p.path("out"), checks it, and adds a row
// (or a failure).
func (p *peers) run(method, artefact, make, apply string) {
	d, _, err := timed(make)
	if err != nil {
		p.fail(method, err)
		return
	}
	a, rss, err := timed(apply)
	if err == nil {
		err = p.verify(p.path("out"))
	}
	if err != nil {
		p.fail(method, err)
		return
	}
	p.rows = append(p.rows, row{pair: p.kind, method: method, bytes: size(artefact), requests: 1, produce: d, apply: a, rssKiB: rss})
}

func measurePeers(kind, work, base, cur string) []row {
	p := &peers{kind: kind, work: work, base: base, cur: cur}
	if have("zstd") {
		p.zstd()
	} else {
		p.skip("zstd peers", "zstd")
	}
	if have("xdelta3") {
		p.run("xdelta3 -9", p.path("xdelta3"),
			fmt.Sprintf("xdelta3 -9 -e -f -s %s %s %s", base, cur, p.path("xdelta3")),
			fmt.Sprintf("xdelta3 -d -f -s %s %s %s", base, p.path("xdelta3"), p.path("out")))
	} else {
		p.skip("xdelta3 -9", "xdelta3")
	}
	p.bsdiff()
	if have("casync") {
		for _, avg := range []string{"16K", "64K"} {
			p.casync(avg)
		}
	} else {
		p.skip("casync", "casync")
	}
	return p.rows
}

// zstd measures the full image, zstd --patch-from, and the missing
// 4 KiB blocks compressed together.
func (p *peers) zstd() {
	p.run("full image zstd -19", p.path("full.zst"),
		fmt.Sprintf("zstd -q -f -19 -T1 %s -o %s", p.cur, p.path("full.zst")),
		fmt.Sprintf("zstd -q -d -f %s -o %s", p.path("full.zst"), p.path("out")))
	p.run("zstd -19 --long=31 --patch-from", p.path("patch-from.zst"),
		fmt.Sprintf("zstd -q -f -19 -T1 --long=31 --patch-from=%s %s -o %s", p.base, p.cur, p.path("patch-from.zst")),
		fmt.Sprintf("zstd -q -d -f --long=31 --patch-from=%s %s -o %s", p.base, p.path("patch-from.zst"), p.path("out")))
	// Missing 4 KiB blocks (not found anywhere in the base, block
	// aligned), concatenated and compressed together.
	const method = "missing 4 KiB blocks, zstd -19"
	n, err := missingBlocks(p.base, p.cur, p.path("missing4k"))
	if err != nil {
		p.fail(method, err)
		return
	}
	d, _, err := timed(fmt.Sprintf("zstd -q -f -19 -T1 %s -o %s", p.path("missing4k"), p.path("missing4k.zst")))
	if err != nil {
		p.fail(method, err)
		return
	}
	p.rows = append(p.rows, row{pair: p.kind, method: method, bytes: size(p.path("missing4k.zst")), requests: 1, produce: d,
		note: fmt.Sprintf("%d blocks; a per-pair blob, no apply tool", n)})
}

// bsdiff needs about 9x the images in memory and hours for the 512 MiB
// ext4 pairs (3.4 GiB for a 384 MiB pair): it runs where it finishes in
// 10 minutes.
func (p *peers) bsdiff() {
	switch {
	case size(p.cur) > 128<<20:
		p.rows = append(p.rows, row{pair: p.kind, method: "bsdiff", bytes: -1, note: "skipped: images over 128 MiB (bsdiff would not finish in 10 minutes)"})
	case !have("bsdiff") || !have("bspatch"):
		p.skip("bsdiff", "bsdiff")
	default:
		p.run("bsdiff", p.path("bsdiff"),
			fmt.Sprintf("timeout 600 bsdiff %s %s %s", p.base, p.cur, p.path("bsdiff")),
			fmt.Sprintf("bspatch %s %s %s", p.base, p.path("out"), p.path("bsdiff")))
	}
}

// casync makes stores for both images; the device downloads the caibx
// and the new image's chunks the base does not hold.
func (p *peers) casync(avg string) {
	method := "casync avg " + avg
	c := func(s string) string { return p.path("casync" + avg + "." + s) }
	os.RemoveAll(c("store"))
	os.RemoveAll(c("basestore"))
	d, _, err := timed(fmt.Sprintf("casync make --chunk-size=%s --store=%s %s %s", avg, c("store"), c("caibx"), p.cur))
	if err == nil {
		_, _, err = timed(fmt.Sprintf("casync make --chunk-size=%s --store=%s %s %s", avg, c("basestore"), c("base.caibx"), p.base))
	}
	if err != nil {
		p.fail(method, err)
		return
	}
	bytes, reqs := storeDifference(c("store"), c("basestore"))
	// Extract from the new store with the base as seed: the peak RSS of
	// the device side.
	a, rss, err := timed(fmt.Sprintf("casync extract --seed=%s --store=%s %s %s", p.base, c("store"), c("caibx"), p.path("out")))
	if err == nil {
		err = p.verify(p.path("out"))
	}
	if err != nil {
		p.fail(method, err)
		return
	}
	p.rows = append(p.rows, row{pair: p.kind, method: method, bytes: bytes + size(c("caibx")), requests: reqs + 1, produce: d, apply: a,
		rssKiB: rss, note: fmt.Sprintf("caibx %d B", size(c("caibx")))})
}

// storeDifference returns the bytes and number of the chunk files of
// store that base, another store, lacks.
func storeDifference(store, base string) (bytes, files int64) {
	have := map[string]bool{}
	filepath.WalkDir(base, func(path string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			have[e.Name()] = true
		}
		return nil
	})
	filepath.WalkDir(store, func(path string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && !have[e.Name()] {
			if fi, err := e.Info(); err == nil {
				bytes += fi.Size()
				files++
			}
		}
		return nil
	})
	return bytes, files
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
