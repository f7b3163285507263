package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
)

// The SMP upload to a microcontroller behind the gateway: an MCUboot
// image uploaded to the simulated MCU of smptest over loopback, through
// smp.Device (the slot the updater writes and arms), against the same
// bytes sent by a minimal loop over the same transport to the same kind
// of MCU.
//
// The loop is the baseline: the upload frames smp.Client.Upload would
// send, encoded before the clock starts, each sent when the previous one
// is answered (SMP's stop-and-wait with one buffer), through smp.UDP, to
// a fresh simulated MCU that does its usual work (decode, flash write,
// session record). Only the last answer is checked (offset at the end,
// SHA-256 matched). What the slot adds on top is the cost of switchback:
// the state requests before and after, the staged image parsed and
// hashed, the Client's encoding, sequence matching and offset checks.

// smpPSK is the DTLS key of the simulated MCU; the bench measures the
// link, not key management.
var smpPSK = &smp.DTLSConfig{PSKIdentity: []byte("bench"), PSK: []byte("switchback-bench")}

// smpLink is one way to reach the MCU.
type smpLink struct {
	name string
	dtls *smp.DTLSConfig // nil: plain UDP
}

var smpLinks = []smpLink{{"UDP", nil}, {"DTLS (PSK)", smpPSK}}

// smpRuns holds the seconds of each upload, per link.
type smpRuns struct {
	loop, client, slot []float64
}

// smpFigures measures the uploads of one image over every link,
// interleaved, and prints medians, ranges and ratios.
func smpFigures(ctx context.Context, out io.Writer, work string, cfg config) error {
	if cfg.smpKiB == 0 {
		fmt.Fprintln(out, "SMP upload: skipped: -smp-kib 0")
		return nil
	}
	body := make([]byte, cfg.smpKiB<<10)
	for i := range body {
		body[i] = byte(i*31) ^ byte(i>>9)
	}
	img := smptest.BuildImage(body, smptest.ImageOptions{Version: smp.ImageVersion{Major: 2}})
	frames, err := uploadFrames(img, cfg.smpBuf)
	if err != nil {
		return err
	}
	runs := make([]smpRuns, len(smpLinks))
	dir := filepath.Join(work, "smp")
	defer os.RemoveAll(dir)
	for i := 0; i < cfg.runs; i++ {
		for l, link := range smpLinks {
			if err := runs[l].measure(ctx, dir, link, cfg.smpBuf, img, frames); err != nil {
				return fmt.Errorf("SMP upload over %s: %w", link.name, err)
			}
		}
	}
	fmt.Fprintf(out, "SMP upload to the simulated MCU (smptest on 127.0.0.1, %d-byte SMP buffers, %d frames), %s MCUboot image:\n", cfg.smpBuf, len(frames), human(int64(len(img))))
	size := float64(len(img)) / 1e6
	for l, link := range smpLinks {
		loop, client, slot := throughputs(size, runs[l].loop), throughputs(size, runs[l].client), throughputs(size, runs[l].slot)
		fmt.Fprintf(out, "  %s, baseline: the same upload frames, encoded beforehand, each sent when the last is answered, through smp.UDP: %.2f MB/s (range %s)\n",
			link.name, median(loop), span(loop))
		fmt.Fprintf(out, "  %s, smp.Client.Upload alone: %.2f MB/s (range %s); throughput ratio to the baseline %.2f\n",
			link.name, median(client), span(client), median(client)/median(loop))
		fmt.Fprintf(out, "  %s, smp slot (smp.Device.Arm of the staged image: state, parse, SHA-256, upload, mark for test): %.2f MB/s (range %s); throughput ratio to the baseline %.2f\n",
			link.name, median(slot), span(slot), median(slot)/median(loop))
	}
	return nil
}

// throughputs returns the MB/s of size MB moved in each of secs.
func throughputs(size float64, secs []float64) []float64 {
	xs := make([]float64, len(secs))
	for i, s := range secs {
		xs[i] = size / s
	}
	return xs
}

// measure uploads img once each way, every time to a new MCU.
func (r *smpRuns) measure(ctx context.Context, dir string, link smpLink, buf int, img []byte, frames [][]byte) error {
	for _, m := range []struct {
		xs *[]float64
		up uploader
	}{
		{&r.loop, func(ctx context.Context, _ *smp.Device, t smp.Transport) (time.Duration, error) {
			return sendFrames(ctx, t, frames)
		}},
		{&r.client, func(ctx context.Context, d *smp.Device, _ smp.Transport) (time.Duration, error) {
			return clientUpload(ctx, d, img)
		}},
		{&r.slot, func(ctx context.Context, d *smp.Device, _ smp.Transport) (time.Duration, error) {
			return slotUpload(ctx, d, img)
		}},
	} {
		secs, err := withMCU(ctx, dir, link, buf, len(img), m.up)
		if err != nil {
			return err
		}
		*m.xs = append(*m.xs, secs)
	}
	return nil
}

// uploader uploads an image to the MCU behind d, whose transport is t,
// and returns the time the upload took.
type uploader func(ctx context.Context, d *smp.Device, t smp.Transport) (time.Duration, error)

