// Command qemu is switchback's A/B example on a QEMU x86_64 machine: it
// builds a BIOS disk with GRUB, a FAT boot partition, root slots A and B
// and a data partition from Debian packages alone (no root, no loop
// devices, no mounts), and runs the update scenario against it. With
// -arch arm64 the machine is qemu-system-aarch64 -M virt with Debian's
// U-Boot, which runs the library's slots/uboot/boot.cmd.
//
//	go run ./examples/qemu build   # the factory disk and a signed repository, in the cache
//	go run ./examples/qemu boot    # boot a disk once: GRUB, kernel, init, guestfwd
//	go run ./examples/qemu run     # the whole update scenario
//	go run ./examples/qemu -arch arm64 run   # the scenario on U-Boot
//
// See README.md for the layout and for adapting it to real hardware.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage: go run ./examples/qemu [flags] build|boot|run|replay|powercut|crashboot|faults

  build  build the factory disk (pristine qcow2), a signed repository whose
         root it trusts, and the release images; print where they are
  boot   build a disk without the agent, boot it once on an overlay, and
         check that it reaches userspace and the host over guestfwd
  replay check the crash states of a log recorded by run -record LOG:
         go run ./examples/qemu -record LOG -n 3000 -seed 1 replay
  powercut  N power cuts (-n N -seed S) of fresh devices updating to
         v2.0.0 over NBD, each boot cut at a seeded write or flush request
         (unflushed writes dropped, up to 3 per device), checked offline,
         booted again, and followed to the commit
  crashboot  record a fresh device's update to v2.0.0 over NBD, check
         every crash state of it offline, and boot a seeded sample of
         them (-n K -seed S): each must come up on v1.0.0 or v2.0.0 and
         commit v2.0.0 by itself
  faults EIO and ENOSPC under the guest during the download, the slot
         write, the state write and the boot-environment write: an error
         reported, v1.0.0 still running, v2.0.0 committed once it clears
  run    build, publish releases v2 (good), v3 (fails health), v4 (panics)
         and run the whole A/B scenario; exit status 0 only if every step
         happened

  With -arch arm64, build, boot and run use qemu-system-aarch64 -M virt
  with Debian's U-Boot and arm64 kernel and busybox (no power cuts or
  corrupted download in its run; no crash campaign).

