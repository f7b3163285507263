package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

// Timeouts are generous: TCG on a shared machine boots in 10-60 s.
const (
	bootTimeout     = 180 * time.Second // QEMU start or reboot to the agent's first line
	downloadTimeout = 300 * time.Second // a whole release over guestfwd
	stepTimeout     = 120 * time.Second // anything else
)

// Console lines the scenario follows; the agent prints them (see agent/).
var (
	agentStartedRE = regexp.MustCompile(`^agent: started: version (\S+), slot (\S+)`)
	agentDataRE    = regexp.MustCompile(`^agent: data: marker=(\S+) boots=(\d+)`)
	agentConfirmRE = regexp.MustCompile(`^agent: confirm: (ok|rolled back|error)`)
	agentStatusRE  = regexp.MustCompile(`^agent: status: rootfs installed=(\S*) booted=(\S*) primary=(\S*) trial=(\S*) tries=(\d+) bad=(\S*) blocked=(\S*) last=`)
	agentStateRE   = regexp.MustCompile(`^agent: state: rootfs (\S+) -> (\S+) version (\S+)(?: reason: (.*))?`)
	agentProgRE    = regexp.MustCompile(`^agent: progress: rootfs (\d+)/(\d+)`)
	agentUpdateRE  = regexp.MustCompile(`^agent: update: rootfs (\S+) -> (\S+)`)
	agentUpToDate  = regexp.MustCompile(`^agent: check: up to date \(installed (\S+)\)`)
	agentRebootRE  = regexp.MustCompile(`^agent: reboot:`)
	agentFailedRE  = regexp.MustCompile(`^agent: state: rootfs \S+ -> failed`)
	agentHealthRE  = regexp.MustCompile(`^agent: health: (\S+) (passed|failed)`)
	confirmStepRE  = regexp.MustCompile(`^agent: (state: rootfs \S+ -> (confirming|committed)|confirm: (ok|rolled back|error))`)
	agentFatalRE   = regexp.MustCompile(`^agent: fatal:`)
	grubLineRE     = regexp.MustCompile(`(?:grub|u-boot): booting slot ([ab]) \(primary=(\S*) trial=(\S*) tries=(\d*) bad=([^)]*)\)`) // grub.cfg's or boot-arm64.cmd's choice
	echoRE         = regexp.MustCompile(`^(agent:|grub:|u-boot:|init: agent exited)|Kernel panic`)
)

// scenario is one run of the update story on one device (one overlay),
// across QEMU restarts.
type scenario struct {
	e      *env
	dir    string
	f      *factory
	repo   *repository.Repo
	srv    *hostServer
	disk   string // what QEMU opens: a qcow2 overlay, or the NBD server's URL
	format string // "qcow2", or "raw" over NBD
	nbd    *nbdServer
	raw    string // the raw disk the NBD server serves ("" without NBD)
	v      *vm
	marker string   // the data partition's token, from the first boot
	booted []string // versions the agent started on, as followToCommit saw them
	steps  []stepTime
	images map[string]string // version -> slot image
	grubAt time.Time         // when GRUB last said which slot it boots
}

// scenarioStep is one named step of a run.
type scenarioStep struct {
	name string
	fn   func(context.Context) error
}

type stepTime struct {
	name string
	d    time.Duration
}

// step runs fn as one named step of the transcript and records its time.
func (s *scenario) step(name string, fn func() error) error {
	s.e.logf("=== %s", name)
	start := time.Now()
	err := fn()
	d := time.Since(start)
	s.steps = append(s.steps, stepTime{name, d})
	if err != nil {
		s.e.logf("FAILED %s after %.1fs: %v", name, d.Seconds(), err)
		return fmt.Errorf("%s: %w", name, err)
	}
	s.e.logf("ok %s (%.1fs)", name, d.Seconds())
	return nil
}

