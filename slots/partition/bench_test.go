package partition

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkWriteVerify writes a 16 MiB image in BlockSize chunks into an
// image file, syncs, and reads it back through Verify.
func BenchmarkWriteVerify(b *testing.B) {
	const size = 16 << 20
	dir := b.TempDir()
	img := filepath.Join(dir, "b.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	cmdline := filepath.Join(dir, "cmdline")
	if err := os.WriteFile(cmdline, []byte("switchback.slot=a\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{Name: "b", Device: img, Size: size, CmdlinePath: cmdline, MountInfoPath: filepath.Join(dir, "none")})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, s.BlockSize())
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	h := sha256.New()
	for off := 0; off < size; off += len(buf) {
		h.Write(buf)
	}
	sum := h.Sum(nil)
	ctx := context.Background()
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		w, err := s.Writer(ctx, size)
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := w.WriteAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Sync(); err != nil {
			b.Fatal(err)
		}
		w.Close()
		if err := s.Verify(ctx, size, sha256.New(), sum); err != nil {
			b.Fatal(err)
		}
	}
}
