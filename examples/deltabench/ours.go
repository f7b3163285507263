package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/switchback-ota/switchback/delta"
)

// choiceMethod names the row of the adaptive delta a publisher makes: the
// chunk pack of the chunking delta.ChooseChunking picked for the pair.
const choiceMethod = "switchback adaptive, publisher's chunking, pack"

// measureOurs runs the publisher side here and the device side in a child
// process, for its peak RSS: adaptive deltas (every chunking
// delta.ChooseChunking tries; the chunk pack, and the sources given) and
// static patches.
func measureOurs(kind, work, base, cur string, m methods) ([]row, error) {
	var rows []row
	if m.adaptive {
		rs, err := measureAdaptive(kind, work, base, cur, m)
		if err != nil {
			return nil, err
		}
		rows = append(rows, rs...)
	}
	if m.static {
		rs, err := measureStatic(kind, work, base, cur)
		if err != nil {
			return nil, err
		}
		rows = append(rows, rs...)
	}
	return rows, nil
}

// chunkName names a chunking in rows: fixed4k, cdc4k, cdc16k.
func chunkName(o delta.IndexOptions) string {
	if o.Chunking == delta.ChunkCDC {
		return fmt.Sprintf("cdc%dk", o.AvgSize>>10)
	}
	return fmt.Sprintf("fixed%dk", o.BlockSize>>10)
}

func adaptiveMethod(chunking, src string) string {
	return fmt.Sprintf("switchback adaptive %s %s", chunking, src)
}

// measureAdaptive lets delta.ChooseChunking price its chunkings from the
// base, measures each of them (or, without m.allChunkings, the chosen
// one), and repeats the chosen one's pack row as the publisher's choice.
func measureAdaptive(kind, work, base, cur string, m methods) ([]row, error) {
	t0 := time.Now()
	best, costs, err := chooseChunking(base, cur)
	if err != nil {
		return nil, err
	}
	chooseTime := time.Since(t0)
	var rows []row
	var est []string
	for _, c := range costs {
		est = append(est, fmt.Sprintf("%s %d", chunkName(c.Options), c.Total()))
		if !m.allChunkings && c.Options != best.Options {
			continue
		}
		rs, err := measureChunking(kind, work, base, cur, c.Options, m.sources)
		if err != nil {
			return nil, err
		}
		rows = append(rows, rs...)
	}
	want := adaptiveMethod(chunkName(best.Options), "pack")
	for _, r := range rows {
		if r.method == want {
			r.method, r.produce = choiceMethod, r.produce+chooseTime
			r.note = fmt.Sprintf("chose %s; estimates %s B; %s", chunkName(best.Options), strings.Join(est, ", "), r.note)
			return append(rows, r), nil
		}
	}
	return nil, fmt.Errorf("no pack row for the chosen chunking %s", chunkName(best.Options))
}

func chooseChunking(base, cur string) (delta.ChunkingCost, []delta.ChunkingCost, error) {
	b, err := os.Open(base)
	if err != nil {
		return delta.ChunkingCost{}, nil, err
	}
	defer b.Close()
	n, err := os.Open(cur)
	if err != nil {
		return delta.ChunkingCost{}, nil, err
	}
	defer n.Close()
	return delta.ChooseChunking(context.Background(), n, size(cur), b, size(base), nil)
}

// published is what the publisher side made for one chunking.
type published struct {
	prefix                       string // of the files: .index, .base-index, .pack, .tab
	index                        *delta.Index
	indexZ, packBytes, storeSize int64
	table                        []byte
	indexTime, storeTime, pack   time.Duration
}

