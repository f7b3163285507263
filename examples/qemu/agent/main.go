// Command agent is the update agent of switchback's QEMU example: what an
// integrator writes for an A/B device with GRUB or U-Boot. The root slots'
// init starts it at every boot.
//
// It wires the public API together: two partition slots (/dev/vda2 and
// /dev/vda3), the boot control (GRUB's grubenv on the FAT boot partition,
// or with -bootloader uboot the U-Boot environment fw_env.config names),
// an HTTP health check of the device's application, and the
// updater. At start-up it confirms a trial boot (commit, or mark bad and
// reboot into the previous version, or record that GRUB already fell back),
// then polls the update server and installs what it finds, rebooting into
// each new version.
//
// Every line it prints starts with "agent:"; the example's host side reads
// them from the serial console to follow the scenario.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/partition"
	"github.com/switchback-ota/switchback/updater"
)

func main() {
	server := flag.String("server", "http://10.0.2.100:8080", "base URL of the update server (metadata/ and targets/ below it)")
	stateDir := flag.String("state", "/data/switchback", "state directory, on the data partition")
	bootloader := flag.String("bootloader", loaderGRUB, "boot loader whose environment arms and commits slots: grub or uboot")
	grubenv := flag.String("grubenv", "/mnt/boot/grub/grubenv", "GRUB environment block read by switchback.cfg")
	fwEnvConfig := flag.String("fw-env-config", "/etc/fw_env.config", "U-Boot environment copies, as fw_setenv reads them (-bootloader uboot)")
	slotA := flag.String("slot-a", "/dev/vda2", "partition of slot a")
	slotB := flag.String("slot-b", "/dev/vda3", "partition of slot b")
	etc := flag.String("etc", "/etc/switchback", "directory with root.json, version and hardware of this image")
	healthURL := flag.String("health", "http://127.0.0.1:8081/healthz", "the application's health endpoint")
	poll := flag.Duration("poll", 3*time.Second, "time between update checks")
	confirmTimeout := flag.Duration("confirm-timeout", 15*time.Second, "deadline for the health checks of a new version")
	tries := flag.Int("tries", 2, "boots a new version gets before GRUB falls back")
	bootRecord := flag.String("boot-record", "/run/switchback-agent-storage", "file on a tmpfs where the first agent of a boot records whether the state directory and the grubenv's were writable then")
	flag.Parse()

	ctx := context.Background()
	say("started: version %s, %s", readLine(filepath.Join(*etc, "version")), cmdlineSlot())
	dataMarker(filepath.Dir(*stateDir))

	// run polls for ever: it returns only when it cannot go on.
	err := run(ctx, config{
		server: *server, stateDir: *stateDir, bootloader: *bootloader, grubenv: *grubenv, fwEnvConfig: *fwEnvConfig, slotA: *slotA, slotB: *slotB,
		etc: *etc, healthURL: *healthURL, poll: *poll, confirmTimeout: *confirmTimeout, tries: *tries,
		bootRecord: *bootRecord,
	})
	say("fatal: %v", err)
	os.Exit(1)
}

type config struct {
	server, stateDir, slotA, slotB, etc, healthURL, bootRecord string
	bootloader, grubenv, fwEnvConfig                           string
	poll, confirmTimeout                                       time.Duration
	tries                                                      int
}

func run(ctx context.Context, c config) error {
	root, err := os.ReadFile(filepath.Join(c.etc, "root.json"))
	if err != nil {
		return fmt.Errorf("trusted root: %w", err)
	}
	mkErr := os.MkdirAll(c.stateDir, 0o700)
	sf := &storage{writableAtBoot: writableAtBoot(c.bootRecord, c.stateDir, filepath.Dir(c.grubenv))}
	if mkErr != nil {
		return mkErr
	}
	u, err := newUpdater(c, root)
	if errors.Is(err, updater.ErrStateStorage) {
		sf.fault(err)
		// init restarts the agent when it exits: try again in a minute,
		// not every five seconds.
		time.Sleep(time.Minute)
	}
	if err != nil {
		return err
	}

	// First thing at every start: decide about a trial boot.
	switch err := u.Confirm(ctx); {
	case err == nil:
		say("confirm: ok")
	case errors.Is(err, updater.ErrRolledBack):
		say("confirm: rolled back: %v", err)
	default:
		say("confirm: error: %v", err)
		sf.check(err)
	}
	printStatus(ctx, u)
	poll(ctx, u, c.poll, sf)
	return nil
}

