// Command bench measures switchback's transfer path and prints one line per
// figure:
//
//   - install of a 1 GiB image over loopback, through the public updater API
//     into a file slot (with its fsyncs), in MB/s, and the ratio to a baseline
//     measured in the same run: a plain net/http GET copied to a file through
//     SHA-256, then fsync (goal ≥ 1.0); and the transfer layer alone
//     (download.Client.Fetch into the same kind of file, no checkpoints)
//     against the same baseline;
//   - the physical stages the install is made of, each alone, in the same
//     run: SHA-256 of the image's length (one core), a loopback HTTP GET to
//     nowhere, and writing a new file of that length with fsync; and the
//     install against the slowest of them (goal ≥ 0.8);
//   - a local file (the USB-stick case, 256 MiB of a file-system-like image
//     published raw and zstd-compressed in a file:// repository) installed
//     with updater.InstallFile, against dd conv=fsync and zstd -dc | dd
//     conv=fsync of the same files into the same directory (goals ≤ 2.0 and
//     ≤ 1.2), and RAUC installing a plain bundle of the same image when
//     rauc is installed (bootloader=noop, on a private dbus-daemon);
//   - peak RSS (VmHWM) of the installing process for 256 MiB and 1 GiB images
//     (goal ≤ 48 MiB, not growing with the image);
//   - bytes downloaded twice after the installing process is killed with
//     SIGKILL at 25 %, 50 % and 75 % and started again (goal ≤ 1 MiB each);
//   - the cost of verifying a resumed transfer again: a resumed install
//     reads the whole image back from the slot before arming it, so its
//     verified→armed step is compared with that of an install without
//     resume, next to the whole resumed install's time;
//   - requests and bytes of an idle check (nothing changed on the server);
//   - an MCUboot image uploaded over SMP to the simulated MCU of
//     slots/smp/smptest on 127.0.0.1, over UDP and over DTLS (PSK), through
//     the smp slot (smp.Device.Arm of the staged image) and through
//     smp.Client.Upload alone, against a baseline: the same upload frames,
//     encoded beforehand, sent by a minimal stop-and-wait loop through the
//     same transport to a fresh simulated MCU doing the same flash work;
//   - a container image with one big layer in a docker-registry on
//     127.0.0.1, pulled by package oci (Store.Fetch, then Arm: unpack) in a
//     child process, against skopeo copy of the same image into an empty
//     store (skipped with the reason without docker-registry, skopeo or
//     root).
//
// The install goes through updater.New/Check/Install, so its figures
// include the updater's durable checkpoints (slot fsync + state file every
// few MiB), which set both the throughput cost and how much a SIGKILL
// loses. "Received twice by the device" is what the killed installer had
// written to its slot beyond the offset the restarted one resumed from;
// "server wrote" also counts bytes in flight in socket buffers at the kill.
//
// Usage:
//
//	go run ./examples/bench [-runs 3] [-size 1024] [-small 256] [-local 256]
//		[-smp-kib 512] [-smp-buf 384] [-layer-mib 256] [-cpuprofile PREFIX]
//
// With -cpuprofile, the last network install and the last local installs
// write CPU profiles to PREFIX.net, PREFIX.local-raw and PREFIX.local-zstd
// (go tool pprof reads them).
//
// The server is another process (the command re-executes itself), as is
// every installing device, so that RSS and SIGKILL are those of a real
// installer; the simulated MCU and the gateway's smp.Device share the
// bench's own process. Everything is written under a temporary directory in /tmp,
// removed at the end. Figures are medians over -runs runs, with their
// range (min–max) where the machine's noise matters.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchback-ota/switchback/internal/download"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

const (
	roleEnv  = "SWITCHBACK_BENCH_ROLE"
	hardware = "bench-board"
	version  = "1.1.0"
)