// measureChunking publishes the adaptive delta of one chunking and
// applies it from the chunk pack and from each of sources.
func measureChunking(kind, work, base, cur string, o delta.IndexOptions, sources []string) ([]row, error) {
	p, err := publishChunking(kind, work, base, cur, o, sources)
	if err != nil {
		return nil, err
	}
	var rows []row
	for _, src := range append([]string{"pack"}, sources...) {
		from := p.prefix + ".store"
		if src == "pack" {
			from = p.prefix
		}
		res, rss, err := runDevice(deviceJob{Mode: "adaptive-" + src, Index: p.prefix + ".index", BaseIndex: p.prefix + ".base-index",
			Base: base, New: cur, Store: from, Want: fileSHA(cur)})
		if err != nil {
			return nil, err
		}
		produce := p.indexTime
		note := fmt.Sprintf("index %d B zst; %d chunks, %d fetched; store %d B", p.indexZ, len(p.index.Chunks()), res.Fetched, p.storeSize)
		switch src {
		case "store":
			produce += p.storeTime
		case "pack":
			produce += p.pack
			// The table is read whole, as asked.
			asked, read := res.Bytes-int64(len(p.table)), res.Read
			note = fmt.Sprintf("index %d B zst; %d chunks, %d fetched; pack %d B, table %d B; pack bytes asked %d, read %d (%.3f)",
				p.indexZ, len(p.index.Chunks()), res.Fetched, p.packBytes, len(p.table), asked, read, float64(asked)/float64(max(read, 1)))
		}
		rows = append(rows, row{pair: kind, method: adaptiveMethod(chunkName(o), src),
			bytes: res.Bytes + p.indexZ, requests: res.Requests + 1, produce: produce, apply: res.Elapsed, rssKiB: rss, note: note})
	}
	return rows, nil
}

// publishChunking writes the indexes of both images, the chunk pack and
// its table and, when a source needs it, the chunk store.
func publishChunking(kind, work, base, cur string, o delta.IndexOptions, sources []string) (published, error) {
	p := published{prefix: filepath.Join(work, kind+"."+chunkName(o))}
	t0 := time.Now()
	ni, err := indexFile(cur, o)
	if err != nil {
		return p, err
	}
	bi, err := indexFile(base, ni.Options())
	if err != nil {
		return p, err
	}
	p.index, p.indexTime = ni, time.Since(t0)
	nb, _ := ni.MarshalBinary()
	bb, _ := bi.MarshalBinary()
	if err := os.WriteFile(p.prefix+".index", nb, 0o644); err != nil {
		return p, err
	}
	if err := os.WriteFile(p.prefix+".base-index", bb, 0o644); err != nil {
		return p, err
	}
	p.indexZ = int64(len(zstdBytes(nb)))
	for _, s := range sources {
		if s == "store" {
			t0 = time.Now()
			err := readImage(cur, func(img io.Reader) error {
				st, err := delta.WriteChunkStore(p.prefix+".store", ni, img)
				p.storeSize = st.Bytes
				return err
			})
			if err != nil {
				return p, err
			}
			p.storeTime = time.Since(t0)
		}
	}
	t0 = time.Now()
	if err := writePack(&p, cur); err != nil {
		return p, err
	}
	p.pack = time.Since(t0)
	return p, nil
}

// writePack writes p's pack and table from the image cur.
func writePack(p *published, cur string) error {
	pf, err := os.Create(p.prefix + ".pack")
	if err != nil {
		return err
	}
	err = readImage(cur, func(img io.Reader) error {
		tab, st, err := delta.WritePack(pf, p.index, img)
		if err == nil {
			p.table, _ = tab.MarshalBinary()
			p.packBytes = st.Bytes
		}
		return err
	})
	if cerr := pf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.WriteFile(p.prefix+".tab", p.table, 0o644)
}

// readImage runs read over the image file name.
func readImage(name string, read func(io.Reader) error) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return read(f)
}

// measureStatic makes and applies static patches: the pure-Go encoder,
// and the zstd program's on the sections (what the repository tool uses
// when it is installed).
func measureStatic(kind, work, base, cur string) ([]row, error) {
	var rows []row
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
		produce := time.Since(t0)
		res, arss, err := runDevice(deviceJob{Mode: "patch", Base: base, Patch: patch, Want: fileSHA(cur)})
		if err != nil {
			return nil, err
		}
		rows = append(rows, row{pair: kind, method: method, bytes: size(patch), requests: 1, produce: produce,
			apply: res.Elapsed, rssKiB: arss, note: fmt.Sprintf("diff peak RSS %d MiB; %d frames", dres.PeakKiB>>10, res.Frames)})
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

// chosen returns the row of what the updater would fetch for the pair
// (updater transferBest): the static patch when it costs less than the
// full image, else the adaptive delta the publisher made (choiceMethod)
// when it does, else the full image; "full" is the full image row
// (zstd -19).
func chosen(kind string, rows []row) row {
	var patch, adaptive, full int64 = -1, -1, -1
	for _, r := range rows {
		switch {
		case r.pair != kind || r.bytes < 0:
		case strings.HasPrefix(r.method, "switchback static patch"):
			if patch < 0 || r.bytes < patch {
				patch = r.bytes
			}
		case r.method == choiceMethod:
			adaptive = r.bytes
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
