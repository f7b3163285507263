package smptest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
)

// An MCU loses power in the middle of an upload and resumes it after
// power on, from the offset it kept.
func ExampleMCU_CutAfter() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "smptest")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	v1 := smptest.BuildImage([]byte("v1"), smptest.ImageOptions{Version: smp.ImageVersion{Major: 1}})
	mcu, err := smptest.New(smptest.Config{Dir: dir, Factory: v1})
	if err != nil {
		log.Fatal(err)
	}
	defer mcu.Close()
	addr, _ := mcu.ServeUDP("127.0.0.1:0")
	udp, _ := smp.NewUDP(smp.UDPConfig{Addr: addr, Plain: true})
	c := smp.NewClient(udp, smp.ClientConfig{Timeout: 200 * time.Millisecond, Retries: -1})
	defer c.Close()

	v2 := smptest.BuildImage(make([]byte, 20_000), smptest.ImageOptions{Version: smp.ImageVersion{Major: 2}})
	sum := sha256.Sum256(v2)
	opts := smp.UploadOptions{BufSize: 384, SHA: sum[:]}
	mcu.CutAfter(40) // 40 flash operations into the upload
	err = c.Upload(ctx, bytes.NewReader(v2), int64(len(v2)), opts)
	fmt.Println("upload during the power cut failed:", err != nil)

	mcu.PowerOn()
	first := int64(-1)
	opts.Progress = func(done, total int64) {
		if first < 0 {
			first = done
		}
	}
	if err := c.Upload(ctx, bytes.NewReader(v2), int64(len(v2)), opts); err != nil {
		log.Fatal(err)
	}
	fmt.Println("resumed past the start:", first > 0)
	// Output:
	// upload during the power cut failed: true
	// resumed past the start: true
}
