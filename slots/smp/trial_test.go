package smp_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
)

// appFor makes the application of images with major version 2 behave as b.
func appFor(b smptest.Behavior) func(*smp.Image) smptest.Behavior {
	return func(im *smp.Image) smptest.Behavior {
		if im.Version.Major == 2 {
			return b
		}
		return smptest.Behavior{}
	}
}

func wantStatus(t *testing.T, d *smp.Device, want slots.BootStatus) {
	t.Helper()
	got := status(t, d)
	if got.Trial == "" {
		got.TriesLeft = 0
	}
	if got.Booted != want.Booted || got.Primary != want.Primary || got.Trial != want.Trial || got.TriesLeft != want.TriesLeft || !slices.Equal(got.Bad, want.Bad) {
		t.Errorf("Status = %+v, want %+v", got, want)
	}
}

func wantRunning(t *testing.T, m *smptest.MCU, img []byte) {
	t.Helper()
	im, err := parse(img)
	if err != nil {
		t.Fatal(err)
	}
	hash, _, ok := m.Running()
	if !ok || !bytes.Equal(hash, im.Hash) {
		t.Errorf("MCU runs %x (running: %v), want %s %x; events %q", hash, ok, im.Version, im.Hash, m.Events())
	}
}

// armAndReset stages v2 in slot b, arms it and resets the MCU.
func armAndReset(t *testing.T, r *rig, v2 []byte) error {
	t.Helper()
	ctx := context.Background()
	stage(t, r.dev, "b", v2)
	if err := r.dev.Arm(ctx, "b", 1); err != nil {
		t.Fatalf("Arm: %v", err)
	}
	wantStatus(t, r.dev, slots.BootStatus{Booted: "a", Primary: "a", Trial: "b", TriesLeft: 1})
	return r.dev.Reset(ctx)
}

// commitTrial runs a whole trial of img over d's transport: staged into
// slot b, armed for one try, reset into, checked and committed; the MCU m
// must then run img, committed.
func commitTrial(t *testing.T, d *smp.Device, m *smptest.MCU, img []byte) {
	t.Helper()
	ctx := context.Background()
	stage(t, d, "b", img)
	if err := d.Arm(ctx, "b", 1); err != nil {
		t.Fatal(err)
	}
	if err := d.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.ImageCheck().Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, d, slots.BootStatus{Booted: "b", Primary: "b"})
	wantRunning(t, m, img)
}