// newUpdater wires the updater: the boot control (GRUB or U-Boot), two
// partition slots, the application's health check.
func newUpdater(c config, root []byte) (*updater.Updater, error) {
	// The boot control: GRUB's environment block, read by switchback.cfg,
	// or U-Boot's environment, read by boot.cmd.
	boot, err := bootControl(c)
	if err != nil {
		return nil, err
	}
	// The two root slots. Boot lets a slot refuse writes while it is the
	// running or the committed one.
	a, err := partition.New(partition.Config{Name: "a", Device: c.slotA, Boot: boot})
	if err != nil {
		return nil, err
	}
	b, err := partition.New(partition.Config{Name: "b", Device: c.slotB, Boot: boot})
	if err != nil {
		return nil, err
	}

	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return updater.New(updater.Config{
		Hardware:    readLine(filepath.Join(c.etc, "hardware")),
		StateDir:    c.stateDir,
		TrustedRoot: root,
		MetadataURL: c.server + "/metadata",
		TargetsURL:  c.server + "/targets",
		Components: []updater.Component{{
			Name:           "rootfs",
			Slots:          []slots.Slot{a, b},
			Boot:           boot,
			FactoryVersion: readLine(filepath.Join(c.etc, "version")),
		}},
		// The application must answer on /healthz; the updater adds its own
		// check that the update server is reachable.
		HealthChecks:   []health.HealthCheck{health.Retry(health.HTTP(c.healthURL, health.WithBodyContains("ok")), time.Second)},
		ConfirmTimeout: c.confirmTimeout,
		Tries:          c.tries,
		Restart:        reboot,
		// The image was built after this: an earlier clock is unset (no
		// RTC, no NTP yet), and TUF expiry cannot be judged with it.
		MinTime: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Logger:  logger,
		Events:  printEvent,
	})
}

// poll checks for updates every interval and installs them, for ever.
func poll(ctx context.Context, u *updater.Updater, interval time.Duration, sf *storage) {
	// Then poll. (updater.Run does the same with jitter and backoff; this
	// loop prints each outcome for the example's transcript.)
	last := ""
	for {
		ups, err := u.Check(ctx)
		switch {
		case errors.Is(err, updater.ErrNoUpdate):
			if last != "up to date" {
				st, _ := u.Status(ctx)
				say("check: up to date (installed %s)", installed(st))
				last = "up to date"
			}
		case errors.Is(err, updater.ErrStateStorage):
			sf.fault(err) // returns when it does not reboot: polls on
			last = ""
		case err != nil:
			say("check: %v", err)
			last = ""
		}
		for _, up := range ups {
			last = ""
			say("update: %s %s -> %s (target %s, %d bytes)", up.Component, up.From, up.To, up.Target.Path, up.Target.Length)
			if err := u.Install(ctx, up); err != nil {
				say("install: %v", err)
				sf.check(err)
				printStatus(ctx, u)
			}
		}
		time.Sleep(interval)
	}
}

// reboot is the updater's Restart for A/B partitions: flush the file
// systems and restart the machine, so that GRUB boots the armed slot (or
// the previous one after a rollback).
func reboot(ctx context.Context, component string) error {
	say("reboot: to start the %s slot the boot loader now selects", component)
	syscall.Sync()
	return syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
}

// storage is the agent's answer to a state directory it cannot write (an
// error wrapping updater.ErrStateStorage), or a boot environment that
// turned read-only. An I/O error on the data partition makes ext4 abort
// its journal and turn read-only until it is unmounted and checked, which
// cannot be done under a running application; vfat (the boot partition)
// turns read-only after an I/O error too. For those (updater.ErrStateReadOnly,
// EROFS) the agent reboots, and init's fsck repairs the data partition
// before mounting it. It reboots only when both were writable when this
// boot began: a partition that init's fsck could not repair (mounted
// read-only) must not reboot the device in a loop. Other storage faults
// (an I/O error or a full partition that left it read-write) may pass, and
// a reboot would not make room: the agent reports them and polls on. In
// every case the running version stays.
type storage struct {
	writableAtBoot bool
	said           bool
}

// check calls fault when err is a storage fault.
func (s *storage) check(err error) {
	if errors.Is(err, updater.ErrStateStorage) || errors.Is(err, syscall.EROFS) {
		s.fault(err)
	}
}

// readOnly says whether a storage fault is a file system turned read-only.
func readOnly(err error) bool {
	return errors.Is(err, updater.ErrStateReadOnly) || errors.Is(err, syscall.EROFS)
}

