package repository

import (
	"bytes"
	"testing"

	"github.com/switchback-ota/switchback/delta"
)

// BenchmarkAddDelta publishes the deltas of a 16 MiB release: its chunk
// index with a chunk store, and a patch from the release before.
func BenchmarkAddDelta(b *testing.B) {
	base := release(7, 16<<20)
	next := changed(base)
	r, err := Init(ctx, Config{Dir: b.TempDir()}, InitOptions{KeysDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	const p = "rootfs/1.2.0/x.img"
	if _, err := r.AddTarget(ctx, p, bytes.NewReader(next), rootfs("1.2.0"), AddOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Run("index", func(b *testing.B) {
		b.SetBytes(int64(len(next)))
		for b.Loop() {
			if _, err := r.AddChunkIndex(ctx, p, bytes.NewReader(next), delta.IndexOptions{}, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The first iteration writes the store, the others find every chunk.
	b.Run("index+store", func(b *testing.B) {
		b.SetBytes(int64(len(next)))
		for b.Loop() {
			if _, err := r.AddChunkIndex(ctx, p, bytes.NewReader(next), delta.IndexOptions{}, true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("patch", func(b *testing.B) {
		b.SetBytes(int64(len(next)))
		var size int64
		for b.Loop() {
			tg, err := r.AddPatch(ctx, p, bytes.NewReader(base), int64(len(base)), bytes.NewReader(next))
			if err != nil {
				b.Fatal(err)
			}
			size = tg.Length
		}
		b.ReportMetric(float64(size), "patch-bytes")
	})
}
