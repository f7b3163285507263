package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// physical holds the throughputs (MB/s) of the stages a network install is
// made of, each measured alone on the image's length, and the CPU time
// each cost.
type physical struct {
	sha, http, write          []float64
	shaCPU, httpCPU, writeCPU cpuCost
	// bare and bareNoSHA are the bare pipeline's throughputs (see
	// barePipeline), with and without SHA-256.
	bare, bareNoSHA       []float64
	bareCPU, bareNoSHACPU cpuCost
}

// cpuCost is the CPU time measurements cost, in core-seconds per GB: proc
// counts the processes at work (this one, a role's, the server), user and
// system time; machine counts every CPU of the machine, the kernel's own
// threads included (journal commits, writeback, softirqs), which is the
// cost of the work only when nothing else runs.
type cpuCost struct{ proc, machine []float64 }

// add records one measurement of size bytes that cost proc and machine
// seconds.
func (c *cpuCost) add(size int64, proc, machine float64) {
	gb := float64(size) / 1e9
	c.proc, c.machine = append(c.proc, proc/gb), append(c.machine, machine/gb)
}

// cpuMark is a moment's CPU times: this process's and the machine's.
type cpuMark struct{ self, machine float64 }

func markCPU() cpuMark { return cpuMark{selfCPU(), machineBusy()} }

// since returns the CPU time this process and the machine spent since m.
func (m cpuMark) since() (self, machine float64) {
	now := markCPU()
	return now.self - m.self, now.machine - m.machine
}

// measure runs each stage once: SHA-256 of size bytes (one core, this
// process), a loopback GET of the image into io.Discard (another process)
// and writing size bytes into a new file, then fsync; then the bare
// pipeline (see measureBare).
func (ph *physical) measure(r *repo, work string) error {
	buf := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(buf)
	start, cpu := time.Now(), markCPU()
	h := sha256.New()
	for left := r.size; left > 0; left -= int64(len(buf)) {
		h.Write(buf[:min(left, int64(len(buf)))])
	}
	h.Sum(nil)
	ph.sha = append(ph.sha, float64(r.size)/1e6/time.Since(start).Seconds())
	self, machine := cpu.since()
	ph.shaCPU.add(r.size, self, machine)

	srv := pidCPU(r.server.Process.Pid)
	rep, err := runRole("get", map[string]string{"BENCH_URL": r.url + "/targets/" + r.target.File})
	if err != nil {
		return fmt.Errorf("loopback GET: %w", err)
	}
	ph.http = append(ph.http, float64(r.size)/1e6/rep.Seconds)
	ph.httpCPU.add(r.size, rep.CPUSeconds+pidCPU(r.server.Process.Pid)-srv, rep.MachineSeconds)

	path := filepath.Join(work, "write.img")
	defer os.Remove(path)
	start, cpu = time.Now(), markCPU()
	if err := writeSync(path, buf, r.size); err != nil {
		return err
	}
	ph.write = append(ph.write, float64(r.size)/1e6/time.Since(start).Seconds())
	self, machine = cpu.since()
	ph.writeCPU.add(r.size, self, machine)
	return ph.measureBare(r, work)
}

// measureBare runs the bare pipeline once with SHA-256 and once without.
func (ph *physical) measureBare(r *repo, work string) error {
	out := filepath.Join(work, "bare.img")
	defer os.Remove(out)
	for _, noSHA := range []string{"", "1"} {
		rep, err := runRole("bare", map[string]string{"BENCH_URL": r.url + "/targets/" + r.target.File, "BENCH_OUT": out,
			"BENCH_SHA256": r.target.SHA256, "BENCH_NOHASH": noSHA})
		if err != nil {
			return fmt.Errorf("bare pipeline: %w", err)
		}
		xs, cpu := &ph.bare, &ph.bareCPU
		if noSHA != "" {
			xs, cpu = &ph.bareNoSHA, &ph.bareNoSHACPU
		}
		*xs = append(*xs, float64(r.size)/1e6/rep.Seconds)
		cpu.add(r.size, rep.CPUSeconds, rep.MachineSeconds)
	}
	return nil
}

// machineBusy is the CPU time, in seconds, the machine has spent busy
// since it booted: every CPU's user, nice, system, irq and softirq time
// from /proc/stat (ticks of 1/100 s), whichever process or kernel thread
// spent it; NaN where it cannot be read.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return math.NaN()
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return math.NaN()
	}
	var ticks float64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return math.NaN()
		}
		ticks += v
	}
	return ticks / 100
}

