//go:build !windows

package slots

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkUnpack unpacks a release of 64 files of 128 KiB (8 MiB), plain
// and zstd-compressed, fsyncs included.
func BenchmarkUnpack(b *testing.B) {
	body := string(bytes.Repeat([]byte("switchback release payload\n"), 128<<10/27))
	var entries []tarEntry
	for i := range 64 {
		entries = append(entries, file(fmt.Sprintf("lib/%02d/file", i), body))
	}
	plain := makeTar(b, entries...)
	for _, c := range []struct {
		name    string
		archive []byte
	}{{"tar", plain}, {"tar.zst", zstded(b, plain)}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			base := b.TempDir()
			for i := 0; b.Loop(); i++ {
				dst := filepath.Join(base, fmt.Sprint(i))
				if err := os.Mkdir(dst, 0o755); err != nil {
					b.Fatal(err)
				}
				if err := unpack(context.Background(), bytes.NewReader(c.archive), dst, UnpackLimits{}); err != nil {
					b.Fatal(err)
				}
				os.RemoveAll(dst)
			}
		})
	}
}

// BenchmarkFileSlotWrite writes a 16 MiB image into a file slot in 1 MiB
// chunks and syncs it.
func BenchmarkFileSlotWrite(b *testing.B) {
	p := filepath.Join(b.TempDir(), "app")
	if err := os.WriteFile(p, []byte("v1"), 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := NewFile(p)
	if err != nil {
		b.Fatal(err)
	}
	const size = 16 << 20
	chunk := bytes.Repeat([]byte{0xa5}, 1<<20)
	b.SetBytes(size)
	for b.Loop() {
		w, err := f.Slots()[1].Writer(context.Background(), size)
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < size; off += int64(len(chunk)) {
			if _, err := w.WriteAt(chunk, off); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Sync(); err != nil {
			b.Fatal(err)
		}
		w.Close()
	}
}
