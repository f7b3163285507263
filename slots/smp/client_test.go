package smp_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"net"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
)

// TestClientVersions talks to the MCU in SMP version 1 and 2, and gets
// its errors as DeviceErrors either way.
func TestClientVersions(t *testing.T) {
	r := newRig(t, rigOptions{})
	for _, legacy := range []bool{false, true} {
		u, err := smp.NewUDP(smp.UDPConfig{Addr: r.addr, Plain: true})
		if err != nil {
			t.Fatal(err)
		}
		c := smp.NewClient(u, smp.ClientConfig{Timeout: 200 * time.Millisecond, LegacySMP: legacy})
		ctx := context.Background()
		if got, err := c.Echo(ctx, "hi"); err != nil || got != "hi" {
			t.Errorf("legacy %v: Echo = %q, %v", legacy, got, err)
		}
		if _, err := c.ImageTest(ctx, []byte{1, 2, 3}); !smp.IsRC(err, smp.RCNoEnt) {
			t.Errorf("legacy %v: ImageTest of an unknown hash: %v, want rc %d", legacy, err, smp.RCNoEnt)
		}
		p, err := c.Params(ctx)
		if err != nil || p.BufSize != 384 || p.BufCount != 4 {
			t.Errorf("legacy %v: Params = %+v, %v", legacy, p, err)
		}
		c.Close()
	}
}

// TestUploadChunksFitBuffer: chunks are cut to the buffer size given; a
// client that claims a bigger buffer than the device has is refused.
func TestUploadChunksFitBuffer(t *testing.T) {
	for _, buf := range []int{128, 384, 2048} {
		r := newRig(t, rigOptions{mcu: smptest.Config{BufSize: buf}})
		img := image(30_000, 2, nil)
		sum := sha256.Sum256(img)
		c := r.dev.Client()
		ctx := context.Background()
		if err := c.Upload(ctx, bytes.NewReader(img), int64(len(img)), smp.UploadOptions{BufSize: buf, SHA: sum[:]}); err != nil {
			t.Errorf("buffer %d: %v", buf, err)
		}
		if err := c.ImageErase(ctx); err != nil {
			t.Fatal(err)
		}
		err := c.Upload(ctx, bytes.NewReader(img), int64(len(img)), smp.UploadOptions{BufSize: buf + 1, SHA: sum[:]})
		if !smp.IsRC(err, smp.RCMsgSize) {
			t.Errorf("buffer %d, client assuming %d: %v, want rc %d", buf, buf+1, err, smp.RCMsgSize)
		}
	}
}

// TestSerialEchoedRequest: a console that echoes what it receives sends
// the request back before the response (newtmgr's log in mcumgr's
// protocol.md shows it); the client skips the echo.
func TestSerialEchoedRequest(t *testing.T) {
	gw, dev := net.Pipe()
	c := smp.NewClient(smp.NewSerial(gw), smp.ClientConfig{Timeout: time.Second})
	defer c.Close()
	go func() {
		defer dev.Close()
		br := bufio.NewReader(dev)
		var d smp.SerialDecoder
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				return
			}
			dev.Write(line) // the console's echo
			p, _ := d.Line(line)
			if p == nil {
				continue
			}
			h, _, _ := smp.DecodePacket(p)
			h.Op++
			body, _ := smp.Marshal(smp.EchoResponse{R: "pong"})
			resp, _ := smp.EncodePacket(h, body)
			frames, _ := smp.EncodeSerial(resp)
			dev.Write(frames)
		}
	}()
	if got, err := c.Echo(context.Background(), "ping"); err != nil || got != "pong" {
		t.Errorf("Echo = %q, %v; want pong", got, err)
	}
}
