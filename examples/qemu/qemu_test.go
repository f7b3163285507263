package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The tests that boot QEMU guests run when SWITCHBACK_QEMU=1 or CI=true
// (where a missing tool is a failure, not a skip):
//
//	SWITCHBACK_QEMU=1 go test -v -run 'TestGRUB|TestScenario' ./examples/qemu
//
// They download the Debian cloud kernel and busybox-static with apt-get
// download into the cache (SWITCHBACK_QEMU_CACHE, default
// $XDG_CACHE_HOME/switchback-qemu) the first time.

// qemuEnv gates a test on SWITCHBACK_QEMU/CI and on the host tools, and
// returns an env whose transcript goes to the test log.
func qemuEnv(t *testing.T) *env {
	t.Helper()
	return qemuEnvArch(t, archAMD64, missingTools)
}

// qemuEnvArch is qemuEnv for the machine arch, whose host tools
// missingTools lists.
func qemuEnvArch(t *testing.T, arch string, missingTools func() []string) *env {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	if os.Getenv("SWITCHBACK_QEMU") != "1" && !ci {
		t.Skip("boots QEMU guests (TCG, minutes): set SWITCHBACK_QEMU=1 to run")
	}
	if missing := missingTools(); len(missing) > 0 {
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
	return &env{CacheDir: defaultCacheDir(), Checkout: root, Out: testWriter{t}, Arch: arch}
}

// testContext ends a little before go test's deadline, so that a failure
// comes with the transcript rather than a goroutine dump.
func testContext(t *testing.T) context.Context {
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-20*time.Second))
		t.Cleanup(cancel)
	}
	return ctx
}

