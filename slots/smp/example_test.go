package smp_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
)

// A gateway updates a microcontroller over SMP on DTLS: stage the new
// image in the slot that does not run, arm it (strict parse, upload,
// test), reset, check, commit. The MCU here is simulated.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "smp-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	psk := &smp.DTLSConfig{PSKIdentity: []byte("sensor-01"), PSK: []byte("a 16-byte secret")}
	v1 := smptest.BuildImage([]byte("firmware 1"), smptest.ImageOptions{Version: smp.ImageVersion{Major: 1}})
	v2 := smptest.BuildImage([]byte("firmware 2"), smptest.ImageOptions{Version: smp.ImageVersion{Major: 2}})
	mcu, err := smptest.New(smptest.Config{Dir: filepath.Join(dir, "mcu"), Factory: v1})
	if err != nil {
		log.Fatal(err)
	}
	defer mcu.Close()
	addr, err := mcu.ServeDTLS("127.0.0.1:0", psk)
	if err != nil {
		log.Fatal(err)
	}

	udp, err := smp.NewUDP(smp.UDPConfig{Addr: addr, DTLS: psk})
	if err != nil {
		log.Fatal(err)
	}
	dev, err := smp.New(smp.Config{Name: "sensor-01", Dir: filepath.Join(dir, "gateway"), Transport: udp, ResetGrace: 10 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close()

	st, err := dev.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("running slot %s\n", st.Booted)

	// The updater writes verified bytes here; any writer will do.
	slot, err := dev.Slot("b")
	if err != nil {
		log.Fatal(err)
	}
	w, err := slot.Writer(ctx, int64(len(v2)))
	if err != nil {
		log.Fatal(err)
	}
	w.WriteAt(v2, 0)
	w.Sync()
	w.Close()

	if err := dev.Arm(ctx, "b", 1); err != nil {
		log.Fatal(err)
	}
	if err := dev.Reset(ctx); err != nil { // MCUboot swaps, runs the test image
		log.Fatal(err)
	}
	st, _ = dev.Status(ctx)
	fmt.Printf("running slot %s on trial, committed %s\n", st.Booted, st.Primary)
	if err := dev.ImageCheck().Check(ctx); err != nil {
		log.Fatal(err) // here: MarkBad, and MCUboot reverts
	}
	if err := dev.Commit(ctx, "b"); err != nil {
		log.Fatal(err)
	}
	_, version, _ := mcu.Running()
	fmt.Printf("committed; the MCU runs %s\n", version)
	// Output:
	// running slot a
	// running slot b on trial, committed a
	// committed; the MCU runs 2.0.0
}

func ExampleParseImage() {
	img := smptest.BuildImage([]byte("firmware"), smptest.ImageOptions{Version: smp.ImageVersion{Major: 1, Minor: 4, Revision: 2, Build: 9}})
	im, err := smp.ParseImage(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(im.Version, im.BodySize, len(im.Hash))
	// Output: 1.4.2.9 8 32
}

func ExampleEncodeSerial() {
	// An echo request {"d": "hello"}, SMP version 2, sequence 0x42.
	pkt, _ := smp.EncodePacket(smp.Header{Version: smp.Version2, Op: smp.OpWrite, Group: smp.GroupOS, Seq: 0x42, ID: smp.CmdEcho},
		[]byte{0xa1, 0x61, 0x64, 0x65, 'h', 'e', 'l', 'l', 'o'})
	frames, _ := smp.EncodeSerial(pkt)
	fmt.Printf("%q\n", frames)
	// Output: "\x06\tABMKAAAJAABCAKFhZGVoZWxsb0YZ\n"
}
