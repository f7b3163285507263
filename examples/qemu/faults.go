package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// faultSite is where, on the disk, and when in the update a storage fault
// is injected under the guest.
type faultSite struct {
	Name       string
	Start, End int64          // byte range of the disk whose writes fail
	After      *regexp.Regexp // the console line that turns the fault on
	Code       uint32         // nbdEIO or nbdENOSPC
	// UntilReboot keeps the fault on after the agent reported it until
	// the device reboots (false: cleared at once), as a storage error a
	// reset clears. Held, an EIO on the data partition reaches ext4's
	// journal, which aborts: the file system refuses every write until a
	// reboot's fsck.
	UntilReboot bool
}

var (
	downloadingRE = regexp.MustCompile(`^agent: state: rootfs \S+ -> downloading version 2\.0\.0`)
	verifiedRE    = regexp.MustCompile(`^agent: state: rootfs \S+ -> verified version 2\.0\.0`)
	agentErrorRE  = regexp.MustCompile(`^agent: (state: rootfs \S+ -> failed|.*(error|input/output|no space))`)
	rebootingRE   = regexp.MustCompile(`^(grub|u-boot): booting`) // the next boot
)

// stateWriteSite is an EIO under the state file, cleared as soon as the
// agent reports it; stateWriteHeldSite holds it until the device reboots,
// long enough for ext4's journal to abort, so that the recovery needs the
// agent's reboot and init's fsck. (An earlier version held it 20 s: on an
// idle machine the device rebooted within them, init's fsck met the
// failing disk, and the data partition stayed read-only — see the
// README's crash campaign.)
const (
	stateWriteSite     = "state write (data partition, EIO)"
	stateWriteHeldSite = "state write held until the reboot (data partition, EIO, journal abort)"
)

// faultSites are the five the campaign covers: the state file on the
// data partition (a passing fault, and one held until the journal
// aborts), the boot environment when the update is armed, and the
// download's writes to the slot (ENOSPC, then EIO on the slot as a whole).
func faultSites() []faultSite {
	slotB := [2]int64{slotBStart * sector, (slotBStart + slotSize) * sector}
	return []faultSite{
		{stateWriteSite, dataStart * sector, (dataStart + dataSize) * sector, downloadingRE, nbdEIO, false},
		{stateWriteHeldSite, dataStart * sector, (dataStart + dataSize) * sector, downloadingRE, nbdEIO, true},
		{"bootenv write (boot partition, EIO)", bootStart * sector, (bootStart + bootSize) * sector, verifiedRE, nbdEIO, false},
		{"download (slot b, ENOSPC)", slotB[0], slotB[1], downloadingRE, nbdENOSPC, false},
		{"slot write (slot b, EIO)", slotB[0], slotB[1], downloadingRE, nbdEIO, false},
	}
}

// runFaults is `go run ./examples/qemu faults`: for each site, a fresh
// device starts updating to v2.0.0, writes to the site fail, and the
// device must report an error, keep running v1.0.0 from slot a, and commit
// v2.0.0 once the fault is cleared.
func (e *env) runFaults(ctx context.Context, only string) error {
	dir, s, err := e.nbdScenario(ctx)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer s.close()
	var failed []string
	var table strings.Builder
	for _, f := range faultSites() {
		if ctx.Err() != nil {
			break
		}
		if !strings.Contains(f.Name, only) {
			continue
		}
		out := s.faultCycle(ctx, f, dir)
		fmt.Fprintf(&table, "  %-38s %s\n", f.Name, out)
		if !strings.HasPrefix(out, "ok") {
			failed = append(failed, f.Name)
		}
	}
	fmt.Fprintf(e.Out, "storage faults:\n%s", table.String())
	if len(failed) > 0 {
		return fmt.Errorf("storage faults failed: %s", strings.Join(failed, "; "))
	}
	return nil
}

// faultCycle runs one site; it returns "ok: …" or what went wrong.
func (s *scenario) faultCycle(ctx context.Context, f faultSite, dir string) string {
	if err := s.resetDevice(ctx, dir); err != nil {
		return "reset: " + err.Error()
	}
	s.marker = "" // a fresh device makes a new data marker
	if err := s.start(ctx); err != nil {
		return "start: " + err.Error()
	}
	defer s.v.kill()
	// Timeouts are powercutTimeout's: a starved TCG guest takes minutes
	// to boot, and a timeout must mean the device is stuck.
	if _, err := s.expect(ctx, powercutTimeout, f.After); err != nil {
		return "before the fault: " + err.Error()
	}
	s.nbd.SetFault(func(r nbdRequest) uint32 {
		off := int64(r.Offset)
		if r.Type == nbdCmdWrite && off < f.End && off+int64(r.Length) > f.Start {
			return f.Code
		}
		return 0
	})
	m, err := s.expect(ctx, powercutTimeout, agentErrorRE, agentRebootRE)
	if err != nil || agentRebootRE.MatchString(m[0]) {
		s.nbd.SetFault(nil)
		return fmt.Sprintf("no error reported (%v)", err)
	}
	report := m[0]
	if f.UntilReboot {
		if _, err := s.expect(ctx, powercutTimeout, rebootingRE); err != nil {
			s.nbd.SetFault(nil)
			return fmt.Sprintf("reported %q, then no reboot while the fault held (%v)", report, err)
		}
	}
	faults := s.nbd.Stats().Faults
	s.nbd.SetFault(nil)
	// Whatever the update does next, a boot must come up on a good
	// version and end with v2.0.0 committed.
	if out := s.followToCommit(ctx); out != "committed 2.0.0" {
		return fmt.Sprintf("reported %q, then after the fault cleared: %s", report, out)
	}
	return fmt.Sprintf("ok: %d writes failed, agent said %q, v2.0.0 committed after the fault cleared", faults, report)
}

// nbdScenario builds the scenario over the NBD server, v2.0.0 published,
// for the powercut and faults commands.
func (e *env) nbdScenario(ctx context.Context) (string, *scenario, error) {
	dir, err := os.MkdirTemp("", "switchback-nbd-")
	if err != nil {
		return "", nil, err
	}
	e.Record = dir + "/writes.log"
	s, err := e.newScenario(ctx)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	if _, err := s.publish(ctx, "2.0.0", nil); err != nil {
		s.close()
		os.RemoveAll(dir)
		return "", nil, err
	}
	// The log holds nothing (no guest ran yet): the cycles reset the disk
	// to the .base copy and serve it without a log.
	return dir, s, nil
}