func main() {
	var err error
	switch os.Getenv(roleEnv) {
	case "server":
		err = serve(os.Getenv("BENCH_DIR"))
	case "install":
		err = install(os.Getenv("BENCH_DEVICE"), os.Getenv("BENCH_URL"), os.Getenv("BENCH_ROOT"), os.Getenv("BENCH_FACTORY"), os.Getenv("BENCH_MODE"))
	case "installfile":
		err = installFile(os.Getenv("BENCH_DEVICE"), os.Getenv("BENCH_STICK"), os.Getenv("BENCH_ROOT"), os.Getenv("BENCH_FILE"), os.Getenv("BENCH_CPUPROFILE"))
	case "ocipull":
		err = ociPull(os.Getenv("BENCH_HOST"), os.Getenv("BENCH_REPO"), os.Getenv("BENCH_MANIFEST"), os.Getenv("BENCH_DEVICE"))
	case "get":
		err = getOnly(os.Getenv("BENCH_URL"))
	case "baseline":
		err = baseline(os.Getenv("BENCH_URL"), os.Getenv("BENCH_OUT"), os.Getenv("BENCH_SHA256"))
	case "bare":
		err = barePipeline(os.Getenv("BENCH_URL"), os.Getenv("BENCH_OUT"), os.Getenv("BENCH_SHA256"), os.Getenv("BENCH_NOHASH") == "")
	case "fetch":
		err = fetchOnly(os.Getenv("BENCH_URL"), os.Getenv("BENCH_OUT"), os.Getenv("BENCH_SHA256"))
	default:
		err = orchestrate(os.Args[1:], os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// --- the orchestrator -------------------------------------------------

type report struct {
	Seconds float64 `json:"seconds"`
	HWMKiB  int64   `json:"hwm_kib"`
	// ArmSeconds is the time from the "verified" event to the "armed" one:
	// the arm alone, plus, after a resumed transfer, the read-back of the
	// whole image from the slot.
	ArmSeconds float64 `json:"arm_seconds"`
	// CPUSeconds is the CPU time the role's process used while it
	// measured (user and system), and MachineSeconds that of the whole
	// machine (see machineBusy), where the role says.
	CPUSeconds     float64 `json:"cpu_seconds,omitempty"`
	MachineSeconds float64 `json:"machine_seconds,omitempty"`
}

type stats struct {
	TargetBytes int64 `json:"target_bytes"`
	MetaBytes   int64 `json:"meta_bytes"`
	Requests    int64 `json:"requests"`
	TargetReqs  int64 `json:"target_requests"`
	// RangeStart is the first byte asked for by the latest target request
	// with a Range header: where a restarted installer resumed.
	RangeStart int64 `json:"range_start"`
}

type repo struct {
	dir, root, url string
	target         repository.Target
	server         *exec.Cmd
	size           int64
}

// config is what the command line asks for.
type config struct {
	runs                        int
	sizeMiB, smallMiB, localMiB int64
	smpKiB, smpBuf              int
	layerMiB                    int64
	profile                     string // absolute; "" for none
}

// parseConfig reads the command line.
func parseConfig(args []string) (config, error) {
	var c config
	fl := flag.NewFlagSet("bench", flag.ContinueOnError)
	fl.IntVar(&c.runs, "runs", 3, "runs per figure (medians are printed)")
	fl.Int64Var(&c.sizeMiB, "size", 1024, "image size in MiB for throughput and kills")
	fl.Int64Var(&c.smallMiB, "small", 256, "smaller image size in MiB for the RSS comparison")
	fl.Int64Var(&c.localMiB, "local", 256, "image size in MiB for the local-file installs")
	fl.IntVar(&c.smpKiB, "smp-kib", 512, "MCUboot image body in KiB for the SMP uploads, at most 4096 (0: skip them)")
	fl.IntVar(&c.smpBuf, "smp-buf", 384, "SMP buffer size of the simulated MCU, in bytes")
	fl.Int64Var(&c.layerMiB, "layer-mib", 256, "container layer size in MiB for the registry pulls (0: skip them)")
	fl.StringVar(&c.profile, "cpuprofile", "", "write CPU profiles of the last installs to `PREFIX`.net, .local-raw, .local-zstd")
	if err := fl.Parse(args); err != nil {
		return c, err
	}
	if c.runs < 1 || c.sizeMiB < 4 || c.smallMiB < 4 || c.localMiB < 4 || c.smpKiB < 0 || c.smpKiB > 4096 || c.smpBuf < 64 || c.layerMiB < 0 {
		return c, errors.New("-runs ≥ 1, -size, -small and -local ≥ 4, -smp-buf ≥ 64, -smp-kib 0–4096, -layer-mib ≥ 0")
	}
	if c.profile != "" {
		abs, err := filepath.Abs(c.profile)
		if err != nil {
			return c, err
		}
		c.profile = abs
	}
	return c, nil
}

// orchestrate runs every measurement and prints the figures to out.
func orchestrate(args []string, out io.Writer) error {
	cfg, err := parseConfig(args)
	if err != nil {
		return err
	}
	work, err := workDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ctx := context.Background()
	fmt.Fprintf(out, "# switchback bench: %d run(s) per figure, medians; work dir %s (removed at exit)\n", cfg.runs, work)
	if err := networkFigures(ctx, out, work, cfg); err != nil {
		return err
	}
	if err := localFigures(ctx, out, work, cfg.localMiB, cfg.runs, cfg.profile); err != nil {
		return err
	}
	if err := smpFigures(ctx, out, work, cfg); err != nil {
		return err
	}
	return ociFigures(ctx, out, work, cfg)
}

// workDir makes the directory everything is written under, and removes
// it if the bench is interrupted (children die with it, see childAttr).
func workDir() (string, error) {
	work, err := os.MkdirTemp("/tmp", "switchback-bench-")
	if err != nil {
		return "", err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
	go func() {
		<-sig
		os.RemoveAll(work)
		os.Exit(1)
	}()
	return work, nil
}

// networkFigures measures installs of one big image over loopback: the
// throughput against the baselines and the physical stages, the peak RSS
// against a smaller image, kills and resumes, and an idle check.
func networkFigures(ctx context.Context, out io.Writer, work string, cfg config) error {
	big, err := newRepo(ctx, filepath.Join(work, "big"), cfg.sizeMiB<<20)
	if err != nil {
		return err
	}
	defer big.stop()
	// Baselines and installs alternate, so that all see the same
	// page-cache and disk conditions.
	var nr netRuns
	for i := 0; i < cfg.runs; i++ {
		prof := ""
		if cfg.profile != "" && i == cfg.runs-1 {
			prof = cfg.profile + ".net"
		}
		if err := nr.measure(big, work, prof); err != nil {
			return err
		}
	}
	nr.print(out, big.size)
	if err := rssFigures(ctx, out, work, cfg, big.size, nr.hwm); err != nil {
		return err
	}
	mi := median(nr.inst)
	if err := killFigures(out, big, work, cfg.runs, median(nr.armPlain), float64(big.size)/1e6/mi); err != nil {
		return err
	}
	return idleCheck(out, big, filepath.Join(work, "device"))
}

// netRuns holds the throughputs (MB/s) of each run of the network
// figures, and what the installs reported.
type netRuns struct {
	base, fetched, inst []float64
	instCPU             cpuCost
	armPlain            []float64 // verified→armed seconds
	hwm                 []int64
	phys                physical
}

// measure runs the physical stages, the GET+fsync baseline, the transfer
// layer alone and an install through the updater, once each.
func (nr *netRuns) measure(big *repo, work, profile string) error {
	if err := nr.phys.measure(big, work); err != nil {
		return err
	}
	url, out := big.url+"/targets/"+big.target.File, filepath.Join(work, "baseline.img")
	r, err := runRole("baseline", map[string]string{"BENCH_URL": url, "BENCH_OUT": out, "BENCH_SHA256": big.target.SHA256})
	os.Remove(out)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	nr.base = append(nr.base, float64(big.size)/1e6/r.Seconds)
	r, err = runRole("fetch", map[string]string{"BENCH_URL": url, "BENCH_OUT": out, "BENCH_SHA256": big.target.SHA256, "BENCH_LEN": strconv.FormatInt(big.size, 10)})
	os.Remove(out)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	nr.fetched = append(nr.fetched, float64(big.size)/1e6/r.Seconds)
	dev, srv := filepath.Join(work, "device"), pidCPU(big.server.Process.Pid)
	r, err = runRole("install", map[string]string{"BENCH_DEVICE": dev, "BENCH_URL": big.url, "BENCH_ROOT": big.root,
		"BENCH_FACTORY": factoryFor("install"), "BENCH_MODE": "install", "BENCH_CPUPROFILE": profile})
	os.RemoveAll(dev)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	nr.inst = append(nr.inst, float64(big.size)/1e6/r.Seconds)
	nr.instCPU.add(big.size, r.CPUSeconds+pidCPU(big.server.Process.Pid)-srv, r.MachineSeconds)
	nr.armPlain = append(nr.armPlain, r.ArmSeconds)
	nr.hwm = append(nr.hwm, r.HWMKiB)
	return nil
}

// print prints the throughputs, their ratios and the physical stages.
func (nr *netRuns) print(out io.Writer, size int64) {
	mb, mi := median(nr.base), median(nr.inst)
	fmt.Fprintf(out, "baseline (net/http GET → SHA-256 → file → fsync), %s: %.1f MB/s (range %s)\n", human(size), mb, span(nr.base))
	fmt.Fprintf(out, "transfer layer alone (download.Client.Fetch → SHA-256 → file → fsync, no checkpoints), %s: %.1f MB/s, ratio %.2f\n", human(size), median(nr.fetched), median(nr.fetched)/mb)
	fmt.Fprintf(out, "install through updater.Install into a file slot (fsync), %s: %.1f MB/s (range %s)\n", human(size), mi, span(nr.inst))
	fmt.Fprintf(out, "install/baseline throughput ratio: %.2f (goal ≥ 1.0)\n", mi/mb)
	nr.phys.print(out, size, mi, nr.instCPU)
}

// rssFigures prints the peak RSS of installs of a smaller image next to
// hwmBig, that of the installs of the big image (bigSize bytes).
func rssFigures(ctx context.Context, out io.Writer, work string, cfg config, bigSize int64, hwmBig []int64) error {
	small, err := newRepo(ctx, filepath.Join(work, "small"), cfg.smallMiB<<20)
	if err != nil {
		return err
	}
	defer small.stop()
	var hwmSmall []int64
	for i := 0; i < cfg.runs; i++ {
		dev := filepath.Join(work, "device")
		r, err := runInstall(small, dev, "install")
		os.RemoveAll(dev)
		if err != nil {
			return fmt.Errorf("install: %w", err)
		}
		hwmSmall = append(hwmSmall, r.HWMKiB)
	}
	fmt.Fprintf(out, "peak RSS (VmHWM) of the installing process, %s image: %.1f MiB\n", human(small.size), float64(medianInt(hwmSmall))/1024)
	fmt.Fprintf(out, "peak RSS (VmHWM) of the installing process, %s image: %.1f MiB (goal ≤ 48 MiB)\n", human(bigSize), float64(medianInt(hwmBig))/1024)
	return nil
}

// killFigures kills installs at 25, 50 and 75 % and restarts them, and
// prints what was fetched twice, then the cost of the read-back of the
// resumed installs against armPlain, the verified→armed time of an install
// without resume, and plainSecs, its whole time.
func killFigures(out io.Writer, big *repo, work string, runs int, armPlain, plainSecs float64) error {
	var armResumed, resumedSecs []float64
	for _, pct := range []int64{25, 50, 75} {
		var redelivered, wire, reqs []int64
		for i := 0; i < runs; i++ {
			k, err := killAndResume(big, filepath.Join(work, "device"), pct)
			os.RemoveAll(filepath.Join(work, "device"))
			if err != nil {
				return fmt.Errorf("kill at %d%%: %w", pct, err)
			}
			redelivered, wire, reqs = append(redelivered, k.redelivered), append(wire, k.wire), append(reqs, k.requests)
			armResumed, resumedSecs = append(armResumed, k.resumed.ArmSeconds), append(resumedSecs, k.resumed.Seconds)
		}
		fmt.Fprintf(out, "re-downloaded after SIGKILL at %d%% and restart: %s received twice by the device (goal ≤ 1 MiB); server wrote %s beyond one image (incl. socket buffers); %d target requests\n",
			pct, human(medianInt(redelivered)), human(medianInt(wire)), medianInt(reqs))
	}
	fmt.Fprintf(out, "resume read-back, %s: verified→armed %.3f s after a resume (whole image read back and hashed) vs %.3f s without resume; resumed installs took %.2f s, an install without resume %.2f s\n",
		human(big.size), median(armResumed), armPlain, median(resumedSecs), plainSecs)
	return nil
}

// idleCheck measures the check of a device that is up to date: the
// requests and bytes it costs.
func idleCheck(out io.Writer, big *repo, dev string) error {
	if _, err := runInstall(big, dev, "check"); err != nil { // first check: fetches all metadata
		return fmt.Errorf("first check: %w", err)
	}
	if err := getJSON(big.url+"/_reset", nil); err != nil {
		return err
	}
	if _, err := runInstall(big, dev, "check"); err != nil {
		return fmt.Errorf("idle check: %w", err)
	}
	var st stats
	if err := getJSON(big.url+"/_stats", &st); err != nil {
		return err
	}
	fmt.Fprintf(out, "idle check (nothing changed): %d requests, %d response body bytes\n", st.Requests, st.MetaBytes+st.TargetBytes)
	os.RemoveAll(dev)
	return nil
}

// newRepo publishes one image of size bytes in a signed repository and
// starts a server process for it.
func newRepo(ctx context.Context, dir string, size int64) (*repo, error) {
	r, err := repository.Init(ctx, repository.Config{Dir: filepath.Join(dir, "server")},
		repository.InitOptions{KeysDir: filepath.Join(dir, "keys")})
	if err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	img := io.LimitReader(rand.NewChaCha8([32]byte{byte(size >> 20)}), size)
	t, err := r.AddTarget(ctx, "app/image-"+version, img,
		verify.Custom{Component: "app", Version: version, Hardware: []string{hardware}}, repository.AddOptions{})
	if err != nil {
		return nil, fmt.Errorf("add target: %w", err)
	}
	if err := r.Publish(ctx); err != nil {
		return nil, err
	}
	rp := &repo{dir: dir, root: filepath.Join(r.MetadataDir(), "1.root.json"), target: t, size: size}
	rp.server = exec.Command(os.Args[0])
	rp.server.Env = append(os.Environ(), roleEnv+"=server", "BENCH_DIR="+r.Dir())
	rp.server.Stderr = os.Stderr
	rp.server.SysProcAttr = childAttr()
	out, err := rp.server.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := rp.server.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("server did not start: %w", err)
	}
	rp.url = strings.TrimSpace(line)
	return rp, nil
}

// stop ends the repository's server and removes its files.
func (r *repo) stop() {
	r.server.Process.Kill()
	r.server.Wait()
	os.RemoveAll(r.dir)
}

func runInstall(r *repo, device, mode string) (report, error) {
	return runRole("install", map[string]string{"BENCH_DEVICE": device, "BENCH_URL": r.url, "BENCH_ROOT": r.root,
		"BENCH_FACTORY": factoryFor(mode), "BENCH_MODE": mode})
}

// factoryFor: an installing device runs 1.0.0; a checking one is up to date.
func factoryFor(mode string) string {
	if mode == "check" {
		return version
	}
	return "1.0.0"
}

func roleCmd(role string, env map[string]string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childAttr()
	return cmd
}

// childAttr makes a child process die with the bench (Linux).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

func runRole(role string, env map[string]string) (report, error) {
	var r report
	out, err := roleCmd(role, env).Output()
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(out, &r)
}

type killResult struct {
	redelivered int64 // bytes the killed installer had written that the restarted one fetched again
	wire        int64 // target bytes the server wrote beyond one image
	requests    int64
	resumed     report // of the restarted installer
}

// killAndResume starts an install, kills it with SIGKILL once pct % of
// the image has left the server, and installs again to the end.
func killAndResume(r *repo, device string, pct int64) (killResult, error) {
	var k killResult
	if err := getJSON(r.url+"/_reset", nil); err != nil {
		return k, err
	}
	cmd := roleCmd("install", map[string]string{"BENCH_DEVICE": device, "BENCH_URL": r.url, "BENCH_ROOT": r.root,
		"BENCH_FACTORY": "1.0.0", "BENCH_MODE": "install", "BENCH_PROGRESS": "1"})
	out, err := cmd.StdoutPipe()
	if err != nil {
		return k, err
	}
	if err := cmd.Start(); err != nil {
		return k, err
	}
	// The installer prints how far its slot got after every write.
	var delivered atomic.Int64
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if n, err := strconv.ParseInt(strings.TrimPrefix(sc.Text(), "p "), 10, 64); err == nil {
				delivered.Store(n)
			}
		}
	}()
	if err := waitServed(r, pct, readDone); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return k, err
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-readDone
	cmd.Wait()
	resumed, err := runInstall(r, device, "install")
	if err != nil {
		return k, fmt.Errorf("restarted install: %w", err)
	}
	k.resumed = resumed
	var st stats
	if err := getJSON(r.url+"/_stats", &st); err != nil {
		return k, err
	}
	k.wire, k.requests = st.TargetBytes-r.size, st.TargetReqs
	k.redelivered = delivered.Load() - st.RangeStart
	if k.redelivered < 0 {
		// The installer reports progress after each write returns: killed
		// in between, it held one read more than it reported, and resumed
		// after it. Nothing was received twice.
		k.redelivered = 0
	}
	if st.TargetReqs < 2 {
		k.redelivered = delivered.Load() // restarted from zero without Range
	}
	return k, nil
}

// waitServed returns once the server has sent pct % of the image, or an
// error if the installer ends first (done is closed).
func waitServed(r *repo, pct int64, done <-chan struct{}) error {
	for {
		var st stats
		if err := getJSON(r.url+"/_stats", &st); err != nil {
			return err
		}
		if st.TargetBytes*100 >= r.size*pct {
			return nil
		}
		select {
		case <-done:
			return errors.New("installer finished before the kill")
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// span is the range of xs, "min–max".
func span(xs []float64) string {
	return fmt.Sprintf("%.3g–%.3g", slices.Min(xs), slices.Max(xs))
}

// spread prints seconds: the median and the range.
func spread(xs []float64) string {
	return fmt.Sprintf("%.3f s (range %.3f–%.3f)", median(xs), slices.Min(xs), slices.Max(xs))
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianInt(xs []int64) int64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func human(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// --- the server process ---------------------------------------------

// serve serves the repository directory on 127.0.0.1 with Range support,
// an ETag per file, and counters at /_stats (reset by /_reset). It prints
// its base URL on stdout.
func serve(dir string) error {
	if dir == "" {
		return errors.New("BENCH_DIR not set")
	}
	var targetBytes, metaBytes, reqs, targetReqs, rangeStart atomic.Int64
	fs := http.FileServer(http.Dir(dir))
	// BENCH_SERVER_RATE (bytes/s) slows the server down, for tests on
	// tiny images that must still be killable mid-way.
	rate, _ := strconv.ParseInt(os.Getenv("BENCH_SERVER_RATE"), 10, 64)
	mux := http.NewServeMux()
	mux.HandleFunc("/_stats", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(stats{TargetBytes: targetBytes.Load(), MetaBytes: metaBytes.Load(), Requests: reqs.Load(), TargetReqs: targetReqs.Load(), RangeStart: rangeStart.Load()})
	})
	mux.HandleFunc("/_reset", func(w http.ResponseWriter, r *http.Request) {
		targetBytes.Store(0)
		metaBytes.Store(0)
		reqs.Store(0)
		targetReqs.Store(0)
		rangeStart.Store(0)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		counter := &metaBytes
		if strings.HasPrefix(r.URL.Path, "/targets/") {
			counter = &targetBytes
			targetReqs.Add(1)
			if n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(r.Header.Get("Range"), "bytes="), "-"), 10, 64); err == nil {
				rangeStart.Store(n)
			}
		}
		// A strong ETag, as nginx makes one: size and modification time.
		if fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(filepath.Clean("/"+r.URL.Path)))); err == nil && fi.Mode().IsRegular() {
			w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.ModTime().UnixNano(), fi.Size()))
		}
		fs.ServeHTTP(&countingWriter{ResponseWriter: w, n: counter, rate: rate}, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("http://%s\n", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ConnState: limitUnsent}
	return srv.Serve(ln)
}

// limitUnsent keeps at most 128 KiB written but not yet sent in each
// connection's socket (TCP_NOTSENT_LOWAT), so that the byte counters say
// what left the server rather than what waits in its kernel buffers.
func limitUnsent(c net.Conn, s http.ConnState) {
	if s != http.StateNew {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		if raw, err := tc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) {
				syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotsentLowat, 128<<10)
			})
		}
	}
}

