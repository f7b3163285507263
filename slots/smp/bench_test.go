package smp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"

	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
)

// benchUpload uploads a 200 kB image to the MCU's secondary slot once per
// iteration, at the MCU's buffer size (by default 384 bytes, Zephyr's
// default), erasing the slot in between so that nothing resumes.
func benchUpload(b *testing.B, c *smp.Client) {
	ctx := context.Background()
	img := image(200_000, 2, nil)
	sum := sha256.Sum256(img)
	p, err := c.Params(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(img)))
	b.ResetTimer()
	for b.Loop() {
		if err := c.ImageErase(ctx); err != nil {
			b.Fatal(err)
		}
		if err := c.Upload(ctx, bytes.NewReader(img), int64(len(img)), smp.UploadOptions{BufSize: int(p.BufSize), SHA: sum[:]}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUploadUDP(b *testing.B) {
	r := newRig(b, rigOptions{})
	benchUpload(b, r.dev.Client())
}

// BenchmarkUploadUDP2048 is an MCU with 2 KiB SMP buffers (what Zephyr's
// smp_svr sample configures for UDP).
func BenchmarkUploadUDP2048(b *testing.B) {
	r := newRig(b, rigOptions{mcu: smptest.Config{BufSize: 2048}})
	benchUpload(b, r.dev.Client())
}

func BenchmarkUploadDTLS(b *testing.B) {
	psk := &smp.DTLSConfig{PSKIdentity: []byte("bench"), PSK: []byte("0123456789abcdef")}
	r := newRig(b, rigOptions{dtls: psk})
	benchUpload(b, r.dev.Client())
}

func BenchmarkUploadSerialPTY(b *testing.B) {
	_, d, _ := serialRig(b)
	benchUpload(b, d.Client())
}