// start starts QEMU on the device's disk (after a power cut, or the first
// time).
func (s *scenario) start(ctx context.Context) error {
	if s.nbd != nil {
		s.nbd.PowerOn()
	}
	var dlStart time.Time
	v, err := startVM(ctx, vmConfig{
		Disk: s.disk, Format: s.format, Busybox: s.f.Assets.hostBusybox(), Port: s.srv.port, WorkDir: s.dir, Arch: s.e.Arch,
		Console: s.e.consoleWriter(s.dir),
		Echo: func(line string) {
			if echoRE.MatchString(line) {
				s.e.logf("  guest| %s", line)
			}
			// Time each download: network, write to the slot, verification.
			if m := agentStateRE.FindStringSubmatch(line); m != nil {
				switch {
				case m[2] == "downloading":
					dlStart = time.Now()
				case m[1] == "downloading" && !dlStart.IsZero():
					s.e.logf("download of %s (stream to the slot, verify): %.1fs, ended %s", m[3], time.Since(dlStart).Seconds(), m[2])
					dlStart = time.Time{}
				}
			}
		},
	})
	if err != nil {
		return err
	}
	s.v = v
	s.e.logf("QEMU started (TCG, 256 MiB, guestfwd %s -> 127.0.0.1:%d)", guestServer, s.srv.port)
	return nil
}

// powerCut kills QEMU: what the guest had not written to its disk is lost.
// Over NBD the server first drops every write the guest had not flushed,
// as a drive's volatile cache loses it.
func (s *scenario) powerCut() {
	if s.nbd != nil {
		n, err := s.nbd.Cut()
		if err != nil {
			s.e.logf("NBD cut: %v", err)
		}
		s.v.kill()
		s.e.logf("POWER CUT: %d unflushed writes dropped, QEMU killed", n)
		return
	}
	s.v.kill()
	s.e.logf("POWER CUT: QEMU killed")
}

// expect waits for a console line matching re. A "fatal" line from the
// agent, or one of the fail expressions, ends the wait with an error.
func (s *scenario) expect(ctx context.Context, timeout time.Duration, re *regexp.Regexp, fail ...*regexp.Regexp) ([]string, error) {
	fails := append([]*regexp.Regexp{agentFatalRE}, fail...)
	var alt []string
	for _, f := range fails {
		alt = append(alt, "(?:"+f.String()+")")
	}
	return s.v.wait(ctx, timeout, re, regexp.MustCompile(strings.Join(alt, "|")))
}

// expectBoot waits for GRUB's choice and the agent's start, and checks
// both, and the data partition's marker.
func (s *scenario) expectBoot(ctx context.Context, slot, version string) error {
	m, err := s.expect(ctx, bootTimeout, grubLineRE)
	if err != nil {
		return err
	}
	s.grubAt = time.Now()
	if m[1] != slot {
		return fmt.Errorf("GRUB booted slot %s, want %s (%s)", m[1], slot, m[0])
	}
	return s.expectAgent(ctx, slot, version)
}

// expectAgent waits for the agent's start on slot with version, and checks
// the data partition's marker.
func (s *scenario) expectAgent(ctx context.Context, slot, version string) error {
	m, err := s.expect(ctx, bootTimeout, agentStartedRE, panicRE)
	if err != nil {
		return err
	}
	if m[1] != version || m[2] != slot {
		return fmt.Errorf("agent started on version %s slot %s, want %s on slot %s", m[1], m[2], version, slot)
	}
	if !s.grubAt.IsZero() {
		s.e.logf("boot: boot loader to agent in %.1fs", time.Since(s.grubAt).Seconds())
	}
	if m, err = s.expect(ctx, stepTimeout, agentDataRE); err != nil {
		return err
	}
	if s.marker == "" {
		s.marker = m[1]
	} else if m[1] != s.marker {
		return fmt.Errorf("data partition marker is %s, was %s: the data partition did not survive", m[1], s.marker)
	}
	return nil
}

