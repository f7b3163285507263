package smp_test

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
)

// rig is a simulated MCU and the gateway's Device for it.
type rig struct {
	mcu  *smptest.MCU
	dev  *smp.Device
	v1   []byte // the factory image
	addr string
	dir  string // the MCU's flash
}

type rigOptions struct {
	mcu       smptest.Config
	dtls      *smp.DTLSConfig
	publicKey ed25519.PublicKey
	slotSize  int64
}

func version(major uint8) smp.ImageVersion {
	return smp.ImageVersion{Major: major, Minor: 1, Revision: 2}
}

// image builds an MCUboot image of n bytes of body.
func image(n int, major uint8, key ed25519.PrivateKey) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31) ^ major
	}
	return smptest.BuildImage(b, smptest.ImageOptions{Version: version(major), Key: key})
}

func newRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	r := &rig{v1: image(12_000, 1, nil), dir: t.TempDir()}
	cfg := o.mcu
	cfg.Dir = r.dir
	if cfg.Factory == nil {
		cfg.Factory = r.v1
	}
	m, err := smptest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	r.mcu = m
	if o.dtls != nil {
		r.addr, err = m.ServeDTLS("127.0.0.1:0", o.dtls)
	} else {
		r.addr, err = m.ServeUDP("127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	r.dev = r.device(t, o, t.TempDir())
	return r
}

// device opens a Device over UDP (with DTLS when o.dtls is set) on the
// gateway directory dir.
func (r *rig) device(t testing.TB, o rigOptions, dir string) *smp.Device {
	t.Helper()
	u, err := smp.NewUDP(smp.UDPConfig{Addr: r.addr, DTLS: o.dtls, Plain: o.dtls == nil})
	if err != nil {
		t.Fatal(err)
	}
	d, err := smp.New(smp.Config{
		Name: "mcu", Dir: dir, Transport: u, SlotSize: o.slotSize, PublicKey: o.publicKey,
		Client:     smp.ClientConfig{Timeout: 300 * time.Millisecond},
		ResetGrace: 2 * time.Millisecond, ResetTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// stage writes img into the device's slot name.
func stage(t testing.TB, d *smp.Device, name string, img []byte) {
	t.Helper()
	s, err := d.Slot(name)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Writer(context.Background(), int64(len(img)))
	if err != nil {
		t.Fatalf("Writer(%s): %v", name, err)
	}
	if _, err := w.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func status(t testing.TB, d *smp.Device) slots.BootStatus {
	t.Helper()
	st, err := d.Status(context.Background())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	return st
}
