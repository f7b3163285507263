package repository

import (
	"io"
	"path/filepath"
	"testing"
)

// patternReader yields n bytes of a compressible pattern without holding
// them.
type patternReader struct{ n, off int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	k := min(int64(len(b)), p.n-p.off)
	for i := range k {
		b[i] = byte((p.off + i) / 512)
	}
	p.off += k
	return int(k), nil
}

// BenchmarkAddTarget shows that memory per AddTarget (B/op) does not grow
// with the release size: the file is streamed, never buffered.
func BenchmarkAddTarget(b *testing.B) {
	const size = 16 << 20
	for _, tc := range []struct {
		name string
		opts AddOptions
	}{
		{"raw", AddOptions{}},
		{"zstd", AddOptions{Zstd: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			k, _ := GenerateKey(Ed25519)
			keys := map[string][]*Key{}
			for _, role := range Roles {
				keys[role] = []*Key{k}
			}
			r, err := Init(ctx, Config{Dir: filepath.Join(dir, "repo")}, InitOptions{Keys: keys})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.AddTarget(ctx, "big.img", &patternReader{n: size}, rootfs("1.0.0"), tc.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
