package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// qemuEnvARM64 is qemuEnv for the arm64 machine: it gates on
// SWITCHBACK_QEMU/CI and on qemu-system-aarch64, u-boot-qemu's qemu_arm64
// U-Boot and the other host tools (a skip with the reason outside CI, a
// failure under CI=true).
func qemuEnvARM64(t *testing.T) *env {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	if os.Getenv("SWITCHBACK_QEMU") != "1" && !ci {
		t.Skip("boots arm64 QEMU guests (TCG, minutes): set SWITCHBACK_QEMU=1 to run")
	}
	if missing := missingToolsARM64(); len(missing) > 0 {
		msg := "missing host tools: " + strings.Join(missing, ", ") + " (see .ci/packages)"
		if ci {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	root, err := findCheckout()
	if err != nil {
		t.Fatal(err)
	}
	return &env{CacheDir: defaultCacheDir(), Checkout: root, Out: testWriter{t}, Arch: archARM64}
}

// TestScenarioARM64 is `go run ./examples/qemu -arch arm64 run`: the A/B
// story on qemu-system-aarch64 -M virt with Debian's U-Boot, whose
// boot.scr sources the shipped slots/uboot/boot.cmd. U-Boot has no boot
// counter of its own: the run shows boot.cmd taking a try from the
// environment the agent armed, and falling back by itself when a
// release's kernel panics until the tries are gone. 4-8 minutes.
func TestScenarioARM64(t *testing.T) {
	e := qemuEnvARM64(t)
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-20*time.Second))
		defer cancel()
	}
	if err := e.runScenario(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestQEMUArgsARM64 checks the arm64 command line's network safety as
// TestQEMUArgs does, and that U-Boot is the firmware.
func TestQEMUArgsARM64(t *testing.T) {
	joined := strings.Join(qemuArgsARM64("disk.qcow2", "qcow2", "/run/fwd.sh", 256), " ")
	for _, want := range []string{
		"-accel tcg",
		"-machine virt",
		"-bios " + ubootFirmware,
		"-netdev user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:8080-cmd:/run/fwd.sh",
		"-device virtio-net-device,netdev=n0",
		"-nodefaults",
		"-smp 1",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("QEMU command line lacks %q: %s", want, joined)
		}
	}
	for _, bad := range []string{"hostfwd", "-nic", "kvm", "tcp:127.0.0.1"} {
		if strings.Contains(joined, bad) {
			t.Errorf("QEMU command line has %q: %s", bad, joined)
		}
	}
	if got := strings.Count(joined, "-netdev "); got != 1 {
		t.Errorf("%d -netdev options, want 1", got)
	}
}
