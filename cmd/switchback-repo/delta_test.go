package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/switchback-ota/switchback/delta"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

func TestDeltaCommand(t *testing.T) {
	dir := t.TempDir()
	repo, keys := filepath.Join(dir, "repo"), filepath.Join(dir, "keys")
	sb(t, exitOK, "init", "-repo", repo, "-keys", keys)
	v1 := make([]byte, 200_000)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range v1 {
		v1[i] = byte(rnd.Uint32())
	}
	v2 := append(bytes.Clone(v1[:100_000]), append([]byte("a new file in 1.1.0"), v1[100_000:]...)...)
	old, img := filepath.Join(dir, "x-1.0.0.img"), filepath.Join(dir, "x.img")
	os.WriteFile(old, v1, 0o644)
	os.WriteFile(img, v2, 0o644)
	other := filepath.Join(dir, "other.img")
	os.WriteFile(other, v1[:1000], 0o644)
	sb(t, exitOK, "add", "-repo", repo, "-keys", keys, "-component", "rootfs", "-version", "1.0.0", "-hardware", "board-a", old)
	sb(t, exitOK, "add", "-repo", repo, "-keys", keys, "-component", "rootfs", "-version", "1.1.0", "-hardware", "board-a", "-zstd", img)
	target := "rootfs/1.1.0/x.img.zst"

	refusals := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no target", []string{"-image", img, "-index"}, exitUsage, "-target is required"},
		{"no image", []string{"-target", target, "-index"}, exitUsage, "-image is required"},
		{"nothing to do", []string{"-target", target, "-image", img}, exitUsage, "nothing to publish"},
		{"store without index", []string{"-target", target, "-image", img, "-base", old, "-store"}, exitUsage, "need -index"},
		{"bad chunking", []string{"-target", target, "-image", img, "-index", "-chunking", "rolling"}, exitUsage, "want fixed, cdc or auto"},
		{"auto chunking without a base", []string{"-target", target, "-image", img, "-index", "-chunking", "auto"}, exitUsage, "needs a -base"},
		{"wrong image", []string{"-target", target, "-image", old, "-index"}, exitFail, "does not match"},
		{"wrong image for a patch", []string{"-target", target, "-image", old, "-base", other}, exitFail, "does not match"},
		{"patch from the image itself", []string{"-target", target, "-image", img, "-base", img}, exitFail, "the new image itself"},
		{"missing base", []string{"-target", target, "-image", img, "-base", filepath.Join(dir, "none")}, exitFail, "no such file"},
		{"missing target", []string{"-target", "rootfs/9.9.9/x.img", "-image", img, "-index"}, exitFail, "not found"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			out := sb(t, tt.code, append([]string{"delta", "-repo", repo, "-keys", keys}, tt.args...)...)
			if !strings.Contains(out, tt.want) {
				t.Errorf("output %q does not contain %q", out, tt.want)
			}
		})
	}

	out := sb(t, exitOK, "delta", "-repo", repo, "-keys", keys, "-target", target, "-image", img,
		"-base", old, "-index", "-chunking", "auto")
	patchPath := repository.PatchPath(target, sha256Hex(v1))
	// An insertion shifts what follows: content-defined chunks find it.
	for _, want := range []string{"chunking cdc", "added " + target + ".idx", "added " + patchPath, "timestamp"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not contain %q:\n%s", want, out)
		}
	}
	r, err := repository.Open(repository.Config{Dir: repo})
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) ([]byte, verify.Custom) {
		t.Helper()
		tg, err := r.Target(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(r.TargetsDir(), filepath.FromSlash(tg.File)))
		if err != nil {
			t.Fatal(err)
		}
		c, err := verify.ParseCustom(tg.Custom)
		if err != nil {
			t.Fatal(err)
		}
		return b, c
	}
	pb, pc := read(patchPath)
	if pc.Kind != verify.KindPatch || pc.Of != target || pc.Base != sha256Hex(v1) {
		t.Errorf("patch custom %+v", pc)
	}
	var got bytes.Buffer
	if err := delta.Patch(bytes.NewReader(v1), bytes.NewReader(pb), &got); err != nil || !bytes.Equal(got.Bytes(), v2) {
		t.Errorf("published patch does not make the new image (%v)", err)
	}
	ib, ic := read(target + ".idx")
	if ic.Compression != verify.CompressionZstd {
		t.Errorf("index compression %q, want zstd", ic.Compression)
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	ib, err = dec.DecodeAll(ib, nil)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := delta.ParseIndex(ib)
	if err != nil {
		t.Fatal(err)
	}
	if ic.Kind != verify.KindChunkIndex || ix.Options().Chunking != delta.ChunkCDC {
		t.Errorf("index custom %+v, chunking %s", ic, ix.Options().Chunking)
	}
	// A zstd target cannot serve byte ranges: the chunk store is written.
	for _, c := range ix.Chunks() {
		if _, err := os.Stat(filepath.Join(r.TargetsDir(), repository.ChunkStoreDir, filepath.FromSlash(ix.ChunkPath(c)))); err != nil {
			t.Fatalf("chunk store: %v", err)
		}
	}
	// prune-chunks removes only what no index names.
	stray := filepath.Join(r.TargetsDir(), repository.ChunkStoreDir, "00", strings.Repeat("00", 16)+".zst")
	os.MkdirAll(filepath.Dir(stray), 0o755)
	os.WriteFile(stray, []byte("junk"), 0o644)
	if out := sb(t, exitOK, "prune-chunks", "-repo", repo, "-keys", keys); !strings.Contains(out, "1 chunks removed") {
		t.Errorf("prune-chunks: %s", out)
	}
	if _, err := os.Stat(stray); err == nil {
		t.Error("stray chunk not removed")
	}
	for _, c := range ix.Chunks() {
		if _, err := os.Stat(filepath.Join(r.TargetsDir(), repository.ChunkStoreDir, filepath.FromSlash(ix.ChunkPath(c)))); err != nil {
			t.Fatalf("chunk store after prune-chunks: %v", err)
		}
	}
	out = sb(t, exitOK, "verify", "-repo", repo, "-root", filepath.Join(repo, "metadata", "1.root.json"), "-hardware", "board-a")
	if !strings.Contains(out, "install "+target) {
		t.Errorf("verify after delta:\n%s", out)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
