package uboot_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/switchback-ota/switchback/slots/uboot"
)

// Arm the other slot through the environment fw_env.config describes.
// On a device the files are /etc/fw_env.config, the eMMC it names and
// /proc/cmdline; here files in a temporary directory stand in for them: a
// redundant environment as mkenvimage makes it, on a board booted from
// slot a.
func Example() {
	dir, err := os.MkdirTemp("", "uboot-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	mmc := filepath.Join(dir, "mmcblk0") // the device holding both copies
	env, err := uboot.EncodeImage([]uboot.Var{{Name: "bootcmd", Value: "run distro_bootcmd"}}, 0x4000, true, 1, 0xff)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(mmc, append(env, env...), 0o644); err != nil {
		log.Fatal(err)
	}
	fwEnvConfig := filepath.Join(dir, "fw_env.config") // /etc/fw_env.config
	config := fmt.Sprintf("%s 0x0 0x4000\n%s 0x4000 0x4000\n", mmc, mmc)
	if err := os.WriteFile(fwEnvConfig, []byte(config), 0o644); err != nil {
		log.Fatal(err)
	}
	cmdline := filepath.Join(dir, "cmdline") // what boot.cmd passed the kernel
	if err := os.WriteFile(cmdline, []byte("root=PARTLABEL=rootfs_a rootwait switchback.slot=a switchback.canary=\n"), 0o644); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	devs, err := uboot.LoadFwEnvConfig(fwEnvConfig)
	if err != nil {
		log.Fatal(err)
	}
	boot, err := uboot.New(devs, []string{"a", "b"}, uboot.WithCmdline(cmdline),
		uboot.WithRuntimeDir(filepath.Join(dir, "run")), uboot.WithLockFile(filepath.Join(dir, "fw.lock")))
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
	st, err = boot.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("booted %s, primary %s, trial %s with %d tries\n", st.Booted, st.Primary, st.Trial, st.TriesLeft)
	// Output: booted a, primary a, trial b with 3 tries
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