// testWriter sends transcript lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestGRUBBootCount proves the boot-count contract on a real GRUB, with the
// grubenv set from the host: a trial slot whose kernel panics is tried
// exactly sb_tries times, then the primary boots and the trial stays
// recorded with no tries left; a good trial slot boots and gets the
// counter decremented.
//
// The scenario covers the same ground, so under CI only the scenario runs;
// set SWITCHBACK_QEMU=1 to run this one too.
func TestGRUBBootCount(t *testing.T) {
	if os.Getenv("SWITCHBACK_QEMU") != "1" {
		t.Skip("set SWITCHBACK_QEMU=1 to run (under CI, TestScenario covers GRUB's counting)")
	}
	e := qemuEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	b := e.builder()
	a, err := b.prepare(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good1 := filepath.Join(dir, "v1.ext4")
	panic4 := filepath.Join(dir, "v4.ext4")
	good2 := filepath.Join(dir, "v2.ext4")
	for _, r := range []struct {
		rel release
		out string
	}{
		{release{Version: "1.0.0", Flavor: flavorGood}, good1},
		{release{Version: "4.0.0", Flavor: flavorPanic}, panic4},
		{release{Version: "2.0.0", Flavor: flavorGood}, good2},
	} {
		if err := b.slotImage(ctx, a, r.rel, r.out); err != nil {
			t.Fatal(err)
		}
	}
	env, err := grubenvBlock([][2]string{{"sb_primary", "a"}, {"sb_trial", "b"}, {"sb_tries", "2"}, {"sb_bad", ""}, {"sb_canary", "t1"}})
	if err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(dir, "disk.raw")
	if err := b.disk(ctx, diskSpec{SlotA: good1, SlotB: panic4, Env: env}, raw); err != nil {
		t.Fatal(err)
	}
	srv, err := startHostServer("", e.logf)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	boot := func() *vm {
		t.Helper()
		v, err := startVM(ctx, vmConfig{Disk: raw, Format: "raw", Busybox: a.Busybox, Port: srv.port, WorkDir: dir, Console: e.consoleWriter(dir)})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	expectGRUB := func(v *vm, slot, tries string) {
		t.Helper()
		m, err := v.wait(ctx, 90*time.Second, grubLineRE, nil)
		if err != nil {
			t.Fatal(err)
		}
		if m[1] != slot || m[4] != tries {
			t.Fatalf("GRUB booted slot %s with tries=%s; want slot %s with tries=%s (%s)", m[1], m[4], slot, tries, m[0])
		}
		e.logf("GRUB: %s", m[0])
	}
	expectUserspace := func(v *vm, slot, version string) {
		t.Helper()
		m, err := v.wait(ctx, 120*time.Second, userspaceRE, panicRE)
		if err != nil {
			t.Fatal(err)
		}
		if m[1] != version || m[2] != slot {
			t.Fatalf("userspace up with version %s on slot %s; want %s on %s", m[1], m[2], version, slot)
		}
		e.logf("userspace: version %s on slot %s", m[1], m[2])
	}

	// A panicking trial with two tries: b, b, then a.
	v := boot()
	expectGRUB(v, "b", "1")
	if _, err := v.wait(ctx, 120*time.Second, panicRE, nil); err != nil {
		t.Fatal(err)
	}
	e.logf("slot b: kernel panic (1st try)")
	expectGRUB(v, "b", "0")
	if _, err := v.wait(ctx, 120*time.Second, panicRE, nil); err != nil {
		t.Fatal(err)
	}
	e.logf("slot b: kernel panic (2nd try)")
	expectGRUB(v, "a", "0")
	expectUserspace(v, "a", "1.0.0")
	select {
	case hello := <-srv.hello:
		e.logf("hello over guestfwd: %s", hello)
		if hello != "slot=a version=1.0.0" {
			t.Errorf("hello = %q, want slot=a version=1.0.0", hello)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no hello from the guest over guestfwd")
	}
	v.kill()
	vars, err := readDiskEnv(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"sb_primary": "a", "sb_trial": "b", "sb_tries": "0", "sb_canary": "t1"} {
		if got := vars[k]; got != want {
			t.Errorf("after the fallback grubenv %s = %q, want %q", k, got, want)
		}
	}

	// A good trial with three tries: boots b, one try consumed.
	if err := writeDiskSlot(raw, "b", good2); err != nil {
		t.Fatal(err)
	}
	env, err = grubenvBlock([][2]string{{"sb_primary", "a"}, {"sb_trial", "b"}, {"sb_tries", "3"}, {"sb_bad", ""}, {"sb_canary", "t2"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeDiskEnv(ctx, raw, env); err != nil {
		t.Fatal(err)
	}
	v = boot()
	defer v.stop()
	expectGRUB(v, "b", "2")
	expectUserspace(v, "b", "2.0.0")
	v.kill()
	if vars, err = readDiskEnv(ctx, raw); err != nil {
		t.Fatal(err)
	}
	if got, want := vars["sb_tries"], "2"; got != want {
		t.Errorf("after the trial boot grubenv sb_tries = %q, want %q", got, want)
	}
}

// TestScenario is `go run ./examples/qemu run`: the whole A/B story on a
// real GRUB and kernel under QEMU (TCG), with two power cuts and a
// corrupted image. It takes 4-10 minutes depending on the machine's load;
// run it with a larger -timeout than go test's default 10m when the
// machine is busy.
func TestScenario(t *testing.T) {
	e := qemuEnv(t)
	ctx := testContext(t)
	// The device's disk is served by our NBD server, which logs every
	// write and flush: the power cuts drop what the guest had not flushed,
	// and the crash states of the whole run are replayed afterwards.
	e.Record = filepath.Join(t.TempDir(), "writes.log")
	if err := e.runScenario(ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("CrashReplay", func(t *testing.T) {
		// A short replay: ~300 states spread over the whole run, checked
		// without booting (go run ./examples/qemu replay checks thousands).
		err := e.replayLog(ctx, e.Record, replayConfig{Max: 300, PerEpoch: 3, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestQEMUArgs checks the network safety of the QEMU command line: TCG,
// user networking with restrict=on, one guestfwd to a script, and no
// other network device or forward.
func TestQEMUArgs(t *testing.T) {
	checkQEMUArgs(t, qemuArgs("disk.qcow2", "qcow2", "/run/fwd.sh", 256), "-device virtio-net-pci,netdev=n0", "-m 256")
}

// checkQEMUArgs checks a QEMU command line (built with the guestfwd script
// /run/fwd.sh) for TCG, one CPU, the restricted user network and the
// options in want, and against any other network access.
func checkQEMUArgs(t *testing.T, args []string, want ...string) {
	t.Helper()
	joined := strings.Join(args, " ")
	for _, want := range append([]string{
		"-accel tcg",
		"-netdev user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:8080-cmd:/run/fwd.sh",
		"-nodefaults",
		"-smp 1",
	}, want...) {
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

func TestFwdScript(t *testing.T) {
	dir := t.TempDir()
	p, err := fwdScript(dir, "/cache/busybox", 4242)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), "#!/bin/sh\nexec /cache/busybox nc 127.0.0.1 4242\n"; got != want {
		t.Errorf("script = %q, want %q", got, want)
	}
	if strings.ContainsAny(p, " \t") {
		t.Errorf("script path %q has a space: libslirp would split it", p)
	}
}

func TestGrubenvRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		vars [][2]string
	}{
		{"factory", [][2]string{{"sb_primary", "a"}, {"sb_trial", ""}, {"sb_tries", "0"}}},
		{"trial", [][2]string{{"sb_primary", "a"}, {"sb_trial", "b"}, {"sb_tries", "3"}, {"sb_canary", "x=y"}}},
		{"empty", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			block, err := grubenvBlock(tt.vars)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(block), 1024; got != want {
				t.Fatalf("block is %d bytes, want %d", got, want)
			}
			got, err := parseGrubenv(block)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.vars) {
				t.Errorf("parsed %d variables, want %d: %v", len(got), len(tt.vars), got)
			}
			for _, kv := range tt.vars {
				if got[kv[0]] != kv[1] {
					t.Errorf("%s = %q, want %q", kv[0], got[kv[0]], kv[1])
				}
			}
		})
	}
}

func TestGrubenvErrors(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"no header", "sb_primary=a\n"},
		{"no equals", "# GRUB Environment Block\nsb_primary\n"},
		{"unterminated", "# GRUB Environment Block\nsb_primary=a"},
		{"empty name", "# GRUB Environment Block\n=a\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if vars, err := parseGrubenv([]byte(tt.data)); err == nil {
				t.Errorf("parseGrubenv(%q) = %v, nil; want an error", tt.data, vars)
			}
		})
	}
	if _, err := grubenvBlock([][2]string{{"a", strings.Repeat("x", 1100)}}); err == nil {
		t.Error("grubenvBlock accepted variables longer than the block")
	}
	if _, err := grubenvBlock([][2]string{{"a", "x\ny"}}); err == nil {
		t.Error("grubenvBlock accepted a newline in a value")
	}
}

func FuzzParseGrubenv(f *testing.F) {
	f.Add([]byte("# GRUB Environment Block\nsb_primary=a\nsb_trial=\n####"))
	f.Add([]byte("# GRUB Environment Block\nx=a\\\\b\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		vars, err := parseGrubenv(data)
		if err != nil {
			return
		}
		// What parses and is plain re-encodes to the same variables.
		var kv [][2]string
		for k, v := range vars {
			if strings.ContainsAny(k+v, "\\\n") || strings.Contains(k, "=") {
				return
			}
			kv = append(kv, [2]string{k, v})
		}
		block, err := grubenvBlock(kv)
		if err != nil {
			return // too long for one block
		}
		again, err := parseGrubenv(block)
		if err != nil {
			t.Fatalf("re-encoded block does not parse: %v", err)
		}
		if len(again) != len(vars) {
			t.Fatalf("round trip: %v, want %v", again, vars)
		}
		for k, v := range vars {
			if again[k] != v {
				t.Fatalf("round trip %s = %q, want %q", k, again[k], v)
			}
		}
	})
}

func TestUUIDFor(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}$`)
	for _, s := range []string{"", "data", "rootfs 1.0.0 good"} {
		u := uuidFor(s)
		if !re.MatchString(u) {
			t.Errorf("uuidFor(%q) = %q, not a version 4 UUID", s, u)
		}
		if again := uuidFor(s); again != u {
			t.Errorf("uuidFor(%q) not stable: %q then %q", s, u, again)
		}
	}
	if bytes.Equal([]byte(uuidFor("a")), []byte(uuidFor("b"))) {
		t.Error("uuidFor gives different strings the same UUID")
	}
}

// TestPowercut runs one seeded power-cut cycle: a fresh device updating to
// v2.0.0 over the NBD server loses power at a seeded write or flush
// request (the writes it had not flushed are lost), its disk passes the
// crash replay's invariants, and it boots again on v1.0.0 or v2.0.0 and
// commits v2.0.0.
func TestPowercut(t *testing.T) {
	e := qemuEnv(t)
	ctx := testContext(t)
	if err := e.runPowercut(ctx, 1, 1, 1); err != nil {
		t.Fatal(err)
	}
}

// TestFaults is `go run ./examples/qemu faults`: EIO and ENOSPC under the
// guest's disk (the NBD server fails the writes) during the download, the
// slot write, the state write and the boot-environment write. Each time
// the agent must report an error, keep running v1.0.0, and commit v2.0.0
// once the fault clears — for the held state-write fault, after the agent
// rebooted the data partition ext4 shut down into init's fsck. Each site
// is a whole update (4-10 minutes under TCG): CI runs the held state
// write only, the site whose recovery needs the reboot; SWITCHBACK_QEMU=1
// runs all five.
func TestFaults(t *testing.T) {
	e := qemuEnv(t)
	ctx := testContext(t)
	dir, s, err := e.nbdScenario(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	defer s.close()
	for _, f := range faultSites() {
		t.Run(f.Name, func(t *testing.T) {
			if os.Getenv("SWITCHBACK_QEMU") != "1" && f.Name != stateWriteHeldSite {
				t.Skip("set SWITCHBACK_QEMU=1 to run every site (CI runs the held state-write fault)")
			}
			out := s.faultCycle(ctx, f, dir)
			t.Log(out)
			if !strings.HasPrefix(out, "ok") {
				t.Error(out)
			}
		})
	}
}

// TestCrashBoot is `go run ./examples/qemu -n 1 crashboot`: a fresh
// device's update is recorded over NBD, its crash states are checked
// offline, and one of them is booted: it must come up on v1.0.0 or v2.0.0
// and commit v2.0.0 by itself. It takes two whole updates under TCG (10-25
// minutes), too long for CI next to TestScenario and TestPowercut: set
// SWITCHBACK_QEMU=1 to run it; the README has the last sample's figures.
func TestCrashBoot(t *testing.T) {
	if os.Getenv("SWITCHBACK_QEMU") != "1" {
		t.Skip("set SWITCHBACK_QEMU=1 to run (two updates under TCG; not in CI)")
	}
	e := qemuEnv(t)
	ctx := testContext(t)
	if err := e.runCrashBoot(ctx, 1, 1); err != nil {
		t.Fatal(err)
	}
}