// tcpNotsentLowat is TCP_NOTSENT_LOWAT from linux/tcp.h.
const tcpNotsentLowat = 25

type countingWriter struct {
	http.ResponseWriter
	n    *atomic.Int64
	rate int64 // bytes/s; 0: unlimited
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.rate > 0 {
		time.Sleep(time.Duration(int64(len(p)) * int64(time.Second) / c.rate))
	}
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// ReadFrom lets net/http send a file with sendfile, as nginx does, and
// counts what it sent; a throttled server copies through Write instead.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := c.ResponseWriter.(io.ReaderFrom)
	if c.rate > 0 || !ok {
		return io.Copy(struct{ io.Writer }{c}, r)
	}
	n, err := rf.ReadFrom(r)
	c.n.Add(n)
	return n, err
}

// --- the device processes -------------------------------------------

// install runs one device start: Confirm, Check and (mode "install")
// Install of what was found. It prints a report on stdout.
func install(device, base, rootFile, factory, mode string) error {
	ctx := context.Background()
	if prof := os.Getenv("BENCH_CPUPROFILE"); prof != "" {
		stop, err := startProfile(prof)
		if err != nil {
			return err
		}
		defer stop()
	}
	root, err := os.ReadFile(rootFile)
	if err != nil {
		return err
	}
	slot, err := factorySlot(device, factory)
	if err != nil {
		return err
	}
	var verifiedAt, armedAt time.Time
	u, err := updater.New(updater.Config{
		Hardware:    hardware,
		StateDir:    filepath.Join(device, "state"),
		TrustedRoot: root,
		MetadataURL: base + "/metadata/",
		TargetsURL:  base + "/targets/",
		Components: []updater.Component{{
			Name: "app", Slots: slot.Slots(), Boot: slot, FactoryVersion: factory,
		}},
		SkipServerCheck: true,
		Events:          armTimer(&verifiedAt, &armedAt, progressPrinter(os.Getenv("BENCH_PROGRESS") == "1")),
		Restart:         func(context.Context, string) error { return nil },
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	defer u.Close()
	start, cpu := time.Now(), markCPU()
	ups, err := u.Check(ctx)
	switch {
	case mode == "check" && errors.Is(err, updater.ErrNoUpdate):
	case err != nil:
		return fmt.Errorf("check: %w", err)
	case mode == "check":
		return fmt.Errorf("check: found %d updates, want none", len(ups))
	}
	if mode == "install" {
		if len(ups) != 1 {
			return fmt.Errorf("check: found %d updates, want 1", len(ups))
		}
		if err := u.Install(ctx, ups[0]); err != nil {
			return fmt.Errorf("install: %w", err)
		}
	}
	self, machine := cpu.since()
	return json.NewEncoder(os.Stdout).Encode(report{Seconds: time.Since(start).Seconds(), HWMKiB: vmHWM(), ArmSeconds: armedAt.Sub(verifiedAt).Seconds(),
		CPUSeconds: self, MachineSeconds: machine})
}

// armTimer records when the install reached "verified" and "armed", and
// passes every event on to next (if any).
func armTimer(verifiedAt, armedAt *time.Time, next func(updater.Event)) func(updater.Event) {
	return func(e updater.Event) {
		if sc, ok := e.(updater.StateChanged); ok {
			switch sc.To {
			case updater.StateVerified:
				*verifiedAt = time.Now()
			case updater.StateArmed:
				*armedAt = time.Now()
			}
		}
		if next != nil {
			next(e)
		}
	}
}

// progressPrinter prints "p <bytes in the slot>" lines for the
// orchestrator, which uses the last one before a SIGKILL.
func progressPrinter(on bool) func(updater.Event) {
	if !on {
		return nil
	}
	return func(e updater.Event) {
		if p, ok := e.(updater.Progress); ok {
			fmt.Printf("p %d\n", p.Done)
		}
	}
}

// baseline is the yardstick: a plain GET copied to a file through SHA-256,
// then fsync.
func baseline(url, out, wantHex string) error {
	start := time.Now()
	body, f, err := getInto(url, out)
	if err != nil {
		return err
	}
	defer body.Close()
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), body); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantHex {
		return fmt.Errorf("baseline sha256 %s, want %s", got, wantHex)
	}
	return json.NewEncoder(os.Stdout).Encode(report{Seconds: time.Since(start).Seconds(), HWMKiB: vmHWM()})
}