// withMCU starts a simulated MCU with slots that hold an image of
// imgLen bytes, opens a Device for it over link, runs up and returns the
// seconds it reports, then closes both (the next call removes their
// files).
func withMCU(ctx context.Context, dir string, link smpLink, buf, imgLen int, up uploader) (float64, error) {
	if err := os.RemoveAll(dir); err != nil {
		return 0, err
	}
	const sector = 4 << 10
	m, err := smptest.New(smptest.Config{
		Dir: filepath.Join(dir, "mcu"), BufSize: buf, SectorSize: sector,
		SlotSize: int64((imgLen+sector-1)/sector+1) * sector,
		Factory:  smptest.BuildImage([]byte("factory"), smptest.ImageOptions{Version: smp.ImageVersion{Major: 1}}),
	})
	if err != nil {
		return 0, err
	}
	defer m.Close()
	var addr string
	if link.dtls != nil {
		addr, err = m.ServeDTLS("127.0.0.1:0", link.dtls)
	} else {
		addr, err = m.ServeUDP("127.0.0.1:0")
	}
	if err != nil {
		return 0, err
	}
	u, err := smp.NewUDP(smp.UDPConfig{Addr: addr, DTLS: link.dtls, Plain: link.dtls == nil})
	if err != nil {
		return 0, err
	}
	d, err := smp.New(smp.Config{Name: "bench-mcu", Dir: filepath.Join(dir, "gateway"), Transport: u})
	if err != nil {
		u.Close()
		return 0, err
	}
	defer d.Close()
	// The first request dials (and shakes hands over DTLS) before the
	// clock starts, as a gateway's link to its MCU is up before an upload.
	if _, err := d.Client().Params(ctx); err != nil {
		return 0, err
	}
	t, err := up(ctx, d, u)
	return t.Seconds(), err
}

// uploadFrames returns img as the SMP image upload requests
// smp.Client.Upload sends to a device with buffers of bufSize bytes: the
// first names the upload (length, SHA-256), each carries as much of the
// image as fits the buffer.
func uploadFrames(img []byte, bufSize int) ([][]byte, error) {
	total := uint64(len(img))
	sum := sha256.Sum256(img)
	var frames [][]byte
	for off := 0; off < len(img); {
		req := smp.UploadRequest{Off: uint64(off)}
		if off == 0 {
			req.Len, req.SHA = &total, sum[:]
		}
		h := smp.Header{Version: smp.Version2, Op: smp.OpWrite, Group: smp.GroupImage, ID: smp.CmdImageUpload, Seq: uint8(len(frames))}
		var pkt []byte
		// An empty data field leaves room for n bytes; their CBOR length
		// prefix grows by up to two bytes: take one off until it fits.
		for n := min(bufSize, len(img)-off); n > 0; n-- {
			req.Data = img[off : off+n]
			body, err := smp.Marshal(req)
			if err != nil {
				return nil, err
			}
			if smp.HeaderSize+len(body) <= bufSize {
				if pkt, err = smp.EncodePacket(h, body); err != nil {
					return nil, err
				}
				break
			}
			n = min(n, bufSize-smp.HeaderSize-(len(body)-n)+1)
		}
		if pkt == nil {
			return nil, fmt.Errorf("a %d-byte SMP buffer holds no image data", bufSize)
		}
		frames = append(frames, pkt)
		off += len(req.Data)
	}
	return frames, nil
}

// sendFrames is the baseline: it sends each frame through t when the
// previous one is answered, and checks the last answer.
func sendFrames(ctx context.Context, t smp.Transport, frames [][]byte) (time.Duration, error) {
	// One deadline for the whole loop: a lost datagram fails the run
	// instead of hanging it.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var last []byte
	start := time.Now()
	for _, f := range frames {
		if err := t.Send(ctx, f); err != nil {
			return 0, err
		}
		var err error
		if last, err = t.Receive(ctx); err != nil {
			return 0, err
		}
	}
	elapsed := time.Since(start)
	_, body, err := smp.DecodePacket(last)
	if err != nil {
		return 0, err
	}
	var resp smp.UploadResponse
	if err := smp.Unmarshal(body, &resp); err != nil {
		return 0, err
	}
	if resp.Match == nil || !*resp.Match {
		return 0, fmt.Errorf("the MCU's last answer %+v does not confirm the image's SHA-256", resp)
	}
	return elapsed, nil
}

// clientUpload is smp.Client.Upload alone.
func clientUpload(ctx context.Context, d *smp.Device, img []byte) (time.Duration, error) {
	c := d.Client()
	p, err := c.Params(ctx)
	if err != nil {
		return 0, err
	}
	sum := sha256.Sum256(img)
	start := time.Now()
	err = c.Upload(ctx, bytes.NewReader(img), int64(len(img)), smp.UploadOptions{BufSize: int(p.BufSize), SHA: sum[:]})
	return time.Since(start), err
}

// slotUpload stages img in slot b, as the updater's download does, and
// times Arm: the upload through the slot.
func slotUpload(ctx context.Context, d *smp.Device, img []byte) (time.Duration, error) {
	s, err := d.Slot("b")
	if err != nil {
		return 0, err
	}
	w, err := s.Writer(ctx, int64(len(img)))
	if err != nil {
		return 0, err
	}
	if _, err := w.WriteAt(img, 0); err != nil {
		w.Close()
		return 0, err
	}
	if err := w.Sync(); err != nil {
		w.Close()
		return 0, err
	}
	if err := w.Close(); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := d.Arm(ctx, "b", 1); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