// selfCPU is the CPU time, in seconds, this process has used (all its
// threads, user and system); NaN where it cannot be read.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// pidCPU is the CPU time, in seconds, process pid has used (user and
// system, in ticks of 1/100 s, from /proc/PID/stat); NaN where it cannot
// be read.
func pidCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return math.NaN()
	}
	// The fields after the command name, which ends at the last ')':
	// state is the first of them, utime and stime the 12th and 13th.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return math.NaN()
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return math.NaN()
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return math.NaN()
	}
	return (ut + st) / 100
}

// writeSync writes size bytes of buf, repeated, into a new file at path,
// then fsyncs it.
func writeSync(path string, buf []byte, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for left := size; left > 0; left -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(left, int64(len(buf)))]); err != nil {
			return err
		}
	}
	return f.Sync()
}

// print prints the stages and the install (MB/s) against the slowest,
// then the CPU time of each and of the install (installCPU), and the CPU
// ceiling they make.
func (ph *physical) print(out io.Writer, size int64, install float64, installCPU cpuCost) {
	stages := []struct {
		name string
		xs   []float64
		cpu  cpuCost
	}{
		{"SHA-256 (one core)", ph.sha, ph.shaCPU},
		{"loopback HTTP GET", ph.http, ph.httpCPU},
		{"write+fsync of a new file", ph.write, ph.writeCPU},
	}
	slowest := stages[0]
	for _, s := range stages {
		fmt.Fprintf(out, "physical stage alone, %s, %s: %.1f MB/s (range %s)\n", s.name, human(size), median(s.xs), span(s.xs))
		if median(s.xs) < median(slowest.xs) {
			slowest = s
		}
	}
	fmt.Fprintf(out, "install/slowest physical stage (%s) throughput ratio: %.2f (goal ≥ 0.8)\n", slowest.name, install/median(slowest.xs))
	ph.printBare(out, size, install, median(slowest.xs))
	var sum float64
	for _, s := range stages {
		fmt.Fprintf(out, "CPU per GB of the stage alone, %s: machine %.2f core-s (range %s), its processes %.2f\n",
			s.name, median(s.cpu.machine), span(s.cpu.machine), median(s.cpu.proc))
		sum += median(s.cpu.machine)
	}
	ceiling := float64(runtime.NumCPU()) / sum * 1e3
	fmt.Fprintf(out, "CPU ceiling: the three stages' work takes %.2f core-s per GB, so %d cores run it at %.1f MB/s at most, %.2f of the slowest stage\n",
		sum, runtime.NumCPU(), ceiling, ceiling/median(slowest.xs))
	fmt.Fprintf(out, "CPU per GB of the install: machine %.2f core-s (range %s), %.2f of the three stages'; device and server processes %.2f; install/CPU ceiling throughput ratio: %.2f\n",
		median(installCPU.machine), span(installCPU.machine), median(installCPU.machine)/sum, median(installCPU.proc), install/ceiling)
}

// printBare prints the bare pipeline's throughputs against the slowest
// stage (MB/s) with the machine's CPU time per GB, and the install's
// throughput against the bare pipeline's.
func (ph *physical) printBare(out io.Writer, size int64, install, slowest float64) {
	fmt.Fprintf(out, "bare pipeline (the stages' work and nothing else: GET → pwrite → SHA-256 on a second goroutine, fsync every 4 MiB, 4 × 256 KiB buffers; no TUF, no checkpoints), %s: %.1f MB/s (range %s), %.2f of the slowest physical stage; machine CPU %.2f core-s per GB\n",
		human(size), median(ph.bare), span(ph.bare), median(ph.bare)/slowest, median(ph.bareCPU.machine))
	fmt.Fprintf(out, "bare pipeline without SHA-256 (GET → pwrite, fsync every 4 MiB), %s: %.1f MB/s (range %s), %.2f of the slowest physical stage; machine CPU %.2f core-s per GB\n",
		human(size), median(ph.bareNoSHA), span(ph.bareNoSHA), median(ph.bareNoSHA)/slowest, median(ph.bareNoSHACPU.machine))
	fmt.Fprintf(out, "install/bare pipeline throughput ratio: %.2f\n", install/median(ph.bare))
}

// getOnly is the loopback HTTP stage alone: a GET read to the end and
// dropped, 256 KiB at a time, as the download client reads a body
// (io.Copy into io.Discard reads 8 KiB at a time, which cost this stage
// twice the CPU and half the speed on this machine, and made it the
// slowest stage when it was not).
func getOnly(url string) error {
	start, cpu := time.Now(), markCPU()
	body, err := get(url)
	if err != nil {
		return err
	}
	defer body.Close()
	buf := make([]byte, 256<<10)
	if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{body}, buf); err != nil {
		return err
	}
	self, machine := cpu.since()
	return json.NewEncoder(os.Stdout).Encode(report{Seconds: time.Since(start).Seconds(), HWMKiB: vmHWM(), CPUSeconds: self, MachineSeconds: machine})
}