// fetchOnly is the transfer layer without the updater: download.Client
// into a file through SHA-256, then fsync.
func fetchOnly(url, out, wantHex string) error {
	start := time.Now()
	c, err := download.New(download.Config{})
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	sink := &fileHashSink{f: f, h: sha256.New()}
	length, err := strconv.ParseInt(os.Getenv("BENCH_LEN"), 10, 64)
	if err != nil {
		return err
	}
	if _, err := c.Fetch(context.Background(), download.Request{URLs: []string{url}, Length: length}, sink, nil); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if got := hex.EncodeToString(sink.h.Sum(nil)); got != wantHex {
		return fmt.Errorf("fetch sha256 %s, want %s", got, wantHex)
	}
	return json.NewEncoder(os.Stdout).Encode(report{Seconds: time.Since(start).Seconds(), HWMKiB: vmHWM()})
}

type fileHashSink struct {
	f *os.File
	h hash.Hash
}

func (s *fileHashSink) Write(p []byte) (int, error) {
	s.h.Write(p)
	return s.f.Write(p)
}

func (s *fileHashSink) Restart() error {
	s.h.Reset()
	if err := s.f.Truncate(0); err != nil {
		return err
	}
	_, err := s.f.Seek(0, io.SeekStart)
	return err
}

// get starts a GET of url on a connection of its own (a new Transport:
// nothing pooled from an earlier measurement) and returns the body of a
// 200 answer.
func get(url string) (io.ReadCloser, error) {
	resp, err := (&http.Client{Transport: &http.Transport{}}).Get(url)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, errors.New(resp.Status)
	}
	return resp.Body, nil
}

// getInto starts a GET of url (see get) and creates the file at out that
// its body is to be copied into.
func getInto(url, out string) (io.ReadCloser, *os.File, error) {
	body, err := get(url)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Create(out)
	if err != nil {
		body.Close()
		return nil, nil, err
	}
	return body, f, nil
}

// vmHWM is the peak resident set size of this process, in KiB.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return -1
}
