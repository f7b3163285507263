package main

import "testing"

// qemuEnvARM64 is qemuEnv for the arm64 machine: it gates on
// SWITCHBACK_QEMU/CI and on qemu-system-aarch64, u-boot-qemu's qemu_arm64
// U-Boot and the other host tools (a skip with the reason outside CI, a
// failure under CI=true).
func qemuEnvARM64(t *testing.T) *env {
	t.Helper()
	return qemuEnvArch(t, archARM64, missingToolsARM64)
}

// TestScenarioARM64 is `go run ./examples/qemu -arch arm64 run`: the A/B
// story on qemu-system-aarch64 -M virt with Debian's U-Boot, whose
// boot.scr sources the shipped slots/uboot/boot.cmd. U-Boot has no boot
// counter of its own: the run shows boot.cmd taking a try from the
// environment the agent armed, and falling back by itself when a
// release's kernel panics until the tries are gone. 4-8 minutes.
func TestScenarioARM64(t *testing.T) {
	e := qemuEnvARM64(t)
	if err := e.runScenario(testContext(t)); err != nil {
		t.Fatal(err)
	}
}

// TestQEMUArgsARM64 checks the arm64 command line's network safety as
// TestQEMUArgs does, and that U-Boot is the firmware.
func TestQEMUArgsARM64(t *testing.T) {
	checkQEMUArgs(t, qemuArgsARM64("disk.qcow2", "qcow2", "/run/fwd.sh", 256),
		"-machine virt", "-bios "+ubootFirmware, "-device virtio-net-device,netdev=n0", "-m 256")
}