// expectStatus waits for the agent's status line and checks the fields
// given in want (installed, booted, primary, trial, blocked).
func (s *scenario) expectStatus(ctx context.Context, want map[string]string) error {
	m, err := s.expect(ctx, stepTimeout, agentStatusRE)
	if err != nil {
		return err
	}
	got := map[string]string{"installed": m[1], "booted": m[2], "primary": m[3], "trial": m[4], "tries": m[5], "bad": m[6], "blocked": m[7]}
	for k, w := range want {
		if got[k] != w {
			return fmt.Errorf("agent status %s=%q, want %q (%s)", k, got[k], w, m[0])
		}
	}
	return nil
}

// expectState waits for the agent to report a transition to state to of
// version, failing on a transition to any state in failOn.
func (s *scenario) expectState(ctx context.Context, timeout time.Duration, to, version string, failOn ...string) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		m, err := s.expect(ctx, time.Until(deadline), agentStateRE)
		if err != nil {
			return nil, err
		}
		if m[3] != version {
			continue
		}
		if m[2] == to {
			return m, nil
		}
		for _, f := range failOn {
			if m[2] == f {
				return nil, fmt.Errorf("agent went to state %s for %s, want %s (reason: %s)", m[2], version, to, m[4])
			}
		}
	}
}

// stateRebootRE is either line expectStateReboot waits for.
var stateRebootRE = regexp.MustCompile(agentStateRE.String() + "|" + agentRebootRE.String())

// expectArmedReboot waits for version's transition to armed and for the
// agent's reboot line.
func (s *scenario) expectArmedReboot(ctx context.Context, timeout time.Duration, version string, failOn ...string) error {
	return s.expectStateReboot(ctx, timeout, "armed", version, failOn...)
}

// expectStateReboot waits for version's transition to state to and for
// the agent's reboot line, in either order: the agent may print the reboot
// before its event handler prints the transition.
func (s *scenario) expectStateReboot(ctx context.Context, timeout time.Duration, to, version string, failOn ...string) error {
	deadline := time.Now().Add(timeout)
	armed, reboot := false, false
	for !armed || !reboot {
		m, err := s.expect(ctx, time.Until(deadline), stateRebootRE)
		if err != nil {
			return err
		}
		if agentRebootRE.MatchString(m[0]) {
			reboot = true
			continue
		}
		st := agentStateRE.FindStringSubmatch(m[0])
		if st[3] != version {
			continue
		}
		armed = armed || st[2] == to
		for _, f := range failOn {
			if st[2] == f {
				return fmt.Errorf("agent went to state %s for %s, want %s (reason: %s)", st[2], version, to, st[4])
			}
		}
	}
	return nil
}

// publish adds a release to the repository and publishes new metadata.
// tamper, when not nil, is called between adding the file and publishing
// the metadata that names it.
func (s *scenario) publish(ctx context.Context, version string, tamper func(repository.Target) error) (repository.Target, error) {
	f, err := os.Open(s.images[version])
	if err != nil {
		return repository.Target{}, err
	}
	defer f.Close()
	t, err := s.repo.AddTarget(ctx, "rootfs-"+version+".ext4", f, verify.Custom{
		Component: "rootfs", Version: version, Hardware: []string{s.e.hardware()},
	}, repository.AddOptions{})
	if err != nil {
		return t, err
	}
	if tamper != nil {
		if err := tamper(t); err != nil {
			return t, err
		}
	}
	if err := s.repo.Publish(ctx); err != nil {
		return t, err
	}
	s.e.logf("published rootfs %s: %d bytes, sha256 %.16s…", version, t.Length, t.SHA256)
	return t, nil
}