flags:
`)
	flag.PrintDefaults()
}

func main() {
	cache := flag.String("cache", defaultCacheDir(), "cache for .debs, unpacked packages and images (env SWITCHBACK_QEMU_CACHE)")
	checkout := flag.String("checkout", "", "switchback checkout (default: found from the working directory)")
	console := flag.Bool("console", false, "also print every console line")
	max := flag.Int("n", 0, "replay: check about this many crash states (0: every one generated); powercut: cycles; crashboot: states booted")
	perEpoch := flag.Int("per-epoch", 3, "replay: random subsets of the unflushed writes per flush interval")
	seed := flag.Uint64("seed", 1, "replay: seed of the random subsets")
	arch := flag.String("arch", archAMD64, "the guest machine: amd64 (PC, BIOS, GRUB) or arm64 (virt, U-Boot; build, boot and run)")
	record := flag.String("record", "", "serve the device's disk over NBD and log every write, flush and FUA to this file (run)")
	site := flag.String("site", "", "faults: only the fault sites whose name contains this")
	flag.Usage = usage
	flag.Parse()
	if flag.NArg() != 1 {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root := *checkout
	if root == "" {
		var err error
		if root, err = findCheckout(); err != nil {
			fatal(err)
		}
	}
	if *arch != archAMD64 && *arch != archARM64 {
		fatal(fmt.Errorf("-arch %q: want %s or %s", *arch, archAMD64, archARM64))
	}
	if *arch == archARM64 && (*record != "" || flag.Arg(0) == "replay" || flag.Arg(0) == "powercut" || flag.Arg(0) == "crashboot" || flag.Arg(0) == "faults") {
		fatal(fmt.Errorf("the crash campaign (-record, replay, powercut, crashboot, faults) runs on amd64 only"))
	}
	e := &env{CacheDir: *cache, Checkout: root, Out: os.Stdout, Record: *record, Arch: *arch}
	if *console {
		e.Console = os.Stdout
	}
	var err error
	switch flag.Arg(0) {
	case "build":
		var s *scenario
		if s, err = e.newScenario(ctx); err == nil {
			s.close()
			fmt.Printf("factory disk (pristine): %s\nrepository: %s\nrelease images: %s/v*.ext4\n",
				s.f.Disk, filepath.Join(s.dir, "publisher"), s.dir)
		}
	case "boot":
		err = e.bootOnce(ctx)
	case "run":
		err = e.runScenario(ctx)
	case "faults":
		err = e.runFaults(ctx, *site)
	case "powercut":
		err = e.runPowercut(ctx, *max, cutsPerCycle, *seed)
	case "crashboot":
		err = e.runCrashBoot(ctx, *max, *seed)
	case "replay":
		if *record == "" {
			fatal(fmt.Errorf("replay needs -record LOG, the log of a run made with -record"))
		}
		err = e.replayLog(ctx, *record, replayConfig{Max: *max, PerEpoch: *perEpoch, Seed: *seed})
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "qemu example:", err)
	os.Exit(1)
}

func defaultCacheDir() string {
	if d := os.Getenv("SWITCHBACK_QEMU_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "switchback-qemu")
	}
	return filepath.Join(os.TempDir(), "switchback-qemu")
}

// findCheckout walks up from the working directory to the directory whose
// go.mod declares the switchback module.
func findCheckout() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/switchback-ota/switchback\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no switchback checkout above the working directory; pass -checkout")
		}
		dir = parent
	}
}

// env is one invocation: where things are cached and where the transcript
// goes.
type env struct {
	CacheDir string
	Checkout string
	Out      io.Writer // the timestamped transcript
	Console  io.Writer // every console line, when not nil
	// Arch is the guest machine: archAMD64 ("" too) or archARM64.
	Arch string
	// Record, when not "", runs the device's disk over our NBD server and
	// logs every write, flush and FUA there (see nbd.go).
	Record string

	mu    sync.Mutex
	start time.Time
}

// logf prints one transcript line, stamped with the wall clock and the time
// since the run started.
func (e *env) logf(format string, a ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if e.start.IsZero() {
		e.start = now
	}
	fmt.Fprintf(e.Out, "%s +%6.1fs  %s\n", now.UTC().Format("15:04:05"), now.Sub(e.start).Seconds(), fmt.Sprintf(format, a...))
}

func (e *env) builder() *builder {
	return &builder{CacheDir: e.CacheDir, Checkout: e.Checkout, Log: e.Out}
}

// factory is a built factory disk.
type factory struct {
	Assets *assets
	Disk   string // pristine qcow2
	Dir    string // work directory of this build
	Agent  string // the agent binary, "" when the checkout has none
}

// buildAgent cross-builds the example agent as a static Linux binary for
// the machine's GOARCH (pure Go: no C cross-compiler).
func (e *env) buildAgent(ctx context.Context, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./examples/qemu/agent")
	cmd.Dir = e.Checkout
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+e.goarch())
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the agent: %w\n%s", err, msg)
	}
	return nil
}

// buildFactory builds the assets, the agent (unless withAgent is false)
// and the factory disk (slot A holding v1.0.0) in a fresh work directory
// under the cache.
func (e *env) buildFactory(ctx context.Context, rootJSON []byte, withAgent bool) (*factory, error) {
	b := e.builder()
	a, err := e.prepareAssets(ctx, b)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(e.CacheDir, "runs"), 0o755); err != nil {
		return nil, err
	}
	pruneRuns(filepath.Join(e.CacheDir, "runs"), 2)
	dir, err := os.MkdirTemp(filepath.Join(e.CacheDir, "runs"), time.Now().UTC().Format("20060102-150405-"))
	if err != nil {
		return nil, err
	}
	f := &factory{Assets: a, Dir: dir, Disk: filepath.Join(dir, "factory.qcow2")}
	if withAgent {
		f.Agent = filepath.Join(dir, "switchback-agent")
		if err := e.buildAgent(ctx, f.Agent); err != nil {
			return nil, err
		}
	}
	slotA := filepath.Join(dir, "v1.0.0.ext4")
	r := e.newRelease("1.0.0", flavorGood, f.Agent, rootJSON)
	if err := b.slotImage(ctx, a, r, slotA); err != nil {
		return nil, err
	}
	raw := filepath.Join(dir, "factory.raw")
	if err := e.buildDisk(ctx, b, slotA, raw); err != nil {
		return nil, err
	}
	if err := toQcow2(ctx, raw, f.Disk); err != nil {
		return nil, err
	}
	os.Remove(raw)
	b.logf("factory disk %s", f.Disk)
	return f, nil
}

// pruneRuns removes all but the newest keep run directories (each holds a
// few hundred MB of images and the console log of its run), sparing any
// touched in the last hour: another run may be using it.
func pruneRuns(dir string, keep int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	// Names start with the UTC start time, so they sort by age.
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, name := range names[:max(0, len(names)-keep)] {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.RemoveAll(p)
		}
	}
}

// agentArgs is the agent's command line in the root slots' init.
const agentArgs = "-server http://" + guestServer

// hostServer is the host's HTTP server on 127.0.0.1: the TUF repository
// (static files) and /hello, where a booted guest says which slot and
// version it runs.
type hostServer struct {
	srv   *http.Server
	port  int
	hello chan string
}

func startHostServer(repoDir string, logf func(string, ...any)) (*hostServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &hostServer{port: ln.Addr().(*net.TCPAddr).Port, hello: make(chan string, 64)}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		msg := fmt.Sprintf("slot=%s version=%s", r.URL.Query().Get("slot"), r.URL.Query().Get("version"))
		select {
		case h.hello <- msg:
		default:
		}
		io.WriteString(w, "hello\n")
	})
	if repoDir != "" {
		mux.Handle("/", http.FileServer(http.Dir(repoDir)))
	}
	h.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	go h.srv.Serve(ln)
	return h, nil
}

func (h *hostServer) close() { h.srv.Close() }

var userspaceRE = regexp.MustCompile(`init: userspace up: version (\S+), cmdline: .*switchback\.slot=([ab])`)

// bootOnce builds the factory disk and boots it on an overlay until its
// init says userspace is up and it has said hello over the guestfwd link.
func (e *env) bootOnce(ctx context.Context) error {
	// No agent: without a repository it would have no root of trust.
	f, err := e.buildFactory(ctx, nil, false)
	if err != nil {
		return err
	}
	srv, err := startHostServer("", e.logf)
	if err != nil {
		return err
	}
	defer srv.close()
	run := filepath.Join(f.Dir, "run.qcow2")
	if err := overlay(ctx, f.Disk, run); err != nil {
		return err
	}
	e.logf("starting QEMU (TCG) on %s", run)
	v, err := startVM(ctx, vmConfig{Disk: run, Busybox: f.Assets.hostBusybox(), Port: srv.port, WorkDir: f.Dir, Console: e.consoleWriter(f.Dir), Arch: e.Arch})
	if err != nil {
		return err
	}
	defer v.stop()
	m, err := v.wait(ctx, 120*time.Second, userspaceRE, panicRE)
	if err != nil {
		return err
	}
	e.logf("userspace up: slot %s, version %s", m[2], m[1])
	select {
	case hello := <-srv.hello:
		e.logf("guest said hello over guestfwd: %s", hello)
	case <-time.After(60 * time.Second):
		return fmt.Errorf("the guest did not reach the host over guestfwd within 60 s")
	}
	return nil
}

var panicRE = regexp.MustCompile(`Kernel panic`)

// consoleWriter returns where console lines go: console.log in dir, and
// e.Console too when set.
func (e *env) consoleWriter(dir string) io.Writer {
	f, err := os.OpenFile(filepath.Join(dir, "console.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		if e.Console != nil {
			return e.Console
		}
		return io.Discard
	}
	if e.Console != nil {
		return io.MultiWriter(f, e.Console)
	}
	return f
}