// fault reboots for a read-only state directory that was writable at
// boot; otherwise it says what it does not do, once, and returns.
func (s *storage) fault(err error) {
	switch {
	case readOnly(err) && s.writableAtBoot:
		say("storage: %v: rebooting so that the boot's fsck repairs the data partition", err)
		syscall.Sync()
		if rerr := syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART); rerr != nil {
			say("storage: reboot: %v", rerr)
		}
	case s.said:
	case readOnly(err):
		say("storage: %v: read-only since this boot began, so a reboot would not repair it; updates are off until the data partition is repaired", err)
		s.said = true
	default:
		say("storage: %v: not rebooting (the partition is still writable); retrying at each poll", err)
		s.said = true
	}
}

// writableAtBoot says whether every one of dirs was on a file system
// mounted read-write when the first agent of this boot started. That agent
// records it in record (on a tmpfs, emptied by a reboot); the agents init
// restarts later in the same boot read it. It asks statfs(2) and writes
// nothing: a probe file on the FAT boot partition would change its
// directory and FAT, which nothing else but GRUB's in-place grubenv
// writes touch.
func writableAtBoot(record string, dirs ...string) bool {
	if b, err := os.ReadFile(record); err == nil {
		return strings.TrimSpace(string(b)) == "writable"
	}
	rw := true
	for _, dir := range dirs {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil || st.Flags&stRDOnly != 0 {
			rw = false
		}
	}
	word := "read-only"
	if rw {
		word = "writable"
	}
	if err := os.WriteFile(record, []byte(word+"\n"), 0o644); err != nil {
		say("storage: record %s: %v", record, err)
	}
	return rw
}

// stRDOnly is statfs(2)'s ST_RDONLY: a file system mounted read-only.
const stRDOnly = 0x1

var lastProgress int64 = -1

// printEvent prints the updater's events; progress every 8 MiB.
func printEvent(e updater.Event) {
	switch e := e.(type) {
	case updater.StateChanged:
		if e.To == updater.StateDownloading {
			lastProgress = -1
		}
		msg := fmt.Sprintf("state: %s %s -> %s version %s", e.Component, e.From, e.To, e.Version)
		if e.Reason != "" {
			msg += " reason: " + e.Reason
		}
		say("%s", msg)
	case updater.Progress:
		if lastProgress < 0 || e.Done-lastProgress >= 8<<20 || e.Done == e.Total {
			say("progress: %s %d/%d", e.Component, e.Done, e.Total)
			lastProgress = e.Done
		}
	case updater.HealthResult:
		if e.Err != nil {
			say("health: %s failed after %v: %v", e.Check, e.Duration.Round(time.Millisecond), e.Err)
		} else {
			say("health: %s passed in %v", e.Check, e.Duration.Round(time.Millisecond))
		}
	case updater.ErrorEvent:
		say("error: %s %s: %v", e.Component, e.Op, e.Err)
	}
}

func installed(st updater.Status) string {
	for _, c := range st.Components {
		return c.Installed
	}
	return ""
}

// printStatus prints one line the host parses: installed version, boot
// control state and the blocklist.
func printStatus(ctx context.Context, u *updater.Updater) {
	st, err := u.Status(ctx)
	if err != nil {
		say("status: %v", err)
		return
	}
	var blocked []string
	for _, r := range st.Blocklist {
		blocked = append(blocked, r.Version)
	}
	slices.Sort(blocked)
	for _, c := range st.Components {
		bs := c.Boot
		say("status: %s installed=%s booted=%s primary=%s trial=%s tries=%d bad=%s blocked=%s last=%q",
			c.Name, c.Installed, bs.Booted, bs.Primary, bs.Trial, bs.TriesLeft,
			strings.Join(bs.Bad, ","), strings.Join(blocked, ","), c.LastResult)
	}
}

// dataMarker shows that the data partition survives updates: a token made
// at the first boot, and a boot counter.
func dataMarker(dir string) {
	p := filepath.Join(dir, "marker")
	token := readLine(p)
	if token == "" {
		var b [8]byte
		rand.Read(b[:])
		token = hex.EncodeToString(b[:])
		if err := writeSync(p, token+"\n"); err != nil {
			say("data: %v", err)
			return
		}
	}
	boots := 0
	fmt.Sscan(readLine(filepath.Join(dir, "boots")), &boots)
	boots++
	if err := writeSync(filepath.Join(dir, "boots"), fmt.Sprintln(boots)); err != nil {
		say("data: %v", err)
	}
	say("data: marker=%s boots=%d", token, boots)
}

func writeSync(path, s string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func cmdlineSlot() string {
	data, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(data)) {
		if strings.HasPrefix(f, "switchback.slot=") {
			return "slot " + strings.TrimPrefix(f, "switchback.slot=")
		}
	}
	return "slot unknown"
}

func readLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

func say(format string, a ...any) {
	fmt.Printf("agent: "+format+"\n", a...)
}
