package main

import "fmt"

// qemuArgsARM64 is the arm64 QEMU command line: the virt board under TCG
// with one Cortex-A57, Debian's U-Boot as its firmware, virtio-mmio disk
// and NIC, and user networking restricted to the one forwarded address,
// as on x86_64.
func qemuArgsARM64(disk, format, script string, memMB int) []string {
	return []string{
		"-accel", "tcg", "-machine", "virt", "-cpu", "cortex-a57", "-smp", "1", "-m", fmt.Sprint(memMB),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-bios", ubootFirmware,
		"-drive", "if=none,id=d0,file=" + disk + ",format=" + format + ",cache=writeback,werror=report,rerror=report",
		"-device", "virtio-blk-device,drive=d0",
		"-netdev", "user,id=n0,restrict=on,guestfwd=tcp:" + guestServer + "-cmd:" + script,
		"-device", "virtio-net-device,netdev=n0",
		"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
	}
}
