package smptest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
)

func body(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

func newMCU(t *testing.T, cfg smptest.Config) (*smptest.MCU, *smp.Client) {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	m, err := smptest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	addr, err := m.ServeUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u, err := smp.NewUDP(smp.UDPConfig{Addr: addr, Plain: true})
	if err != nil {
		t.Fatal(err)
	}
	c := smp.NewClient(u, smp.ClientConfig{Timeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return m, c
}

func state(t *testing.T, c *smp.Client) map[uint32]smp.ImageInfo {
	t.Helper()
	imgs, err := c.ImageState(context.Background())
	if err != nil {
		t.Fatalf("image state: %v", err)
	}
	out := map[uint32]smp.ImageInfo{}
	for _, im := range imgs {
		out[im.Slot] = im
	}
	return out
}

func upload(t *testing.T, c *smp.Client, img []byte) {
	t.Helper()
	sum := sha256.Sum256(img)
	if err := c.Upload(context.Background(), bytes.NewReader(img), int64(len(img)), smp.UploadOptions{BufSize: 384, SHA: sum[:]}); err != nil {
		t.Fatalf("upload: %v", err)
	}
}

// settleTimeout bounds the wait for a reset MCU to run again: a swap takes
// milliseconds, but a loaded machine running the race detector may take
// far longer.
const settleTimeout = 10 * time.Second

// waitRunning waits for the MCU to answer again after a reset.
func waitRunning(t *testing.T, m *smptest.MCU) {
	t.Helper()
	for deadline := time.Now().Add(settleTimeout); time.Now().Before(deadline); {
		if _, _, ok := m.Running(); ok {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("MCU does not run: %q", m.Events())
}

// TestTestSwapRevertConfirm walks MCUboot's states through SMP: upload,
// test, reset (swap), reset without confirm (revert), test again, reset,
// confirm, reset (stays).
func TestTestSwapRevertConfirm(t *testing.T) {
	v1 := smptest.BuildImage(body(10_000, 1), smptest.ImageOptions{Version: smp.ImageVersion{Major: 1}})
	v2 := smptest.BuildImage(body(20_000, 2), smptest.ImageOptions{Version: smp.ImageVersion{Major: 2, Build: 7}})
	m, c := newMCU(t, smptest.Config{Factory: v1})
	ctx := context.Background()
	if s := state(t, c); s[0].Version != "1.0.0" || !s[0].Confirmed || !s[0].Active {
		t.Fatalf("factory state: %+v", s)
	}
	upload(t, c, v2)
	s := state(t, c)
	if s[1].Version != "2.0.0.7" || s[1].Pending {
		t.Fatalf("after upload: %+v", s)
	}
	if _, err := c.ImageTest(ctx, s[1].Hash); err != nil {
		t.Fatal(err)
	}
	if s := state(t, c); !s[1].Pending || s[1].Permanent {
		t.Fatalf("after test: %+v", s)
	}
	reset := func() {
		if err := c.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		waitRunning(t, m)
	}
	reset()
	if s := state(t, c); s[0].Version != "2.0.0.7" || s[0].Confirmed || !s[1].Confirmed || s[1].Version != "1.0.0" {
		t.Fatalf("after test swap: %+v", s)
	}
	reset()
	s = state(t, c)
	if s[0].Version != "1.0.0" || !s[0].Confirmed || s[1].Pending {
		t.Fatalf("after revert: %+v", s)
	}
	if _, err := c.ImageTest(ctx, s[1].Hash); err != nil {
		t.Fatal(err)
	}
	reset()
	if _, err := c.ImageConfirm(ctx); err != nil {
		t.Fatal(err)
	}
	reset()
	if s := state(t, c); s[0].Version != "2.0.0.7" || !s[0].Confirmed {
		t.Fatalf("after confirm and reset: %+v", s)
	}
}

// TestRestartFromFiles: an MCU whose power went mid-upload is made again
// from its flash files (a new process, say) and the upload resumes.
func TestRestartFromFiles(t *testing.T) {
	dir := t.TempDir()
	v1 := smptest.BuildImage(body(10_000, 1), smptest.ImageOptions{Version: smp.ImageVersion{Major: 1}})
	v2 := smptest.BuildImage(body(60_000, 2), smptest.ImageOptions{Version: smp.ImageVersion{Major: 2}})
	m1, err := smptest.New(smptest.Config{Dir: dir, Factory: v1})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := m1.ServeUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := smp.NewUDP(smp.UDPConfig{Addr: addr, Plain: true})
	c := smp.NewClient(u, smp.ClientConfig{Timeout: 100 * time.Millisecond, Retries: -1})
	defer c.Close()
	sum := sha256.Sum256(v2)
	opts := smp.UploadOptions{BufSize: 384, SHA: sum[:]}
	m1.CutAfter(200) // past the erase of the slot, into the chunks
	if err := c.Upload(context.Background(), bytes.NewReader(v2), int64(len(v2)), opts); err == nil {
		t.Fatal("upload through a power cut: got nil error")
	}
	m1.Close()

	m2, err := smptest.New(smptest.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if _, err := m2.ServeUDP(addr); err != nil {
		t.Fatal(err)
	}
	first := int64(-1)
	opts.Progress = func(done, _ int64) {
		if first < 0 {
			first = done
		}
	}
	if err := c.Upload(context.Background(), bytes.NewReader(v2), int64(len(v2)), opts); err != nil {
		t.Fatal(err)
	}
	if first <= 0 {
		t.Errorf("the upload restarted at %d, want it resumed", first)
	}
	s := state(t, c)
	if s[0].Version != "1.0.0" || s[1].Version != "2.0.0" {
		t.Errorf("state after the resumed upload: %+v", s)
	}
}

// TestPermanentSwap: confirm with the secondary image's hash asks for a
// permanent swap; the image runs confirmed and stays after a reset.
func TestPermanentSwap(t *testing.T) {
	v1 := smptest.BuildImage(body(5_000, 1), smptest.ImageOptions{Version: smp.ImageVersion{Major: 1}})
	v2 := smptest.BuildImage(body(7_000, 2), smptest.ImageOptions{Version: smp.ImageVersion{Major: 2}})
	m, c := newMCU(t, smptest.Config{Factory: v1})
	ctx := context.Background()
	upload(t, c, v2)
	var r smp.ImageStateResponse
	if err := c.Do(ctx, smp.OpWrite, smp.GroupImage, smp.CmdImageState, smp.ImageStateRequest{Hash: state(t, c)[1].Hash, Confirm: true}, &r); err != nil {
		t.Fatal(err)
	}
	if s := state(t, c); !s[1].Pending || !s[1].Permanent {
		t.Fatalf("after a permanent request: %+v", s)
	}
	for range 2 {
		if err := c.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		waitRunning(t, m)
		if s := state(t, c); s[0].Version != "2.0.0" || !s[0].Confirmed || s[1].Pending {
			t.Fatalf("after reset: %+v", s)
		}
	}
}