// runScenario is `go run ./examples/qemu run`.
func (e *env) runScenario(ctx context.Context) error {
	s, err := e.newScenario(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	return s.run(ctx)
}

// newScenario makes the signed repository, the factory disk holding its
// root of trust, the three release images, and starts the host server.
func (e *env) newScenario(ctx context.Context) (*scenario, error) {
	e.logf("preparing: repository keys, factory disk, releases")
	tmp, err := os.MkdirTemp(filepath.Join(e.CacheDir), "repo-")
	if err != nil {
		if err := os.MkdirAll(e.CacheDir, 0o755); err != nil {
			return nil, err
		}
		if tmp, err = os.MkdirTemp(filepath.Join(e.CacheDir), "repo-"); err != nil {
			return nil, err
		}
	}
	repoDir := filepath.Join(tmp, "repo")
	repo, err := repository.Init(ctx, repository.Config{Dir: repoDir}, repository.InitOptions{KeysDir: filepath.Join(tmp, "keys")})
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	rootJSON, err := os.ReadFile(filepath.Join(repo.MetadataDir(), "1.root.json"))
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	f, err := e.buildFactory(ctx, rootJSON, true)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	// The repository moves into the run's directory.
	if err := os.Rename(tmp, filepath.Join(f.Dir, "publisher")); err != nil {
		return nil, err
	}
	repoDir = filepath.Join(f.Dir, "publisher", "repo")
	keys, err := repository.LoadKeys(filepath.Join(f.Dir, "publisher", "keys"))
	if err != nil {
		return nil, err
	}
	if repo, err = repository.Open(repository.Config{Dir: repoDir, Keys: keys}); err != nil {
		return nil, err
	}
	s := &scenario{e: e, dir: f.Dir, f: f, repo: repo, images: map[string]string{"1.0.0": filepath.Join(f.Dir, "v1.0.0.ext4")}}
	b := e.builder()
	for _, r := range []release{
		{Version: "2.0.0", Flavor: flavorGood},
		{Version: "3.0.0", Flavor: flavorNoHealth},
		{Version: "4.0.0", Flavor: flavorPanic},
	} {
		r = e.newRelease(r.Version, r.Flavor, f.Agent, rootJSON)
		out := filepath.Join(f.Dir, "v"+r.Version+".ext4")
		if err := b.slotImage(ctx, f.Assets, r, out); err != nil {
			return nil, err
		}
		s.images[r.Version] = out
		e.logf("release image %s (%s): %s", r.Version, r.Flavor, out)
	}
	if s.srv, err = startHostServer(repoDir, e.logf); err != nil {
		return nil, err
	}
	e.logf("update server: http://127.0.0.1:%d (the guest sees it as http://%s)", s.srv.port, guestServer)
	if e.Record != "" {
		return s, s.serveNBD(ctx, e.Record)
	}
	s.disk, s.format = filepath.Join(f.Dir, "device.qcow2"), "qcow2"
	if err := overlay(ctx, f.Disk, s.disk); err != nil {
		return nil, err
	}
	return s, nil
}

// serveNBD puts the device's disk behind the NBD server, recording every
// write, flush and FUA to logPath; the disk as it was before the first
// write is kept next to the log (logPath + ".base") for the replay, and
// the release images' paths in logPath + ".releases".
func (s *scenario) serveNBD(ctx context.Context, logPath string) error {
	s.raw = filepath.Join(s.dir, "device.raw")
	if _, err := run(ctx, "", nil, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", s.f.Disk, s.raw); err != nil {
		return err
	}
	if _, err := run(ctx, "", nil, "cp", "--sparse=always", s.raw, logPath+".base"); err != nil {
		return err
	}
	var rel strings.Builder
	for v, p := range s.images {
		fmt.Fprintf(&rel, "%s %s\n", v, p)
	}
	if err := os.WriteFile(logPath+".releases", []byte(rel.String()), 0o644); err != nil {
		return err
	}
	var err error
	if s.nbd, err = startNBD(s.raw, logPath); err != nil {
		return err
	}
	s.disk, s.format = s.nbd.URL(), "raw"
	s.e.logf("device disk served over NBD at %s, writes logged to %s", s.disk, logPath)
	return nil
}

func (s *scenario) close() {
	if s.v != nil {
		s.v.stop()
	}
	if s.srv != nil {
		s.srv.close()
	}
	if s.nbd != nil {
		st := s.nbd.Stats()
		s.e.logf("NBD: %d writes (%d with FUA, %d MiB), %d flushes, %d trims, %d faults",
			st.Writes, st.FUAs, st.Bytes>>20, st.Flushes, st.Trims, st.Faults)
		s.nbd.Close()
	}
}

// run is the scenario. Each step checks what the device reports on its
// console; the first deviation fails the run.
func (s *scenario) run(ctx context.Context) error {
	steps := []scenarioStep{
		{"factory v1.0.0 boots from slot a and is committed", s.factoryBoot},
		{"v2.0.0 published, download into slot b; power cut mid-write", s.v2PowerCutWrite},
		{"restart: v1.0.0 boots, the download resumes, v2.0.0 verified, armed, reboot", s.v2Resume},
		{"v2.0.0 trial boot from slot b, healthy; power cut at the commit", s.v2PowerCutConfirm},
		{"restart: v2.0.0 boots, committed", s.v2Commit},
		{"v3.0.0 published with a corrupted image: refused before activation", s.v3Corrupt},
		{"v3.0.0 repaired: installed in slot a, boots, fails health, rolled back to v2.0.0", s.v3Rollback},
		{"v4.0.0 installed, kernel panics, GRUB falls back to v2.0.0, agent records it", s.v4Panic},
		{"v3.0.0 and v4.0.0 are never retried", s.noRetry},
	}
	if s.e.Arch == archARM64 {
		steps = s.stepsARM64()
	}
	start := time.Now()
	for _, st := range steps {
		if err := s.step(st.name, func() error { return st.fn(ctx) }); err != nil {
			return err
		}
	}
	s.v.kill()
	if err := s.finalEnv(ctx); err != nil {
		return err
	}
	s.e.logf("=== every step happened (%.1fs); timings:", time.Since(start).Seconds())
	for _, st := range s.steps {
		s.e.logf("  %6.1fs  %s", st.d.Seconds(), st.name)
	}
	return nil
}

func (s *scenario) factoryBoot(ctx context.Context) error {
	if err := s.start(ctx); err != nil {
		return err
	}
	if err := s.expectBoot(ctx, "a", "1.0.0"); err != nil {
		return err
	}
	if _, err := s.expect(ctx, stepTimeout, agentConfirmRE); err != nil {
		return err
	}
	if err := s.expectStatus(ctx, map[string]string{"installed": "1.0.0", "booted": "a", "primary": "a", "trial": ""}); err != nil {
		return err
	}
	_, err := s.expect(ctx, stepTimeout, agentUpToDate)
	return err
}

// cutAt is the byte count after which the write of slot b is cut.
var cutAt int64

// publishFound publishes version and waits for the agent to find it.
func (s *scenario) publishFound(ctx context.Context, version string) error {
	if _, err := s.publish(ctx, version, nil); err != nil {
		return err
	}
	m, err := s.expect(ctx, stepTimeout, agentUpdateRE)
	if err != nil {
		return err
	}
	if m[2] != version {
		return fmt.Errorf("agent found %s, want %s", m[2], version)
	}
	return nil
}

func (s *scenario) v2PowerCutWrite(ctx context.Context) error {
	if err := s.publishFound(ctx, "2.0.0"); err != nil {
		return err
	}
	for {
		m, err := s.expect(ctx, downloadTimeout, agentProgRE, agentFailedRE)
		if err != nil {
			return err
		}
		done, _ := strconv.ParseInt(m[1], 10, 64)
		total, _ := strconv.ParseInt(m[2], 10, 64)
		if done >= total/3 {
			cutAt = done
			s.powerCut()
			s.e.logf("slot b had %d of %d bytes when the power went", done, total)
			return nil
		}
	}
}

func (s *scenario) v2Resume(ctx context.Context) error {
	if err := s.start(ctx); err != nil {
		return err
	}
	if err := s.expectBoot(ctx, "a", "1.0.0"); err != nil {
		return err
	}
	if err := s.expectStatus(ctx, map[string]string{"installed": "1.0.0", "booted": "a", "primary": "a", "trial": ""}); err != nil {
		return err
	}
	if _, err := s.expect(ctx, stepTimeout, agentUpdateRE); err != nil {
		return err
	}
	m, err := s.expect(ctx, stepTimeout, agentProgRE)
	if err != nil {
		return err
	}
	first, _ := strconv.ParseInt(m[1], 10, 64)
	if first > 4<<20 {
		s.e.logf("download resumed: first progress report at %d bytes (%d written before the cut)", first, cutAt)
	} else {
		s.e.logf("download started over (first progress report at %d bytes)", first)
	}
	dl := time.Now()
	if _, err := s.expectState(ctx, downloadTimeout, string("verified"), "2.0.0", "failed"); err != nil {
		return err
	}
	s.e.logf("download, write and verification of the rest took %.1fs", time.Since(dl).Seconds())
	return s.expectArmedReboot(ctx, stepTimeout, "2.0.0", "failed")
}

// v2PowerCutConfirm cuts the power as the last health check reports
// success: the agent commits (one grubenv write, then the state file)
// within milliseconds of that line, so the cut lands just before, during or
// just after the commit. Every case must end with v2.0.0 committed.
func (s *scenario) v2PowerCutConfirm(ctx context.Context) error {
	if err := s.expectBoot(ctx, "b", "2.0.0"); err != nil {
		return err
	}
	if _, err := s.expectState(ctx, stepTimeout, "confirming", "2.0.0", "rolled-back"); err != nil {
		return err
	}
	// Two checks: the application's /healthz and the update server.
	for i := 0; i < 2; i++ {
		m, err := s.expect(ctx, stepTimeout, agentHealthRE, agentStateRE)
		if err != nil {
			return err
		}
		if m[2] != "passed" {
			return fmt.Errorf("health check %s of v2.0.0 failed: %s", m[1], m[0])
		}
	}
	s.powerCut()
	return nil
}

func (s *scenario) v2Commit(ctx context.Context) error {
	if err := s.start(ctx); err != nil {
		return err
	}
	g, err := s.expect(ctx, bootTimeout, grubLineRE)
	if err != nil {
		return err
	}
	s.grubAt = time.Now()
	switch {
	case g[1] == "b" && g[2] == "a" && g[3] == "b":
		s.e.logf("the cut came before the commit reached grubenv: GRUB tries slot b again (tries left %s)", g[4])
	case g[1] == "b" && g[2] == "b":
		s.e.logf("the commit reached grubenv before the cut: slot b is primary")
	default:
		return fmt.Errorf("after the power cut GRUB chose %s", g[0])
	}
	if err := s.expectAgent(ctx, "b", "2.0.0"); err != nil {
		return err
	}
	var confirming time.Time
	for {
		m, err := s.expect(ctx, stepTimeout, confirmStepRE)
		if err != nil {
			return err
		}
		switch {
		case m[2] == "confirming":
			confirming = time.Now()
		case m[2] == "committed" && !confirming.IsZero():
			s.e.logf("health checks and commit took %.1fs", time.Since(confirming).Seconds())
		case m[3] == "ok":
		case m[3] != "":
			return fmt.Errorf("confirmation after the power cut: %s", m[0])
		}
		if m[3] != "" {
			break
		}
	}
	return s.expectStatus(ctx, map[string]string{"installed": "2.0.0", "booted": "b", "primary": "b", "trial": ""})
}

func (s *scenario) v3Corrupt(ctx context.Context) error {
	// Flip bytes in the middle of the file before the metadata naming it
	// is published: the server serves an image whose bytes do not match
	// the signed target.
	var p string
	var orig []byte
	_, err := s.publish(ctx, "3.0.0", func(t repository.Target) error {
		p = filepath.Join(s.repo.TargetsDir(), t.File)
		var err error
		if orig, err = os.ReadFile(p); err != nil {
			return err
		}
		bad := bytes.Clone(orig)
		for i := len(bad) / 2; i < len(bad)/2+4096; i++ {
			bad[i] ^= 0xa5
		}
		s.e.logf("corrupting 4096 bytes of %s on the server", t.File)
		return os.WriteFile(p, bad, 0o644)
	})
	if err != nil {
		return err
	}
	if _, err := s.expectState(ctx, downloadTimeout, "failed", "3.0.0", "armed"); err != nil {
		return err
	}
	if err := s.expectStatus(ctx, map[string]string{"installed": "2.0.0", "booted": "b", "primary": "b", "trial": ""}); err != nil {
		return err
	}
	if err := os.WriteFile(p, orig, 0o644); err != nil {
		return err
	}
	s.e.logf("repaired %s on the server", filepath.Base(p))
	return nil
}

func (s *scenario) v3Rollback(ctx context.Context) error {
	// A retry that started before the repair fails verification once
	// more; that is fine (three failures would blocklist the release, and
	// "armed" would never come).
	if err := s.expectArmedReboot(ctx, 2*downloadTimeout, "3.0.0"); err != nil {
		return err
	}
	if err := s.expectBoot(ctx, "a", "3.0.0"); err != nil {
		return err
	}
	if err := s.expectStateReboot(ctx, stepTimeout, "rolled-back", "3.0.0", "committed"); err != nil {
		return err
	}
	if err := s.expectBoot(ctx, "b", "2.0.0"); err != nil {
		return err
	}
	return s.expectStatus(ctx, map[string]string{"installed": "2.0.0", "booted": "b", "primary": "b", "trial": "", "blocked": "3.0.0"})
}

func (s *scenario) v4Panic(ctx context.Context) error {
	if _, err := s.publish(ctx, "4.0.0", nil); err != nil {
		return err
	}
	if err := s.expectArmedReboot(ctx, downloadTimeout, "4.0.0", "failed"); err != nil {
		return err
	}
	// Tries=2: GRUB boots slot a twice, the kernel panics twice.
	for try := 1; try <= 2; try++ {
		m, err := s.expect(ctx, bootTimeout, grubLineRE)
		if err != nil {
			return err
		}
		if m[1] != "a" {
			return fmt.Errorf("try %d: GRUB booted slot %s, want the trial slot a (%s)", try, m[1], m[0])
		}
		if _, err := s.expect(ctx, bootTimeout, panicRE, agentStartedRE); err != nil {
			return err
		}
	}
	if err := s.expectBoot(ctx, "b", "2.0.0"); err != nil {
		return err
	}
	m, err := s.expect(ctx, stepTimeout, agentConfirmRE)
	if err != nil {
		return err
	}
	if m[1] != "rolled back" {
		return fmt.Errorf("after GRUB's fallback the agent said %q, want a recorded rollback", m[0])
	}
	return s.expectStatus(ctx, map[string]string{"installed": "2.0.0", "booted": "b", "primary": "b", "blocked": "3.0.0,4.0.0"})
}

func (s *scenario) noRetry(ctx context.Context) error {
	if _, err := s.expect(ctx, stepTimeout, agentUpToDate, agentUpdateRE); err != nil {
		return err
	}
	// Several polls (3 s apart) must go by without a download.
	_, err := s.v.wait(ctx, 15*time.Second, agentUpdateRE, nil)
	switch {
	case err == nil:
		return errors.New("the agent tried a blocklisted release again")
	case errors.Is(err, errNoMatch):
		s.e.logf("15 s of polling: no release tried again")
		return nil
	default:
		return err
	}
}

// finalEnv reads the boot environment (grubenv, or U-Boot's) from the
// device's disk after the run.
func (s *scenario) finalEnv(ctx context.Context) error {
	raw := s.raw
	if raw == "" {
		raw = filepath.Join(s.dir, "final.raw")
		defer os.Remove(raw)
		if _, err := run(ctx, "", nil, "qemu-img", "convert", "-O", "raw", s.disk, raw); err != nil {
			return err
		}
	}
	read := readDiskEnv
	if s.e.Arch == archARM64 {
		read = readDiskEnvARM64
	}
	vars, err := read(ctx, raw)
	if err != nil {
		return err
	}
	s.e.logf("final boot environment: sb_primary=%s sb_trial=%s sb_tries=%s sb_bad=%q", vars["sb_primary"], vars["sb_trial"], vars["sb_tries"], vars["sb_bad"])
	if vars["sb_primary"] != "b" {
		return fmt.Errorf("final boot environment sb_primary=%q, want b", vars["sb_primary"])
	}
	return nil
}