// TestTrialOutcomes drives one trial per outcome the updater must tell
// apart: confirmed, reverted by MCUboot after a crash, never confirmed
// (reverted at the next reset), never came back (a hung application,
// recovered by a power cycle), and a device that reports the wrong hash.
func TestTrialOutcomes(t *testing.T) {
	ctx := context.Background()
	v2 := image(40_000, 2, nil)

	t.Run("confirmed", func(t *testing.T) {
		r := newRig(t, rigOptions{})
		if err := armAndReset(t, r, v2); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, r.dev, slots.BootStatus{Booted: "b", Primary: "a", Trial: "b"})
		if err := r.dev.ImageCheck().Check(ctx); err != nil {
			t.Fatalf("ImageCheck: %v", err)
		}
		if err := r.dev.Commit(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		if err := r.dev.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, r.dev, slots.BootStatus{Booted: "b", Primary: "b"})
		wantRunning(t, r.mcu, v2)
	})

	t.Run("reverted by the bootloader", func(t *testing.T) {
		r := newRig(t, rigOptions{mcu: smptest.Config{App: appFor(smptest.Behavior{Crash: true})}})
		if err := armAndReset(t, r, v2); err != nil {
			t.Fatal(err)
		}
		// Back on the old image, trial out of tries: the updater's "fell back".
		wantStatus(t, r.dev, slots.BootStatus{Booted: "a", Primary: "a", Trial: "b"})
		if err := r.dev.Commit(ctx, "b"); !errors.Is(err, slots.ErrNotRunning) {
			t.Errorf("Commit of the reverted trial: %v, want ErrNotRunning", err)
		}
		if err := r.dev.MarkBad(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, r.dev, slots.BootStatus{Booted: "a", Primary: "a", Bad: []string{"b"}})
		wantRunning(t, r.mcu, r.v1)
	})

	t.Run("never confirmed", func(t *testing.T) {
		r := newRig(t, rigOptions{})
		if err := armAndReset(t, r, v2); err != nil {
			t.Fatal(err)
		}
		// The gateway goes away before confirming; the MCU loses power.
		r.mcu.PowerOff()
		r.mcu.PowerOn()
		wantStatus(t, r.dev, slots.BootStatus{Booted: "a", Primary: "a", Trial: "b"})
		wantRunning(t, r.mcu, r.v1)
	})

	t.Run("never came back", func(t *testing.T) {
		r := newRig(t, rigOptions{mcu: smptest.Config{App: appFor(smptest.Behavior{Silent: true})}})
		u, err := smp.NewUDP(smp.UDPConfig{Addr: r.addr, Plain: true})
		if err != nil {
			t.Fatal(err)
		}
		cycles := 0
		d, err := smp.New(smp.Config{Name: "mcu", Dir: t.TempDir(), Transport: u,
			Client: smp.ClientConfig{Timeout: 100 * time.Millisecond, Retries: 1}, ResetGrace: time.Millisecond, ResetTimeout: time.Second,
			PowerCycle: func(context.Context) error { cycles++; r.mcu.PowerOff(); r.mcu.PowerOn(); return nil }})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		r.dev = d
		if err := armAndReset(t, r, v2); err == nil {
			t.Fatal("Reset into a hung image: got nil error")
		}
		if _, err := d.Status(ctx); !errors.Is(err, smp.ErrNoResponse) {
			t.Fatalf("Status of a hung MCU: %v, want ErrNoResponse", err)
		}
		// The restart hook resets again: no answer, so the power is cycled
		// and MCUboot reverts.
		if err := d.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		if cycles != 1 {
			t.Errorf("power cycled %d times, want 1", cycles)
		}
		wantStatus(t, d, slots.BootStatus{Booted: "a", Primary: "a", Trial: "b"})
		wantRunning(t, r.mcu, r.v1)
	})

	t.Run("wrong hash reported", func(t *testing.T) {
		r := newRig(t, rigOptions{mcu: smptest.Config{App: appFor(smptest.Behavior{ReportHash: bytes.Repeat([]byte{0xee}, 32)})}})
		if err := armAndReset(t, r, v2); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, r.dev, slots.BootStatus{Booted: "b", Primary: "a", Trial: "b"})
		if err := r.dev.ImageCheck().Check(ctx); !errors.Is(err, smp.ErrWrongImage) {
			t.Errorf("ImageCheck: %v, want ErrWrongImage", err)
		}
		if err := r.dev.Commit(ctx, "b"); !errors.Is(err, smp.ErrWrongImage) {
			t.Errorf("Commit: %v, want ErrWrongImage", err)
		}
		if err := r.dev.MarkBad(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, r.dev, slots.BootStatus{Booted: "a", Primary: "a", Bad: []string{"b"}})
		wantRunning(t, r.mcu, r.v1)
	})
}

// TestArmChecksBeforeSending: a staged image that is not a well-formed
// MCUboot image, or whose signature fails the configured key, is refused
// before a byte reaches the device.
func TestArmChecksBeforeSending(t *testing.T) {
	ctx := context.Background()
	pub, priv, _ := ed25519.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{1}, 64)))
	_, other, _ := ed25519.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{2}, 64)))
	good := image(20_000, 2, priv)
	flipped := bytes.Clone(good)
	flipped[1000] ^= 1
	for name, c := range map[string]struct {
		img  []byte
		want error
	}{
		"hash mismatch": {flipped, smp.ErrImage},
		"not an image":  {bytes.Repeat([]byte{0x55}, 5000), smp.ErrImage},
		"other key":     {image(20_000, 2, other), smp.ErrImage},
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, rigOptions{publicKey: pub})
			stage(t, r.dev, "b", c.img)
			ops := r.mcu.FlashOps()
			if err := r.dev.Arm(ctx, "b", 1); !errors.Is(err, c.want) {
				t.Errorf("Arm: %v, want %v", err, c.want)
			}
			if got := r.mcu.FlashOps(); got != ops {
				t.Errorf("the MCU's flash changed (%d operations) for a refused image", got-ops)
			}
		})
	}
}

// TestMCUChecksSignature: without a key on the gateway, an image signed
// by another key reaches the MCU, whose MCUboot refuses to test it.
func TestMCUChecksSignature(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{1}, 64)))
	_, other, _ := ed25519.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{2}, 64)))
	v1 := image(12_000, 1, priv) // MCUboot checks the primary slot too
	r := newRig(t, rigOptions{mcu: smptest.Config{Key: pub, Factory: v1}})
	r.v1 = v1
	stage(t, r.dev, "b", image(20_000, 2, other))
	if err := r.dev.Arm(context.Background(), "b", 1); !smp.IsRC(err, smp.RCBadState) {
		t.Errorf("Arm of an image the MCU's key did not sign: %v, want rc %d", err, smp.RCBadState)
	}
	wantStatus(t, r.dev, slots.BootStatus{Booted: "a", Primary: "a", Trial: "b"})
	wantRunning(t, r.mcu, r.v1)
}
