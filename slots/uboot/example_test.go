package uboot_test

import (
	"context"
	"fmt"
	"log"

	"github.com/switchback-ota/switchback/slots/uboot"
)

// Arm the other slot through the environment fw_env.config describes.
func Example() {
	ctx := context.Background()
	devs, err := uboot.LoadFwEnvConfig("/etc/fw_env.config")
	if err != nil {
		log.Fatal(err)
	}
	boot, err := uboot.New(devs, []string{"a", "b"})
	if err != nil {
		log.Fatal(err)
	}
	if err := boot.CheckCanary(ctx); err != nil {
		log.Fatal(err) // says what is misconfigured
	}
	st, err := boot.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	other := "b"
	if st.Booted == "b" {
		other = "a"
	}
	// ... write and verify the image into the other slot, then:
	if err := boot.Arm(ctx, other, 3); err != nil {
		log.Fatal(err)
	}
}

// Encode and decode a redundant copy.
func ExampleEncodeImage() {
	vars := []uboot.Var{{Name: "sb_primary", Value: "a"}, {Name: "sb_tries", Value: "3"}, {Name: "sb_trial", Value: "b"}}
	b, err := uboot.EncodeImage(vars, 0x100, true, 7, 0)
	if err != nil {
		log.Fatal(err)
	}
	img, err := uboot.ParseImage(b, true)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(b), img.Flags, img.Vars)
	// Output: 256 7 [{sb_primary a} {sb_tries 3} {sb_trial b}]
}

func ExampleParseFwEnvConfig() {
	devs, err := uboot.ParseFwEnvConfig("# redundant, on the eMMC\n/dev/mmcblk0 0x400000 0x4000\n/dev/mmcblk0 0x404000 0x4000\n")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d copies of %#x bytes at %#x and %#x\n", len(devs), devs[0].EnvSize, devs[0].Offset, devs[1].Offset)
	// Output: 2 copies of 0x4000 bytes at 0x400000 and 0x404000
}
