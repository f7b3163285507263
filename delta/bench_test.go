package delta

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// benchPair is an 8 MiB image and a release with about 3% changed: some
// edited blocks, an insertion, zero regions.
func benchPair() (base, cur []byte) {
	base = cat(randBytes(40, 6<<20), make([]byte, 2<<20))
	cur = bytes.Clone(base)
	for off := 100000; off < 6<<20; off += 1 << 20 {
		copy(cur[off:], randBytes(uint64(off), 40000))
	}
	cur = cat(cur[:3<<20], randBytes(41, 5000), cur[3<<20:])
	return base, cur
}

func BenchmarkBuildIndex(b *testing.B) {
	_, cur := benchPair()
	for _, o := range []IndexOptions{{}, {Chunking: ChunkCDC}} {
		b.Run(string(o.withDefaultsMust().Chunking), func(b *testing.B) {
			b.SetBytes(int64(len(cur)))
			for b.Loop() {
				if _, err := BuildIndex(bytes.NewReader(cur), o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func (o IndexOptions) withDefaultsMust() IndexOptions {
	o, err := o.withDefaults()
	if err != nil {
		panic(err)
	}
	return o
}

// BenchmarkApply measures apply throughput (bytes of image written per
// second) from an in-memory range source.
func BenchmarkApply(b *testing.B) {
	base, cur := benchPair()
	for _, o := range []IndexOptions{{}, {Chunking: ChunkCDC}} {
		ni := mustIndex(b, cur, o)
		p, err := NewPlan(ni, []Base{{Index: mustIndex(b, base, o)}}, PlanOptions{})
		if err != nil {
			b.Fatal(err)
		}
		src := Source{Range: func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(cur[off : off+n])), nil
		}}
		b.Run(string(ni.Options().Chunking), func(b *testing.B) {
			b.SetBytes(int64(len(cur)))
			for b.Loop() {
				if err := Apply(b.Context(), p, []io.ReaderAt{bytes.NewReader(base)}, src, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDiff(b *testing.B) {
	base, cur := benchPair()
	b.SetBytes(int64(len(cur)))
	for b.Loop() {
		if err := Diff(bytes.NewReader(base), int64(len(base)), bytes.NewReader(cur), io.Discard, DiffOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPatch(b *testing.B) {
	base, cur := benchPair()
	p := mustDiff(b, base, cur, DiffOptions{})
	b.SetBytes(int64(len(cur)))
	b.ReportMetric(float64(len(p)), "patch-bytes")
	for b.Loop() {
		if err := Patch(bytes.NewReader(base), bytes.NewReader(p), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteChunkStore measures writing the chunk store of the 8 MiB
// bench image (about 2,000 distinct 4 KiB chunks, each its own durable
// file) into an empty store.
func BenchmarkWriteChunkStore(b *testing.B) {
	_, cur := benchPair()
	ix := mustIndex(b, cur, IndexOptions{})
	b.SetBytes(int64(len(cur)))
	for b.Loop() {
		if _, err := WriteChunkStore(b.TempDir(), ix, bytes.NewReader(cur)); err != nil {
			b.Fatal(err)
		}
	}
}
